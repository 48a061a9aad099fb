"""Durable waits end to end on the embedded default: trigger_and_wait, batches, wait.for_/until,
suspension (FROZEN, worker freed), replay, non-determinism, metadata.parent/root, cancel
cascade, and a worker restart while a parent is FROZEN."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

import runlane
from runlane.core import runtime
from runlane.errors import NotInRunError, RunlaneError, SubtaskUnwrapError
from tests.helpers import wait_final, wait_for, wait_status


@pytest.fixture
def quick(db_url):
    """A runtime whose waits suspend after 0.1 s in place."""
    rt = runlane.configure(store=db_url, engine_interval=0.05, wait_in_place=0.1)
    yield rt
    runtime.install(None).close()


def test_trigger_and_wait_results_and_unwrap(quick):
    @runlane.task(id="double")
    def double(payload):
        return payload * 2

    @runlane.task(id="fails", retry={"max_attempts": 1})
    def fails(payload):
        raise ValueError("bad child")

    @runlane.task(id="parent")
    def parent(payload, ctx):
        ok = double.trigger_and_wait(21)
        bad = fails.trigger_and_wait({})
        try:
            bad.unwrap()
        except SubtaskUnwrapError as exc:
            unwrap = {
                "run_id": exc.run_id,
                "task_id": exc.task_id,
                "msg": str(exc),
                "cause": exc.cause.message,
            }
        return {
            "ok": [ok.ok, ok.output, ok.unwrap(), ok.task_identifier, ok.id],
            "bad": [bad.ok, bad.error.name, bad.id],
            "unwrap": unwrap,
        }

    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        run = wait_final(parent.trigger({}))
    assert run.status == "COMPLETED", run.error
    ok, bad, unwrap = run.output["ok"], run.output["bad"], run.output["unwrap"]
    assert ok[:4] == [True, 42, 42, "double"]
    assert bad[:2] == [False, "ValueError"]
    assert unwrap == {
        "run_id": bad[2],
        "task_id": "fails",
        "msg": "Error in fails: bad child",
        "cause": "bad child",
    }
    child = runlane.runs.retrieve(ok[4])
    assert child.parent_id == run.id and child.root_id == run.id and child.depth == 1


def test_outside_a_run_the_waits_raise(rt):
    @runlane.task(id="lonely")
    def lonely(payload):
        return 1

    with pytest.raises(NotInRunError, match="inside a running task"):
        lonely.trigger_and_wait({})
    with pytest.raises(NotInRunError):
        lonely.batch_trigger_and_wait([{"payload": 1}])
    with pytest.raises(NotInRunError):
        runlane.batch.trigger_and_wait([{"id": "lonely", "payload": 1}])
    with pytest.raises(NotInRunError):
        runlane.wait.for_(seconds=1)
    with pytest.raises(NotInRunError):
        runlane.wait.until(datetime.now(timezone.utc))
    assert rt.store.count_runs() == {}


def test_batch_results_are_in_item_order(quick):
    @runlane.task(id="slow-first")
    def slow_first(payload):
        if payload == 0:
            wait_for(
                lambda: sum(quick.store.count_runs(["COMPLETED"]).values()) >= 4,
                message="the others first",
            )
        return payload * 10

    @runlane.task(id="other-task")
    def other_task(payload):
        return -payload

    @runlane.task(id="fan-out")
    def fan_out(payload):
        a = slow_first.batch_trigger_and_wait([{"payload": i} for i in range(5)])
        b = runlane.batch.trigger_and_wait(
            [{"id": "slow-first", "payload": 7}, {"id": "other-task", "payload": 7}]
        )
        c = runlane.batch.trigger_by_task_and_wait([(other_task, 1), (slow_first, 2)])
        return {
            "a": a.unwrap(),
            "a_id": a.id,
            "b": b.unwrap(),
            "c": [r.output for r in c],
            "c_tasks": [r.task_identifier for r in c],
        }

    with runlane.Worker(concurrency=4, fetch_timeout=0.1):
        run = wait_final(fan_out.trigger({}), timeout=60)
    assert run.status == "COMPLETED", run.error
    assert run.output["a"] == [0, 10, 20, 30, 40]
    assert run.output["b"] == [70, -7]
    assert run.output["c"] == [-1, 20] and run.output["c_tasks"] == ["other-task", "slow-first"]
    batch = runlane.batch.retrieve(run.output["a_id"])
    assert batch.parent_id == run.id and batch.run_count == 5


def test_frozen_while_suspended_and_the_worker_runs_others(quick):
    release = threading.Event()

    @runlane.task(id="blocked-child")
    def blocked_child(payload):
        release.wait(60)
        return "child done"

    @runlane.task(id="waiting-parent")
    def waiting_parent(payload):
        return blocked_child.trigger_and_wait({}).unwrap()

    @runlane.task(id="bystander")
    def bystander(payload):
        return "ran meanwhile"

    with runlane.Worker(concurrency=2, fetch_timeout=0.1) as worker:
        handle = waiting_parent.trigger({})
        frozen = wait_status(handle, "FROZEN")
        assert frozen.is_executing and frozen.attempts[0].status == "SUSPENDED"
        # one slot holds the blocked child; the parent's slot is free for other runs
        assert wait_final(bystander.trigger({})).output == "ran meanwhile"
        # (the bystander's attempt stays active until its executor has seen its end recorded)
        wait_for(lambda: len(worker.active) == 1, message="only the blocked child active")
        release.set()
        run = wait_final(handle)
    assert run.status == "COMPLETED" and run.output == "child done"
    assert run.attempt_count == 1 and run.attempts[0].status == "COMPLETED"


def test_chain_with_a_single_worker_slot(db_url):
    runlane.configure(store=db_url, engine_interval=0.05)  # default in-place window

    @runlane.task(id="grandchild")
    def grandchild(payload):
        return payload + 1

    @runlane.task(id="child")
    def child(payload):
        return grandchild.trigger_and_wait(payload + 1).unwrap() + 1

    @runlane.task(id="root")
    def root(payload):
        return child.trigger_and_wait(payload + 1).unwrap() + 1

    try:
        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            run = wait_final(root.trigger(0), timeout=60)
        assert run.status == "COMPLETED" and run.output == 5
        grand = runlane.runs.list(task_identifier="grandchild").data[0]
        assert grand.depth == 2 and grand.root_id == run.id
    finally:
        runtime.install(None).close()


def test_wait_until_past_and_throw(quick):
    @runlane.task(id="until-past", retry={"max_attempts": 1})
    def until_past(payload):
        runlane.wait.until(datetime(2000, 1, 1))
        runlane.wait.until("2001-01-01T00:00:00Z")
        if payload:
            runlane.wait.until(datetime(2000, 1, 1), throw_if_in_the_past=True)
        return "passed"

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        assert wait_final(until_past.trigger(False)).output == "passed"
        failed = wait_final(until_past.trigger(True))
    assert failed.status == "FAILED" and "in the past" in failed.error.message


def test_wait_for_suspends_and_replays_on_a_fake_clock(db_url):
    clock = runlane.FakeClock()
    runlane.configure(store=db_url, engine_interval=0.05, clock=clock, wait_in_place=0.1)
    effects = Counter()

    @runlane.task(id="sleepy")
    def sleepy(payload, ctx):
        effects["before"] += 1
        runlane.wait.for_(hours=1)
        effects["between"] += 1
        runlane.wait.until(datetime.fromtimestamp(payload, tz=timezone.utc))
        effects["after"] += 1
        return ctx.attempt.number

    try:
        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            handle = sleepy.trigger(clock.now() + 2 * 86400)
            wait_status(handle, "FROZEN")
            clock.advance(3599)
            runtime.get().engine.tick()
            assert runlane.runs.retrieve(handle).status == "FROZEN"
            clock.advance(2)
            wait_for(lambda: effects["between"] == 1, message="the first wait to resume")
            wait_status(handle, "FROZEN")
            clock.advance(2 * 86400)
            run = wait_final(handle)
    finally:
        runtime.install(None).close()
    assert run.status == "COMPLETED" and run.output == 1  # the same attempt throughout
    # code before a wait runs again on each resume; every passed wait returns at once
    assert effects == {"before": 3, "between": 2, "after": 1}


def test_replay_does_not_trigger_children_again(quick):
    effects = Counter()

    @runlane.task(id="counted-child")
    def counted_child(payload):
        effects[f"child-{payload}"] += 1
        return payload

    @runlane.task(id="replayed-parent")
    def replayed_parent(payload):
        effects["parent-start"] += 1
        a = counted_child.trigger_and_wait(1).unwrap()
        b = counted_child.batch_trigger_and_wait([{"payload": 2}, {"payload": 3}]).unwrap()
        c = counted_child.trigger_and_wait(4).unwrap()
        return [a, *b, c]

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        run = wait_final(replayed_parent.trigger({}), timeout=60)
    assert run.output == [1, 2, 3, 4]
    assert effects["child-1"] == effects["child-2"] == effects["child-3"] == 1
    assert effects["child-4"] == 1
    assert effects["parent-start"] == 4  # first run + one replay per suspended wait
    assert len(runlane.runs.list(task_identifier="counted-child").data) == 4


def test_non_determinism_is_detected(quick):
    calls = Counter()

    @runlane.task(id="nd-child")
    def nd_child(payload):
        return payload

    @runlane.task(id="nd-parent", retry={"max_attempts": 1})
    def nd_parent(payload):
        calls["n"] += 1
        nd_child.trigger_and_wait({"call": calls["n"]})  # differs on replay
        return "unreachable on replay"

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        run = wait_final(nd_parent.trigger({}), timeout=60)
    assert run.status == "FAILED"
    assert run.error.name == "NonDeterminismError"
    assert "differs from the one recorded" in run.error.message


def test_idempotent_children_survive_a_retry(quick):
    effects = Counter()

    @runlane.task(id="idem-child")
    def idem_child(payload):
        effects["child"] += 1
        return "child output"

    @runlane.task(id="retrying-parent", retry={"max_attempts": 2, "min_timeout_in_ms": 0})
    def retrying_parent(payload, ctx):
        key = runlane.idempotency_keys.create("the-child")
        result = idem_child.trigger_and_wait({}, idempotency_key=key).unwrap()
        if ctx.attempt.number == 1:
            raise RuntimeError("fail after the wait")
        return [result, ctx.attempt.number]

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        run = wait_final(retrying_parent.trigger({}), timeout=60)
    assert run.output == ["child output", 2] and effects["child"] == 1


def _children(worker_kind: str) -> int:
    """How many children the scale cases make: 1,000 with the native worker; 200 under Celery
    and Dramatiq, whose runs take the same path through the store (the adapters' own cases
    are the rest of this module), at a fifth of the time."""
    return 1000 if worker_kind == "native" else 200


def test_parent_and_root_metadata_from_many_children(db_url, worker_kind):
    runlane.configure(store=db_url, engine_interval=0.05, wait_in_place=0.1)
    n = _children(worker_kind)

    @runlane.task(id="leaf")
    def leaf(payload):
        runlane.metadata.parent.increment("done", 1)
        runlane.metadata.root.increment("leaves", 1).append("seen", payload)
        return payload

    @runlane.task(id="branch")
    def branch(payload):
        results = leaf.batch_trigger_and_wait([{"payload": i} for i in payload])
        runlane.metadata.parent.increment("branches", 1)
        return len(results.unwrap())

    @runlane.task(id="trunk")
    def trunk(payload):
        runlane.metadata.root.set("is_root", True)  # on a root run: the run itself
        first = branch.trigger_and_wait(list(range(n // 2))).unwrap()
        second = branch.trigger_and_wait(list(range(n // 2, n))).unwrap()
        return first + second

    try:
        with runlane.Worker(concurrency=6, fetch_timeout=0.1):
            run = wait_final(trunk.trigger({}), timeout=240)
        branches = runlane.runs.list(task_identifier="branch").data
    finally:
        runtime.install(None).close()
    assert run.status == "COMPLETED" and run.output == n
    assert run.metadata["leaves"] == n and run.metadata["branches"] == 2
    assert run.metadata["is_root"] is True
    assert sorted(run.metadata["seen"]) == list(range(n))
    assert sorted(b.metadata["done"] for b in branches) == [n // 2, n // 2]


def test_cancel_cascades_to_children_and_frozen_parent_stays_asleep(quick):
    started = threading.Event()
    release = threading.Event()
    parent_calls = Counter()

    @runlane.task(id="busy-child")
    def busy_child(payload):
        started.set()
        release.wait(60)
        return "late"

    @runlane.task(id="idle-child")
    def idle_child(payload):
        return "never"

    @runlane.task(id="cancel-parent")
    def cancel_parent(payload):
        parent_calls["n"] += 1
        busy_child.trigger({})  # a fire-and-forget child, executing
        idle_child.trigger({}, delay="1h")  # a waiting child
        return busy_child.trigger_and_wait({}).unwrap()

    with runlane.Worker(concurrency=3, fetch_timeout=0.1):
        handle = cancel_parent.trigger({})
        wait_status(handle, "FROZEN")
        assert started.wait(30)
        calls_before = parent_calls["n"]
        run = runlane.runs.cancel(handle)
        assert run.status == "CANCELED"
        children = runlane.runs.list(task_identifier=["busy-child", "idle-child"]).data
        assert len(children) == 3
        assert {c.status for c in children} == {runlane.RunStatus.CANCELED}
        release.set()
        wait_for(lambda: not quick.store.count_runs(["EXECUTING"]), message="children stopped")
    run = runlane.runs.retrieve(handle)
    assert run.status == "CANCELED" and run.output is None
    assert parent_calls["n"] == calls_before  # canceled without waking up


def test_child_cancel_resumes_the_parent_with_ok_false(quick):
    @runlane.task(id="to-cancel")
    def to_cancel(payload):
        return "never"

    @runlane.task(id="watcher")
    def watcher(payload):
        r = to_cancel.trigger_and_wait({}, delay="1h")
        return {"ok": r.ok, "error": r.error.message}

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        handle = watcher.trigger({})
        wait_status(handle, "FROZEN")
        child = runlane.runs.list(task_identifier="to-cancel").data[0]
        runlane.runs.cancel(child)
        run = wait_final(handle)
    assert run.output == {"ok": False, "error": "Canceled by user"}


@pytest.mark.native_only  # runlane.Worker(queues=...) serves one runlane queue
def test_expired_child_gives_ok_false(db_url):
    clock = runlane.FakeClock()
    runlane.configure(store=db_url, engine_interval=0.05, clock=clock, wait_in_place=0.1)

    @runlane.task(id="expiring")
    def expiring(payload):
        return "never"

    @runlane.task(id="expiry-parent")
    def expiry_parent(payload):
        r = expiring.trigger_and_wait({}, ttl="10s", queue="nobody-serves-this")
        return {"ok": r.ok, "error": r.error.message}

    try:
        with runlane.Worker(concurrency=1, fetch_timeout=0.1, queues=["task/expiry-parent"]):
            handle = expiry_parent.trigger({})
            wait_status(handle, "FROZEN")
            clock.advance(11)
            run = wait_final(handle)
    finally:
        runtime.install(None).close()
    assert run.output == {"ok": False, "error": "Run expired because the TTL (10s) was reached"}


def test_async_waits(quick):
    @runlane.task(id="async-child")
    async def async_child(payload):
        await asyncio.sleep(0)
        return payload + 1

    @runlane.task(id="async-parent")
    async def async_parent(payload):
        one = await async_child.aio_trigger_and_wait(1)
        many = await async_child.aio_batch_trigger_and_wait([{"payload": 2}, {"payload": 3}])
        await runlane.wait.aio_for(seconds=0.2)
        await runlane.wait.aio_until(datetime.now(timezone.utc) - timedelta(seconds=1))
        both = await runlane.batch.aio_trigger_by_task_and_wait([(async_child, 10)])
        return [one.unwrap(), *many.unwrap(), *both.unwrap()]

    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        run = wait_final(async_parent.trigger({}), timeout=60)
    assert run.status == "COMPLETED", run.error
    assert run.output == [2, 3, 4, 11]


def test_time_spent_frozen_does_not_count_toward_max_duration(db_url):
    runlane.configure(
        store=db_url,
        engine_interval=0.05,
        wait_in_place=0.1,
        limits={"min_max_duration_seconds": 1},
    )

    @runlane.task(id="patient")
    def patient(payload):
        runlane.wait.for_(seconds=2.5)
        return "made it"

    try:
        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            run = wait_final(patient.trigger({}, max_duration=2), timeout=60)
    finally:
        runtime.install(None).close()
    assert run.status == "COMPLETED" and run.output == "made it"


WORKER = textwrap.dedent(
    """
    import signal, sys, threading
    sys.path.insert(0, sys.argv[2])
    import runlane
    import restart_tasks  # noqa: F401

    runlane.configure(store=sys.argv[1], engine_interval=0.05, wait_in_place=0.1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        print("ready", flush=True)
        stop.wait(120)
    """
)
TASKS = textwrap.dedent(
    """
    import os
    import runlane

    @runlane.task(id="restart-child")
    def restart_child(payload):
        return os.getpid()

    @runlane.task(id="restart-parent")
    def restart_parent(payload):
        before = os.getpid()
        runlane.wait.for_(seconds=payload)
        child_pid = restart_child.trigger_and_wait({}).unwrap()
        return {"before": before, "after": os.getpid(), "child": child_pid}
    """
)


def _worker(tmp_path, url):
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "worker.py"), url, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise AssertionError(proc.communicate()[1])
    return proc


@pytest.mark.native_only  # runlane worker subprocesses (adapters: test_adapters_e2e)
def test_frozen_parent_resumes_after_a_worker_restart(tmp_path, rt, db_url):
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "restart_tasks.py").write_text(TASKS)
    first = _worker(tmp_path, db_url)
    try:
        handle = runlane.tasks.trigger("restart-parent", 3)
        wait_status(handle, "FROZEN", timeout=60)
        first.send_signal(signal.SIGKILL)  # no goodbye: the wait is in the store
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert runlane.runs.retrieve(handle).status == "FROZEN"
    second = _worker(tmp_path, db_url)
    try:
        run = wait_final(handle, timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
    assert run.status == "COMPLETED", run.error
    assert run.output["before"] == second.pid == run.output["after"] == run.output["child"]
    assert run.attempt_count == 1


def test_unknown_wait_error_message(quick):
    with pytest.raises(RunlaneError):
        runlane.wait.until(datetime(2000, 1, 1))


def test_one_batch_of_a_thousand_children(db_url, worker_kind):
    """A single batch_trigger_and_wait of 1,000 children (the batch size limit raised; 200
    under the adapters)."""
    n = _children(worker_kind)
    runlane.configure(
        store=db_url, engine_interval=0.05, wait_in_place=0.1, limits={"batch_items": 1000}
    )

    @runlane.task(id="thousand-child")
    def thousand_child(payload):
        runlane.metadata.parent.increment("done", 1)
        return payload

    @runlane.task(id="thousand-parent")
    def thousand_parent(payload):
        results = thousand_child.batch_trigger_and_wait([{"payload": i} for i in range(n)])
        return sum(results.unwrap())

    try:
        with runlane.Worker(concurrency=6, fetch_timeout=0.1):
            run = wait_final(thousand_parent.trigger({}), timeout=240)
    finally:
        runtime.install(None).close()
    assert run.status == "COMPLETED" and run.output == sum(range(n))
    assert run.metadata == {"done": n}
