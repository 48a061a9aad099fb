"""runlane → responses: ``*_response`` turn runlane's models into the bodies the SDK's schemas
accept."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runlane.core.handles import BatchHandle, RunHandle
from runlane.core.models import Attempt, Batch, Run, RunStatus, TaskRunError
from runlane.core.operations import RunList
from runlane.core.schedules import Schedule
from runlane.frameworks.http.shapes._wire import (
    ATTEMPT_STATUS,
    ENVIRONMENT_TYPE,
    RUN_STATUS,
    T,
    _put,
    iso,
)


# ---------------------------------------------------------------------- run responses
def _error(error: TaskRunError) -> dict[str, Any]:
    """A ``SerializedError``; runlane's error ``code`` has no place in it."""
    out = {"message": error.message, "name": error.name}
    _put(out, "stackTrace", error.stack_trace)
    return out


def _common(run: Run) -> dict[str, Any]:
    """The fields every run shape shares (``CommonRunFields``)."""
    out: dict[str, Any] = {
        "id": run.id,
        "status": RUN_STATUS[run.status],
        "taskIdentifier": run.task_identifier,
        "isQueued": run.is_queued,
        "isExecuting": run.is_executing,
        # runlane's final statuses; the reference leaves EXPIRED and TIMED_OUT out of
        # isCompleted (so its runs.poll never ends on them): runlane counts them
        "isCompleted": run.is_completed,
        "isSuccess": run.is_success,
        "isFailed": run.is_failed,
        "isCancelled": run.is_canceled,
        "isTest": run.is_test,
        "createdAt": iso(run.created_at),
        "updatedAt": iso(run.updated_at),
        "tags": list(run.tags),
        "costInCents": 0,  # runlane does not price runs
        "baseCostInCents": 0,
        "durationMs": run.duration_ms,
        "metadata": dict(run.metadata),
    }
    _put(out, "idempotencyKey", run.idempotency_key)
    _put(out, "version", run.version)
    _put(out, "startedAt", run.started_at)
    _put(out, "finishedAt", run.finished_at)
    _put(out, "delayedUntil", run.delayed_until)
    _put(out, "ttl", run.ttl)
    _put(out, "expiredAt", run.expired_at)
    return out


def related_run(run: Run) -> dict[str, Any]:
    """``RelatedRunDetails``: a run as ``relatedRuns`` lists it (no payload or output).
    ``triggerFunction``: runlane does not record whether a parent waits on its child, so a
    run is "batchTrigger" in a batch and "trigger" otherwise, never the *AndWait forms."""
    out = _common(run)
    out["depth"] = run.depth
    out["triggerFunction"] = "batchTrigger" if run.batch_id else "trigger"
    _put(out, "batchId", run.batch_id)
    return out


def _attempt(attempt: Attempt) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": attempt.id,
        "status": ATTEMPT_STATUS[attempt.status],
        "createdAt": iso(attempt.started_at),
        "updatedAt": iso(attempt.finished_at or attempt.started_at),
        "startedAt": iso(attempt.started_at),
    }
    _put(out, "completedAt", attempt.finished_at)
    if attempt.error is not None:
        out["error"] = _error(attempt.error)
    return out


def run_schedule(schedule: Schedule) -> dict[str, Any]:
    """``RunScheduleDetails``: the schedule a run was fired by."""
    out: dict[str, Any] = {"id": schedule.id, "generator": _generator(schedule)}
    _put(out, "externalId", schedule.external_id)
    _put(out, "deduplicationKey", schedule.deduplication_key)
    return out


def retrieve_run_response(
    run: Run,
    *,
    schedule: Schedule | None = None,
    parent: Run | None = None,
    root: Run | None = None,
    children: Sequence[Run] = (),
    public: bool = False,
) -> dict[str, Any]:
    """``RetrieveRunResponse`` (``GET /api/v3/runs/{id}``, and the answer to a reschedule).
    ``schedule``: the run's schedule, if it still exists; ``parent``, ``root``, ``children``:
    its related runs, when read. ``public``: for a public access token, without the payload
    and the output (as the reference). ``output`` is sent for a COMPLETED run only; the
    attempts are runlane's (the reference now sends an empty list)."""
    out = related_run(run)
    if not public:
        out["payload"] = run.payload
        if run.status is RunStatus.COMPLETED:
            out["output"] = run.output
    if run.error is not None:
        out["error"] = _error(run.error)
    if schedule is not None:
        out["schedule"] = run_schedule(schedule)
    related: dict[str, Any] = {"children": [related_run(child) for child in children]}
    if root is not None:
        related["root"] = related_run(root)
    if parent is not None:
        related["parent"] = related_run(parent)
    out["relatedRuns"] = related
    out["attempts"] = [_attempt(a) for a in run.attempts]
    out["attemptCount"] = run.attempt_count
    return out


def public_run_response(run: Run, **related: Any) -> dict[str, Any]:
    """The run for a public access token: :func:`retrieve_run_response` without payload and
    output."""
    return retrieve_run_response(run, public=True, **related)


def list_run_item(run: Run) -> dict[str, Any]:
    """``ListRunResponseItem``. ``env``: runlane's environments have a name and no other id,
    so the name is both."""
    out = _common(run)
    out["env"] = {"id": run.environment, "name": run.environment}
    return out


def list_runs_response(page: RunList) -> dict[str, Any]:
    """The cursor page of ``GET /api/v1/runs``: ``pagination.next`` is the ``page[after]`` of
    the next page; runlane pages forward only, so there is no ``previous``."""
    pagination: dict[str, Any] = {}
    _put(pagination, "next", page.next_cursor)
    return {"data": [list_run_item(run) for run in page.data], "pagination": pagination}


def trigger_response(handle: RunHandle) -> dict[str, Any]:
    """``TriggerTaskResponse``, with ``isCached`` as the reference adds it."""
    return {"id": handle.id, "isCached": handle.is_cached}


def trigger_response_headers(
    environment: str, public_access_token: str | None = None
) -> list[tuple[str, str]]:
    """The headers of a trigger's (or batch's) answer. With ``x-trigger-jwt`` the SDK's handle
    takes that token; without it, the SDK signs one itself with its secret key from the
    claims of ``x-trigger-jwt-claims`` (the batch route always does so)."""
    headers = [("x-trigger-jwt-claims", json.dumps(jwt_claims_response(environment)))]
    if public_access_token:
        headers.append(("x-trigger-jwt", public_access_token))
    return headers


def jwt_claims_response(environment: str) -> dict[str, Any]:
    """``POST /api/v1/auth/jwt/claims``: the claims the SDK signs its public tokens with."""
    return {"sub": environment, "pub": True}


def batch_trigger_response(
    handle: BatchHandle, idempotency_keys: Sequence[str | None] | None = None
) -> dict[str, Any]:
    """``BatchTriggerTaskV2Response``. ``idempotency_keys``: each item's key (from its
    parsed options), echoed as the reference does."""
    count = len(handle.runs)
    keys = [*(idempotency_keys or ()), *([None] * count)][:count]
    runs = [_batch_run(run, key) for run, key in zip(handle.runs, keys, strict=True)]
    return {"id": handle.batch_id, "isCached": handle.is_cached, "runs": runs}


def _batch_run(run: RunHandle, key: str | None) -> dict[str, Any]:
    out = {"id": run.id, "taskIdentifier": run.task_identifier, "isCached": run.is_cached}
    _put(out, "idempotencyKey", key)
    return out


def canceled_run_response(run_id: str) -> dict[str, Any]:
    """``CanceledRunResponse``."""
    return {"id": run_id}


def replay_run_response(handle: RunHandle) -> dict[str, Any]:
    """``ReplayRunResponse``: the new run."""
    return {"id": handle.id}


def add_tags_response(added: int) -> dict[str, Any]:
    """The ``{message}`` of ``POST /api/v1/runs/{id}/tags``, worded as the reference's."""
    if added <= 0:
        return {"message": "No new tags to add"}
    return {"message": f"Successfully set {added} new tags."}


def metadata_response(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``UpdateMetadataResponseBody`` (also ``GET /api/v1/runs/{id}/metadata``)."""
    return {"metadata": dict(metadata)}


def retrieve_batch_response(batch: Batch, runs: Sequence[Run] | None = None) -> dict[str, Any]:
    """``RetrieveBatchResponse``. ``runs``: the batch's runs, when read: COMPLETED once all
    are final, updated when the last one changed. Without them: PENDING, updated when
    created (runlane keeps no status on a batch). No ``idempotencyKey``: runlane has no
    batch-wide key."""
    runs = list(runs or ())
    done = len(runs) == batch.run_count and all(run.status.is_final for run in runs)
    updated = max([batch.created_at, *(run.updated_at for run in runs)])
    return {
        "id": batch.id,
        "status": "COMPLETED" if done else "PENDING",
        "createdAt": iso(batch.created_at),
        "updatedAt": iso(updated),
        "runCount": batch.run_count,
    }


# ---------------------------------------------------------------------- schedule responses
def _generator(schedule: Schedule) -> dict[str, Any]:
    return {"type": "CRON", "expression": schedule.cron, "description": schedule.description}


def schedule_response(schedule: Schedule, environment: str) -> dict[str, Any]:
    """``ScheduleObject``. A runlane schedule lives in one environment: ``environments`` is
    it (its name as id, no user name). ``nextRun`` is null while the schedule is inactive."""
    return {
        "id": schedule.id,
        "type": schedule.type.value,
        "task": schedule.task,
        "active": schedule.active,
        "deduplicationKey": schedule.deduplication_key,
        "externalId": schedule.external_id,
        "generator": _generator(schedule),
        "timezone": schedule.timezone,
        "nextRun": iso(schedule.next_run) if schedule.next_run is not None else None,
        "environments": [
            {"id": environment, "type": ENVIRONMENT_TYPE.get(environment, environment.upper())}
        ],
    }


def deleted_schedule_response(schedule_id: str) -> dict[str, Any]:
    """``DeletedScheduleObject``."""
    return {"id": schedule_id}


def offset_page(items: Iterable[T], page: int, per_page: int) -> tuple[list[T], int]:
    """Page ``page`` (from 1) of ``items`` and how many there are in all: offset pages over
    runlane's cursor listing (pass an iterator that walks every page of it)."""
    start = (page - 1) * per_page
    selected: list[T] = []
    count = 0
    for item in items:
        if start <= count < start + per_page:
            selected.append(item)
        count += 1
    return selected, count


def list_schedules_response(
    schedules: Sequence[Schedule], *, page: int, per_page: int, count: int, environment: str
) -> dict[str, Any]:
    """``ListSchedulesResult``: one offset page (see :func:`offset_page`); the SDK asks for
    the next page while ``currentPage < totalPages``."""
    pages = math.ceil(count / per_page)
    pagination = {"currentPage": page, "totalPages": pages, "count": count}
    return {
        "data": [schedule_response(s, environment) for s in schedules],
        "pagination": pagination,
    }


def timezones_response(zones: Iterable[str], *, exclude_utc: bool = False) -> dict[str, Any]:
    """``TimezonesResult``: "UTC" first (unless excluded), then the IANA zones sorted."""
    rest = sorted(z for z in zones if z != "UTC")
    return {"timezones": rest if exclude_utc else ["UTC", *rest]}
