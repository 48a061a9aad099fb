"""The management verbs: read, list, cancel, replay, reschedule and annotate runs; read batches
and run logs; inspect, pause and resume queues. Every caller that manages runs rather than
triggers them (``runlane.runs`` / ``queues`` / ``batch`` / ``tags``, the CLI, the HTTP API,
the remote SDK) goes through these functions, so each verb is written once.

Each takes the runtime and plain values (ids, names, one ``RunQuery`` for filters) and returns
runlane's models or raises runlane's errors (``RunNotFoundError``, ``QueueNotFoundError``,
``InvalidRunStateError``, ``InvalidOptionError``). Triggering stays in the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict

from runlane.core import ids, keys, realtime, schedules, signals
from runlane.core.clock import to_timestamp
from runlane.core.durations import parse_iso_datetime, parse_point_in_time
from runlane.core.limits import Limits
from runlane.core.logs import LogEntry
from runlane.core.metadata import make_op
from runlane.core.models import Batch, QueueInfo, Run, RunStatus, TaskRunError
from runlane.core.options import normalize_tags, validate_concurrency_key, validate_queue_name
from runlane.core.registry import default_queue_name
from runlane.core.types import KeyRow, RunQuery
from runlane.errors import (
    InvalidOptionError,
    InvalidRunStateError,
    RunlaneError,
    RunNotFoundError,
)

if TYPE_CHECKING:
    from runlane.core.handles import RunHandle
    from runlane.core.runtime import Runtime

MAX_PAGE = 100  # runs in one page of list_runs
MAX_LOG_PAGE = 10_000  # log entries in one read


class QueueNotFoundError(RunlaneError, LookupError):
    """No queue with that name in this environment (``runlane.queues.QueueNotFoundError``)."""


class RunList(BaseModel):
    """One page of runs, newest first; ``next_cursor`` is the ``after`` of the next page."""

    model_config = ConfigDict(frozen=True)

    data: list[Run]
    next_cursor: str | None = None


def _no_run(rt: Runtime, run_id: str) -> RunNotFoundError:
    return RunNotFoundError(f"no run {run_id!r} in environment {rt.environment!r}")


# ---------------------------------------------------------------------- runs
def retrieve_run(rt: Runtime, run_id: str) -> Run:
    """The run with its attempts, payload, output and error."""
    run = rt.store.get_run(run_id)
    if run is None:
        raise _no_run(rt, run_id)
    return run


def _strings(value: Any, option: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) or not all(
        isinstance(v, str) for v in items
    ):
        raise InvalidOptionError(option, value, "must be a string or a list of strings")
    return tuple(items)


def _time(value: Any, option: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_timestamp(value)
    if isinstance(value, date):
        return to_timestamp(datetime(value.year, value.month, value.day))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return to_timestamp(parse_iso_datetime(value, option))
    raise InvalidOptionError(option, value, "expected a datetime, an ISO date or a timestamp")


def run_query(
    *,
    status: Any = None,
    task_identifier: Any = None,
    tag: Any = None,
    from_: Any = None,
    to: Any = None,
    batch: str | None = None,
    schedule: str | None = None,
    version: Any = None,
    queue: Any = None,
    is_test: bool | None = None,
    limit: int = 20,
    after: str | None = None,
) -> RunQuery:
    """The query of ``list_runs`` from loose values, checked: each filter a string or a list of
    strings, times as datetimes, ISO dates or timestamps, ``limit`` from 1 to 100."""
    statuses = _strings(status, "status")
    valid = {s.value for s in RunStatus}
    for s in statuses:
        if s not in valid:
            raise InvalidOptionError("status", s, f"unknown status; one of {sorted(valid)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidOptionError("limit", limit, f"must be an integer from 1 to {MAX_PAGE}")
    return RunQuery(
        status=statuses,
        task_identifier=_strings(task_identifier, "task_identifier"),
        tag=_strings(tag, "tag"),
        created_from=_time(from_, "from_"),
        created_to=_time(to, "to"),
        batch=batch,
        schedule=schedule,
        version=_strings(version, "version"),
        queue=_strings(queue, "queue"),
        is_test=is_test,
        limit=limit,
        after=after,
    )


def list_runs(rt: Runtime, query: RunQuery) -> RunList:
    """The page of runs matching ``query`` (built by :func:`run_query`), newest first, from
    the cursor ``query.after``."""
    data, cursor = rt.store.list_runs(query)
    return RunList(data=data, next_cursor=cursor)


def cancel_run(rt: Runtime, run_id: str) -> Run:
    """Cancel a run and its non-final descendants. A finished run is returned as it is. A
    run not yet started leaves its queue; an executing run is CANCELED at once and its
    worker interrupts the attempt (whose result, if any, is discarded); a FROZEN run is
    canceled without waking up. Parents waiting on a canceled run resume with ok=False."""
    # with a run_canceled receiver: whether this cancel is the one that ends the run
    before = rt.store.statuses([run_id]) if signals.run_canceled.receivers else None
    done = rt.store.cancel(
        run_id,
        now=rt.now(),
        error=TaskRunError(name="Error", message="Canceled by user", code="CANCELED"),
    )
    if done is None:
        raise _no_run(rt, run_id)
    rt.engine.send_ready()
    if before and not before[run_id][0].is_final and done.status is RunStatus.CANCELED:
        signals.send_runs(signals.run_canceled, [done])
    return done


class BulkResult(BaseModel):
    """What a bulk action did: ``ids`` of the runs it acted on (for a replay: the new runs),
    ``skipped`` the matching runs it left (finished already, for a cancel)."""

    model_config = ConfigDict(frozen=True)

    ids: list[str]
    skipped: int = 0


MAX_BULK = 10_000  # runs one bulk action touches


def _matching(rt: Runtime, query: RunQuery, limit: int) -> list[Run]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BULK:
        raise InvalidOptionError("limit", limit, f"must be an integer from 1 to {MAX_BULK}")
    found: list[Run] = []
    page = replace(query, limit=MAX_PAGE, after=None)
    while len(found) < limit:
        data, cursor = rt.store.list_runs(page)
        found.extend(data)
        if cursor is None:
            break
        page = replace(page, after=cursor)
    return found[:limit]


def bulk_cancel_runs(rt: Runtime, query: RunQuery, *, limit: int = 1000) -> BulkResult:
    """Cancel every run matching ``query`` (at most ``limit``), newest first; finished ones
    are left as they are."""
    ids, skipped = [], 0
    canceled: list[Run] = []  # for run_canceled's receivers
    for run in _matching(rt, query, limit):
        if run.is_completed:
            skipped += 1
            continue
        done = rt.store.cancel(
            run.id,
            now=rt.now(),
            error=TaskRunError(name="Error", message="Canceled by user", code="CANCELED"),
        )
        if done is not None and done.status is RunStatus.CANCELED:
            ids.append(run.id)
            if signals.run_canceled.receivers:
                canceled.append(done)
        else:
            skipped += 1
    rt.engine.send_ready()
    if canceled:
        signals.send_runs(signals.run_canceled, canceled)
    return BulkResult(ids=ids, skipped=skipped)


def bulk_replay_runs(rt: Runtime, query: RunQuery, *, limit: int = 1000) -> BulkResult:
    """Replay every run matching ``query`` (at most ``limit``): the new runs' ids."""
    return BulkResult(ids=[replay_run(rt, run.id).id for run in _matching(rt, query, limit)])


def replay_run(rt: Runtime, run_id: str) -> RunHandle:
    """A new run of the same task with the same payload, tags, metadata (as triggered),
    queue, concurrency key, attempts, machine, version and max duration."""
    run = retrieve_run(rt, run_id)
    options: dict[str, Any] = {"tags": run.tags or None}
    seed = rt.store.seed_metadata(run_id)
    if seed:
        options["metadata"] = seed
    if run.queue != default_queue_name(run.task_identifier):
        options["queue"] = run.queue
    for name in ("concurrency_key", "max_attempts", "machine", "version"):
        if getattr(run, name) is not None:
            options[name] = getattr(run, name)
    if run.max_duration is not None:
        options["max_duration"] = run.max_duration
    return rt.engine.trigger(run.task_identifier, run.payload, options)


def reschedule_run(rt: Runtime, run_id: str, delay: Any) -> Run:
    """Move a DELAYED run to a new time (``delay`` as in trigger); a time already past
    queues it now."""
    now = rt.now()
    until = parse_point_in_time(delay, "delay", now)
    run = retrieve_run(rt, run_id)
    if run.status is not RunStatus.DELAYED:
        raise InvalidRunStateError(
            "Cannot reschedule a run that is not delayed",
            run_id=run_id,
            status=run.status.value,
        )
    done = rt.store.transition(
        run_id,
        expect=[RunStatus.DELAYED],
        to=RunStatus.DELAYED,
        now=now,
        changes={"delay_until": until},
    )
    if done is None:
        raise InvalidRunStateError("Cannot reschedule a run that is not delayed", run_id=run_id)
    if until <= now:
        rt.engine.tick_due(now)
        return retrieve_run(rt, run_id)
    return done


def update_run_metadata(rt: Runtime, run_id: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Replace a run's metadata; returns it."""
    op = make_op("replace", value=metadata)
    md = rt.store.update_metadata(
        run_id, [op], now=rt.now(), limit=rt.settings.limits.metadata_bytes
    )
    if md is None:
        raise _no_run(rt, run_id)
    return md


def apply_run_metadata(
    rt: Runtime,
    run_id: str,
    ops: Sequence[Mapping[str, Any]],
    *,
    parent_ops: Sequence[Mapping[str, Any]] = (),
    root_ops: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Apply metadata operations (``metadata.make_op``'s) to a run, and those for its parent
    and root to them (a run without a parent or root applies them to itself, as in the
    reference); returns the run's metadata."""
    run = retrieve_run(rt, run_id)
    limit = rt.settings.limits.metadata_bytes
    now = rt.now()
    targets = [
        (run.parent_id or run.id, parent_ops),
        (run.root_id or run.id, root_ops),
    ]
    for target, target_ops in targets:
        if target_ops:
            rt.store.update_metadata(target, [dict(op) for op in target_ops], now=now, limit=limit)
    md = (
        rt.store.update_metadata(run_id, [dict(op) for op in ops], now=now, limit=limit)
        if ops
        else run.metadata
    )
    if md is None:
        raise _no_run(rt, run_id)
    return md


def add_run_tags(rt: Runtime, run_id: str, tags: str | Sequence[str]) -> list[str]:
    """Add tags to a run; returns its tags. Tags that would take it past the limit are not
    added (none of them)."""
    limits = rt.settings.limits
    # each tag's shape is checked here; their count against the run's tags by the store
    new = normalize_tags(tags, Limits(tags_per_run=10**6, tag_length=limits.tag_length))
    result = rt.store.add_tags(run_id, new, now=rt.now(), max_tags=limits.tags_per_run)
    if not result and rt.store.get_run(run_id, with_attempts=False) is None:
        raise _no_run(rt, run_id)
    return result


def run_logs(rt: Runtime, run_id: str, *, after: int = 0, limit: int = 1000) -> list[LogEntry]:
    """The run's log entries in order; ``after`` is the ``seq`` of the last entry read."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LOG_PAGE:
        raise InvalidOptionError("limit", limit, f"must be an integer from 1 to {MAX_LOG_PAGE}")
    if rt.store.get_run(run_id, with_attempts=False) is None:
        raise _no_run(rt, run_id)
    return rt.store.get_logs(run_id, after=after, limit=limit)


def subscribe(
    rt: Runtime, kind: str, target: str | Sequence[str] | RunQuery, *, cursor: int | None = None
) -> realtime.Subscription:
    """A realtime subscription (``runs.subscribe_to_*``): ``kind`` "run", "tag" or "batch"; or
    "all" (``runlane runs tail``): every run's changes, ``target`` a ``RunQuery`` of task ids
    and statuses (or "" for every run)."""
    return realtime.subscribe(rt, kind, target, cursor=cursor)


def registered_tasks(rt: Runtime, task_ids: Collection[str]) -> list[str]:
    """Those of ``task_ids`` that a worker has registered (deployed) in the store."""
    return sorted(rt.store.known_tasks(task_ids))


# ---------------------------------------------------------------------- batches
def retrieve_runs(rt: Runtime, run_ids: Sequence[str]) -> list[Run]:
    """The runs among ``run_ids`` that exist, in that order (without attempts)."""
    return rt.store.get_runs(run_ids)


def retrieve_batch(rt: Runtime, batch_id: str) -> Batch:
    found = rt.store.get_batch(batch_id)
    if found is None:
        raise RunNotFoundError(f"no batch {batch_id!r} in environment {rt.environment!r}")
    return found


# ---------------------------------------------------------------------- queues
def list_queues(rt: Runtime) -> list[QueueInfo]:
    """Every queue of the environment with its limits, running and queued counts."""
    return rt.store.queues()


def retrieve_queue(rt: Runtime, name: str) -> QueueInfo:
    validate_queue_name(name, "name")
    found = rt.store.queues([name])
    if not found:
        raise QueueNotFoundError(f"no queue {name!r} in environment {rt.environment!r}")
    return found[0]


def _set_paused(
    rt: Runtime, name: str, concurrency_key: str | None, paused: bool, until: Any
) -> QueueInfo:
    validate_queue_name(name, "name")
    if concurrency_key is not None:
        validate_concurrency_key(concurrency_key)
    now = rt.now()
    at = None if until is None else parse_point_in_time(until, "until", now)
    if not rt.store.set_paused(name, concurrency_key, paused=paused, until=at, now=now):
        raise QueueNotFoundError(f"no queue {name!r} in environment {rt.environment!r}")
    rt.engine.send_ready()
    return retrieve_queue(rt, name)


def pause_queue(
    rt: Runtime, name: str, concurrency_key: str | None = None, until: Any = None
) -> QueueInfo:
    """Hold dispatch of queue ``name`` (or of one ``concurrency_key`` in it), until resumed
    or until ``until`` (a datetime, ISO date or duration)."""
    return _set_paused(rt, name, concurrency_key, True, until)


def resume_queue(rt: Runtime, name: str, concurrency_key: str | None = None) -> QueueInfo:
    """Dispatch again from a paused queue (or key)."""
    return _set_paused(rt, name, concurrency_key, False, None)


# ---------------------------------------------------------------------- secret keys
def create_key(rt: Runtime, name: str = "", *, rate_limit: int | None = None) -> tuple[str, KeyRow]:
    """A new secret key for the runtime's environment: the key itself (shown once, never
    stored) and its record (the store keeps its digest). ``rate_limit``: requests a minute
    the HTTP API takes from it (and from the public tokens it signs)."""
    if not isinstance(name, str) or len(name) > 64:
        raise InvalidOptionError("name", name, "must be a string of at most 64 characters")
    if rate_limit is not None and (
        isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 1
    ):
        raise InvalidOptionError("rate_limit", rate_limit, "must be a positive integer")
    key = keys.new_key(rt.environment)
    digest = keys.key_digest(key)
    row = KeyRow(keys.key_id(digest), digest, name, rt.now(), key[-4:], rate_limit=rate_limit)
    rt.store.save_key(row)
    return key, row


def list_keys(rt: Runtime) -> list[KeyRow]:
    return rt.store.list_keys()


def revoke_key(rt: Runtime, key_id: str) -> bool:
    """Revoke a key (and every public token it signed); False when there is no such key."""
    return rt.store.revoke_key(key_id, now=rt.now())


def find_key(rt: Runtime, key_id: str) -> KeyRow | None:
    return rt.store.get_key(key_id)


RATE_WINDOW = 60.0  # seconds of a key's rate-limit window


def count_request(rt: Runtime, key_id: str) -> tuple[int, float]:
    """Count a request of a key: (requests in the current minute, this one included, and
    seconds until the minute ends). Real time: a fake clock does not move rate limits."""
    now = time.time()
    start = now - now % RATE_WINDOW
    count = rt.store.count_request(key_id, window_start=start, window=RATE_WINDOW)
    return count, start + RATE_WINDOW - now


def use_once(rt: Runtime, name: str, ttl: float) -> bool:
    """True the first time ``name`` is used within ``ttl`` seconds, across every process of
    the store (a one-time token's id, say); False after."""
    return rt.store.acquire_lease(f"once:{name}", ids.ulid(), ttl=ttl, now=time.time())


# ---------------------------------------------------------------------- bound to a runtime
P = ParamSpec("P")
R = TypeVar("R")


def _bound(verb: Callable[Concatenate[Runtime, P], R]) -> Callable[Concatenate[Any, P], R]:
    """``verb(rt, ...)`` as a method of :class:`LocalOperations`: ``ops.verb(...)``."""

    def method(self: LocalOperations, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return verb(self.rt, *args, **kwargs)

    method.__name__ = method.__qualname__ = verb.__name__
    method.__doc__ = verb.__doc__
    return method


class LocalOperations:
    """The management verbs of this module and of ``schedules`` bound to one runtime: what
    ``Runtime.ops`` holds, so the public API calls ``runtime.get().ops.retrieve_run(run_id)``
    and never knows whether the verbs run here or, in remote mode (``runlane.sdk``), on a
    runlane server. Same names and arguments as the functions, minus the runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    retrieve_run = _bound(retrieve_run)
    list_runs = _bound(list_runs)
    cancel_run = _bound(cancel_run)
    bulk_cancel_runs = _bound(bulk_cancel_runs)
    bulk_replay_runs = _bound(bulk_replay_runs)
    replay_run = _bound(replay_run)
    reschedule_run = _bound(reschedule_run)
    update_run_metadata = _bound(update_run_metadata)
    apply_run_metadata = _bound(apply_run_metadata)
    add_run_tags = _bound(add_run_tags)
    run_logs = _bound(run_logs)
    subscribe = _bound(subscribe)
    registered_tasks = _bound(registered_tasks)
    retrieve_runs = _bound(retrieve_runs)
    retrieve_batch = _bound(retrieve_batch)
    list_queues = _bound(list_queues)
    retrieve_queue = _bound(retrieve_queue)
    pause_queue = _bound(pause_queue)
    resume_queue = _bound(resume_queue)
    create_key = _bound(create_key)
    list_keys = _bound(list_keys)
    revoke_key = _bound(revoke_key)
    find_key = _bound(find_key)
    count_request = _bound(count_request)
    use_once = _bound(use_once)
    create_schedule = _bound(schedules.create_schedule)
    retrieve_schedule = _bound(schedules.retrieve_schedule)
    list_schedules = _bound(schedules.list_schedules)
    update_schedule = _bound(schedules.update_schedule)
    set_schedule_active = _bound(schedules.set_schedule_active)
    delete_schedule = _bound(schedules.delete_schedule)
