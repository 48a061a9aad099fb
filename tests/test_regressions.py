"""Review findings: each test demonstrates a correctness bug (or guards a real risk) found in
review of the run lifecycle, admission, durable waits and replay on the embedded default."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter

import pytest

import runlane
from runlane.core import runtime
from tests.helpers import max_overlap, wait_final, wait_for, wait_status


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """The embedded default (these findings are about the SQLite store + local broker)."""
    return f"sqlite:///{tmp_path}/runlane.db"


@pytest.fixture
def env(db_url):
    def make(**kw):
        return runlane.configure(store=db_url, engine_interval=0.05, wait_in_place=0.1, **kw)

    yield make
    old = runtime.install(None)
    if old is not None:
        old.close()


def assert_no_slot_leaks(rt) -> None:
    """After everything is final: no queue holds a slot or a waiting run, no env slot is held."""
    for q in runlane.queues.list():
        assert q.running == 0 and q.queued == 0, q
    if not hasattr(rt.store, "db"):  # Redis: no environment slot, no slot record left
        client, prefix = rt.store.client, rt.store.prefix
        assert int(client.get(prefix + "running") or 0) == 0
        for key in client.scan_iter(match=prefix + "run:*"):  # a slot is fields of its run
            assert client.hmget(key, "holds_queue", "holds_env") == [None, None], key
        assert int(client.scard(prefix + "lenders")) == 0
        return
    conn = rt.store.db.conn
    env_running = conn.execute(
        "SELECT COALESCE(SUM(value), 0) FROM rl_counters WHERE name='running'"
    ).fetchone()[0]
    assert env_running == 0
    assert conn.execute("SELECT COUNT(*) FROM rl_slots").fetchone()[0] == 0
    sub = conn.execute("SELECT SUM(waiting), SUM(running) FROM rl_subqueues").fetchone()
    assert (sub[0] or 0) == 0 and (sub[1] or 0) == 0


def _in_function(thread_id: int, name: str, filename: str) -> bool:
    """True while the thread's stack is inside function ``name`` of a file ``filename``."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        code = frame.f_code
        if code.co_name == name and code.co_filename.endswith(filename):
            return True
        frame = frame.f_back
    return False


def _timed(task_id, **options):
    @runlane.task(id=task_id, **options)
    def timed(payload):
        start = time.time()
        time.sleep(0.3)
        return {"start": start, "end": time.time()}

    return timed


# --------------------------------------------------------------------------------------------
# A. Runs triggered by id before any worker registered the task keep the default queue.


def test_runs_waiting_for_deploy_take_the_task_queue_when_it_registers(env):
    rt = env()
    # Another service triggers by id: this process does not know the task yet.
    handles = [runlane.tasks.trigger("deployed-later", {}) for _ in range(4)]
    assert {runlane.runs.retrieve(h).status for h in handles} == {"WAITING_FOR_DEPLOY"}

    shared = runlane.queue(name="deploy-shared", concurrency_limit=1)
    _timed("deployed-later", queue=shared)
    with runlane.Worker(concurrency=4, fetch_timeout=0.1):
        runs = [wait_final(h, timeout=60) for h in handles]
    assert all(r.status == "COMPLETED" for r in runs)
    # the task's queue (limit 1) must apply to runs that waited for its deploy
    assert {r.queue for r in runs} == {"deploy-shared"}
    assert max_overlap([(r.output["start"], r.output["end"]) for r in runs]) == 1
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# B. Replay after a resume calls on_start again (it must run once per run).


def test_on_start_runs_once_even_when_the_attempt_resumes(env):
    rt = env()
    calls = Counter()

    @runlane.task(id="plain-child")
    def plain_child(payload):
        return payload

    def on_start(payload, ctx):
        calls["on_start"] += 1

    @runlane.task(id="starts-once", on_start=on_start)
    def starts_once(payload):
        calls["body"] += 1
        a = plain_child.trigger_and_wait(1).unwrap()
        b = plain_child.trigger_and_wait(2).unwrap()
        return a + b

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        run = wait_final(starts_once.trigger({}), timeout=60)
    assert run.status == "COMPLETED" and run.output == 3
    assert calls["body"] > 1  # the attempt really suspended and was replayed
    assert calls["on_start"] == 1
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# C. Replay re-applies metadata operations made before a passed wait.


def test_metadata_increment_before_a_wait_counts_once(env):
    rt = env()

    @runlane.task(id="md-child")
    def md_child(payload):
        return payload

    @runlane.task(id="md-parent")
    def md_parent(payload):
        for i in range(3):
            runlane.metadata.increment("done", 1)
            md_child.trigger_and_wait(i)
        return runlane.metadata.get("done")

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        run = wait_final(md_parent.trigger({}), timeout=60)
    assert run.status == "COMPLETED", run.error
    assert run.metadata["done"] == 3, run.metadata
    assert run.output == 3
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# D. Canceling an EXECUTING run gives its slot away before the attempt has stopped.


def test_cancel_keeps_the_slot_until_the_attempt_stops(env):
    rt = env()
    seen: dict[str, float] = {}

    @runlane.task(id="cancel-slot", queue={"concurrency_limit": 1})
    def cancel_slot(payload):
        if payload == "busy":
            while True:  # interruptible: returns to Python every 10 ms
                seen["busy_last"] = time.time()
                time.sleep(0.01)
        seen.setdefault("next_start", time.time())
        return "next"

    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        busy = cancel_slot.trigger("busy")
        wait_status(busy, "EXECUTING")
        nxt = cancel_slot.trigger("next")
        runlane.runs.cancel(busy)
        assert wait_final(nxt).status == "COMPLETED"
        wait_for(
            lambda: time.time() - seen["busy_last"] > 1.0, message="the canceled attempt to stop"
        )
    assert runlane.runs.retrieve(busy).status == "CANCELED"
    # queue limit 1: the next run may only start once the canceled attempt stopped running
    assert seen["next_start"] >= seen["busy_last"], (
        f"next run started {seen['busy_last'] - seen['next_start']:.3f}s before the canceled "
        "attempt stopped"
    )
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# E. A FROZEN run lends its queue slot only to a direct child: a grandchild on the same queue
#    (through a child on another queue) can never be admitted.


def test_recursive_wait_through_another_queue_does_not_deadlock(env):
    rt = env()
    qa = runlane.queue(name="rec-a", concurrency_limit=1)
    qb = runlane.queue(name="rec-b", concurrency_limit=1)

    @runlane.task(id="rec-leaf", queue=qa)
    def leaf(payload):
        return "leaf"

    @runlane.task(id="rec-middle", queue=qb)
    def middle(payload):
        return ["middle", leaf.trigger_and_wait({}).unwrap()]

    @runlane.task(id="rec-top", queue=qa)
    def top(payload):
        return ["top", *middle.trigger_and_wait({}).unwrap()]

    with runlane.Worker(concurrency=3, fetch_timeout=0.1):
        handle = top.trigger({})
        run = wait_final(handle, timeout=20)
    assert run.status == "COMPLETED" and run.output == ["top", "middle", "leaf"]
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# F. A FROZEN run lends its slot to a child it waits on that is not its descendant (a cached
#    idempotent run); canceling the lender frees the queue slot the child still runs on.


def test_canceling_a_lender_does_not_free_a_slot_its_borrower_still_uses(env):
    rt = env()
    go, release = threading.Event(), threading.Event()

    @runlane.task(id="lend-child", queue={"name": "lend-q", "concurrency_limit": 1})
    def lend_child(payload):
        if payload == "block":
            release.wait(60)
        return payload

    @runlane.task(id="lend-parent", queue={"name": "lend-q", "concurrency_limit": 1})
    def lend_parent(payload):
        go.wait(60)
        key = runlane.idempotency_keys.create("shared-child", scope="global")
        return lend_child.trigger_and_wait("block", idempotency_key=key).unwrap()

    with runlane.Worker(concurrency=4, fetch_timeout=0.1):
        try:
            parent = lend_parent.trigger({})
            wait_status(parent, "EXECUTING")
            # someone else triggered the same (global) key earlier; it waits for the queue
            child = lend_child.trigger("block", idempotency_key="shared-child")
            go.set()
            wait_status(parent, "FROZEN")
            wait_status(child, "EXECUTING")  # on the slot the FROZEN parent lent it
            runlane.runs.cancel(parent)
            assert runlane.runs.retrieve(child).status == "EXECUTING"  # not a descendant
            other = lend_child.trigger("other")
            time.sleep(1.0)  # give admission every chance to (wrongly) start it
            # queue limit 1 and the borrower still runs: the other run must not start yet
            assert runlane.runs.retrieve(other).status == "QUEUED"
            release.set()
            assert wait_final(child).status == "COMPLETED"
            assert wait_final(other).status == "COMPLETED"
        finally:
            go.set()
            release.set()
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# G. Naming a shared queue without limits (a task's queue="name", or a trigger-time override
#    that sets only concurrency_limit) silently erases the limits runlane.queue() defined.


def test_referring_to_a_shared_queue_by_name_keeps_its_limits(env):
    rt = env()
    llm = runlane.queue(name="g-llm", concurrency_limit=1, total_concurrency_limit=3)
    a = _timed("g-a", queue=llm)
    b = _timed("g-b", queue="g-llm")  # the same queue, referred to by name
    assert b.queue_name == "g-llm"
    with runlane.Worker(concurrency=4, fetch_timeout=0.1):
        handles = [a.trigger({}) for _ in range(2)] + [b.trigger({}) for _ in range(2)]
        runs = [wait_final(h) for h in handles]
    info = runlane.queues.retrieve("g-llm")
    assert (info.concurrency_limit, info.total_concurrency_limit) == (1, 3)
    assert max_overlap([(r.output["start"], r.output["end"]) for r in runs]) == 1
    assert_no_slot_leaks(rt)


def test_trigger_time_limit_override_keeps_the_total_limit(env):
    env()
    capped = runlane.queue(name="g-capped", concurrency_limit=1, total_concurrency_limit=2)
    task = _timed("g-capped-task", queue=capped)
    task.trigger({}, concurrency_key="k1", queue={"name": "g-capped", "concurrency_limit": 2})
    info = runlane.queues.retrieve("g-capped")
    assert info.concurrency_limit == 2
    assert info.total_concurrency_limit == 2  # not part of the override: unchanged


# --------------------------------------------------------------------------------------------
# H. queues.pause holds dispatch of a queue, but a FROZEN parent still lends its slot to a
#    child in the paused queue, which then starts.


def test_a_paused_queue_does_not_start_children_on_a_lent_slot(env):
    rt = env()
    go = threading.Event()
    q = runlane.queue(name="h-paused", concurrency_limit=1)

    @runlane.task(id="h-child", queue=q)
    def h_child(payload):
        return "child"

    @runlane.task(id="h-parent", queue=q)
    def h_parent(payload):
        go.wait(60)
        return h_child.trigger_and_wait({}).unwrap()

    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        try:
            parent = h_parent.trigger({})
            wait_status(parent, "EXECUTING")
            runlane.queues.pause("h-paused")
            go.set()
            wait_for(lambda: runlane.runs.list(task_identifier="h-child").data)
            time.sleep(1.0)  # give admission every chance to (wrongly) start the child
            children = runlane.runs.list(task_identifier="h-child").data
            assert [c.status for c in children] == ["QUEUED"], "the child ran in a paused queue"
            assert runlane.runs.retrieve(parent).status == "FROZEN"
            runlane.queues.resume("h-paused")
            assert wait_final(parent).output == "child"
        finally:
            go.set()
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# I. Suspension travels as a BaseException through user code: a bare ``except:`` (or
#    ``except BaseException``) around a wait swallows it and the run completes with a wrong
#    result while its child still runs.


def test_a_bare_except_around_a_wait_does_not_complete_the_run_early(env):
    rt = env()
    release = threading.Event()

    @runlane.task(id="i-child")
    def i_child(payload):
        release.wait(60)
        return "child output"

    @runlane.task(id="i-parent")
    def i_parent(payload):
        try:
            return i_child.trigger_and_wait({}).unwrap()
        except:  # noqa: E722 - sloppy but common user code
            return "the wait failed"

    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        try:
            parent = i_parent.trigger({})
            wait_for(lambda: runlane.runs.list(task_identifier="i-child").data)
            time.sleep(1.0)  # well past the in-place window
            release.set()
            run = wait_final(parent)
        finally:
            release.set()
    assert run.output == "child output", run.output
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# J. An interrupt (cancel / max duration) delivered while the attempt's thread waits for the
#    SQLite write lock inside a runlane call (here: trigger) lands between BEGIN IMMEDIATE and
#    the try that rolls back: the transaction stays open, the store is locked for every
#    process, and the run is never recorded.


@pytest.mark.sqlite_only
def test_an_interrupt_during_a_store_write_does_not_wedge_the_store(env, sqlite_url):
    import sqlite3

    rt = env()
    path = rt.store.path
    go = threading.Event()

    @runlane.task(id="j-other")
    def j_other(payload):
        return payload

    @runlane.task(id="j-main")
    def j_main(payload):
        go.wait(60)
        j_other.trigger({})  # waits for the write lock held below
        return "done"

    with runlane.Worker(concurrency=2, fetch_timeout=0.1) as worker:
        handle = j_main.trigger({})
        wait_status(handle, "EXECUTING")
        other_writer = sqlite3.connect(path, isolation_level=None, timeout=60)
        other_writer.execute("BEGIN IMMEDIATE")  # another process is writing
        try:
            (active,) = worker.active.snapshot()
            go.set()
            wait_for(
                lambda: _in_function(active.control.thread_id, "write", "db.py"),
                message="the attempt to wait for the write lock inside trigger()",
            )
            # what Worker._supervise does when it sees the run canceled or past max duration
            active.control.interrupt("timeout")
        finally:
            other_writer.execute("ROLLBACK")
            other_writer.close()
        try:
            run = wait_final(handle, timeout=20)
            assert run.status == "TIMED_OUT"
            probe = sqlite3.connect(path, isolation_level=None, timeout=5)
            probe.execute("BEGIN IMMEDIATE")  # the store takes writes again
            probe.execute("ROLLBACK")
            probe.close()
        finally:  # if wedged, unlock it so the worker can stop (keeps this test short)
            for conn in list(rt.store.db._all):
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")


# --------------------------------------------------------------------------------------------
# K. Replay re-triggers fire-and-forget children triggered before a passed wait: every resume
#    creates another run (the reference, which checkpoints, triggers it once).


def test_a_trigger_before_a_wait_is_not_repeated_by_replay(env):
    rt = env()

    @runlane.task(id="k-email")
    def k_email(payload):
        return payload

    @runlane.task(id="k-step")
    def k_step(payload):
        return payload

    @runlane.task(id="k-flow")
    def k_flow(payload):
        k_email.trigger({"to": "user@example.com"})  # fire and forget
        k_step.trigger_and_wait(1)
        k_step.trigger_and_wait(2)
        return "done"

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        run = wait_final(k_flow.trigger({}), timeout=60)
        assert run.status == "COMPLETED"
        emails = runlane.runs.list(task_identifier="k-email").data
        for e in emails:
            wait_final(e)
    assert len(emails) == 1, f"{len(emails)} emails sent"
    assert_no_slot_leaks(rt)


# --------------------------------------------------------------------------------------------
# L. Time spent waiting in place before a suspension is added to the attempt's used time, so
#    a run that waits on children several times is TIMED_OUT though it barely executed.


def test_in_place_waiting_before_a_suspension_does_not_count_toward_max_duration(db_url):
    rt = runlane.configure(
        store=db_url,
        engine_interval=0.05,
        wait_in_place=0.8,
        limits={"min_max_duration_seconds": 1},
    )

    @runlane.task(id="l-slow-child")
    def l_slow_child(payload):
        time.sleep(1.2)  # longer than the in-place window: the parent suspends each time
        return payload

    @runlane.task(id="l-parent")
    def l_parent(payload):
        outputs = [l_slow_child.trigger_and_wait(i).unwrap() for i in range(4)]
        time.sleep(0.5)  # the only real work of this attempt: 0.5 s of a 2 s max duration
        return outputs

    try:
        with runlane.Worker(concurrency=4, fetch_timeout=0.1):
            run = wait_final(l_parent.trigger({}, max_duration=2), timeout=60)
        # ~3.2 s waiting in place in total, almost no execution: within a 2 s max duration
        assert run.status == "COMPLETED", run.error
        assert run.output == [0, 1, 2, 3]
        assert_no_slot_leaks(rt)
    finally:
        runtime.install(None).close()


# --------------------------------------------------------------------------------------------
# Coverage (these pass): slot and counter accounting on the paths a run can take.


def test_no_slot_leaks_after_cancels_retries_lending_expiry_and_the_env_cap(env):
    rt = env(concurrency_limit=3)
    release = threading.Event()
    q = runlane.queue(name="sweep", concurrency_limit=1)

    @runlane.task(id="sweep-leaf", queue=q, retry={"max_attempts": 2, "min_timeout_in_ms": 0})
    def leaf(payload, ctx):
        if payload == "block":
            release.wait(60)
        if payload == "fail" and ctx.attempt.number == 1:
            raise ValueError("first attempt fails")
        return payload

    @runlane.task(id="sweep-parent", queue=q)
    def parent(payload):
        items = [{"payload": "block"}, {"payload": "fail"}, {"payload": 1}]
        return leaf.batch_trigger_and_wait(items).unwrap()

    @runlane.task(id="sweep-timer", queue={"name": "sweep-t", "concurrency_limit": 1})
    def timer(payload):
        runlane.wait.for_(seconds=payload)
        return payload

    with runlane.Worker(concurrency=4, fetch_timeout=0.1):
        try:
            frozen = parent.trigger({})  # FROZEN, its slot lent to a blocked child
            wait_status(frozen, "FROZEN")
            wait_for(
                lambda: any(
                    r.status == "EXECUTING"
                    for r in runlane.runs.list(task_identifier="sweep-leaf").data
                )
            )
            runlane.runs.cancel(frozen)  # cascade: the borrower and the waiting siblings
            second = parent.trigger({})  # borrowed slot, a retried child, resume
            sleeper = timer.trigger(100)
            wait_status(sleeper, "FROZEN")
            runlane.runs.cancel(sleeper)  # FROZEN on a time wait
            short = timer.trigger(0.5)
            runlane.runs.cancel(leaf.trigger(1, delay="1h"))  # DELAYED
            undeployed = runlane.tasks.trigger("sweep-nobody", 1, ttl=1)  # WAITING_FOR_DEPLOY
            release.set()
            assert wait_final(second, 60).output == ["block", "fail", 1]
            assert wait_final(short, 60).status == "COMPLETED"
            assert wait_final(undeployed, 60).status == "EXPIRED"
        finally:
            release.set()
    assert_no_slot_leaks(rt)


def test_no_slot_leaks_when_a_borrower_is_reaped(env):
    rt = env(lease_timeout=1)
    hang = threading.Event()
    q = runlane.queue(name="reaped-borrower", concurrency_limit=1)

    @runlane.task(id="rb-leaf", queue=q, retry={"max_attempts": 2, "min_timeout_in_ms": 0})
    def leaf(payload, ctx):
        if ctx.attempt.number == 1:
            hang.wait(5)
        return payload

    @runlane.task(id="rb-parent", queue=q)
    def parent(payload):
        return leaf.trigger_and_wait(1).unwrap()

    with runlane.Worker(concurrency=3, fetch_timeout=0.1) as worker:
        try:
            handle = parent.trigger({})
            wait_status(handle, "FROZEN")
            renew = worker.host._renew_leases
            worker.host._renew_leases = lambda actives: None  # the borrower's lease lapses
            run = wait_final(handle, 60)
        finally:
            hang.set()
            worker.host._renew_leases = renew
        wait_for(lambda: len(worker.active) == 0)
    assert run.status == "COMPLETED" and run.output == 1
    child = runlane.runs.retrieve(runlane.runs.list(task_identifier="rb-leaf").data[0])
    assert [a.status for a in child.attempts] == ["CRASHED", "COMPLETED"]
    assert_no_slot_leaks(rt)


def test_no_slot_leaks_when_admitted_runs_expire_before_starting(env):
    rt = env()

    @runlane.task(id="expires-admitted", queue={"concurrency_limit": 2})
    def expires_admitted(payload):
        return payload

    # no worker: two runs are admitted (hold slots, sent to the broker), two wait for a slot
    handles = [expires_admitted.trigger(i, ttl=1) for i in range(4)]
    assert runlane.queues.retrieve("task/expires-admitted").running == 2

    def all_expired():
        rt.engine.tick()
        return all(runlane.runs.retrieve(h).status == "EXPIRED" for h in handles)

    wait_for(all_expired, timeout=30)
    if hasattr(rt.store, "db"):  # the local broker's queue lives in the same file
        assert rt.store.db.conn.execute("SELECT COUNT(*) FROM rl_dispatch").fetchone()[0] == 0
    assert_no_slot_leaks(rt)


def test_no_slot_leaks_when_a_resumed_run_waiting_for_an_env_slot_is_canceled(env):
    rt = env(concurrency_limit=1)
    release = threading.Event()

    @runlane.task(id="env-blocker")
    def env_blocker(payload):
        release.wait(30)
        return "blocked"

    @runlane.task(id="env-sleeper", queue={"concurrency_limit": 1})
    def env_sleeper(payload):
        runlane.wait.for_(seconds=0.5)
        return "slept"

    with runlane.Worker(concurrency=3, fetch_timeout=0.1):
        try:
            sleeper = env_sleeper.trigger({})
            wait_status(sleeper, "FROZEN")  # gave its environment slot back
            blocker = env_blocker.trigger({})
            wait_status(blocker, "EXECUTING")  # took the only environment slot
            # the time wait resolves: QUEUED again, holding its queue slot, no env slot free
            wait_for(lambda: runlane.runs.retrieve(sleeper).status == "QUEUED")
            runlane.runs.cancel(sleeper)
            release.set()
            assert wait_final(blocker).status == "COMPLETED"
            assert wait_final(env_sleeper.trigger({})).output == "slept"
        finally:
            release.set()
    assert_no_slot_leaks(rt)


def test_an_attempt_canceled_unnoticed_frees_its_slot_when_it_ends(env):
    """The run is canceled while its attempt runs, and the attempt ends before the worker's
    supervision noticed (no interrupt reached it): the store refuses its result, and its slot
    is free at once (not after the lease lapses)."""
    rt = env(lease_timeout=120)
    go = threading.Event()
    q = runlane.queue(name="unnoticed", concurrency_limit=1)

    @runlane.task(id="unnoticed-cancel", queue=q)
    def slow(payload):
        go.wait(30)
        return payload

    with runlane.Worker(concurrency=2, fetch_timeout=0.1) as worker:
        worker.host.supervise = lambda check_status=True: None  # no interrupt will come
        try:
            first = slow.trigger(1)
            wait_status(first, "EXECUTING")
            second = slow.trigger(2)  # waits for the queue's only slot
            runlane.runs.cancel(first)
            assert runlane.runs.retrieve(second).status == "QUEUED"
        finally:
            go.set()
        assert wait_final(second, 30).output == 2
        wait_for(lambda: len(worker.active) == 0)
    assert runlane.runs.retrieve(first).status == "CANCELED"
    assert_no_slot_leaks(rt)
