"""A real minutely schedule on every backend, with the system clock and workers started the way
their users start them:

- the embedded default: ``runlane worker project.py`` with nothing configured (a SQLite file
  under ``.runlane/`` and the local broker);
- the Redis store with the native Redis broker: ``runlane worker project.py``
  (``RUNLANE_STORE_URL=redis://...``);
- Celery: ``celery -A project worker`` (prefork) with runlane's CeleryBroker on Redis, the
  Redis store writing the messages itself;
- Dramatiq: ``dramatiq project`` with runlane's DramatiqBroker on Redis and a SQLite store (the
  outbox sends them).

The project declares ``@runlane.schedules.task(cron="* * * * *")``; each worker writes the
schedule as it starts, and its engine loop fires it: a run that COMPLETES with the payload's
``timestamp`` equal to its minute. The full form (``-m slow`` or RUNLANE_SLOW_TESTS=1) waits for
the next minute boundary on the system clock (the four start at once, so the file waits for one
boundary: up to a minute); the default form makes each schedule's tick due at once (its stored
next tick moved to the minute that has begun), so the leader fires it on its next pass. Nothing
asserts on timing: every wait polls with a generous deadline.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import runlane
from runlane.core import schedules
from runlane.core.types import RunQuery
from tests.adapters import REPO, FrameworkWorker, delete_redis_prefix, unique_prefix
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(400)

TASK_ID = "every-minute"
DEADLINE = 180.0  # seconds: a worker starts, the next minute comes, its run completes
READY = {  # a line each worker command prints once it consumes
    "embedded": "Worker running",
    "redis": "Worker running",
    "celery": " ready.",
    "dramatiq": "is ready for action",
}

# The users' module, written into each worker's directory. ``runlane worker`` configures runlane
# from the environment itself; a Celery or Dramatiq project configures it with its broker.
PROJECT = '''"""A minutely schedule (written by tests/test_schedules_backends.py)."""
import os

import runlane

KIND = os.environ["SB_KIND"]
if KIND == "celery":
    from tests.adapters import CeleryUnderTest

    harness = CeleryUnderTest(os.environ["SB_BROKER_URL"], prefix=os.environ["SB_PREFIX"])
    app = harness.app
    runlane.configure(store=os.environ["SB_STORE_URL"], broker=harness.broker)
elif KIND == "dramatiq":
    import dramatiq

    from tests.adapters import DramatiqUnderTest

    harness = DramatiqUnderTest(os.environ["SB_BROKER_URL"], prefix=os.environ["SB_PREFIX"])
    dramatiq.set_broker(harness.dramatiq_broker)
    runlane.configure(store=os.environ["SB_STORE_URL"], broker=harness.broker)


@runlane.schedules.task(id="every-minute", cron="* * * * *")
def every_minute(payload: runlane.ScheduledPayload, ctx: runlane.Context) -> dict:
    return {"timestamp": payload.timestamp.isoformat(), "run": ctx.run.id, "pid": os.getpid()}
'''


class Backend:
    """One backend: its worker command, running in a directory of its own, and a store the test
    reads it through."""

    def __init__(self, kind: str, tmp: Path, redis_url: str) -> None:
        self.kind = kind
        self.dir = tmp / kind
        self.dir.mkdir()
        (self.dir / "project.py").write_text(PROJECT)
        self.redis_url = redis_url
        self.prefixes: list[str] = []  # key prefixes on the shared Redis, deleted afterwards
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
        env.update(
            SB_KIND=kind,
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(self.dir), str(REPO), os.environ.get("PYTHONPATH")])
            ),
        )
        py = sys.executable
        if kind == "embedded":  # nothing configured: .runlane/runlane.db in the directory
            self.store_url = f"sqlite:///{self.dir}/.runlane/runlane.db"
            argv = [py, "-m", "runlane.cli", "worker", "project.py", "--concurrency", "2"]
        elif kind == "redis":
            self.store_url = self._redis_store()
            env["RUNLANE_STORE_URL"] = self.store_url
            argv = [py, "-m", "runlane.cli", "worker", "project.py", "--concurrency", "2"]
        else:
            broker_prefix = unique_prefix()
            self.prefixes.append(broker_prefix)
            if kind == "celery":  # the store on the same Redis writes Celery's messages
                self.store_url = self._redis_store()
                argv = [
                    py, "-m", "celery", "-A", "project", "worker", "-c", "2", "-n",
                    "sched@%h", "--loglevel=INFO", "--without-mingle", "--without-gossip",
                    "--without-heartbeat",
                ]  # fmt: skip
            else:  # a SQLite store: the engine's outbox sends the Dramatiq messages
                self.store_url = f"sqlite:///{self.dir}/runlane.db"
                argv = [py, "-m", "dramatiq", "project", "--processes", "1", "--threads", "2"]
            env.update(
                SB_BROKER_URL=redis_url, SB_PREFIX=broker_prefix, SB_STORE_URL=self.store_url
            )
        self.worker = FrameworkWorker(argv, env, self.dir / "worker.log", cwd=self.dir)
        self._store: Any = None

    def _redis_store(self) -> str:
        prefix = unique_prefix()
        self.prefixes.append(prefix)
        return f"{self.redis_url}?prefix={prefix}"

    @property
    def store(self) -> Any:
        """The backend's store, opened once the worker created it."""
        if self._store is None:
            if self.store_url.startswith("sqlite:"):
                from runlane.backends.sqlite import SQLiteStore

                self._store = SQLiteStore.from_url(self.store_url, "dev")
            else:
                from runlane.backends.redis import RedisStore

                self._store = RedisStore.from_url(self.store_url, "dev")
        return self._store

    def schedule(self) -> Any:
        """The declarative schedule of the task, once the worker wrote it (else None)."""
        return self.store.get_schedule(schedules.declarative_id(TASK_ID))

    def ready(self) -> bool:
        if self.worker.proc.poll() is not None:
            raise AssertionError(f"the {self.kind} worker exited:\n{self.output()}")
        return READY[self.kind] in self.worker.output()

    def output(self) -> str:
        return self.worker.output()[-4000:]

    def close(self) -> None:
        self.worker.stop()
        if self._store is not None:
            self._store.close()
        for prefix in self.prefixes:
            delete_redis_prefix(self.redis_url, prefix)


@pytest.fixture
def backends(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Backend]]:
    """The four backends' workers, started at once."""
    for package in ("celery", "dramatiq"):  # skips locally without them, fails in CI
        if os.environ.get("CI") == "true":
            __import__(package)
        else:
            pytest.importorskip(package)
    url = request.getfixturevalue("redis_url")  # skips locally without Redis, fails in CI
    made: dict[str, Backend] = {}
    try:
        for kind in ("embedded", "redis", "celery", "dramatiq"):
            made[kind] = Backend(kind, tmp_path, url)
        yield made
    finally:
        for backend in made.values():
            backend.close()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _slow_selected(config: pytest.Config) -> bool:
    """The full form runs only when asked for: ``-m slow`` or RUNLANE_SLOW_TESTS=1."""
    expr = config.getoption("markexpr") or ""
    return ("slow" in expr and "not slow" not in expr) or bool(os.environ.get("RUNLANE_SLOW_TESTS"))


def _check_run(kind: str, backend: Backend, run: runlane.Run, tick: float) -> None:
    sid = schedules.declarative_id(TASK_ID)
    assert run.status == "COMPLETED", (kind, run.error, backend.output())
    assert run.task_identifier == TASK_ID and run.schedule_id == sid
    assert run.id == schedules.tick_run_id(sid, tick)
    payload = runlane.ScheduledPayload.model_validate(run.payload)
    assert payload.timestamp == _utc(tick), kind
    assert payload.schedule_id == sid and payload.type == runlane.ScheduleType.DECLARATIVE
    assert payload.last_timestamp is None and payload.upcoming[0] == _utc(tick + 60)
    assert run.output["timestamp"] == _utc(tick).isoformat(), kind  # what the task got
    assert run.created_at >= _utc(tick), f"{kind}: fired before its tick"
    # nothing else fired before it (a later minute may have fired meanwhile)
    listed, _ = backend.store.list_runs(RunQuery(schedule=sid, limit=100))
    stamps = sorted(runlane.ScheduledPayload.model_validate(r.payload).timestamp for r in listed)
    assert stamps[0] == _utc(tick) and len(stamps) == len(set(stamps)), (kind, stamps)


def test_a_schedule_fires_a_completed_run_on_every_backend(
    backends: dict[str, Backend],
) -> None:
    """The default form: each worker's schedule, written as it started, made due at once."""
    sid = schedules.declarative_id(TASK_ID)
    for kind, backend in backends.items():
        wait_for(backend.ready, DEADLINE, 0.2, f"the {kind} worker to start")
        row = wait_for(backend.schedule, DEADLINE, 0.2, f"the {kind} worker's schedule")
        assert row.type == "DECLARATIVE" and row.cron == "* * * * *" and row.active
        now = time.time()
        # the minute that has begun is the tick to fire (as after downtime: the latest one)
        backend.store.save_schedule(
            dataclasses.replace(row, next_at=math.floor(now / 60) * 60.0, generation=None),
            now=now,
        )
    for kind, backend in backends.items():

        def fired(b: Backend = backend) -> runlane.Run | None:
            listed, _ = b.store.list_runs(RunQuery(schedule=sid, limit=10))
            done = [r for r in listed if r.is_completed]
            return done[-1] if done else None  # the first (newest first)

        try:
            run = wait_for(fired, DEADLINE, 0.2, f"the {kind} schedule's run")
        except AssertionError:
            raise AssertionError(f"no final run on {kind}:\n{backend.output()}") from None
        tick = runlane.ScheduledPayload.model_validate(run.payload).timestamp.timestamp()
        assert tick % 60 == 0, (kind, tick)  # a minute's tick (a boundary may have passed)
        _check_run(kind, backend, run, tick)


@pytest.mark.slow
def test_minutely_schedule_fires_a_completed_run_at_the_next_minute_on_every_backend(
    backends: dict[str, Backend], request: pytest.FixtureRequest
) -> None:
    """The full form: the next minute boundary on the system clock fires each schedule."""
    if not _slow_selected(request.config):
        pytest.skip("full form: run with -m slow (or RUNLANE_SLOW_TESTS=1)")
    sid = schedules.declarative_id(TASK_ID)
    ticks: dict[str, float] = {}
    for kind, backend in backends.items():
        wait_for(backend.ready, DEADLINE, 0.2, f"the {kind} worker to start")
        # the worker wrote the declarative schedule as it started; its first tick is the first
        # minute after that
        row = wait_for(backend.schedule, DEADLINE, 0.2, f"the {kind} worker's schedule")
        assert row.task == TASK_ID and row.cron == "* * * * *" and row.timezone == "UTC"
        assert row.type == "DECLARATIVE" and row.active
        ticks[kind] = (math.floor(row.created_at / 60) + 1) * 60.0
        assert row.next_at == ticks[kind] or row.last_at is not None, (kind, row)

    for kind, backend in backends.items():
        tick = ticks[kind]
        run_id = schedules.tick_run_id(sid, tick)

        def completed(b: Backend = backend, run_id: str = run_id) -> runlane.Run | None:
            run = b.store.get_run(run_id)
            return run if run is not None and run.is_completed else None

        try:
            run = wait_for(completed, DEADLINE, 0.2, f"the {kind} run of {_utc(tick)}")
        except AssertionError:
            raise AssertionError(f"no final run on {kind}:\n{backend.output()}") from None
        _check_run(kind, backend, run, tick)
        print(
            f"{kind}: run {run.id} for {_utc(tick):%H:%M:%S} created {run.created_at:%H:%M:%S.%f}"
        )
