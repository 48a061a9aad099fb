"""runlane's native routes, under ``/api/runlane/v1``: what remote mode (``runlane.sdk``) calls.

Each route is one call of the verb the Python API calls locally (the engine's trigger and
batch trigger, ``core.operations``, ``core.schedules``), with runlane's option names in and
runlane's models out as JSON (``model_dump(mode="json")``), so nothing is lost between the two
modes (Trigger.dev's camelCase routes cannot carry every runlane field). Queues, logs and bulk
actions are ``own_routes``'s. Option values JSON cannot carry travel tagged (``sdk.wire``).

Errors are the API's JSON errors, with what the SDK needs to raise the same exception as a
local call: the error's ``type`` (its class name) and its fields (``reason``, ``run_id`` ...).
A secret key reaches every route; a public access token only a run or batch its scopes name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from runlane.core import jsonvalue, operations
from runlane.core import schedules as schedule_ops
from runlane.core.metadata import make_op
from runlane.core.options import UNSET
from runlane.core.types import RunQuery
from runlane.errors import (
    InvalidOptionError,
    InvalidRunStateError,
    InvalidScheduleStateError,
    RunlaneError,
    TaskPayloadParsedError,
)
from runlane.frameworks.http.api import ApiError, Handler, Request, Response, Router, error_of
from runlane.frameworks.http.auth import require_run
from runlane.sdk import wire
from runlane.sdk.wire import BASE

router = Router()
MAX_ERROR_VALUE = 2048  # bytes of JSON of an invalid value sent back with its error


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


def error_response(exc: RunlaneError) -> Response:
    """The API's JSON error for ``exc``, with its type and fields."""
    api = error_of(exc)
    error: dict[str, Any] = {"message": api.message, "code": api.code, "type": type(exc).__name__}
    if api.param is not None:
        error["param"] = api.param
    if isinstance(exc, InvalidOptionError):
        error["reason"] = exc.reason
        try:
            value = jsonvalue.to_json_value(exc.value, "value")
            if len(jsonvalue.dumps(value)) <= MAX_ERROR_VALUE:
                error["value"] = value
        except InvalidOptionError:
            pass
    if isinstance(exc, InvalidRunStateError):
        error.update(run_id=exc.run_id, status=exc.status)
    if isinstance(exc, InvalidScheduleStateError):
        error["schedule_id"] = exc.schedule_id
    if isinstance(exc, TaskPayloadParsedError):
        error["errors"] = exc.errors
    return Response.json({"error": error}, api.status, api.headers)


def route(method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
    """``router.route`` for a path under BASE, answering runlane's errors with their details."""

    def register(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def answer(request: Request) -> Any:
            try:
                return handler(request)
            except ApiError:
                raise
            except RunlaneError as exc:
                return error_response(exc)

        router.route(method, BASE + path, **options)(answer)
        return handler

    return register


def _only(body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            422, "invalid_option", f"unknown field {unknown[0]!r}; fields: {sorted(allowed)}",
            param=unknown[0],
        )  # fmt: skip
    return body


def _arg(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values else None


def _int(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidOptionError(name, raw, "must be an integer") from None


# ---------------------------------------------------------------------- triggering
@route("POST", "/tasks/{task_id}/trigger", name="runlaneTrigger")
def trigger(request: Request) -> Any:
    """Trigger a run of a task: ``{"payload": ..., "options": {...}}`` → the RunHandle."""
    body = _only(request.json_object(), {"payload", "options"})
    rt, task_id = request.rt, request.params["task_id"]
    options = wire.decode_options(body.get("options"))
    task = rt.registry.get(task_id)
    return _dump(rt.engine.trigger(task_id, body.get("payload"), options, task))


@route("POST", "/batches", name="runlaneBatchTrigger")
def batch_trigger(request: Request) -> Any:
    """Trigger runs of several tasks: ``{"items": [{"task", "payload", "options"}]}`` → the
    BatchHandle (all written or none)."""
    body = _only(request.json_object(), {"items"})
    rt = request.rt
    raw = body.get("items")
    if not isinstance(raw, list):
        return _dump(rt.engine.batch_trigger(raw))  # type: ignore[arg-type]  # it says why
    items: list[Any] = []
    for item in raw:
        if not isinstance(item, dict):  # the engine names what is wrong with it
            items.append((item, item, None))
            continue
        task_id = item.get("task")
        rest = {k: v for k, v in item.items() if k != "task"}
        if "options" in rest:
            rest["options"] = wire.decode_options(rest["options"])
        task = rt.registry.get(task_id) if isinstance(task_id, str) else None
        items.append((task_id, rest, task))
    return _dump(rt.engine.batch_trigger(items))


@route("GET", "/tasks/registered", name="runlaneRegisteredTasks")
def registered_tasks(request: Request) -> Any:
    """Which of the tasks ``id`` (repeated) a worker has registered."""
    ids = request.query.get("id", [])
    return {"data": operations.registered_tasks(request.rt, ids)}


# ---------------------------------------------------------------------- runs
@route("GET", "/runs/{run_id}", name="runlaneRetrieveRun", auth="public")
def retrieve_run(request: Request) -> Any:
    """A run (a public token: without its payload and output)."""
    run = operations.retrieve_run(request.rt, request.params["run_id"])
    require_run(request, run)
    if request.principal is None or not request.principal.is_secret:
        run = run.model_copy(update={"payload": None, "output": None})
    return _dump(run)


_LISTS = {"status", "task_identifier", "tag", "version", "queue"}
_ONES = {"from", "to", "batch", "schedule", "parent", "is_test", "limit", "after"}


def _time(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return raw  # an ISO date


def _bool(raw: str | None) -> bool | None:
    if raw is None:
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise InvalidOptionError("is_test", raw, "must be true or false")


def run_query(request: Request) -> RunQuery:
    """``runs.list``'s filters from the query string (a list filter repeated)."""
    query = request.query
    _only(dict(query), _LISTS | _ONES)
    query_ = operations.run_query(
        **{name: query.get(name) for name in _LISTS},
        from_=_time(_arg(request, "from")),
        to=_time(_arg(request, "to")),
        batch=_arg(request, "batch"),
        schedule=_arg(request, "schedule"),
        is_test=_bool(_arg(request, "is_test")),
        limit=_int(_arg(request, "limit"), "limit", 20),
        after=_arg(request, "after"),
    )
    parent = _arg(request, "parent")
    return replace(query_, parent=parent) if parent else query_


@route("GET", "/runs", name="runlaneListRuns")
def list_runs(request: Request) -> Any:
    """A page of runs, newest first (``after``: the page's cursor)."""
    return _dump(operations.list_runs(request.rt, run_query(request)))


@route("POST", "/runs/lookup", name="runlaneRetrieveRuns")
def retrieve_runs(request: Request) -> Any:
    """The runs among ``{"ids": [...]}`` that exist, in that order (without attempts)."""
    ids = _only(request.json_object(), {"ids"}).get("ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidOptionError("ids", ids, "must be a list of run ids")
    return {"data": [_dump(r) for r in operations.retrieve_runs(request.rt, ids)]}


@route("POST", "/runs/{run_id}/cancel", name="runlaneCancelRun")
def cancel_run(request: Request) -> Any:
    """Cancel a run and its unfinished descendants; the run."""
    return _dump(operations.cancel_run(request.rt, request.params["run_id"]))


@route("POST", "/runs/{run_id}/replay", name="runlaneReplayRun")
def replay_run(request: Request) -> Any:
    """A new run of the same task with the same payload and options; its RunHandle."""
    return _dump(operations.replay_run(request.rt, request.params["run_id"]))


@route("POST", "/runs/{run_id}/reschedule", name="runlaneRescheduleRun")
def reschedule_run(request: Request) -> Any:
    """Move a DELAYED run to ``{"delay": ...}`` (as in trigger); the run."""
    body = _only(request.json_object(), {"delay"})
    delay = wire.decode_option(body.get("delay"))
    return _dump(operations.reschedule_run(request.rt, request.params["run_id"], delay))


@route("PUT", "/runs/{run_id}/metadata", name="runlaneReplaceRunMetadata")
def update_metadata(request: Request) -> Any:
    """Replace a run's metadata with ``{"metadata": {...}}``."""
    body = _only(request.json_object(), {"metadata"})
    md = operations.update_run_metadata(
        request.rt, request.params["run_id"], body.get("metadata") or {}
    )
    return {"metadata": md}


def _ops(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(op, dict) for op in value):
        raise InvalidOptionError(name, value, "must be a list of metadata operations")
    return [make_op(op.get("op", ""), op.get("key"), op.get("value")) for op in value]


@route("POST", "/runs/{run_id}/metadata/operations", name="runlaneUpdateRunMetadata")
def apply_metadata(request: Request) -> Any:
    """Apply metadata operations to a run, its parent and its root."""
    body = _only(request.json_object(), {"operations", "parent_operations", "root_operations"})
    md = operations.apply_run_metadata(
        request.rt,
        request.params["run_id"],
        _ops(body.get("operations"), "operations"),
        parent_ops=_ops(body.get("parent_operations"), "parent_operations"),
        root_ops=_ops(body.get("root_operations"), "root_operations"),
    )
    return {"metadata": md}


@route("POST", "/runs/{run_id}/tags", name="runlaneAddRunTags")
def add_tags(request: Request) -> Any:
    """Add ``{"tags": [...]}`` to a run; its tags."""
    body = _only(request.json_object(), {"tags"})
    tags = body.get("tags") or []
    return {"tags": operations.add_run_tags(request.rt, request.params["run_id"], tags)}


@route("GET", "/batches/{batch_id}", name="runlaneRetrieveBatch", auth="public")
def retrieve_batch(request: Request) -> Any:
    """A batch and its run ids."""
    batch_id = request.params["batch_id"]
    principal = request.principal
    if principal is not None and not principal.allows(
        ["read:all", "read:runs", f"read:batch:{batch_id}"]
    ):
        raise ApiError(404, "not_found", f"no batch {batch_id!r}")
    return _dump(operations.retrieve_batch(request.rt, batch_id))


# ---------------------------------------------------------------------- schedules
_SCHEDULE_FIELDS = {"task", "cron", "timezone", "external_id", "deduplication_key"}


@route("POST", "/schedules", name="runlaneCreateSchedule")
def create_schedule(request: Request) -> Any:
    """A new IMPERATIVE schedule (or the one with the same deduplication key, updated)."""
    body = _only(request.json_object(), _SCHEDULE_FIELDS)
    schedule = schedule_ops.create_schedule(
        request.rt,
        task=body.get("task"),
        cron_expression=body.get("cron"),
        timezone=body.get("timezone"),
        external_id=body.get("external_id"),
        deduplication_key=body.get("deduplication_key"),
    )
    return _dump(schedule)


@route("GET", "/schedules", name="runlaneListSchedules")
def list_schedules(request: Request) -> Any:
    """A page of schedules (of ``task``, repeated), newest first."""
    _only(dict(request.query), {"task", "limit", "after"})
    page = schedule_ops.list_schedules(
        request.rt,
        task=request.query.get("task") or None,
        limit=_int(_arg(request, "limit"), "limit", 20),
        after=_arg(request, "after"),
    )
    return _dump(page)


@route("GET", "/schedules/{schedule_id}", name="runlaneRetrieveSchedule")
def retrieve_schedule(request: Request) -> Any:
    """One schedule."""
    return _dump(schedule_ops.retrieve_schedule(request.rt, request.params["schedule_id"]))


@route("PUT", "/schedules/{schedule_id}", name="runlaneUpdateSchedule")
def update_schedule(request: Request) -> Any:
    """Change an IMPERATIVE schedule: the fields given (``external_id: null`` clears it)."""
    body = _only(request.json_object(), _SCHEDULE_FIELDS)
    schedule = schedule_ops.update_schedule(
        request.rt,
        request.params["schedule_id"],
        task=body.get("task"),
        cron_expression=body.get("cron"),
        timezone=body.get("timezone"),
        external_id=body.get("external_id", UNSET),
        deduplication_key=body.get("deduplication_key", UNSET),
    )
    return _dump(schedule)


@route("POST", "/schedules/{schedule_id}/activate", name="runlaneActivateSchedule")
def activate_schedule(request: Request) -> Any:
    """Fire an IMPERATIVE schedule again from its next tick."""
    schedule_id = request.params["schedule_id"]
    return _dump(schedule_ops.set_schedule_active(request.rt, schedule_id, True))


@route("POST", "/schedules/{schedule_id}/deactivate", name="runlaneDeactivateSchedule")
def deactivate_schedule(request: Request) -> Any:
    """Stop an IMPERATIVE schedule firing (it is kept)."""
    schedule_id = request.params["schedule_id"]
    return _dump(schedule_ops.set_schedule_active(request.rt, schedule_id, False))


@route("DELETE", "/schedules/{schedule_id}", name="runlaneDeleteSchedule")
def delete_schedule(request: Request) -> Any:
    """Delete an IMPERATIVE schedule; it as it was."""
    return _dump(schedule_ops.delete_schedule(request.rt, request.params["schedule_id"]))
