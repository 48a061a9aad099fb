"""Trigger.dev's management API (the routes ``@trigger.dev/sdk`` 3.3 calls), over runlane's
engine and operations. Requests and responses are shaped by ``shapes`` to what the SDK's zod
schemas accept; the work is done by the same verbs as the Python API, so no verb is written
twice. A public access token reaches the routes marked ``public``, for what its scopes name;
it never sees a payload or an output."""

from __future__ import annotations

from typing import Any

from runlane.api import auth as tokens
from runlane.core import cron, operations
from runlane.core import schedules as schedule_ops
from runlane.core.models import Run
from runlane.core.options import check_items
from runlane.core.types import RunQuery
from runlane.errors import ScheduleNotFoundError
from runlane.frameworks.http import shapes
from runlane.frameworks.http.api import ApiError, Request, Response, Router
from runlane.frameworks.http.auth import require_run, trigger_scopes

router = Router()

RUN_TOKEN_LIFETIME = 3600.0  # seconds the run token a trigger returns reads its run
MAX_RELATED = 50  # children listed with a run


# ---------------------------------------------------------------------- triggering
def _trigger_scope(request: Request) -> list[str]:
    return trigger_scopes(request.params["task_id"])


def _run_token(request: Request, run_ids: list[str]) -> str | None:
    """A public token that reads these runs, signed with the caller's key (the SDK hands
    it out as ``handle.publicAccessToken``)."""
    principal = request.principal
    if principal is None or principal.digest is None:
        return None
    return tokens.sign_token(
        principal.digest,
        principal.environment,
        [f"read:runs:{run_id}" for run_id in run_ids],
        RUN_TOKEN_LIFETIME,
    )


@router.route(
    "POST", "/api/v1/tasks/{task_id}/trigger", name="triggerTask", auth="public",
    scope=_trigger_scope,
)  # fmt: skip
def trigger_task(request: Request) -> Response:
    """Trigger a run of a task (a secret key, or a token with ``trigger:tasks:<id>``)."""
    task_id = request.params["task_id"]
    payload, options = shapes.parse_trigger_body(request.json_object())
    rt = request.rt
    handle = rt.engine.trigger(task_id, payload, options, rt.registry.get(task_id))
    headers = shapes.trigger_response_headers(rt.environment, _run_token(request, [handle.id]))
    return Response.json(shapes.trigger_response(handle), headers=headers)


@router.route("POST", "/api/v1/tasks/batch", name="batchTriggerTasks", auth="public")
def batch_trigger(request: Request) -> Response:
    """Trigger runs of several tasks at once (up to 500 items; all are written or none)."""
    shapes.parse_batch_trigger_headers(request.headers)
    items = check_items(shapes.parse_batch_trigger_body(request.json_object()))
    principal = request.principal
    assert principal is not None
    for item in items:
        if not principal.allows(trigger_scopes(item["id"])):
            raise ApiError(403, "forbidden", f"the token may not trigger {item['id']!r}")
    rt = request.rt
    handle = rt.engine.batch_trigger(
        [(item["id"], item, rt.registry.get(item["id"])) for item in items]
    )
    keys = [item["options"].get("idempotency_key") for item in items]
    body = shapes.batch_trigger_response(handle, keys)
    return Response.json(body, headers=shapes.trigger_response_headers(rt.environment))


@router.route("POST", "/api/v1/auth/jwt/claims", name="jwtClaims")
def jwt_claims(request: Request) -> Any:
    """The claims the SDK signs its own public tokens with."""
    return shapes.jwt_claims_response(request.rt.environment)


# ---------------------------------------------------------------------- runs
def _related(request: Request, run: Run) -> dict[str, Any]:
    """The run's schedule (if it still exists), parent, root and first children."""
    rt = request.rt
    out: dict[str, Any] = {}
    if run.schedule_id:
        try:
            out["schedule"] = schedule_ops.retrieve_schedule(rt, run.schedule_id)
        except ScheduleNotFoundError:
            pass
    wanted = {i for i in (run.parent_id, run.root_id) if i}
    found = {r.id: r for r in operations.retrieve_runs(rt, sorted(wanted))} if wanted else {}
    if run.parent_id in found:
        out["parent"] = found[run.parent_id]
    if run.root_id in found:
        out["root"] = found[run.root_id]
    children = operations.list_runs(rt, RunQuery(parent=run.id, limit=MAX_RELATED))
    out["children"] = children.data
    return out


def _run(request: Request) -> Run:
    run = operations.retrieve_run(request.rt, request.params["run_id"])
    require_run(request, run)
    return run


@router.route("GET", "/api/v3/runs/{run_id}", name="retrieveRun", auth="public")
def retrieve_run(request: Request) -> Any:
    """A run with its attempts and related runs (a token: without payload and output)."""
    run = _run(request)
    public = request.principal is None or not request.principal.is_secret
    return shapes.retrieve_run_response(run, public=public, **_related(request, run))


@router.route("GET", "/api/v1/runs", name="listRuns")
def list_runs(request: Request) -> Any:
    """A page of runs, newest first, filtered as the SDK's ``runs.list`` asks."""
    query = shapes.parse_list_runs_query(request.query, now=request.rt.now())
    return shapes.list_runs_response(operations.list_runs(request.rt, query))


@router.route("POST", "/api/v2/runs/{run_id}/cancel", name="cancelRun")
def cancel_run(request: Request) -> Any:
    """Cancel a run and its unfinished descendants."""
    run = operations.cancel_run(request.rt, request.params["run_id"])
    return shapes.canceled_run_response(run.id)


@router.route("POST", "/api/v1/runs/{run_id}/replay", name="replayRun")
def replay_run(request: Request) -> Any:
    """A new run of the same task with the same payload, tags and options."""
    handle = operations.replay_run(request.rt, request.params["run_id"])
    return shapes.replay_run_response(handle)


@router.route("POST", "/api/v1/runs/{run_id}/reschedule", name="rescheduleRun")
def reschedule_run(request: Request) -> Any:
    """Move a DELAYED run to a new time (422 for a run that is not delayed)."""
    delay = shapes.parse_reschedule_body(request.json_object())
    run = operations.reschedule_run(request.rt, request.params["run_id"], delay)
    return shapes.retrieve_run_response(run, **_related(request, run))


@router.route("POST", "/api/v1/runs/{run_id}/tags", name="addRunTags")
def add_tags(request: Request) -> Any:
    """Add tags to a run (up to the limit of tags a run has)."""
    wanted = shapes.parse_add_tags_body(request.json_object())
    run_id = request.params["run_id"]
    before = operations.retrieve_run(request.rt, run_id).tags
    after = operations.add_run_tags(request.rt, run_id, wanted)
    return shapes.add_tags_response(len(after) - len(before))


@router.route("PUT", "/api/v1/runs/{run_id}/metadata", name="updateRunMetadata")
def update_metadata(request: Request) -> Any:
    """Apply metadata operations to a run (and to its parent and root)."""
    update = shapes.parse_update_metadata_body(request.json_object())
    md = operations.apply_run_metadata(
        request.rt,
        request.params["run_id"],
        update.operations,
        parent_ops=update.parent_operations,
        root_ops=update.root_operations,
    )
    return shapes.metadata_response(md)


@router.route("GET", "/api/v1/runs/{run_id}/metadata", name="retrieveRunMetadata", auth="public")
def retrieve_metadata(request: Request) -> Any:
    """A run's metadata."""
    return shapes.metadata_response(_run(request).metadata)


@router.route("GET", "/api/v1/batches/{batch_id}", name="retrieveBatch", auth="public")
def retrieve_batch(request: Request) -> Any:
    """A batch: its run count, and COMPLETED once every run is final."""
    batch_id = request.params["batch_id"]
    principal = request.principal
    if principal is not None and not principal.allows(
        ["read:all", "read:runs", f"read:batch:{batch_id}"]
    ):
        raise ApiError(404, "not_found", f"no batch {batch_id!r}")
    batch = operations.retrieve_batch(request.rt, batch_id)
    runs = operations.retrieve_runs(request.rt, batch.run_ids)
    return shapes.retrieve_batch_response(batch, runs)


# ---------------------------------------------------------------------- schedules
def _schedule_json(request: Request, schedule: Any) -> Any:
    return shapes.schedule_response(schedule, request.rt.environment)


@router.route("POST", "/api/v1/schedules", name="createSchedule")
def create_schedule(request: Request) -> Any:
    """A new IMPERATIVE schedule (or the one with the same deduplication key, updated)."""
    options = shapes.parse_create_schedule_body(request.json_object())
    return _schedule_json(request, schedule_ops.create_schedule(request.rt, **options))


@router.route("GET", "/api/v1/schedules", name="listSchedules")
def list_schedules(request: Request) -> Any:
    """A page of schedules (``page``, ``perPage``), newest first."""
    page, per_page = shapes.parse_list_schedules_query(request.query)

    def every() -> Any:
        after = None
        while True:
            found = schedule_ops.list_schedules(
                request.rt, limit=schedule_ops.MAX_PAGE, after=after
            )
            yield from found.data
            if found.next_cursor is None:
                return
            after = found.next_cursor

    selected, count = shapes.offset_page(every(), page, per_page)
    return shapes.list_schedules_response(
        selected, page=page, per_page=per_page, count=count, environment=request.rt.environment
    )


@router.route("GET", "/api/v1/schedules/{schedule_id}", name="retrieveSchedule")
def retrieve_schedule(request: Request) -> Any:
    """One schedule."""
    return _schedule_json(
        request, schedule_ops.retrieve_schedule(request.rt, request.params["schedule_id"])
    )


@router.route("PUT", "/api/v1/schedules/{schedule_id}", name="updateSchedule")
def update_schedule(request: Request) -> Any:
    """Replace an IMPERATIVE schedule's task, cron, time zone and external id."""
    options = shapes.parse_update_schedule_body(request.json_object())
    schedule = schedule_ops.update_schedule(request.rt, request.params["schedule_id"], **options)
    return _schedule_json(request, schedule)


@router.route("POST", "/api/v1/schedules/{schedule_id}/deactivate", name="deactivateSchedule")
def deactivate_schedule(request: Request) -> Any:
    """Stop an IMPERATIVE schedule firing (it is kept)."""
    schedule = schedule_ops.set_schedule_active(request.rt, request.params["schedule_id"], False)
    return _schedule_json(request, schedule)


@router.route("POST", "/api/v1/schedules/{schedule_id}/activate", name="activateSchedule")
def activate_schedule(request: Request) -> Any:
    """Fire an IMPERATIVE schedule again from its next tick."""
    schedule = schedule_ops.set_schedule_active(request.rt, request.params["schedule_id"], True)
    return _schedule_json(request, schedule)


@router.route("DELETE", "/api/v1/schedules/{schedule_id}", name="deleteSchedule")
def delete_schedule(request: Request) -> Any:
    """Delete an IMPERATIVE schedule (its runs stay)."""
    deleted = schedule_ops.delete_schedule(request.rt, request.params["schedule_id"])
    return shapes.deleted_schedule_response(deleted.id)


@router.route("GET", "/api/v1/timezones", name="listTimezones", auth="none")
def timezones(request: Request) -> Any:
    """Every IANA time zone a schedule may use."""
    exclude_utc = shapes.parse_timezones_query(request.query)
    return shapes.timezones_response(cron.timezones(), exclude_utc=exclude_utc)
