"""Schedules: cron tasks that fire a run at every tick, as in Trigger.dev.

A schedule belongs to a task (``@schedules.task``) and is either DECLARATIVE (the task's
``cron``, written by the workers that define it as they start) or IMPERATIVE (made with
``schedules.create``, changed only through the API). The store keeps each schedule with its
next nominal tick; the leader's engine loop (``fire_due``) creates one run per due tick in the
same store transaction that moves the schedule to its next tick, guarded by the tick it
expects, so two schedulers, a leader failover or a clock jump never fire a tick twice. A
schedule that missed several ticks (every worker down) fires once, for the latest, on return.

Every management verb is a function of the runtime here, used by ``runlane.schedules``, the CLI
and the HTTP API alike.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from runlane.core import cron, ids
from runlane.core.clock import to_datetime
from runlane.core.options import UNSET, validate_task_id
from runlane.core.types import ScheduleFire, ScheduleQuery, ScheduleRow
from runlane.errors import (
    InvalidOptionError,
    InvalidScheduleStateError,
    ScheduleNotFoundError,
)

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime
    from runlane.core.task import Task

log = logging.getLogger("runlane.schedules")

MAX_PAGE = 100  # schedules in one page of list_schedules
FIRE_LIMIT = 1000  # due schedules one engine pass fires
FIRE_BATCH = 200  # ticks fired in one store call
UPCOMING = 5  # ticks in a payload's ``upcoming``
MAX_TEXT = 128  # characters of an external id or deduplication key


class ScheduleType(str, enum.Enum):
    DECLARATIVE = "DECLARATIVE"
    IMPERATIVE = "IMPERATIVE"

    def __str__(self) -> str:
        return self.value


class Schedule(BaseModel):
    """A schedule as stored (``schedules.retrieve``): ``next_run`` is its next tick (None
    while inactive), ``last_run`` the tick it last fired."""

    model_config = ConfigDict(frozen=True)

    id: str
    task: str
    type: ScheduleType
    active: bool
    cron: str
    description: str
    timezone: str
    external_id: str | None = None
    deduplication_key: str | None = None
    next_run: datetime | None = None
    last_run: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ScheduleList(BaseModel):
    """One page of schedules, newest first; ``next_cursor`` is the ``after`` of the next."""

    model_config = ConfigDict(frozen=True)

    data: list[Schedule]
    next_cursor: str | None = None


class ScheduledPayload(BaseModel):
    """What a scheduled task receives: ``timestamp`` is the tick the run is for (not when it
    started), ``last_timestamp`` the tick the schedule fired before (None the first time),
    ``upcoming`` the next five ticks."""

    model_config = ConfigDict(frozen=True)

    timestamp: datetime
    last_timestamp: datetime | None = None
    timezone: str = cron.DEFAULT_TIMEZONE
    schedule_id: str
    external_id: str | None = None
    upcoming: list[datetime] = Field(default_factory=list)
    type: ScheduleType = ScheduleType.IMPERATIVE


class CronSpec(BaseModel):
    """A scheduled task's declarative schedule (its ``cron`` option), checked."""

    model_config = ConfigDict(frozen=True)

    pattern: str
    timezone: str = cron.DEFAULT_TIMEZONE


def parse_cron_option(value: Any) -> CronSpec:
    """``"0 */2 * * *"`` (UTC) or ``{"pattern": ..., "timezone": ...}``."""
    if isinstance(value, str):
        return CronSpec(pattern=cron.parse_cron(value))
    if isinstance(value, Mapping):
        unknown = set(value) - {"pattern", "timezone"}
        if unknown:
            raise InvalidOptionError(
                "cron", value, f"unknown key(s) {sorted(unknown)}: give pattern and timezone"
            )
        if "pattern" not in value:
            raise InvalidOptionError("cron", value, "needs a pattern")
        return CronSpec(
            pattern=cron.parse_cron(value["pattern"], "cron.pattern"),
            timezone=cron.parse_timezone(value.get("timezone"), "cron.timezone"),
        )
    raise InvalidOptionError(
        "cron", value, 'expected "0 8 * * *" or {"pattern": "0 8 * * *", "timezone": "..."}'
    )


# ---------------------------------------------------------------------- records ↔ models
def to_schedule(row: ScheduleRow) -> Schedule:
    next_run = to_datetime(row.next_at) if row.active else None
    return Schedule(
        id=row.id,
        task=row.task,
        type=ScheduleType(row.type),
        active=row.active,
        cron=row.cron,
        description=cron.describe(row.cron),
        timezone=row.timezone,
        external_id=row.external_id,
        deduplication_key=row.deduplication_key,
        next_run=next_run,
        last_run=to_datetime(row.last_at),
        created_at=to_datetime(row.created_at),
        updated_at=to_datetime(row.updated_at),
    )


def declarative_id(task_id: str) -> str:
    """The id of a task's declarative schedule: one per task and environment, the same in
    every process (``sched_`` + 26 characters, as other ids)."""
    digest = int.from_bytes(hashlib.sha256(f"declarative\0{task_id}".encode()).digest()[:17], "big")
    return "sched_" + ids.encode(digest >> 6, 26)


def tick_run_id(schedule_id: str, tick: float) -> str:
    """The id of the run of ``schedule_id`` for ``tick``: the same in every process, and
    sorting with other run ids by the tick's time."""
    ms = round(tick * 1000)
    digest = hashlib.sha256(f"{schedule_id}\0{ms}".encode()).digest()
    return "run_" + ids.encode(ms, 10) + ids.encode(int.from_bytes(digest[:10], "big"), 16)


# ---------------------------------------------------------------------- validation
def _text(value: Any, option: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidOptionError(option, value, f"must be a string of 1-{MAX_TEXT} characters")
    return value


def _check_task(rt: Runtime, task_id: Any) -> str:
    validate_task_id(task_id, "task")
    local = rt.registry.get(task_id)
    if local is not None:
        if local.scheduled:
            return str(task_id)
        raise InvalidOptionError(
            "task", task_id, "is not a scheduled task: define it with @schedules.task"
        )
    if rt.store.known_tasks([task_id]):
        return str(task_id)
    raise InvalidOptionError(
        "task",
        task_id,
        "no such task: define it with @schedules.task and start a worker that imports it",
    )


# ---------------------------------------------------------------------- verbs
def _get(rt: Runtime, schedule_id: Any) -> ScheduleRow:
    if not isinstance(schedule_id, str) or not schedule_id:
        raise InvalidOptionError("schedule_id", schedule_id, "must be a schedule id (sched_...)")
    row = rt.store.get_schedule(schedule_id)
    if row is None:
        raise ScheduleNotFoundError(
            f"no schedule {schedule_id!r} in environment {rt.environment!r}"
        )
    return row


def _imperative(row: ScheduleRow, verb: str) -> None:
    if row.type != ScheduleType.IMPERATIVE.value:
        raise InvalidScheduleStateError(
            f"cannot {verb} schedule {row.id}: it is DECLARATIVE (the cron option of task "
            f"{row.task!r}); change the task's code instead",
            schedule_id=row.id,
        )


def create_schedule(
    rt: Runtime,
    *,
    task: Any,
    cron_expression: Any,
    timezone: Any = None,
    external_id: Any = None,
    deduplication_key: Any = None,
) -> Schedule:
    """A new IMPERATIVE schedule, active; with a ``deduplication_key`` another schedule has,
    that schedule is updated instead (and returned)."""
    pattern = cron.parse_cron(cron_expression)
    tz = cron.parse_timezone(timezone)
    external = _text(external_id, "external_id")
    dedup = _text(deduplication_key, "deduplication_key")
    task_id = _check_task(rt, task)
    now = rt.now()
    row = ScheduleRow(
        id=ids.new_id("sched"),
        task=task_id,
        cron=pattern,
        timezone=tz,
        type=ScheduleType.IMPERATIVE.value,
        active=True,
        created_at=now,
        updated_at=now,
        next_at=cron.next_tick(pattern, tz, now),
        external_id=external,
        deduplication_key=dedup,
    )
    stored, _ = rt.store.save_schedule(row, now=now)
    return to_schedule(stored)


def retrieve_schedule(rt: Runtime, schedule_id: Any) -> Schedule:
    return to_schedule(_get(rt, schedule_id))


def list_schedules(
    rt: Runtime, *, task: Any = None, limit: int = 20, after: str | None = None
) -> ScheduleList:
    """A page of schedules (of ``task``: an id or a list of ids), newest first."""
    tasks: tuple[str, ...] = ()
    if task is not None:
        tasks = (task,) if isinstance(task, str) else tuple(task)
        for t in tasks:
            validate_task_id(t, "task")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidOptionError("limit", limit, f"must be an integer from 1 to {MAX_PAGE}")
    rows, cursor = rt.store.list_schedules(ScheduleQuery(task=tasks, limit=limit, after=after))
    return ScheduleList(data=[to_schedule(r) for r in rows], next_cursor=cursor)


def update_schedule(
    rt: Runtime,
    schedule_id: Any,
    *,
    task: Any = None,
    cron_expression: Any = None,
    timezone: Any = None,
    external_id: Any = UNSET,
    deduplication_key: Any = UNSET,
) -> Schedule:
    """Change an IMPERATIVE schedule (what is not given stays); a new cron or time zone moves
    its next tick."""
    row = _get(rt, schedule_id)
    _imperative(row, "update")
    changes: dict[str, Any] = {}
    if task is not None and task != row.task:
        changes["task"] = _check_task(rt, task)
    if cron_expression is not None:
        changes["cron"] = cron.parse_cron(cron_expression)
    if timezone is not None:
        changes["timezone"] = cron.parse_timezone(timezone)
    if external_id is not UNSET:
        changes["external_id"] = _text(external_id, "external_id")
    if deduplication_key is not UNSET:
        changes["deduplication_key"] = _text(deduplication_key, "deduplication_key")
    return _save(rt, row, changes)


def _save(rt: Runtime, row: ScheduleRow, changes: dict[str, Any]) -> Schedule:
    now = rt.now()
    fields = {**vars(row), **changes, "updated_at": now}
    fresh = ScheduleRow(**fields)
    if fresh.active and (
        not row.active or fresh.cron != row.cron or fresh.timezone != row.timezone
    ):
        fresh.next_at = cron.next_tick(fresh.cron, fresh.timezone, now)
    stored, _ = rt.store.save_schedule(fresh, now=now)
    return to_schedule(stored)


def set_schedule_active(rt: Runtime, schedule_id: Any, active: bool) -> Schedule:
    """Activate (it fires from its next tick on) or deactivate (it does not fire)."""
    row = _get(rt, schedule_id)
    _imperative(row, "activate" if active else "deactivate")
    if row.active == active:
        return to_schedule(row)
    return _save(rt, row, {"active": active})


def delete_schedule(rt: Runtime, schedule_id: Any) -> Schedule:
    """Delete an IMPERATIVE schedule; returns it as it was. Its runs stay."""
    row = _get(rt, schedule_id)
    _imperative(row, "delete")
    if not rt.store.delete_schedule(row.id):
        raise ScheduleNotFoundError(f"no schedule {row.id!r} in environment {rt.environment!r}")
    return to_schedule(row)


# ---------------------------------------------------------------------- declarative sync
_DIGITS = re.compile(r"(\d+)")


def generation(version: str | None, started_at: float) -> str:
    """What orders two workers' declarations: the version of their code (compared as people
    read release numbers: "1.10" after "1.9"), then when they started. A worker never
    changes or removes a declarative schedule a later generation wrote."""
    key = ""
    if version:
        key = _DIGITS.sub(lambda m: m.group(1).rjust(20, "0"), version)
    return f"{key}\x01{started_at:020.6f}"


def sync_declared(rt: Runtime, tasks: Sequence[Task[Any]], gen: str) -> None:
    """Write the declarative schedules of ``tasks`` (a worker's, as it starts): a task with a
    ``cron`` has its schedule added or changed; a task without one has its declarative
    schedule, if any, removed. Neither undoes what a later generation wrote."""
    now = rt.now()
    store = rt.store
    for task in tasks:
        sid = declarative_id(task.id)
        spec = task.cron
        if spec is None:
            if store.delete_schedule(sid, generation=gen):
                log.info("removed the declarative schedule of task %r", task.id)
            continue
        row = ScheduleRow(
            id=sid,
            task=task.id,
            cron=spec.pattern,
            timezone=spec.timezone,
            type=ScheduleType.DECLARATIVE.value,
            active=True,
            created_at=now,
            updated_at=now,
            next_at=cron.next_tick(spec.pattern, spec.timezone, now),
            generation=gen,
        )
        store.save_schedule(row, now=now)


# ---------------------------------------------------------------------- firing
def fire_due(rt: Runtime, now: float, limit: int = FIRE_LIMIT) -> int:
    """Fire every active schedule whose next tick is due (the leader's engine loop): one run
    per schedule, for the latest tick at or before ``now``, created in batches of
    ``FIRE_BATCH`` per store call. Returns the runs created."""
    due = rt.store.due_schedules(now=now, limit=limit)
    fired = 0
    for start in range(0, len(due), FIRE_BATCH):
        ticks = []
        for row in due[start : start + FIRE_BATCH]:
            try:
                ticks.append(tick_of(row, now))
            except InvalidOptionError as exc:  # a schedule that can no longer fire
                log.warning("schedule %s of task %r cannot fire: %s", row.id, row.task, exc)
        fired += rt.engine.fire_schedules(ticks)
    return fired


def fire(rt: Runtime, row: ScheduleRow, now: float) -> bool:
    """Fire ``row``'s due tick alone; False when another scheduler fired it first (or the
    schedule changed meanwhile)."""
    return rt.engine.fire_schedules([tick_of(row, now)]) == 1


def tick_of(row: ScheduleRow, now: float) -> tuple[str, Any, str, ScheduleFire]:
    """What firing ``row`` at ``now`` creates: (task id, payload, run id, fire) for the
    latest tick at or before ``now``, which moves the schedule to the tick after it."""
    assert row.next_at is not None
    tick, upcoming = _plan(row.cron, row.timezone, row.next_at, now)
    payload = {
        "timestamp": _iso(tick),
        "last_timestamp": _iso(row.last_at) if row.last_at is not None else None,
        "timezone": row.timezone,
        "schedule_id": row.id,
        "external_id": row.external_id,
        "upcoming": [_iso(t) for t in upcoming],
        "type": row.type,
    }
    fire = ScheduleFire(row.id, row.next_at, tick, upcoming[0])
    return row.task, payload, tick_run_id(row.id, tick), fire


@functools.lru_cache(maxsize=4096)
def _plan(expression: str, tz: str, next_at: float, now: float) -> tuple[float, list[float]]:
    """The tick to fire (the latest at or before ``now``, ``next_at`` at the earliest) and the
    ``UPCOMING`` ticks after it: the same for every schedule of one cron and time zone due at
    the same moment, so a busy minute computes each once."""
    tick = max(next_at, cron.last_tick_at_or_before(expression, tz, now))
    return tick, cron.next_ticks(expression, tz, tick, UPCOMING)


def _iso(ts: float) -> str:
    """A tick as JSON carries it: ISO 8601 in UTC, "2026-03-08T07:00:00Z"."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
