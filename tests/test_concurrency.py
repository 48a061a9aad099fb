"""Queues and concurrency end to end: limits never exceeded, shared queues, concurrency keys,
trigger-time overrides, the environment cap, fairness, pause/resume, leases, recursion."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone

import pytest

import runlane
from runlane.api.queues import QueueNotFoundError
from runlane.core import runtime
from runlane.errors import InvalidOptionError
from tests.helpers import max_overlap, wait_final, wait_for, wait_status


def _interval_task(task_id, **options):
    @runlane.task(id=task_id, **options)
    def timed(payload):
        start = time.time()
        time.sleep(payload.get("hold", 0.15) if isinstance(payload, dict) else 0.15)
        return {
            "start": start,
            "end": time.time(),
            "key": payload.get("key") if isinstance(payload, dict) else None,
        }

    return timed


def _intervals(handles, key=None):
    out = []
    for h in handles:
        run = wait_final(h, timeout=120)
        assert run.status == "COMPLETED", run.error
        if key is None or run.output["key"] == key:
            out.append((run.output["start"], run.output["end"]))
    return out


@pytest.fixture
def env(db_url):
    def make(**kw):
        return runlane.configure(store=db_url, engine_interval=0.05, wait_in_place=0.1, **kw)

    yield make
    old = runtime.install(None)
    if old is not None:
        old.close()


def test_task_queue_limit_is_exact(env):
    env()
    task = _interval_task("limited-2", queue={"concurrency_limit": 2})
    with runlane.Worker(concurrency=6, fetch_timeout=0.1):
        handles = task.batch_trigger([{"payload": {}} for _ in range(10)]).runs
        assert max_overlap(_intervals(handles)) == 2
    info = runlane.queues.retrieve("task/limited-2")
    assert info.concurrency_limit == 2 and info.running == 0 and info.queued == 0


def test_shared_queue_between_tasks(env):
    env()
    shared = runlane.queue(name="shared-llm", concurrency_limit=1)
    a = _interval_task("uses-shared-a", queue=shared)
    b = _interval_task("uses-shared-b", queue=shared)
    with runlane.Worker(concurrency=4, fetch_timeout=0.1):
        handles = [a.trigger({}) for _ in range(3)] + [b.trigger({}) for _ in range(3)]
        assert max_overlap(_intervals(handles)) == 1
    assert runlane.runs.retrieve(handles[-1]).queue == "shared-llm"


def test_concurrency_keys_each_get_the_limit(env):
    env()
    task = _interval_task("per-tenant", queue={"name": "tenants", "concurrency_limit": 1})
    with runlane.Worker(concurrency=6, fetch_timeout=0.1):
        handles = [
            task.trigger({"key": tenant, "hold": 0.3}, concurrency_key=tenant)
            for _ in range(3)
            for tenant in ("t1", "t2", "t3")
        ]
        everything = _intervals(handles)
        for tenant in ("t1", "t2", "t3"):
            assert max_overlap(_intervals(handles, key=tenant)) == 1
        assert max_overlap(everything) == 3  # the three tenants run side by side
    listed = runlane.runs.list(queue="tenants").data
    assert {r.concurrency_key for r in listed} == {"t1", "t2", "t3"}


def test_total_concurrency_limit_caps_all_keys(env):
    env()
    capped = runlane.queue(name="capped", concurrency_limit=2, total_concurrency_limit=3)
    task = _interval_task("capped-task", queue=capped)
    with runlane.Worker(concurrency=8, fetch_timeout=0.1):
        handles = [
            task.trigger({"key": k}, concurrency_key=k) for _ in range(3) for k in ("a", "b", "c")
        ]
        assert max_overlap(_intervals(handles)) == 3
        for k in ("a", "b", "c"):
            assert max_overlap(_intervals(handles, key=k)) <= 2


def test_trigger_time_queue_override(env):
    env()
    task = _interval_task("override-q", queue={"concurrency_limit": 1})
    with runlane.Worker(concurrency=6, fetch_timeout=0.1):
        paid = [task.trigger({}, queue={"name": "paid", "concurrency_limit": 3}) for _ in range(8)]
        assert max_overlap(_intervals(paid)) == 3
        free = [task.trigger({}) for _ in range(4)]
        assert max_overlap(_intervals(free)) == 1
    assert runlane.queues.retrieve("paid").concurrency_limit == 3


def test_environment_concurrency_limit(env):
    env(concurrency_limit=2)
    a = _interval_task("env-a")
    b = _interval_task("env-b")
    with runlane.Worker(concurrency=6, fetch_timeout=0.1):
        handles = [t.trigger({}) for _ in range(4) for t in (a, b)]
        assert max_overlap(_intervals(handles)) == 2


def test_round_robin_across_keys(env):
    env()
    order = []
    gate = threading.Event()

    @runlane.task(
        id="fair", queue={"name": "fair-q", "concurrency_limit": 5, "total_concurrency_limit": 1}
    )
    def fair(payload):
        gate.wait(30)
        order.append(payload)

    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        handles = [fair.trigger(f"big-{i}", concurrency_key="big") for i in range(10)]
        handles.append(fair.trigger("small", concurrency_key="small"))
        gate.set()
        for h in handles:
            wait_final(h, timeout=60)
    assert order.index("small") <= 2  # not behind the 10 runs of the busy tenant
    assert [o for o in order if o != "small"] == [f"big-{i}" for i in range(10)]  # FIFO


def test_pause_and_resume_a_queue_and_a_key(env):
    clock = runlane.FakeClock()
    env(clock=clock)
    task = _interval_task("pausable", queue={"name": "rate-limited", "concurrency_limit": 5})
    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        wait_final(task.trigger({}))  # the queue exists
        info = runlane.queues.pause("rate-limited")
        assert info.paused
        held = task.trigger({})
        time.sleep(0.3)  # give a worker every chance to (wrongly) take it
        run = runlane.runs.retrieve(held)
        assert run.status == "QUEUED" and run.attempt_count == 0
        assert runlane.queues.retrieve("rate-limited").queued == 1
        runlane.queues.resume("rate-limited")
        assert wait_final(held).status == "COMPLETED"

        reset_at = datetime.fromtimestamp(clock.now() + 60, tz=timezone.utc)
        runlane.queues.pause("rate-limited", concurrency_key="user_1", until=reset_at)
        blocked = task.trigger({}, concurrency_key="user_1")
        other = task.trigger({}, concurrency_key="user_2")
        assert wait_final(other).status == "COMPLETED"
        assert runlane.runs.retrieve(blocked).status == "QUEUED"
        keys = runlane.queues.retrieve("rate-limited").paused_keys
        assert [k.concurrency_key for k in keys] == ["user_1"]
        clock.advance(61)  # the pause ends by itself
        assert wait_final(blocked).status == "COMPLETED"
    assert runlane.queues.retrieve("rate-limited").paused_keys == []


def test_queue_errors(env):
    env()
    with pytest.raises(QueueNotFoundError):
        runlane.queues.pause("no-such-queue")
    with pytest.raises(QueueNotFoundError):
        runlane.queues.retrieve("no-such-queue")
    with pytest.raises(InvalidOptionError):
        runlane.queues.pause("bad name with spaces")
    with pytest.raises(InvalidOptionError):
        runlane.queues.pause("task/x", concurrency_key="")
    with pytest.raises(InvalidOptionError):
        runlane.queue(name="x", concurrency_limit=-1)


def test_waiting_runs_expire_and_cancel_leaves_the_line(env):
    env()
    release = threading.Event()

    @runlane.task(id="one-at-a-time", queue={"concurrency_limit": 1})
    def one(payload):
        if payload == "hold":
            release.wait(30)
        return payload

    with runlane.Worker(concurrency=3, fetch_timeout=0.1):
        holder = one.trigger("hold")
        wait_status(holder, "EXECUTING")
        expiring = one.trigger("expire", ttl=1)
        canceled = one.trigger("cancel")
        assert runlane.queues.retrieve("task/one-at-a-time").queued == 2
        runlane.runs.cancel(canceled)
        assert runlane.queues.retrieve("task/one-at-a-time").queued == 1
        run = wait_status(expiring, "EXPIRED")
        assert run.attempt_count == 0
        release.set()
        assert wait_final(holder).status == "COMPLETED"
        assert wait_final(one.trigger("after")).output == "after"
    info = runlane.queues.retrieve("task/one-at-a-time")
    assert info.running == 0 and info.queued == 0


def test_recursive_waits_on_a_limit_one_queue(env):
    env()
    q = runlane.queue(name="recursive", concurrency_limit=1)

    @runlane.task(id="recurse", queue=q)
    def recurse(depth, ctx):
        if depth == 0:
            return [ctx.queue.name]
        return [ctx.queue.name, *recurse.trigger_and_wait(depth - 1).unwrap()]

    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        run = wait_final(recurse.trigger(3), timeout=120)
        assert run.status == "COMPLETED" and run.output == ["recursive"] * 4

        # the batch version: children take turns on the lent slot
        @runlane.task(id="fan", queue=q)
        def fan(payload):
            if payload == "leaf":
                return 1
            return sum(fan.batch_trigger_and_wait([{"payload": "leaf"}] * 3).unwrap())

        assert wait_final(fan.trigger("root"), timeout=120).output == 3
    info = runlane.queues.retrieve("recursive")
    assert info.running == 0 and info.queued == 0


WORKER = textwrap.dedent(
    """
    import signal, sys, threading, time
    import runlane

    runlane.configure(store=sys.argv[1], engine_interval=0.05, lease_timeout=2)

    @runlane.task(id="slow-shared", queue={"name": "two-procs", "concurrency_limit": 2})
    def slow_shared(payload):
        start = time.time()
        if payload == "forever":
            time.sleep(3600)
        time.sleep(0.2)
        return {"start": start, "end": time.time(), "key": None}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    with runlane.Worker(concurrency=3, fetch_timeout=0.1):
        print("ready", flush=True)
        stop.wait(300)
    """
)


def _spawn(tmp_path, url):
    script = tmp_path / "limit_worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise AssertionError(proc.communicate()[1])
    return proc


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.native_only  # runlane worker subprocesses
def test_limit_holds_across_two_worker_processes(tmp_path, rt, db_url):
    procs = [_spawn(tmp_path, db_url), _spawn(tmp_path, db_url)]
    try:
        handles = runlane.tasks.batch_trigger("slow-shared", [{"payload": i} for i in range(12)])
        intervals = _intervals(handles.runs)
        assert max_overlap(intervals) == 2
    finally:
        for p in procs:
            _stop(p)


@pytest.mark.native_only  # runlane worker subprocesses (adapters: test_adapters_e2e)
def test_slots_come_back_when_a_worker_is_killed(tmp_path, db_url):
    runlane.configure(store=db_url, engine_interval=0.05, lease_timeout=2)

    @runlane.task(
        id="slow-shared",
        queue={"name": "two-procs", "concurrency_limit": 2},
        retry={"max_attempts": 2, "min_timeout_in_ms": 0},
    )
    def slow_shared(payload, ctx):
        start = time.time()
        if payload == "forever" and ctx.attempt.number == 1:
            time.sleep(3600)
        return {"start": start, "end": time.time(), "attempt": ctx.attempt.number}

    victim = _spawn(tmp_path, db_url)
    try:
        stuck = [runlane.tasks.trigger("slow-shared", "forever") for _ in range(2)]
        for h in stuck:
            wait_status(h, "EXECUTING", timeout=60)
        waiting = runlane.tasks.trigger("slow-shared", "after")
        assert runlane.queues.retrieve("two-procs").running == 2
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
        with runlane.Worker(concurrency=3, fetch_timeout=0.1):
            for h in stuck:
                run = wait_final(h, timeout=120)
                assert run.status == "COMPLETED" and run.output["attempt"] == 2
                assert run.attempts[0].status == "CRASHED"
            assert wait_final(waiting, timeout=120).status == "COMPLETED"
        info = runlane.queues.retrieve("two-procs")
        assert info.running == 0 and info.queued == 0
    finally:
        _stop(victim)
        runtime.install(None).close()


def test_a_worker_that_lost_its_lease_cannot_complete(env):
    rt = env(lease_timeout=1)
    release = threading.Event()

    @runlane.task(id="fenced", retry={"max_attempts": 2, "min_timeout_in_ms": 0})
    def fenced(payload, ctx):
        if ctx.attempt.number == 1:
            release.wait(30)
            return "stale"
        return "fresh"

    with runlane.Worker(concurrency=2, fetch_timeout=0.1) as worker:
        handle = fenced.trigger({})
        wait_status(handle, "EXECUTING")
        worker.host._renew_leases = lambda actives: None  # this worker stops heartbeating
        run = wait_final(handle, timeout=60)  # the leader reaps it; attempt 2 completes
        assert run.output == "fresh" and run.attempts[0].status == "CRASHED"
        release.set()
        wait_for(lambda: len(worker.active) == 0, message="the stale attempt to end")
    run = runlane.runs.retrieve(handle)
    assert run.output == "fresh" and run.attempt_count == 2
    assert rt.store.heartbeat(
        {handle.id: 1}, worker_id="x", lease_until=time.time() + 5, now=time.time()
    ) == {handle.id}
