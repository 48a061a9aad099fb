"""Celery and Dramatiq workers started as their users start them (``celery -A proj worker``,
``dramatiq proj``), as subprocesses over real brokers: a worker killed -9 mid-run, and cancel
and max duration interrupting attempts in Celery's prefork, threads and solo pools and in
Dramatiq's worker threads.

The workers load tests/adapter_project.py. This process triggers runs by task id (it has no
task code) through an app / broker of the same configuration. Nothing asserts on timing: every
wait polls with a generous deadline.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runlane
from runlane.core import runtime
from tests.adapters import (
    CeleryUnderTest,
    DramatiqUnderTest,
    FrameworkWorker,
    delete_redis_prefix,
    unique_prefix,
)
from tests.helpers import wait_final, wait_for

pytestmark = pytest.mark.timeout(300)

DEADLINE = 120.0


class Project:
    """The test's side of tests/adapter_project.py: the same broker configuration, a store,
    and the commands that start workers."""

    def __init__(self, framework: str, broker_url: str, store_url: str, tmp: Path) -> None:
        self.framework = framework
        self.prefix = unique_prefix()
        self.journal = tmp / "journal"
        self.journal.mkdir()
        self.tmp = tmp
        self.harness: Any = (
            CeleryUnderTest(broker_url, prefix=self.prefix, visibility_timeout=3)
            if framework == "celery"
            else DramatiqUnderTest(broker_url, prefix=self.prefix, heartbeat_timeout_ms=2000)
        )
        self.env = {
            **os.environ,
            "RL_FRAMEWORK": framework,
            "RL_BROKER_URL": broker_url,
            "RL_PREFIX": self.prefix,
            "RL_JOURNAL": str(self.journal),
            "RUNLANE_STORE_URL": store_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.workers: list[FrameworkWorker] = []
        runlane.configure(
            store=store_url,
            broker=self.harness.broker,
            engine_interval=0.05,
            limits={"min_max_duration_seconds": 1},  # as the project's workers allow
        )

    def start(self, *, pool: str = "prefork", concurrency: int = 2) -> FrameworkWorker:
        n = len(self.workers) + 1
        if self.framework == "celery":
            argv = [
                sys.executable, "-m", "celery", "-A", "tests.adapter_project", "worker",
                "-P", pool, "-c", str(concurrency), "-n", f"w{n}@%h", "--loglevel=INFO",
                "--without-mingle", "--without-gossip", "--without-heartbeat",
            ]  # fmt: skip
        else:
            argv = [
                sys.executable, "-m", "dramatiq", "tests.adapter_project",
                "--processes", "1", "--threads", str(concurrency),
            ]  # fmt: skip
        worker = FrameworkWorker(argv, self.env, self.tmp / f"worker{n}.log")
        self.workers.append(worker)
        return worker

    def lines(self, name: str) -> list[str]:
        path = self.journal / name
        return path.read_text().splitlines() if path.exists() else []

    def ready(self, worker: FrameworkWorker) -> None:
        """The worker executes runs (a first run can wait for it to register the task)."""
        handle = runlane.tasks.trigger("quick", "hello")
        try:
            run = wait_final(handle, timeout=DEADLINE)
        except AssertionError:
            raise AssertionError(f"the worker did not start:\n{worker.output()[-4000:]}") from None
        assert run.status == "COMPLETED", run.error

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        old = runtime.install(None)
        if old is not None:
            old.close()
        self.harness.close()


@pytest.fixture
def make_project(tmp_path, request) -> Iterator[Any]:
    made: list[Project] = []

    def make(framework: str, broker: str, store: str) -> Project:
        broker_url = request.getfixturevalue("redis_url" if broker == "redis" else "amqp_url")
        if store == "sqlite":
            store_url = f"sqlite:///{tmp_path}/runlane.db"
        else:
            store_url = f"{request.getfixturevalue('redis_url')}?prefix={unique_prefix()}"
        project = Project(framework, broker_url, store_url, tmp_path)
        made.append(project)
        return project

    yield make
    for project in made:
        project.close()
        if "?prefix=" in project.env["RUNLANE_STORE_URL"]:
            url, prefix = project.env["RUNLANE_STORE_URL"].split("?prefix=")
            delete_redis_prefix(url, prefix)


# ---------------------------------------------------------------------- kill -9
CRASH = [
    pytest.param("celery", "redis", "sqlite", id="celery-redis-sqlite"),
    pytest.param("dramatiq", "rabbitmq", "redis", id="dramatiq-rabbitmq-redis"),
    pytest.param("celery", "rabbitmq", "redis", id="celery-rabbitmq-redis"),
    pytest.param("dramatiq", "redis", "sqlite", id="dramatiq-redis-sqlite"),
]


@pytest.mark.parametrize("framework, broker, store", CRASH)
def test_worker_killed_mid_run_completes_as_a_later_attempt(make_project, framework, broker, store):
    project = make_project(framework, broker, store)
    first = project.start()
    project.ready(first)
    handle = runlane.tasks.trigger("slow", {"hold": 600})
    wait_for(lambda: project.lines(handle.id), DEADLINE, message="attempt 1 to start")
    first.kill()  # kill -9 mid-run: no goodbye, its message is unacknowledged

    second = project.start()
    run = wait_final(handle, timeout=DEADLINE)
    assert run.status == "COMPLETED", (run.error, second.output()[-4000:])
    assert run.output["attempt"] == 2 and run.attempt_count == 2
    assert run.attempts[0].status == "CRASHED" and run.attempts[1].status == "COMPLETED"

    # the killed worker's message comes back (RabbitMQ at once, Celery's Redis transport after
    # its visibility timeout, Dramatiq's Redis broker once the dead worker's heartbeat lapsed);
    # once a worker has finished it as well as attempt 2's own delivery, nothing more can run
    wait_for(
        lambda: project.lines("deliveries").count(handle.id) >= 2,
        DEADLINE,
        message="the killed worker's delivery to come back",
    )
    wait_for(lambda: project.harness.broker.pending() == 0, DEADLINE, message="empty queues")
    lines = project.lines(handle.id)
    assert [line.rsplit(" ", 1)[0] if line.startswith("start") else line for line in lines] == [
        "start 1",
        "start 2",
        "end 2",
    ], lines
    assert runlane.runs.retrieve(handle).attempt_count == 2


# ---------------------------------------------------------------------- interrupts
def _stopped(handle: Any, queue: str) -> None:
    """The attempt has really stopped: its queue slot was given back (an attempt that keeps
    running keeps it)."""
    wait_for(
        lambda: runlane.queues.retrieve(queue).running == 0,
        DEADLINE,
        message=f"the attempt of {handle.id} to stop",
    )


def _interrupts(project: Project) -> None:
    """Cancel and max duration stop a busy loop and an await; the worker keeps working."""
    spinning = runlane.tasks.trigger("spin", {})
    wait_for(lambda: project.lines(spinning.id), DEADLINE, message="the loop to start")
    assert runlane.runs.cancel(spinning).status == "CANCELED"
    _stopped(spinning, "task/spin")
    run = runlane.runs.retrieve(spinning)
    assert run.status == "CANCELED" and run.attempts[0].status == "CANCELED"

    timed = runlane.tasks.trigger("spin", {}, max_duration=1)
    run = wait_final(timed, timeout=DEADLINE)
    assert run.status == "TIMED_OUT" and run.attempts[0].status == "TIMED_OUT"
    assert run.error.message == "Run exceeded maxDuration of 1 seconds"
    _stopped(timed, "task/spin")

    napping = runlane.tasks.trigger("nap", 3600, max_duration=1)
    assert wait_final(napping, timeout=DEADLINE).status == "TIMED_OUT"
    _stopped(napping, "task/nap")

    # the interrupted loops never reached their end
    assert project.lines(spinning.id)[-1].startswith("start")
    assert project.lines(timed.id)[-1].startswith("start")
    assert wait_final(runlane.tasks.trigger("quick", 1), timeout=DEADLINE).status == "COMPLETED"


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_celery_pools_interrupt_canceled_and_timed_out_attempts(make_project, pool):
    project = make_project("celery", "redis", "redis")
    worker = project.start(pool=pool, concurrency=1 if pool == "solo" else 2)
    project.ready(worker)
    _interrupts(project)


def test_dramatiq_interrupts_canceled_and_timed_out_attempts(make_project):
    project = make_project("dramatiq", "redis", "redis")
    worker = project.start(concurrency=2)
    project.ready(worker)
    _interrupts(project)


def test_a_prefork_process_blocked_after_its_run_ended_is_replaced(make_project):
    """One pool process; a run blocked in a call past its max duration ends TIMED_OUT, and the
    process leaves so that Celery starts a fresh one for the next run."""
    project = make_project("celery", "redis", "sqlite")
    worker = project.start(pool="prefork", concurrency=1)
    project.ready(worker)
    blocked = runlane.tasks.trigger("block", 600, max_duration=1)
    run = wait_final(blocked, timeout=DEADLINE)
    assert run.status == "TIMED_OUT" and run.attempts[0].status == "TIMED_OUT"
    blocked_pid = int(project.lines(blocked.id)[0].split()[1])
    after = wait_final(runlane.tasks.trigger("quick", 2), timeout=DEADLINE)
    assert after.status == "COMPLETED"
    assert after.output["pid"] != blocked_pid  # a new pool process ran it
    assert project.lines(blocked.id) == [f"start {blocked_pid}"]
