"""Realtime over HTTP: the subscriptions of ``runlane.core.realtime`` as Server-Sent Events,
under ``/realtime/v1``.

    GET /realtime/v1/runs/{run_id}           a run's changes (``?streams=true``: its streams too)
    GET /realtime/v1/runs?tags=a,b           runs with any of these tags (never ends)
    GET /realtime/v1/runs                    every run (``task=``, ``status=``: only these;
                                             never ends)
    GET /realtime/v1/batches/{batch_id}      a batch's runs (ends when all are final)
    GET /realtime/v1/streams/{run_id}/{key}  one stream of a run (ends with the run)

Events (``sdk.sse``): ``event: run`` (the run as the native routes give it), ``event: chunk``
(``{"key", "chunk", "run_id"}``), ``event: end``; each with ``id: <cursor>``, which
``Last-Event-ID`` (what a browser's EventSource sends when it reconnects) or ``?cursor=`` gives
back to resume without loss. A secret key reads everything; a public access token what its
read scopes name, as ``GET /api/runlane/v1/runs/{id}`` checks them (a token for run A, or for
tag x, cannot open run B or tag y: 403; every run takes ``read:all`` or ``read:runs``, or the
tasks of ``task=`` each in ``read:tasks``), and never a run's payload or output.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from runlane.core import operations, realtime
from runlane.core.models import Run
from runlane.core.options import validate_task_id
from runlane.core.types import RunQuery
from runlane.errors import RunNotFoundError
from runlane.frameworks.http.api import ApiError, Request, Response, Router
from runlane.frameworks.http.auth import run_scopes
from runlane.frameworks.http.sse import HEADERS, EventStream, heartbeat_seconds
from runlane.sdk import sse

router = Router()
BASE = "/realtime/v1"
MAX_CURSOR = 2**63 - 1
MAX_TASKS = 10  # task ids one subscription to every run names


def _batch_scopes(request: Request) -> list[str]:
    return ["read:all", "read:runs", f"read:batch:{request.params['batch_id']}"]


# ---------------------------------------------------------------------- the routes
@router.route("GET", BASE + "/runs/{run_id}", name="realtimeRun", auth="public")
def subscribe_to_run(request: Request) -> Response:
    """A run's changes as Server-Sent Events, until it is final (``streams=true``: with the
    chunks of its streams)."""
    run_id = request.params["run_id"]
    _readable_run(request, run_id)
    streams = _flag(request, "streams")
    return _respond(request, "run", run_id, streams=streams)


@router.route("GET", BASE + "/runs", name="realtimeRuns", auth="public")
def subscribe_to_runs(request: Request) -> Response:
    """The changes of runs with any of ``tags`` (comma-separated or repeated); without
    ``tags``, of every run (``task``, ``status``: only these); never ends."""
    streams = _flag(request, "streams")
    if "tags" not in request.query:
        return _respond(request, "all", _all_runs_query(request), streams=streams)
    if {"task", "task_identifier", "status"} & set(request.query):
        raise ApiError(
            422, "invalid_option", "task and status narrow every run's changes: not with tags",
            param="tags",
        )  # fmt: skip
    tags = _tags(request)
    principal = request.principal
    if principal is not None:
        for tag in tags:
            if not principal.allows(["read:all", "read:runs", f"read:tags:{tag}"]):
                raise ApiError(403, "forbidden", f"the token's scopes do not allow tag {tag!r}")
    return _respond(request, "tag", tags, streams=streams)


@router.route(
    "GET", BASE + "/batches/{batch_id}", name="realtimeBatch", auth="public", scope=_batch_scopes
)
def subscribe_to_batch(request: Request) -> Response:
    """The changes of a batch's runs, until all are final."""
    batch_id = request.params["batch_id"]
    operations.retrieve_batch(request.rt, batch_id)  # 404 before the stream starts
    return _respond(request, "batch", batch_id, streams=_flag(request, "streams"))


@router.route("GET", BASE + "/streams/{run_id}/{key}", name="realtimeStream", auth="public")
def subscribe_to_stream(request: Request) -> Response:
    """The chunks of one stream of a run (``metadata.stream(key, ...)``), until the run is
    final."""
    run_id = request.params["run_id"]
    _readable_run(request, run_id)
    return _respond(request, "run", run_id, streams=True, only=request.params["key"])


# ---------------------------------------------------------------------- checks
def _readable_run(request: Request, run_id: str) -> Run:
    """The run, when the caller may read it: a token that may not gets 403 whether or not
    the run exists (it does not learn which ids do); 404 otherwise."""
    principal = request.principal
    by_id = ["read:all", "read:runs", f"read:runs:{run_id}"]
    try:
        run = operations.retrieve_run(request.rt, run_id)
    except RunNotFoundError:
        if principal is not None and not principal.allows(by_id):
            raise ApiError(403, "forbidden", "the token's scopes do not allow this run") from None
        raise
    if principal is not None and not principal.allows(run_scopes(run)):
        raise ApiError(403, "forbidden", "the token's scopes do not allow this run")
    return run


def _all_runs_query(request: Request) -> RunQuery:
    """``task`` (or ``task_identifier``) and ``status`` of every run's subscription, checked as
    the list routes check them; 403 for a token that may not read them all."""
    tasks = _values(request, "task") + _values(request, "task_identifier")
    if len(tasks) > MAX_TASKS:
        raise ApiError(422, "invalid_option", f"give at most {MAX_TASKS} tasks", param="task")
    for task in tasks:
        validate_task_id(task, "task")
    query = operations.run_query(
        status=_values(request, "status"), task_identifier=tasks, limit=operations.MAX_PAGE
    )
    principal = request.principal
    if principal is not None and not principal.allows(["read:all", "read:runs"]):
        by_task = [principal.allows([f"read:tasks:{task}"]) for task in tasks]
        if not by_task or not all(by_task):
            raise ApiError(403, "forbidden", "the token's scopes do not allow every run")
    return query


def _tags(request: Request) -> tuple[str, ...]:
    limit = request.rt.settings.limits.tag_length
    tags = _values(request, "tags")
    if not tags or len(tags) > realtime.MAX_TAGS:
        raise ApiError(
            422, "invalid_option", f"give 1-{realtime.MAX_TAGS} tags: ?tags=a,b", param="tags"
        )
    for tag in tags:
        if len(tag) > limit:
            raise ApiError(
                422, "invalid_option", f"a tag has at most {limit} characters", param="tags"
            )
    return tuple(tags)


def _values(request: Request, name: str) -> list[str]:
    """The values of a query parameter, comma-separated or repeated, without duplicates."""
    values: list[str] = []
    for raw in request.query.get(name, []):
        for value in raw.split(","):
            value = value.strip()
            if value and value not in values:
                values.append(value)
    return values


def _flag(request: Request, name: str) -> bool:
    raw = request.arg(name)
    if raw is None or raw.lower() in ("", "false", "0"):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise ApiError(422, "invalid_option", f"{name} must be true or false", param=name)


def _cursor(request: Request) -> int | None:
    """Where to resume: ``Last-Event-ID``, else ``?cursor=``."""
    raw = request.header("last-event-id") or request.arg("cursor")
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or int(raw) > MAX_CURSOR:
        raise ApiError(
            422, "invalid_option", "the cursor (Last-Event-ID) is an event's id", param="cursor"
        )
    return int(raw)


# ---------------------------------------------------------------------- the stream
def _respond(
    request: Request, kind: str, target: Any, *, streams: bool, only: str | None = None
) -> Response:
    cursor = _cursor(request)
    if request.method == "HEAD":
        return Response(200, b"", list(HEADERS))
    sub = realtime.subscribe(request.rt, kind, target, cursor=cursor, streams=streams)
    secret = request.principal is None or request.principal.is_secret
    heartbeat = heartbeat_seconds(request.api.sse_heartbeat if request.api else None)
    return Response(
        200,
        EventStream(
            _events(sub, secret=secret, only=only, heartbeat=heartbeat),
            heartbeat=None,  # the subscription says when it was idle: no task per event
            on_close=sub.close,
        ),
        list(HEADERS),
    )


async def _events(
    sub: realtime.Subscription, *, secret: bool, only: str | None, heartbeat: float
) -> AsyncIterator[bytes]:
    async for batch in sub.batches(heartbeat):  # (what is ready, written in one piece)
        if not batch:
            yield sse.PING
            continue
        out = [_event(item, secret, only) for item in batch]
        yield b"".join(out)


def _event(item: realtime.RealtimePart, secret: bool, only: str | None) -> bytes:
    if item.type == "run":
        if only is None and item.run is not None:
            return _run_event(item.run, secret, item.cursor)
        return b""
    if only is None or item.type == only:
        chunk = {"key": item.type, "chunk": item.chunk, "run_id": item.run_id}
        return sse.encode(sse.CHUNK, chunk, id=item.cursor)
    return b""


# the JSON of the runs sent lately: a change goes to every subscriber that watches its run as
# one shared Run, encoded once (keyed by the object, which the entry keeps alive)
_ENCODED: dict[tuple[int, bool], tuple[Run, str]] = {}
_ENCODED_MAX = 2048


def _run_event(run: Run, secret: bool, cursor: int) -> bytes:
    key = (id(run), secret)
    cached = _ENCODED.get(key)
    if cached is None or cached[0] is not run:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        cached = _ENCODED[key] = (run, sse.dumps(_run_json(run, secret)))
    return sse.encode_text(sse.RUN, cached[1], id=cursor)


def _run_json(run: Run, secret: bool) -> Any:
    """The run as ``GET /api/runlane/v1/runs/{id}`` gives it (a token: without its payload
    and output)."""
    if not secret:
        run = run.model_copy(update={"payload": None, "output": None})
    return run.model_dump(mode="json")
