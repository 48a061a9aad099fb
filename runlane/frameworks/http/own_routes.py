"""runlane's own routes, beside Trigger.dev's: queues (list, pause, resume), a run's logs, and
bulk cancel / replay. Their JSON is runlane's models (snake_case), as the Python API returns
them. Every verb is one of ``runlane.core.operations``'s."""

from __future__ import annotations

from typing import Any

from runlane.core import operations
from runlane.errors import InvalidOptionError
from runlane.frameworks.http.api import ApiError, Request, Router

router = Router()

_BULK_FILTERS = {
    "status",
    "task_identifier",
    "tag",
    "from",
    "to",
    "batch",
    "schedule",
    "version",
    "queue",
    "is_test",
}


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


@router.route("GET", "/api/v1/queues", name="listQueues")
def list_queues(request: Request) -> Any:
    """Every queue of the environment: limits, running and queued counts, pauses."""
    return {"data": [_dump(q) for q in operations.list_queues(request.rt)]}


@router.route("GET", "/api/v1/queues/{name}", name="retrieveQueue")
def retrieve_queue(request: Request) -> Any:
    """One queue (a name with "/" is sent percent-encoded: task%2Fmy-task)."""
    return _dump(operations.retrieve_queue(request.rt, request.params["name"]))


@router.route("POST", "/api/v1/queues/{name}/pause", name="pauseQueue")
def pause_queue(request: Request) -> Any:
    """Hold dispatch of a queue, or of one concurrency key in it, until resumed or until
    ``until`` (an ISO date or a duration)."""
    body = request.json_object()
    _only(body, {"concurrency_key", "until"})
    queue = operations.pause_queue(
        request.rt, request.params["name"], body.get("concurrency_key"), body.get("until")
    )
    return _dump(queue)


@router.route("POST", "/api/v1/queues/{name}/resume", name="resumeQueue")
def resume_queue(request: Request) -> Any:
    """Dispatch again from a paused queue (or key)."""
    body = request.json_object()
    _only(body, {"concurrency_key"})
    return _dump(
        operations.resume_queue(request.rt, request.params["name"], body.get("concurrency_key"))
    )


@router.route("GET", "/api/v1/runs/{run_id}/logs", name="runLogs")
def run_logs(request: Request) -> Any:
    """A run's log entries after ``after`` (a ``seq``), at most ``limit``."""
    after = _int(request.arg("after"), "after", 0)
    limit = _int(request.arg("limit"), "limit", 1000)
    entries = operations.run_logs(request.rt, request.params["run_id"], after=after, limit=limit)
    return {"data": [_dump(e) for e in entries]}


@router.route("POST", "/api/v1/bulk/runs/cancel", name="bulkCancelRuns")
def bulk_cancel(request: Request) -> Any:
    """Cancel every run matching the body's filters (as runs list takes them; at least one),
    at most ``limit`` (default 1000)."""
    query, limit = _bulk(request)
    return _dump(operations.bulk_cancel_runs(request.rt, query, limit=limit))


@router.route("POST", "/api/v1/bulk/runs/replay", name="bulkReplayRuns")
def bulk_replay(request: Request) -> Any:
    """Replay every run matching the body's filters, at most ``limit`` (default 1000)."""
    query, limit = _bulk(request)
    return _dump(operations.bulk_replay_runs(request.rt, query, limit=limit))


def _bulk(request: Request) -> tuple[Any, int]:
    body = request.json_object()
    _only(body, _BULK_FILTERS | {"limit"})
    filters = {("from_" if k == "from" else k): v for k, v in body.items() if k != "limit"}
    if not any(v is not None for v in filters.values()):
        raise InvalidOptionError("filters", body, "give at least one filter (status, tag, ...)")
    limit = body.get("limit", 1000)
    return operations.run_query(**filters, limit=1), limit


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            422, "invalid_option", f"unknown field {unknown[0]!r}; fields: {sorted(allowed)}",
            param=unknown[0],
        )  # fmt: skip


def _int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an integer", param=name) from None
