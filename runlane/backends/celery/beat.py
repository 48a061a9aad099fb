"""``import_beat_schedule(app)``: a Celery app's ``beat_schedule`` as runlane schedules.

Each entry becomes a runlane scheduled task (``beat/<entry name>``) with a declarative cron
schedule, written to the store when a worker starts and fired once per tick by the engine loop
that every worker process already runs (one leader at a time, with failover). ``celery beat``
is no longer needed, and must not run as well: each tick would then run twice.

- The run of a tick calls the entry's Celery task (found in ``app.tasks`` by name when the run
  executes, so plain and wrapped tasks alike) with the entry's ``args`` and ``kwargs``, in the
  run, through the task object (as calling a Celery task directly does; ``self.request``
  describes the run, as with :func:`~runlane.backends.celery.wrap`). Its return value is the
  run's output. An entry whose ``task`` is no Celery task of the app but a runlane task id
  triggers a run of that task instead, with the entry's ``kwargs`` as its payload.
- ``crontab`` schedules keep their meaning: the sets of minutes, hours, days and months Celery
  expanded are written as a five-field cron expression, in the app's time zone
  (``app.conf.timezone``; UTC when unset and ``enable_utc`` is on, Celery's default).
  Intervals (a ``timedelta``, a number of seconds, ``schedule(run_every=...)``) become cron
  expressions when they are whole minutes dividing an hour, whole hours dividing a day, or one
  day; cron ticks are aligned to the clock (UTC), where beat counted from its own start.
- Entry ``options``: ``queue`` is the runlane queue of the run, ``time_limit`` its
  ``max_duration``, ``expires`` (seconds) skips a run that starts more than that long after its
  tick. Other options have no meaning in runlane and are refused.

Everything is checked before any task is defined: an entry runlane cannot keep the meaning of
is an error naming the entry and what is wrong with it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import celery
from celery.exceptions import Retry
from celery.schedules import crontab, schedule, solar

from runlane.backends.celery.broker import TASK_NAME
from runlane.backends.celery.wrap import _request
from runlane.core import cron, current
from runlane.core.context import Context
from runlane.core.options import UNSET, validate_task_id
from runlane.core.registry import registry
from runlane.core.schedules import CronSpec, ScheduledPayload
from runlane.core.schema import parser_for
from runlane.core.task import HOOK_NAMES, Task, define_task
from runlane.errors import AbortTaskRunError, ConfigurationError, InvalidOptionError

__all__ = ["DEFAULT_PREFIX", "beat_cron", "beat_task_id", "import_beat_schedule"]

log = logging.getLogger("runlane.celery")

DEFAULT_PREFIX = "beat/"  # what the id of an entry's task starts with
ENTRY_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "relative"})
# entry options with a runlane meaning, and why each other option of apply_async has none
ENTRY_OPTIONS = frozenset({"queue", "expires", "time_limit"})
_NO_MEANING = {
    "exchange": "route runs with CeleryBroker(routes=...) instead",
    "routing_key": "route runs with CeleryBroker(routes=...) instead",
    "priority": "runlane has no message priorities; give the work a queue of its own",
    "soft_time_limit": "runlane has no soft time limit; time_limit is the run's max_duration",
    "countdown": "a scheduled run starts at its tick",
    "eta": "a scheduled run starts at its tick",
}
# the intervals that have a cron expression with the same period
_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
_HOURS = (1, 2, 3, 4, 6, 8, 12)
# each crontab field: its attribute on Celery's crontab, its lowest and highest value
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day_of_month", 1, 31),
    ("month_of_year", 1, 12),
    ("day_of_week", 0, 6),
)
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:/-]+")
_MAX_ID = 128

_warned: set[str] = set()  # apps whose "stop celery beat" warning this process logged


@dataclass(frozen=True)
class _Entry:
    """A beat entry, checked: what its runlane task is defined from."""

    name: str
    task_id: str
    target: str  # the Celery task name, or a runlane task id
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    cron: CronSpec
    queue: str | None
    time_limit: Any  # UNSET when not given
    expires: float | None


def import_beat_schedule(
    app: celery.Celery, *, prefix: str = DEFAULT_PREFIX, **task_options: Any
) -> list[Task[Any]]:
    """Define a runlane scheduled task for each entry of ``app.conf.beat_schedule`` and return
    them, in the entries' order. Call it where the app is configured (its module), so that
    every worker process defines them before it starts; then stop running ``celery beat``.

    The id of an entry's task is ``prefix`` + its name, with each run of characters a task id
    cannot hold replaced by ``-`` (``"send report"`` → ``beat/send-report``); two entries with
    the same id are an error. ``task_options`` are ``@runlane.task``'s (``retry``, ``queue``,
    ``machine``, ``max_duration``, hooks), for every entry; an entry's own ``queue`` and
    ``time_limit`` take precedence. Raises ``InvalidOptionError`` or ``ConfigurationError``
    naming the entry when one cannot be kept as it is, before anything is defined.
    """
    if not isinstance(app, celery.Celery):
        raise InvalidOptionError("app", app, "expected a celery.Celery application")
    raw = app.conf.beat_schedule or {}
    if not isinstance(raw, Mapping):
        raise InvalidOptionError("beat_schedule", raw, "must be a dict of entries")
    entries = [_entry(app, str(name), value, prefix) for name, value in raw.items()]
    owners: dict[str, str] = {}
    for e in entries:
        if e.task_id in owners:
            raise ConfigurationError(
                f"beat_schedule entries {owners[e.task_id]!r} and {e.name!r} both become the "
                f"runlane task {e.task_id!r}: rename one of them"
            )
        owners[e.task_id] = e.name
    fns = [_runner(app, e) for e in entries]
    options = [_options(e, task_options) for e in entries]
    for e, fn, opts in zip(entries, fns, options, strict=True):
        _check_definition(e, fn, opts)
    parse = parser_for(ScheduledPayload)
    tasks = [
        define_task(fn, e.task_id, opts, parse_payload=parse, scheduled=True, cron=e.cron)
        for e, fn, opts in zip(entries, fns, options, strict=True)
    ]
    if tasks and str(app.main) not in _warned:
        _warned.add(str(app.main))
        log.warning(
            "runlane now fires the beat_schedule of Celery app %r (tasks %s): stop running "
            "`celery beat` for this app, or each tick runs twice",
            app.main,
            ", ".join(t.id for t in tasks),
        )
    return tasks


# ---------------------------------------------------------------------- entries
def beat_task_id(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The runlane task id of the beat entry ``name``: ``prefix`` + the name, each run of
    characters a task id cannot hold replaced by ``-``, cut to 128 characters."""
    slug = _ID_CHARS.sub("-", name).strip("-")
    if not slug:
        raise InvalidOptionError(
            "beat_schedule", name, "an entry's name needs a letter or a digit to make a task id"
        )
    task_id = (prefix + slug)[:_MAX_ID]
    return validate_task_id(task_id, f"beat_schedule[{name!r}] (task id)")


def _entry(app: celery.Celery, name: str, value: Any, prefix: str) -> _Entry:
    where = f"beat_schedule[{name!r}]"
    if not isinstance(value, Mapping):
        raise InvalidOptionError(where, value, "an entry is a dict with task and schedule")
    unknown = set(value) - ENTRY_KEYS
    if unknown:
        raise InvalidOptionError(
            where, sorted(unknown), f"unknown key(s); an entry has {sorted(ENTRY_KEYS)}"
        )
    target = value.get("task")
    if not isinstance(target, str) or not target:
        raise InvalidOptionError(f"{where}.task", target, "must name a Celery task")
    if target == TASK_NAME:
        raise InvalidOptionError(f"{where}.task", target, "is runlane's own task")
    if "schedule" not in value:
        raise InvalidOptionError(where, dict(value), "has no schedule")
    args = value.get("args") or ()
    if isinstance(args, (str, bytes, Mapping)) or not isinstance(args, Iterable):
        raise InvalidOptionError(f"{where}.args", args, "must be a list or a tuple")
    kwargs = value.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise InvalidOptionError(f"{where}.kwargs", kwargs, "must be a dict")
    options = value.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidOptionError(f"{where}.options", options, "must be a dict")
    queue, time_limit, expires = _entry_options(where, options)
    return _Entry(
        name=name,
        task_id=beat_task_id(name, prefix),
        target=target,
        args=tuple(args),
        kwargs=dict(kwargs),
        cron=beat_cron(app, value["schedule"], entry=name),
        queue=queue,
        time_limit=time_limit,
        expires=expires,
    )


def _entry_options(where: str, options: Mapping[str, Any]) -> tuple[str | None, Any, float | None]:
    """(queue, time_limit, expires) of an entry's ``options``; any other is an error."""
    for option in options:
        if option not in ENTRY_OPTIONS:
            reason = _NO_MEANING.get(
                option, f"has no meaning in runlane (options it maps: {sorted(ENTRY_OPTIONS)})"
            )
            raise InvalidOptionError(f"{where}.options.{option}", options[option], reason)
    queue = options.get("queue")
    if queue is not None and not isinstance(queue, str):
        queue = getattr(queue, "name", queue)  # a kombu Queue
    expires = options.get("expires")
    if expires is not None:
        if (
            isinstance(expires, bool)
            or not isinstance(expires, (int, float))
            or not math.isfinite(expires)
            or expires <= 0
        ):
            raise InvalidOptionError(
                f"{where}.options.expires",
                expires,
                "must be a number of seconds after each tick (a date would end every tick)",
            )
        expires = float(expires)
    return queue, options.get("time_limit", UNSET), expires


def _options(e: _Entry, task_options: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(task_options)
    if e.queue is not None:
        opts["queue"] = e.queue
    if e.time_limit is not UNSET:
        opts["max_duration"] = e.time_limit
    return opts


def _check_definition(e: _Entry, fn: Any, opts: dict[str, Any]) -> None:
    """Raise what defining the entry's task would raise, naming the entry, before any is."""
    where = f"beat_schedule[{e.name!r}]"
    try:
        unknown = set(opts) - {"retry", "queue", "max_duration", "machine", *HOOK_NAMES}
        if unknown:
            name = sorted(unknown)[0]
            raise InvalidOptionError(name, opts[name], "unknown task option")
        Task(fn, id=e.task_id, **_task_kwargs(opts))  # validates; not registered
    except InvalidOptionError as exc:
        raise InvalidOptionError(f"{where}: {exc.option}", exc.value, exc.reason) from None
    old = registry.get(e.task_id)
    if old is not None and (
        getattr(old.fn, "__module__", None) != fn.__module__
        or getattr(old.fn, "__qualname__", None) != fn.__qualname__
    ):  # the registry refuses it; say which entry
        raise ConfigurationError(
            f"{where} becomes the runlane task {e.task_id!r}, an id {old.fn.__module__}."
            f"{old.fn.__qualname__} already has: rename the entry, or import with another prefix"
        )


def _task_kwargs(opts: Mapping[str, Any]) -> dict[str, Any]:
    hooks = {name: opts[name] for name in HOOK_NAMES if name in opts}
    return {
        "retry": opts.get("retry"),
        "queue": opts.get("queue"),
        "max_duration": opts.get("max_duration", UNSET),
        "machine": opts.get("machine"),
        "hooks": hooks,
    }


# ---------------------------------------------------------------------- schedules → cron
def beat_cron(app: celery.Celery, value: Any, *, entry: str = "schedule") -> CronSpec:
    """The cron schedule of a beat entry's ``schedule``: a ``crontab`` in the app's time
    zone, or an interval that a cron expression repeats exactly (see the module docstring).
    Anything else is an ``InvalidOptionError`` naming ``entry``."""
    where = f"beat_schedule[{entry!r}].schedule"
    if type(value) is crontab:
        pattern = " ".join(_cron_field(getattr(value, attr), lo, hi) for attr, lo, hi in _FIELDS)
        if pattern.split()[2] != "*" and pattern.split()[4] != "*":
            raise InvalidOptionError(
                where,
                value,
                "Celery runs it on days in both day_of_month and day_of_week, where cron runs "
                "on days in either: no cron expression means the same; make one of them '*' "
                "(or split the entry in two)",
            )
        return CronSpec(
            pattern=cron.parse_cron(pattern, where),
            timezone=_app_timezone(app, entry),
        )
    if isinstance(value, solar):
        raise InvalidOptionError(
            where,
            _shown(value),
            "solar schedules follow the sun; runlane schedules are cron expressions: "
            "use a crontab at the times you need",
        )
    if type(value) is schedule:
        return CronSpec(pattern=_interval_cron(value.run_every, where))
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return CronSpec(pattern=_interval_cron(value, where))
    raise InvalidOptionError(
        where,
        _shown(value),
        "runlane schedules are cron expressions: give a crontab, a timedelta or a number "
        "of seconds (custom schedule classes have no cron equivalent)",
    )


def _shown(value: Any) -> Any:
    """``value``, or its type's name when it cannot be shown (an error message shows it)."""
    try:
        repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return value


def _cron_field(values: Iterable[int], lo: int, hi: int) -> str:
    """One cron field matching exactly ``values`` (Celery's expanded set of a field)."""
    vals = sorted(set(values))
    if vals == list(range(lo, hi + 1)):
        return "*"
    if len(vals) >= 3:  # a step (two values read best as a list)
        step = vals[1] - vals[0]
        if step > 1 and vals == list(range(lo, hi + 1, step)):
            return f"*/{step}"
        if step > 1 and vals == list(range(vals[0], vals[-1] + 1, step)):
            return f"{vals[0]}-{vals[-1]}/{step}"
    parts: list[str] = []
    start = prev = vals[0]
    for v in [*vals[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        if prev - start >= 2:
            parts.append(f"{start}-{prev}")
        else:
            parts.extend(str(n) for n in range(start, prev + 1))
        if v is not None:
            start = prev = v
    return ",".join(parts)


def _interval_cron(interval: Any, where: str) -> str:
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
    shown = f"{seconds:g} seconds"
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidOptionError(where, shown, "an interval must be positive")
    minutes = seconds / 60
    if minutes == round(minutes):
        n = int(minutes)
        if n in _MINUTES:
            return "* * * * *" if n == 1 else f"*/{n} * * * *"
        if n % 60 == 0 and n // 60 in _HOURS:
            hours = n // 60
            return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
        if n == 24 * 60:
            return "0 0 * * *"
    raise InvalidOptionError(
        where,
        shown,
        "runlane schedules are cron expressions (at most one tick a minute, aligned to the "
        "clock), so an interval must be a whole number of minutes dividing an hour "
        f"({', '.join(map(str, _MINUTES))}), of hours dividing a day "
        f"({', '.join(map(str, _HOURS))}), or one day; use a crontab for any other times",
    )


def _app_timezone(app: celery.Celery, entry: str) -> str:
    """The IANA zone Celery reads the app's crontabs in."""
    conf = app.conf
    tz = conf.timezone
    if tz:
        name = tz if isinstance(tz, str) else getattr(tz, "key", None) or str(tz)
        return cron.parse_timezone(name, "app.conf.timezone")
    if conf.enable_utc:
        return cron.DEFAULT_TIMEZONE
    raise ConfigurationError(
        f"beat_schedule[{entry!r}] is a crontab in this machine's local time (enable_utc is "
        "off and no timezone is set): set app.conf.timezone to an IANA name, e.g. "
        "'Europe/Paris', so every worker reads it the same way"
    )


# ---------------------------------------------------------------------- the runs
def _runner(app: celery.Celery, e: _Entry) -> Any:
    """The function of the entry's runlane task: one call of its Celery task per tick (or a
    triggered run of the runlane task it names)."""

    def run(payload: ScheduledPayload, ctx: Context) -> Any:
        rt = current.get()
        if e.expires is not None:
            late = rt.now() - payload.timestamp.timestamp()
            if late > e.expires:
                log.warning(
                    "beat entry %r: the run of the %s tick started %.0f s late, past its "
                    "expires=%g; skipped",
                    e.name,
                    payload.timestamp.isoformat(),
                    late,
                    e.expires,
                )
                return {"expired": True, "tick": payload.timestamp.isoformat()}
        celery_task = app.tasks.get(e.target)
        if celery_task is not None:
            return _call(celery_task, e, ctx)
        return _trigger(rt, e)

    # one definition per entry (and the same one when the app module is imported again)
    run.__module__ = __name__
    run.__qualname__ = run.__name__ = f"beat[{app.main}:{e.name}]"
    run.__doc__ = f"The beat_schedule entry {e.name!r}: {e.target} at {e.cron.pattern!r}."
    return run


def _call(celery_task: celery.Task, e: _Entry, ctx: Context) -> Any:
    request = _request(ctx, e.kwargs)
    request["args"] = list(e.args)
    celery_task.push_request(**request)
    try:
        return celery_task(*e.args, **e.kwargs)
    except Retry as retry:  # self.retry(exc=...): the attempt failed with exc
        if isinstance(retry.exc, BaseException):
            raise retry.exc from None
        raise
    finally:
        celery_task.pop_request()


def _trigger(rt: Any, e: _Entry) -> dict[str, Any]:
    """A run of the runlane task the entry names, its kwargs the payload; a retried attempt
    of this run gets the same run back (an idempotency key scoped to this run)."""
    task = registry.get(e.target)
    if task is None and not rt.store.known_tasks([e.target]):
        raise AbortTaskRunError(
            f"beat entry {e.name!r}: {e.target!r} is neither a Celery task of this app nor a "
            "runlane task (is the module that defines it imported by the worker?)"
        )
    if e.args:
        raise AbortTaskRunError(
            f"beat entry {e.name!r}: the runlane task {e.target!r} takes one payload, the "
            "entry's kwargs; it cannot take args"
        )
    options: dict[str, Any] = {"idempotency_key": "beat"}
    if e.queue is not None:
        options["queue"] = e.queue
    if e.time_limit is not UNSET:
        options["max_duration"] = e.time_limit
    if e.expires is not None:
        options["ttl"] = e.expires
    handle = rt.engine.trigger(e.target, e.kwargs, options, task=task)
    return {"triggered": handle.id, "task": e.target}
