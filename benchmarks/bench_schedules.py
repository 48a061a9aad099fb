"""Schedules: what firing a minute's due ticks costs the leader, and what an idle pass costs.

    python benchmarks/bench_schedules.py [--store sqlite|redis|both] [--schedules 10000]
        [--redis-url URL] [--idle-repeats 50] [--no-profile] [--top 15]

For each store (a SQLite file in a temporary folder; Redis under a private key prefix, by
default in database 15, whose keys are deleted afterwards: SCAN + DEL, never FLUSHDB), with a
``runlane.FakeClock`` and no worker (the runs created are never executed):

1. N (``--schedules``) IMPERATIVE schedules are made through the public API
   (``runlane.schedules.create`` on a ``@runlane.schedules.task``), half a minute before a
   busy minute boundary (the top of a UTC hour on the last day of a month, a Wednesday), with a
   fixed mix of cron expressions (every minute, every 5/10/15 minutes, hourly at various
   minutes, every 2 hours, daily at various hours, weekdays only, business hours, weekly,
   monthly, the last day of the month, the daylight-saving hour) over 50 IANA time zones
   (whole, half and three-quarter hour offsets, both hemispheres): the creation rate.
2. The clock is set to the boundary and ``runlane.core.schedules.fire_due(rt, now)`` (what
   ``Engine.tick()`` calls) is timed: the leader's wall time, the ticks due and fired, ticks a
   second. One pass fires at most ``FIRE_LIMIT`` (1,000) schedules, so a minute with more due
   takes several engine ticks: every pass is timed until one fires nothing. Light timers
   around the parts of a pass (the due query, cron, the engine's run preparation, the store's
   ``create_runs``, the broker send) split that time. The next minute (an ordinary one) is
   timed the same way. runlane's caches keyed by the firing time are cleared before each
   minute measured (another store's measurement of the same minute must not warm them).
3. An idle pass (``fire_due`` one second after the boundary, nothing due) is timed
   (``--idle-repeats`` times, the median) with N schedules and, on a second store, with N/100:
   if it costs O(due), not O(schedules), the two are about equal.
4. Correctness, checked as it goes: the schedules due at the boundary are computed
   independently (the script's own matcher of its cron fields in each zone's local time), the
   runs created are exactly one per due schedule (the ids derived from schedule and tick), and
   a second ``fire_due`` at the same time creates none.
5. Unless ``--no-profile``: the busy minute again, on a third store made the same way, under
   cProfile: the same parts (and the payload's pydantic model, in runlane versions that build
   one), and the functions taking the most time of their own.

See benchmarks/README.md for the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import inspect
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

import runlane
from runlane.core import runtime as _runtime
from runlane.core import schedules as _schedules
from runlane.core.runtime import Runtime

TASK_ID = "bench-scheduled"
# The busy minute: 12:00 UTC, Wednesday 31 March 2027 (the last day of a month; every zone
# below is past its spring daylight-saving change, and none changes that day).
BOUNDARY = datetime(2027, 3, 31, 12, 0, tzinfo=timezone.utc).timestamp()
CREATED_AT = BOUNDARY - 30  # the schedules are made half a minute before it
SEED = 20271231

# 50 IANA zones: whole-hour offsets on both sides of UTC, half and three-quarter hours
# (Kolkata, Kathmandu, Adelaide, St John's, Chatham), zones with and without daylight saving.
ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Stockholm",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Helsinki",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Africa/Cairo",
    "Africa/Lagos",
    "Africa/Johannesburg",
    "Africa/Nairobi",
    "Asia/Dubai",
    "Asia/Tehran",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Jakarta",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Hong_Kong",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Australia/Perth",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Phoenix",
    "America/Chicago",
    "America/Mexico_City",
    "America/New_York",
    "America/Toronto",
    "America/Bogota",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "America/St_Johns",
)
assert len(set(ZONES)) == 50

HOURLY_MINUTES = (0, 0, 0, 0, 5, 10, 15, 15, 20, 30, 30, 30, 45, 45, 17, 42)
DAILY_MINUTES = (0, 0, 0, 0, 15, 30, 30, 45)


def _every_minute(r: random.Random) -> str:
    return "* * * * *"


def _every(step: int) -> Callable[[random.Random], str]:
    return lambda r: f"*/{step} * * * *"


def _hourly(r: random.Random) -> str:
    return f"{r.choice(HOURLY_MINUTES)} * * * *"


def _every_two_hours(r: random.Random) -> str:
    return f"{r.choice((0, 0, 30))} */2 * * *"


def _daily(r: random.Random) -> str:
    return f"{r.choice(DAILY_MINUTES)} {r.randrange(24)} * * *"


def _weekdays(r: random.Random) -> str:
    return f"{r.choice(DAILY_MINUTES)} {r.randrange(6, 20)} * * 1-5"


def _business_hours(r: random.Random) -> str:
    return f"*/{r.choice((10, 15, 30))} 8-18 * * 1-5"


def _weekly(r: random.Random) -> str:
    return f"0 {r.randrange(24)} * * {r.choice(('MON', 'WED', 'FRI', 'SUN'))}"


def _monthly(r: random.Random) -> str:
    return f"0 {r.randrange(24)} {r.choice((1, 1, 15))} * *"


def _last_day(r: random.Random) -> str:
    return f"{r.choice((0, 0, 30))} {r.randrange(24)} L * *"


def _dst_hour(r: random.Random) -> str:
    return "30 2 * * *"


# (kind, share of the schedules, how one is drawn)
MIX: tuple[tuple[str, float, Callable[[random.Random], str]], ...] = (
    ("every minute", 0.04, _every_minute),
    ("every 5 min", 0.08, _every(5)),
    ("every 10 min", 0.04, _every(10)),
    ("every 15 min", 0.08, _every(15)),
    ("hourly at :mm", 0.18, _hourly),
    ("every 2 hours", 0.04, _every_two_hours),
    ("daily at hh:mm", 0.24, _daily),
    ("weekdays at hh:mm", 0.10, _weekdays),
    ("business hours, weekdays", 0.04, _business_hours),
    ("weekly", 0.05, _weekly),
    ("monthly (1st/15th)", 0.03, _monthly),
    ("last day of month", 0.05, _last_day),
    ("daily 02:30 (DST hour)", 0.03, _dst_hour),
)
assert abs(sum(share for _, share, _ in MIX) - 1) < 1e-9


def schedule_mix(n: int) -> list[tuple[str, str, str]]:
    """``n`` (kind, cron, time zone), the same for the same ``n``: the kinds in the shares of
    MIX, each with a zone drawn among ZONES."""
    r = random.Random(SEED)
    kinds = r.choices(MIX, weights=[share for _, share, _ in MIX], k=n)
    return [(kind, draw(r), ZONES[r.randrange(len(ZONES))]) for kind, _, draw in kinds]


# ---------------------------------------------------------------------------- due, independently
_DOW = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}


def _field_matches(spec: str, value: int, last: int | None = None) -> bool:
    """One cron field of the forms this script writes: ``*``, ``*/n``, ``a-b``, ``n``, a day
    name, ``L`` (``last``: the last day of the month)."""
    if spec == "*":
        return True
    if spec.startswith("*/"):
        return value % int(spec[2:]) == 0
    if spec == "L":
        return value == last
    if "-" in spec:
        low, high = spec.split("-")
        return int(low) <= value <= int(high)
    return value == int(_DOW.get(spec, spec))


def due_at(expression: str, zone: str, at: float) -> bool:
    """Is ``at`` (a whole minute) a tick of ``expression`` in ``zone``? Written apart from
    runlane's cron module (and cronsim) to check what it fires. Restricted day of month and
    day of week are never combined in MIX, so no OR rule is needed."""
    local = datetime.fromtimestamp(at, ZoneInfo(zone))
    minute, hour, dom, month, dow = expression.split()
    following = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
    last = (following - timedelta(days=1)).day
    return (
        _field_matches(minute, local.minute)
        and _field_matches(hour, local.hour)
        and _field_matches(dom, local.day, last)
        and _field_matches(month, local.month)
        and _field_matches(dow, (local.weekday() + 1) % 7)
    )


# ---------------------------------------------------------------------------- stores


@runlane.schedules.task(id=TASK_ID, retry={"max_attempts": 1})
def scheduled(payload: runlane.schedules.ScheduledPayload) -> None:
    """Never executed: the benchmark starts no worker."""


@contextlib.contextmanager
def sqlite_store(clock: runlane.FakeClock, args: argparse.Namespace) -> Iterator[Runtime]:
    folder = tempfile.mkdtemp(prefix="rlbench-schedules-")
    rt = runlane.configure(store=f"sqlite:///{folder}/bench.db", clock=clock, environment="prod")
    try:
        yield rt
    finally:
        _runtime.install(None)
        rt.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_store(clock: runlane.FakeClock, args: argparse.Namespace) -> Iterator[Runtime]:
    import redis

    prefix = f"rlbench-{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in args.redis_url else "?"
    rt = runlane.configure(
        store=f"{args.redis_url}{sep}prefix={prefix}",
        broker="redis",
        clock=clock,
        environment="prod",
    )
    try:
        yield rt
    finally:
        _runtime.install(None)
        rt.close()
        client = redis.Redis.from_url(args.redis_url)
        try:
            for keys in h.chunks(list(client.scan_iter(match=f"{prefix}:*", count=1000)), 1000):
                client.delete(*keys)
        finally:
            client.close()


STORES = {"sqlite": sqlite_store, "redis": redis_store}


# ---------------------------------------------------------------------------- measurements


class BenchError(RuntimeError):
    """A correctness check failed."""


@dataclass
class Minute:
    """The passes of ``fire_due`` at one time, until one fires nothing."""

    at: float
    due: int  # schedules due, computed independently
    plans: int = 0  # distinct (cron, time zone) among them
    fired: int = 0
    passes: list[tuple[int, float]] = field(default_factory=list)  # (fired, seconds)

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.passes)

    @property
    def firing_passes(self) -> int:
        return sum(1 for n, _ in self.passes if n)

    @property
    def slowest(self) -> float:
        return max(s for _, s in self.passes)


@dataclass
class StoreResult:
    store: str
    n: int = 0
    create_seconds: float = 0.0
    busy: Minute | None = None
    timers: Timers | None = None
    ordinary: Minute | None = None
    idle_n: list[float] = field(default_factory=list)
    idle_small: list[float] = field(default_factory=list)
    small_n: int = 0
    checks: list[str] = field(default_factory=list)
    profile: Profile | None = None


def create_schedules(
    mix: list[tuple[str, str, str]],
) -> tuple[list[runlane.schedules.Schedule], float]:
    """Every schedule of ``mix`` through the public API; (the schedules, seconds taken)."""
    made = []
    with h.Stopwatch() as sw:
        for _kind, expression, zone in mix:
            made.append(runlane.schedules.create(task=scheduled, cron=expression, timezone=zone))
    return made, sw.seconds


def expected_due(
    made: list[runlane.schedules.Schedule], at: float, stored: bool = True
) -> tuple[list[str], int]:
    """The ids of the schedules due at ``at`` (by the script's own matcher) and how many
    distinct (cron, time zone) they have; with ``stored``, a check that the next tick runlane
    stored for each (as created) agrees."""
    due = [s for s in made if due_at(s.cron, s.timezone, at)]
    ids = [s.id for s in due]
    if stored:
        nexts = {s.id for s in made if s.next_run is not None and s.next_run.timestamp() <= at}
        if nexts != set(ids):
            raise BenchError(
                f"{len(nexts ^ set(ids))} schedule(s) where runlane's next tick and the "
                "script's own matcher disagree about the boundary"
            )
    return ids, len({(s.cron, s.timezone) for s in due})


class Timers:
    """Wall-clock timers around the calls the leader's pass is made of (the due query, the
    cron computations, the engine's run preparation, the store's create_runs, the broker
    send), patched in for one measurement and removed after: about a microsecond a call, under
    1 % of a tick. A call made inside another of the same part is not counted again."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._depth: dict[str, int] = {}
        self._patched: list[tuple[object, str, object, bool]] = []

    def wrap(self, owner: object, attr: str, part: str) -> None:
        original = getattr(owner, attr, None)
        if original is None or inspect.isgeneratorfunction(original):
            return  # absent in this version of runlane, or a generator (timed by its caller)
        own = attr in vars(owner) if hasattr(owner, "__dict__") else False
        self.seconds.setdefault(part, 0.0)
        self._depth.setdefault(part, 0)

        @functools.wraps(original)
        def timed(*args: object, **kwargs: object) -> object:
            self._depth[part] += 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth[part] -= 1
                if not self._depth[part]:
                    self.seconds[part] += time.perf_counter() - started

        setattr(owner, attr, timed)
        self._patched.append((owner, attr, original, own))

    @contextlib.contextmanager
    def around(self, rt: Runtime) -> Iterator[Timers]:
        from runlane.core import cron

        self.wrap(rt.store, "due_schedules", DUE)
        for name in ("next_tick", "next_ticks", "last_tick_at_or_before"):
            self.wrap(cron, name, CRON)
        self.wrap(rt.engine, "_prepare", PREPARE)
        self.wrap(rt.store, "create_runs", CREATE)
        self.wrap(rt.engine, "send", SEND)
        try:
            yield self
        finally:
            for owner, attr, original, own in reversed(self._patched):
                if own or isinstance(owner, types.ModuleType):
                    setattr(owner, attr, original)
                else:  # an instance attribute shadowing the class's method
                    delattr(owner, attr)
            self._patched.clear()


def fire_minute_caches() -> list[Callable[[], None]]:
    """The ``cache_clear`` of runlane's caches keyed by the firing time (a leader computes a
    busy minute's plan once per cron and zone; a later minute cannot reuse it)."""
    found = []
    for name in dir(_schedules):
        clear = getattr(getattr(_schedules, name), "cache_clear", None)
        if clear is not None:
            found.append(clear)
    return found


def fresh_minute() -> None:
    """Forget what an earlier measurement of the same minute computed (another store's, in
    this process): each is measured as a leader that fires this minute for the first time."""
    for clear in fire_minute_caches():
        clear()


def fire_minute(
    rt: Runtime, at: float, due: int, plans: int, timers: Timers | None = None
) -> Minute:
    """``fire_due`` at ``at`` (the clock set there), pass after pass, until one fires nothing;
    with ``timers``, its parts timed."""
    rt.clock.set(at)  # type: ignore[attr-defined]
    fresh_minute()
    minute = Minute(at, due, plans)
    with timers.around(rt) if timers is not None else contextlib.nullcontext():
        while True:
            started = time.perf_counter()
            fired = _schedules.fire_due(rt, at)
            minute.passes.append((fired, time.perf_counter() - started))
            minute.fired += fired
            if not fired or len(minute.passes) > 1000:
                return minute


def idle_passes(rt: Runtime, at: float, repeats: int) -> list[float]:
    """Seconds of ``fire_due`` at ``at`` when nothing is due, ``repeats`` times."""
    rt.clock.set(at)  # type: ignore[attr-defined]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fired = _schedules.fire_due(rt, at)
        times.append(time.perf_counter() - started)
        if fired:
            raise BenchError(f"an idle pass fired {fired} schedule(s)")
    return times


def total_runs(rt: Runtime) -> int:
    return sum(rt.store.count_runs().values())


def check_minute(
    rt: Runtime, minute: Minute, due_ids: list[str], runs_before: int, checks: list[str]
) -> None:
    """One run a due schedule, with the id its tick derives; no other run; the schedules moved
    on (none due any more); a second fire_due at the same time creates none."""
    label = _hhmm(minute.at)
    created = total_runs(rt) - runs_before
    if minute.fired != len(due_ids) or created != len(due_ids):
        raise BenchError(
            f"{label}: {len(due_ids)} schedules due, fire_due reported {minute.fired}, "
            f"{created} runs created"
        )
    wanted = [_schedules.tick_run_id(sid, minute.at) for sid in due_ids]
    found = set()
    for ids in h.chunks(wanted, 500):
        found.update(r.id for r in rt.store.get_runs(ids))
    if len(found) != len(wanted):
        raise BenchError(f"{label}: {len(wanted) - len(found)} due tick(s) have no run")
    if rt.store.due_schedules(now=minute.at, limit=10):
        raise BenchError(f"{label}: schedules still due after firing")
    again = _schedules.fire_due(rt, minute.at)
    if again or total_runs(rt) - runs_before != len(due_ids):
        raise BenchError(f"{label}: a second fire_due at the same time created {again} run(s)")
    checks.append(
        f"{label}: {created:,} runs = {len(due_ids):,} due ticks, one each (ids checked); "
        "a second fire_due created 0"
    )


def _hhmm(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S UTC")


# ---------------------------------------------------------------------------- profile

Key = tuple[str, int, str]  # a pstats function: (path, line, name)


def _path(key: Key) -> str:
    return key[0].replace(os.sep, "/")


def _in_backend(name: str) -> Callable[[Key], bool]:
    return lambda k: k[2] == name and "runlane/backends/" in _path(k)


DUE = "store: due_schedules (the due query)"
CRON = "cron: latest due tick, next 5 ticks"
PAYLOAD = "payload: pydantic (ScheduledPayload)"
PREPARE = "engine: _prepare the run (options, payload)"
CREATE = "store: create_runs with the ticks' guard"
SEND = "broker: send (Engine.send)"
OTHER = "other (payloads, run ids, engine bookkeeping)"


def _from_runlane(k: Key) -> bool:
    return "runlane/" in _path(k)


# (part, which functions are the part, which callers count). A part's time is the cumulative
# time of the calls into it from those callers outside it: a part calling itself, or a
# wrapper around a store verb, is counted once; a generator resumed by ``next()`` (a builtin)
# is not counted again. The parts do not call one another.
PARTS: tuple[tuple[str, Callable[[Key], bool], Callable[[Key], bool]], ...] = (
    (DUE, _in_backend("due_schedules"), _from_runlane),
    (
        CRON,
        lambda k: _path(k).endswith("runlane/core/cron.py"),
        _from_runlane,
    ),
    (  # the scheduler's own pydantic calls (the engine's are part of _prepare)
        PAYLOAD,
        lambda k: "pydantic" in _path(k) or (k[0] == "~" and "pydantic" in k[2]),
        lambda k: _path(k).endswith("runlane/core/schedules.py"),
    ),
    (PREPARE, lambda k: k[2] == "_prepare", _from_runlane),
    (CREATE, _in_backend("create_runs"), _from_runlane),
    (
        SEND,
        lambda k: k[2] == "send" and "runlane/core/engine" in _path(k),
        _from_runlane,
    ),
)


@dataclass
class Profile:
    seconds: float  # wall time of the profiled passes
    fired: int
    total: float  # cumulative time of fire_due under the profiler
    shares: list[tuple[str, float]]  # (part, seconds under the profiler)
    top: list[tuple[str, int, float, float]]  # (function, calls, own s, cumulative s)


def _entered(raw: dict, part: Callable[[Key], bool], counted: Callable[[Key], bool]) -> float:
    """Cumulative seconds of the calls into ``part`` from the ``counted`` callers outside it."""
    seconds = 0.0
    for key, (_cc, _nc, _tt, _ct, callers) in raw.items():
        if part(key):
            for caller, (_c, _n, _t, ct) in callers.items():
                if counted(caller) and not part(caller):
                    seconds += ct
    return seconds


def profile_minute(rt: Runtime, at: float, top: int) -> Profile:
    """The passes of ``fire_due`` at ``at`` under cProfile, split into PARTS."""
    profiler = cProfile.Profile()
    rt.clock.set(at)  # type: ignore[attr-defined]
    fresh_minute()
    fired = 0
    with h.Stopwatch() as sw:
        profiler.enable()
        try:
            while True:
                n = _schedules.fire_due(rt, at)
                fired += n
                if not n:
                    break
        finally:
            profiler.disable()
    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(
        ct
        for key, (_cc, _nc, _tt, ct, _callers) in raw.items()
        if key[2] == "fire_due" and _path(key).endswith("runlane/core/schedules.py")
    )
    shares = [(name, _entered(raw, part, counted)) for name, part, counted in PARTS]
    shares.append((OTHER, max(0.0, total - sum(s for _, s in shares))))
    ordered = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    top_rows = [
        (_short(path, line, func), nc, tt, ct)
        for (path, line, func), (_cc, nc, tt, ct, _callers) in ordered
    ]
    return Profile(sw.seconds, fired, total, shares, top_rows)


def _short(path: str, line: int, func: str) -> str:
    path = path.replace(os.sep, "/")
    if "/runlane/" in path:
        path = "runlane/" + path.rsplit("/runlane/", 1)[1]
    else:
        for marker in ("site-packages/", "lib/python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
    if path == "~":
        return func
    return f"{path}:{line}({func})"


# ---------------------------------------------------------------------------- one store


def measure_store(name: str, args: argparse.Namespace) -> StoreResult:
    setup = STORES[name]
    res = StoreResult(store=name, n=args.schedules)
    mix = schedule_mix(args.schedules)
    clock = runlane.FakeClock(CREATED_AT)
    nxt = BOUNDARY + 60
    with setup(clock, args) as rt:
        print(f"{name}: creating {args.schedules:,} schedules...", flush=True)
        made, res.create_seconds = create_schedules(mix)
        busy_ids, plans = expected_due(made, BOUNDARY)
        before = total_runs(rt)
        res.timers = Timers()
        res.busy = fire_minute(rt, BOUNDARY, len(busy_ids), plans, res.timers)
        check_minute(rt, res.busy, busy_ids, before, res.checks)
        res.idle_n = idle_passes(rt, BOUNDARY + 1, args.idle_repeats)
        # the next minute, an ordinary one (the next ticks returned by create are stale now)
        next_ids, plans = expected_due(made, nxt, stored=False)
        before = total_runs(rt)
        res.ordinary = fire_minute(rt, nxt, len(next_ids), plans)
        check_minute(rt, res.ordinary, next_ids, before, res.checks)
    res.small_n = max(1, args.schedules // 100)
    clock = runlane.FakeClock(CREATED_AT)
    with setup(clock, args) as rt:
        made, _ = create_schedules(schedule_mix(res.small_n))
        small_ids, plans = expected_due(made, BOUNDARY)
        before = total_runs(rt)
        minute = fire_minute(rt, BOUNDARY, len(small_ids), plans)
        check_minute(rt, minute, small_ids, before, res.checks)
        res.idle_small = idle_passes(rt, BOUNDARY + 1, args.idle_repeats)
    if args.profile:
        print(f"{name}: the busy minute again under cProfile...", flush=True)
        clock = runlane.FakeClock(CREATED_AT)
        with setup(clock, args) as rt:
            create_schedules(mix)
            res.profile = profile_minute(rt, BOUNDARY, args.top)
    return res


# ---------------------------------------------------------------------------- report


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.3f} ms" if ms < 1 else f"{ms:,.1f} ms"


def report(results: list[StoreResult], args: argparse.Namespace, command: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(
        f"[bold]Schedules: {args.schedules:,} active schedules ({len(MIX)} kinds of cron, "
        f"{len(ZONES)} time zones), firing a minute's due ticks[/bold]"
    )
    console.print(f"  [dim]command:[/dim] {command}")
    settings = {
        "busy minute": datetime.fromtimestamp(BOUNDARY, timezone.utc).strftime(
            "%a %Y-%m-%d %H:%M UTC"
        ),
        "fire limit a pass": f"{_schedules.FIRE_LIMIT:,}",
        "idle repeats": args.idle_repeats,
    }
    if "redis" in [r.store for r in results]:
        settings["redis"] = args.redis_url
    for info in (h.machine_info(), settings):
        console.print("  " + "  ".join(f"[dim]{k}:[/dim] {v}" for k, v in info.items()))
    counts = dict.fromkeys((kind for kind, _, _ in MIX), 0)
    for kind, _, _ in schedule_mix(args.schedules):
        counts[kind] += 1
    console.print(
        "  [dim]mix:[/dim] " + ", ".join(f"{kind} {n:,}" for kind, n in counts.items() if n)
    )

    table = Table(show_lines=False)
    table.add_column("measurement")
    for r in results:
        table.add_column(r.store, justify="right", style="bold")
    table.add_column("detail", style="dim")

    def row(label: str, values: list[str], detail: str = "") -> None:
        table.add_row(label, *values, detail)

    row(
        "create (schedules.create)",
        [f"{h.rate(r.n, r.create_seconds):,.0f}/s" for r in results],
        " · ".join(f"{r.store}: {r.n:,} in {r.create_seconds:.2f} s" for r in results),
    )
    table.add_section()
    for label, get in (("busy minute", "busy"), ("next minute", "ordinary")):
        minutes = [getattr(r, get) for r in results]
        at = _hhmm(minutes[0].at)
        row(
            f"{label} {at}: ticks due / fired",
            [f"{m.due:,} / {m.fired:,}" for m in minutes],
            f"{minutes[0].plans:,} distinct (cron, time zone) among them",
        )
        row(
            f"{label}: fire_due, leader's time",
            [_ms(m.seconds) for m in minutes],
            " · ".join(
                f"{r.store}: {m.firing_passes} pass(es) + 1 empty, slowest {_ms(m.slowest)}"
                for r, m in zip(results, minutes, strict=True)
            ),
        )
        row(
            f"{label}: ticks fired a second",
            [f"{h.rate(m.fired, m.seconds):,.0f}/s" for m in minutes],
        )
        row(
            f"{label}: per tick",
            [f"{1000 * m.seconds / max(1, m.fired):.2f} ms" for m in minutes],
        )
        table.add_section()
    row(
        "idle pass, N schedules (median)",
        [_ms(statistics.median(r.idle_n)) for r in results],
        f"fire_due 1 s after the boundary, nothing due; N = {args.schedules:,}",
    )
    row(
        "idle pass, N/100 schedules (median)",
        [_ms(statistics.median(r.idle_small)) for r in results],
        f"N/100 = {results[0].small_n:,}, a second store",
    )
    row(
        "idle: N ÷ N/100",
        [
            f"{h.ratio(statistics.median(r.idle_n), statistics.median(r.idle_small)):.2f}x"
            for r in results
        ],
        "≈ 1: O(due); ≈ 100: O(schedules)",
    )
    table.add_section()
    row(
        "busy minute < 1 s of the leader's time",
        [
            "[green]met[/green]" if r.busy.seconds < 1 else "[red]NOT met[/red]"
            for r in results
            if r.busy is not None
        ],
        "the issue's target: well under a second",
    )
    row("checks", ["[green]passed[/green]" for _ in results], "see below")
    console.print(table)
    for r in results:
        for line in r.checks:
            console.print(f"  [dim]{r.store} check:[/dim] {line}")
    for r in results:
        p, t, busy = r.profile, r.timers, r.busy
        if t is None or busy is None:
            continue
        title = (
            f"{r.store}: where the busy minute's time goes ({busy.fired:,} ticks, "
            f"{busy.seconds:.2f} s; timers in that pass"
        )
        if p is not None:
            title += (
                f"; cProfile of the same minute on a third store: {p.seconds:.2f} s under "
                "the profiler"
            )
        prof = Table(title=title + ")")
        prof.add_column("part")
        prof.add_column("wall (timers)", justify="right")
        prof.add_column("share", justify="right")
        prof.add_column("per tick", justify="right")
        if p is not None:
            prof.add_column("cProfile", justify="right")
            prof.add_column("share", justify="right")
        timed = dict(t.seconds)
        timed[OTHER] = max(0.0, busy.seconds - sum(timed.values()))
        profiled = dict(p.shares) if p is not None else {}
        for name in [DUE, CRON, PAYLOAD, PREPARE, CREATE, SEND, OTHER]:
            cells = ["-", "-", "-"]
            if name in timed:
                seconds = timed[name]
                cells = [
                    f"{seconds:.3f} s",
                    f"{100 * h.ratio(seconds, busy.seconds):.0f}%",
                    f"{1e6 * seconds / max(1, busy.fired):,.0f} µs",
                ]
            elif name == PAYLOAD:
                cells[0] = "(in other)"
            if p is not None:
                seconds = profiled.get(name, 0.0)
                cells += [f"{seconds:.3f} s", f"{100 * h.ratio(seconds, p.total):.0f}%"]
            prof.add_row(name, *cells)
        console.print(prof)
        if p is None:
            continue
        own = Table(title=f"{r.store}: top {len(p.top)} functions by own time (cProfile)")
        own.add_column("function")
        own.add_column("calls", justify="right")
        own.add_column("own", justify="right")
        own.add_column("cumulative", justify="right")
        for func, calls, tt, ct in p.top:
            own.add_row(func, f"{calls:,}", f"{tt:.3f} s", f"{ct:.3f} s")
        console.print(own)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--schedules", type=int, default=10_000, help="default 10000")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15",
        help="default $REDIS_URL, else redis://127.0.0.1:6379/15",
    )
    parser.add_argument(
        "--idle-repeats", type=int, default=50, help="idle passes timed (default 50)"
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the cProfile pass (a third store of N schedules)",
    )
    parser.add_argument("--top", type=int, default=15, help="functions in the profile's list")
    args = parser.parse_args(argv)
    if args.schedules < 100 or args.idle_repeats < 1:
        parser.error("--schedules must be >= 100 and --idle-repeats >= 1")
    stores = ["sqlite", "redis"] if args.store == "both" else [args.store]
    if "redis" in stores:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        try:
            client.ping()
        except redis.exceptions.ConnectionError as exc:
            print(f"Redis not reachable at {args.redis_url}: {exc}", file=sys.stderr)
            return 2
        finally:
            client.close()
    command = " ".join(
        ["python benchmarks/bench_schedules.py", *(sys.argv[1:] if argv is None else argv)]
    )
    results = []
    try:
        for name in stores:
            results.append(measure_store(name, args))
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    report(results, args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
