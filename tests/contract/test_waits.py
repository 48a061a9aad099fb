"""Durable waits: a waitpoint on children (trigger_and_wait, batches) or on time; suspend
(EXECUTING → FROZEN, the same attempt resumed later), and resolution."""

from __future__ import annotations

from runlane.core.models import RunStatus
from runlane.core.types import Dispatch, WaitSpec
from tests.contract.support import (
    CANCELED,
    attempts,
    completed,
    create,
    failed,
    finish,
    make,
    slots,
    start,
    started,
    status,
    taken,
)


def _executing_parent(store, clock):
    parent = make(clock)
    create(store, clock, parent)
    assert taken(store) == [parent.id]
    started(store, parent.id, clock)
    return parent


def test_a_parent_suspends_on_its_child_and_resumes_its_attempt(store, clock):
    parent = _executing_parent(store, clock)
    child = make(clock, parent_id=parent.id, root_id=parent.id)
    wait = WaitSpec(parent.id, 1, 0, "run", "child-fp")
    create(store, clock, child, parent_id=parent.id, wait=wait)
    [point] = store.waitpoints(parent.id, 1)
    assert (point.index, point.kind, point.fingerprint, point.run_ids, point.resolved) == (
        0,
        "run",
        "child-fp",
        [child.id],
        False,
    )
    assert not store.waitpoint_resolved(parent.id, 1, 0, now=clock.now())
    clock.advance(1)
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    assert store.statuses([parent.id]) == {parent.id: (RunStatus.FROZEN, 1)}
    assert attempts(store, parent.id) == [(1, "SUSPENDED")]
    assert start(store, parent.id, clock) is None  # frozen: nothing to start
    assert slots(store) == (2, 0)  # the parent keeps its queue slot while it waits
    assert taken(store) == [child.id]
    started(store, child.id, clock)
    clock.advance(1)
    ready: list[Dispatch] = []
    assert finish(store, child.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [parent.id]
    assert store.waitpoint_resolved(parent.id, 1, 0, now=clock.now())
    assert store.waitpoints(parent.id, 1)[0].resolved
    assert store.statuses([parent.id]) == {parent.id: (RunStatus.QUEUED, 1)}
    assert slots(store) == (1, 0)
    resumed = started(store, parent.id, clock)
    assert (resumed.attempt_number, resumed.resumed) == (1, True)
    assert attempts(store, parent.id) == [(1, "EXECUTING")]
    assert finish(store, parent.id, 1, completed(), clock)
    assert attempts(store, parent.id) == [(1, "COMPLETED")]
    assert slots(store) == (0, 0)
    assert store.count_runs() == {"COMPLETED": 2}


def test_a_failed_child_resolves_the_wait_too(store, clock):
    parent = _executing_parent(store, clock)
    child = make(clock, parent_id=parent.id, root_id=parent.id)
    create(store, clock, child, parent_id=parent.id, wait=WaitSpec(parent.id, 1, 0, "run", "c"))
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    started(store, child.id, clock)
    assert finish(store, child.id, 1, failed(), clock)
    assert status(store, parent.id) == RunStatus.QUEUED
    assert taken(store) == [parent.id]
    assert slots(store) == (1, 0)


def test_a_batch_wait_resolves_when_its_last_child_ends(store, clock):
    parent = _executing_parent(store, clock)
    kids = [make(clock, parent_id=parent.id, root_id=parent.id) for _ in range(2)]
    wait = WaitSpec(parent.id, 1, 0, "batch", "b", batch_id="batch_w")
    create(store, clock, *kids, parent_id=parent.id, batch_id="batch_w", wait=wait)
    assert store.get_batch("batch_w").parent_id == parent.id
    assert store.waitpoints(parent.id, 1)[0].run_ids == [k.id for k in kids]
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    for kid in kids:
        started(store, kid.id, clock)
    assert finish(store, kids[0].id, 1, completed(), clock)
    assert status(store, parent.id) == RunStatus.FROZEN
    assert not store.waitpoint_resolved(parent.id, 1, 0, now=clock.now())
    assert store.cancel(kids[1].id, now=clock.now(), error=CANCELED).status == "CANCELED"
    store.release_canceled(kids[1].id, 1, now=clock.now())
    assert store.statuses([parent.id]) == {parent.id: (RunStatus.QUEUED, 1)}
    assert store.waitpoint_resolved(parent.id, 1, 0, now=clock.now())


def test_suspending_on_a_wait_already_resolved_queues_the_run_at_once(store, clock):
    """The child finished before the parent decided to suspend."""
    parent = _executing_parent(store, clock)
    child = make(clock, parent_id=parent.id, root_id=parent.id)
    create(store, clock, child, parent_id=parent.id, wait=WaitSpec(parent.id, 1, 0, "run", "c"))
    started(store, child.id, clock)
    assert finish(store, child.id, 1, completed(), clock)
    assert store.waitpoint_resolved(parent.id, 1, 0, now=clock.now())
    ready: list[Dispatch] = []
    assert store.suspend(parent.id, 1, 0, now=clock.now(), ready=ready) == RunStatus.QUEUED
    assert [d.run_id for d in ready] == [parent.id]
    assert attempts(store, parent.id) == [(1, "SUSPENDED")]
    assert started(store, parent.id, clock).resumed


def test_waiting_on_a_run_that_already_ended_is_resolved_from_the_start(store, clock):
    done = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 600)
    create(store, clock, done)
    started(store, done.id, clock)
    finish(store, done.id, 1, completed(), clock)
    parent = _executing_parent(store, clock)
    again = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 600)
    [created] = create(
        store, clock, again, parent_id=parent.id, wait=WaitSpec(parent.id, 1, 0, "run", "c")
    )
    assert (created.run_id, created.cached) == (done.id, True)
    [point] = store.waitpoints(parent.id, 1)
    assert (point.run_ids, point.resolved) == ([done.id], True)
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.QUEUED


def test_a_time_wait_resumes_the_run_when_due(store, clock):
    parent = _executing_parent(store, clock)
    spec = WaitSpec(parent.id, 1, 0, "time", "10s", resume_at=clock.now() + 10)
    point = store.create_waitpoint(spec, now=clock.now())
    assert (point.kind, point.resume_at, point.resolved) == ("time", clock.now() + 10, False)
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    assert slots(store) == (1, 0)
    clock.advance(9)
    store.promote_due(now=clock.now(), limit=100)
    assert status(store, parent.id) == RunStatus.FROZEN
    assert not store.waitpoint_resolved(parent.id, 1, 0, now=clock.now())
    clock.advance(1)
    assert store.waitpoint_resolved(parent.id, 1, 0, now=clock.now())  # due, before promote
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert store.statuses([parent.id]) == {parent.id: (RunStatus.QUEUED, 1)}
    assert store.waitpoints(parent.id, 1)[0].resolved
    assert taken(store) == [parent.id]
    assert started(store, parent.id, clock).resumed


def test_suspending_on_a_time_wait_already_due_queues_the_run_at_once(store, clock):
    parent = _executing_parent(store, clock)
    spec = WaitSpec(parent.id, 1, 0, "time", "0s", resume_at=clock.now())
    store.create_waitpoint(spec, now=clock.now())
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.QUEUED
    assert taken(store) == [parent.id]


def test_a_replay_log_lists_the_attempts_waits_in_order(store, clock):
    parent = _executing_parent(store, clock)
    first = WaitSpec(parent.id, 1, 0, "time", "a", resume_at=clock.now())
    store.create_waitpoint(first, now=clock.now())
    child = make(clock, parent_id=parent.id, root_id=parent.id)
    create(store, clock, child, parent_id=parent.id, wait=WaitSpec(parent.id, 1, 1, "run", "b"))
    again = store.create_waitpoint(first, now=clock.now())  # recorded once
    assert (again.index, again.fingerprint) == (0, "a")
    log = store.waitpoints(parent.id, 1)
    assert [(w.index, w.kind, w.fingerprint) for w in log] == [(0, "time", "a"), (1, "run", "b")]
    assert store.waitpoints(parent.id, 2) == []


def test_a_resumed_run_waits_for_an_environment_slot(make_store, clock):
    """Environment limit 1: a FROZEN run gives its environment slot up, so another run is
    admitted; when its wait resolves it queues for an environment slot again."""
    store = make_store(concurrency_limit=1)
    parent = _executing_parent(store, clock)
    other = make(clock, queue="other")
    create(store, clock, other)
    assert taken(store) == []
    store.create_waitpoint(
        WaitSpec(parent.id, 1, 0, "time", "t", resume_at=clock.now() + 5), now=clock.now()
    )
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    assert taken(store) == [other.id]
    started(store, other.id, clock)
    clock.advance(5)
    store.promote_due(now=clock.now(), limit=100)
    assert status(store, parent.id) == RunStatus.QUEUED
    assert taken(store) == []
    assert start(store, parent.id, clock) is None
    ready: list[Dispatch] = []
    assert finish(store, other.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [parent.id]
    assert started(store, parent.id, clock).resumed
