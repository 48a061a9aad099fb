"""The schedules high-availability harness: three scheduler processes on one Redis store, a
shared fake clock, the leader killed with SIGKILL while the clock is stepped minute by minute.

Used by ``tests/test_schedules_ha.py`` (a reduced form by default, the two full DST days under
``-m slow``). Plain code: no pytest here.

Each scheduler process runs ``python -m tests.schedules_ha_support``: it configures runlane on
the shared Redis store (a private key prefix) with a :class:`SharedClock` whose ``now()``
reads the time the driver publishes in a Redis key, defines the scheduled tasks (so their
DECLARATIVE schedules are written as it starts, as any worker does) and runs the Host of a
worker without its executor threads (the runs stay QUEUED: this is about firing them): it
takes the store's engine lease and, as the leader, fires the schedules' due ticks.

The driver (:func:`run_ha`) starts three of them, then steps the clock to every minute of the
windows it is given, one step at a time: after each step it polls the store until every
schedule's ``last_at`` is the latest tick expected at that time (generous deadline). At chosen
steps it kills the current leader (the owner of the engine lease) with SIGKILL right after
moving the clock, while that leader is about to fire, and starts a replacement, so three
processes stay up. Between two windows the clock jumps forward by months: each schedule then
fires once, for its latest missed tick (the documented catch-up).

The expected ticks are computed here with cronsim directly (not runlane's cron module).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis
from cronsim import CronSim

import runlane
from runlane.core.clock import Clock
from runlane.core.host import Host

REPO = Path(__file__).resolve().parent.parent
TZ = "America/New_York"
SCHEDULES = {  # task id -> cron pattern, all in America/New_York
    "ha-every-minute": "* * * * *",
    "ha-daily-0230": "30 2 * * *",  # 02:30 does not exist on the spring-forward day
    "ha-daily-0130": "30 1 * * *",  # 01:30 happens twice on the fall-back day
}
MINUTELY = "ha-every-minute"
# and one IMPERATIVE schedule the driver makes with runlane.schedules.create (of the 02:30 task):
# 02:00 does not exist on the spring-forward day (it fires at 03:00 EDT)
IMPERATIVE = "imperative-0200"
PATTERNS = {**SCHEDULES, IMPERATIVE: "0 2 * * *"}  # every schedule by name
ENVIRONMENT = "staging"  # no dev TTL: the runs stay QUEUED (nobody executes them)
LEASE_TIMEOUT = 2.0
ENGINE_INTERVAL = 0.05
PROCESSES = 3
STEP_DEADLINE = 60.0  # seconds a step may take (a failover takes ~1-2 s)
READY = "scheduler ready"


def clock_key(prefix: str) -> str:
    return f"{prefix}:test:clock"


class SharedClock(Clock):
    """The time the driver publishes (a Redis key), read on every call: one clock for every
    process."""

    def __init__(self, url: str, key: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._key = key

    def now(self) -> float:
        value = self._client.get(self._key)
        if value is None:
            raise RuntimeError(f"the shared clock {self._key!r} is not set")
        return float(value)


def define_tasks() -> dict[str, Any]:
    tasks = {}
    for task_id, pattern in SCHEDULES.items():

        def body(payload: runlane.ScheduledPayload) -> str:
            return payload.timestamp.isoformat()

        decorate = runlane.schedules.task(id=task_id, cron={"pattern": pattern, "timezone": TZ})
        tasks[task_id] = decorate(body)
    return tasks


def main() -> None:
    """A scheduler process (``python -m tests.schedules_ha_support``), configured from
    ``HA_REDIS_URL``, ``HA_PREFIX`` and ``HA_NAME``; runs until SIGTERM (or SIGKILL)."""
    import logging

    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    url, prefix, name = (os.environ[k] for k in ("HA_REDIS_URL", "HA_PREFIX", "HA_NAME"))
    rt = runlane.configure(
        store=f"{url}?prefix={prefix}",
        broker="redis",
        environment=ENVIRONMENT,
        clock=SharedClock(url, clock_key(prefix)),
        engine_interval=ENGINE_INTERVAL,
        lease_timeout=LEASE_TIMEOUT,
        retention=None,
    )
    define_tasks()
    # what a worker does as it starts (Worker.start, or a Celery/Dramatiq worker process's
    # ProcessHost), minus the executor threads: its tasks registered and their declarative
    # schedules written, then the Host's housekeeping loop (engine lease, ticks as leader)
    rt.engine.deploy(rt.registry.all())
    host = Host(name, rt).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"{READY} {name} pid {os.getpid()}", flush=True)
    stop.wait()
    host.stop()


# ---------------------------------------------------------------------- expected ticks
def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def local_day(year: int, month: int, day: int) -> tuple[float, float]:
    """[start, end) of a calendar day in New York, epoch seconds."""
    zone = ZoneInfo(TZ)
    start = datetime(year, month, day, tzinfo=zone)
    end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=zone)
    return start.timestamp(), end.timestamp()


def ticks_between(
    pattern: str, after: float, until: float, limit: int | None = None
) -> list[float]:
    """cronsim's ticks of ``pattern`` in New York strictly after ``after``, up to ``until``
    (at most ``limit`` of them)."""
    out: list[float] = []
    for tick in CronSim(pattern, datetime.fromtimestamp(after, ZoneInfo(TZ))):
        t = tick.timestamp()
        if t > until or (limit is not None and len(out) >= limit):
            return out
        out.append(t)
    return out


def last_tick_at_or_before(pattern: str, at: float) -> float:
    start = datetime.fromtimestamp(at + 0.5, ZoneInfo(TZ))
    return next(iter(CronSim(pattern, start, reverse=True))).timestamp()


# ---------------------------------------------------------------------- processes
class Scheduler:
    def __init__(self, n: int, env: dict[str, str], workdir: Path) -> None:
        self.name = f"ha{n}"
        self.log = workdir / f"{self.name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.schedules_ha_support"],
                cwd=REPO,
                env={**env, "HA_NAME": self.name},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.killed = False

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited early:\n{self.output()[-3000:]}")
        return READY in self.output()

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


# ---------------------------------------------------------------------- the harness
@dataclass
class HAConfig:
    windows: list[tuple[float, float]]  # [first tick, last tick] of each window, in order
    kills: int
    kill_at: list[float] = field(default_factory=list)  # ticks whose step kills the leader
    seed: int = 0


@dataclass
class HAReport:
    expected: dict[str, list[float]]  # schedule task -> every tick expected to fire
    catch_up: dict[str, list[float]]  # schedule task -> the catch-up ticks (at each jump)
    fired: dict[str, list[float]]  # schedule task -> payload timestamps of its runs
    run_ids: dict[str, set[str]]
    expected_ids: dict[str, set[str]]
    payload_defects: list[str]  # runs whose payload does not describe their tick
    total_runs: int
    steps: int = 0
    kills: list[str] = field(default_factory=list)  # "tick: killed <name> (failover s)"
    errors: list[str] = field(default_factory=list)  # ERROR lines in the processes' logs
    seconds: float = 0.0

    def text(self) -> str:
        lines = [f"{self.steps} steps, {len(self.kills)} leader kills in {self.seconds:.1f} s"]
        for task_id, ticks in self.expected.items():
            lines.append(f"  {task_id}: {len(self.fired[task_id])} runs, {len(ticks)} expected")
        lines += [f"  kill at {k}" for k in self.kills]
        lines += [f"  ERROR: {e}" for e in self.errors[:20]]
        lines += [f"  payload: {d}" for d in self.payload_defects[:20]]
        return "\n".join(lines)


def _list_run_ids(store: Any, schedule_id: str) -> list[str]:
    from runlane.core.types import RunQuery

    ids: list[str] = []
    after = None
    while True:
        page, after = store.list_runs(RunQuery(schedule=schedule_id, limit=500, after=after))
        ids += [r.id for r in page]
        if after is None:
            return ids


def create_imperative(redis_url: str, prefix: str) -> str:
    """Make the IMPERATIVE schedule through the public API, on the shared clock (its task is
    known to the store: the schedulers registered it)."""
    from runlane.core import runtime

    runlane.configure(
        store=f"{redis_url}?prefix={prefix}",
        broker="redis",
        environment=ENVIRONMENT,
        clock=SharedClock(redis_url, clock_key(prefix)),
    )
    try:
        made = runlane.schedules.create(
            task="ha-daily-0230",
            cron=PATTERNS[IMPERATIVE],
            timezone=TZ,
            external_id="ha-driver",
            deduplication_key="ha-imperative",
        )
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()
    return made.id


def run_ha(cfg: HAConfig, redis_url: str, prefix: str, workdir: Path) -> HAReport:
    """Run the harness (see the module docstring); every process it started is killed at the
    end. The caller deletes the key prefix."""
    from runlane.backends.redis import RedisStore
    from runlane.core import schedules

    rng = random.Random(cfg.seed)
    began = time.monotonic()
    control = redis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, ENVIRONMENT, prefix=prefix)
    lease_key = store.prefix + "lease:engine"
    ids = {task_id: schedules.declarative_id(task_id) for task_id in SCHEDULES}
    env = {
        **os.environ,
        "HA_REDIS_URL": redis_url,
        "HA_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    procs: list[Scheduler] = []

    def spawn() -> Scheduler:
        proc = Scheduler(len(procs) + 1, env, workdir)
        procs.append(proc)
        return proc

    def set_clock(when: float) -> None:
        control.set(clock_key(prefix), repr(when))

    # every tick each schedule should fire, and the latest of them at a given time
    expected: dict[str, list[float]] = {t: [] for t in PATTERNS}
    catch_up: dict[str, list[float]] = {t: [] for t in PATTERNS}

    def diagnose(what: str) -> str:
        rows = {t: store.get_schedule(sid) for t, sid in ids.items()}
        parts = [f"timed out waiting for {what}"]
        for task_id, row in rows.items():
            last = row.last_at if row else None
            nxt = row.next_at if row else None
            parts.append(
                f"  {task_id}: last_at {utc(last) if last else None}, "
                f"next_at {utc(nxt) if nxt else None}"
            )
        parts.append(
            f"  clock {control.get(clock_key(prefix))!r}, lease {control.get(lease_key)!r}"
        )
        for p in procs:
            state = "killed" if p.killed else ("up" if p.proc.poll() is None else "exited")
            parts.append(f"  --- {p.name} ({state}):\n{p.output()[-1500:]}")
        return "\n".join(parts)

    def settle(at: float, deadline: float = STEP_DEADLINE) -> None:
        """Wait until every schedule's last_at is its latest expected tick at or before
        ``at``."""
        want: dict[str, float | None] = {}
        for task_id, ticks in expected.items():
            i = bisect.bisect_right(ticks, at)
            want[task_id] = ticks[i - 1] if i else None
        until = time.monotonic() + deadline
        while True:
            rows = {t: store.get_schedule(sid) for t, sid in ids.items()}
            got = {t: (r.last_at if r else None) for t, r in rows.items()}
            if got == want:
                return
            late = {t: g for t, g in got.items() if g is not None and g > (want[t] or 0.0)}
            if late:
                raise AssertionError(f"a schedule fired past the clock {utc(at)}: {late}")
            if time.monotonic() > until:
                raise AssertionError(diagnose(f"every schedule to fire its ticks up to {utc(at)}"))
            time.sleep(0.005)

    def leader() -> Scheduler:
        def find() -> Scheduler | None:
            owner = control.get(lease_key)
            if owner is None:
                return None
            name = owner.decode() if isinstance(owner, bytes) else str(owner)
            for p in procs:
                if p.name == name and not p.killed and p.proc.poll() is None:
                    return p
            return None

        until = time.monotonic() + STEP_DEADLINE
        while (found := find()) is None:
            if time.monotonic() > until:
                raise AssertionError(diagnose("a live leader"))
            time.sleep(0.01)
        return found

    kills: list[str] = []
    kill_ticks = set(cfg.kill_at)
    steps = 0
    try:
        first = cfg.windows[0][0]
        start = first - 30
        set_clock(start)
        for _ in range(PROCESSES):
            spawn()
        deadline = time.monotonic() + 120
        for p in procs:
            while not p.ready():
                if time.monotonic() > deadline:
                    raise AssertionError(diagnose(f"{p.name} to start"))
                time.sleep(0.05)
        ids[IMPERATIVE] = create_imperative(redis_url, prefix)
        prev_clock: float | None = None
        for w, (lo, hi) in enumerate(cfg.windows):
            if w:  # the clock jumps to just before the window: one catch-up run each
                jump_to = lo - 30
                for task_id, pattern in PATTERNS.items():
                    latest = last_tick_at_or_before(pattern, jump_to)
                    assert prev_clock is not None
                    if latest > prev_clock:  # missed while the clock jumped
                        expected[task_id].append(latest)
                        catch_up[task_id].append(latest)
                set_clock(jump_to)
                settle(jump_to)
                prev_clock = jump_to
            before = lo - 30
            for task_id, pattern in PATTERNS.items():
                expected[task_id] += ticks_between(pattern, before, hi)
            for tick in ticks_between(SCHEDULES[MINUTELY], before, hi):
                at = tick + rng.choice((0.0, 0.0, 0.0, 1.0, 17.0, 42.5))  # within the minute
                killing = tick in kill_ticks
                victim = leader() if killing else None
                set_clock(at)
                prev_clock = at
                steps += 1
                if victim is not None:
                    delay = rng.uniform(0.0, ENGINE_INTERVAL)  # before, during or after it fires
                    time.sleep(delay)
                    t0 = time.monotonic()
                    victim.kill()
                    spawn()
                    settle(at)
                    kills.append(
                        f"{utc(tick)}: {victim.name} killed {delay * 1000:.0f} ms after the "
                        f"clock moved; the step settled {time.monotonic() - t0:.2f} s after "
                        f"the kill; leader now {leader().name}"
                    )
                else:
                    settle(at)
        # the processes must not fire anything more at this time
        time.sleep(4 * ENGINE_INTERVAL)
        settle(prev_clock or start)
    finally:
        for p in procs:
            if not p.killed:
                p.stop()
    errors = [
        f"{p.name}: {line}" for p in procs for line in p.output().splitlines() if " ERROR " in line
    ]
    run_ids: dict[str, set[str]] = {}
    fired: dict[str, list[float]] = {}
    expected_ids: dict[str, set[str]] = {}
    payload_defects: list[str] = []
    for task_id, sid in ids.items():
        listed = _list_run_ids(store, sid)
        runs = store.get_runs(listed)
        run_ids[task_id] = set(listed)
        payloads = sorted(
            (runlane.ScheduledPayload.model_validate(r.payload) for r in runs),
            key=lambda p: p.timestamp,
        )
        fired[task_id] = [p.timestamp.timestamp() for p in payloads]
        expected_ids[task_id] = {schedules.tick_run_id(sid, t) for t in expected[task_id]}
        payload_defects += [
            f"run {r.id} of {task_id}: schedule_id {r.schedule_id}"
            for r in runs
            if r.schedule_id != sid
        ]
        previous = None
        for pay in payloads:  # each names the tick fired before it, and the next one
            tick = pay.timestamp.timestamp()
            following = ticks_between(PATTERNS[task_id], tick, float("inf"), limit=1)
            last = pay.last_timestamp.timestamp() if pay.last_timestamp else None
            kind = "IMPERATIVE" if task_id == IMPERATIVE else "DECLARATIVE"
            if last != previous or pay.schedule_id != sid or pay.timezone != TZ or pay.type != kind:
                payload_defects.append(
                    f"{task_id} {utc(tick)}: last_timestamp {pay.last_timestamp}, expected "
                    f"{utc(previous) if previous else None}; {pay.schedule_id} {pay.timezone}"
                )
            if not pay.upcoming or pay.upcoming[0].timestamp() != following[0]:
                payload_defects.append(f"{task_id} {utc(tick)}: upcoming {pay.upcoming[:1]}")
            previous = tick
    total = sum(store.count_runs().values())
    store.close()
    control.close()
    return HAReport(
        expected=expected,
        catch_up=catch_up,
        fired=fired,
        run_ids=run_ids,
        expected_ids=expected_ids,
        payload_defects=payload_defects,
        total_runs=total,
        steps=steps,
        kills=kills,
        errors=errors,
        seconds=time.monotonic() - began,
    )


def new_prefix() -> str:
    return f"rltest-{uuid.uuid4().hex[:12]}"


if __name__ == "__main__":
    main()
