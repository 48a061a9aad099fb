"""Cancel (a waiting, an admitted, an executing and a frozen run, and descendants) and TTL
expiry, with the slots each one gives back."""

from __future__ import annotations

from runlane.core.models import RunStatus
from runlane.core.types import Dispatch, WaitSpec
from tests.contract.support import (
    CANCELED,
    attempts,
    completed,
    create,
    finish,
    make,
    slots,
    start,
    started,
    status,
    taken,
)

ONE = {"queue": "one", "queue_defined": True, "queue_limit": 1}


def _two_in_line(store, clock):
    """Two runs of a limit-1 queue: the first admitted, the second waiting."""
    first = make(clock, **ONE)
    create(store, clock, first)
    clock.advance(1)
    second = make(clock, **ONE)
    create(store, clock, second)
    assert taken(store) == [first.id]
    return first, second


def test_canceling_a_waiting_run_takes_it_out_of_line(store, clock):
    first, second = _two_in_line(store, clock)
    run = store.cancel(second.id, now=clock.now(), error=CANCELED)
    assert run.status == RunStatus.CANCELED and run.error.message == "Canceled by the test"
    assert run.finished_at.timestamp() == clock.now()
    assert slots(store, "one") == (1, 0)
    assert finish(store, first.id, 1, completed(), clock) is False  # never started
    started(store, first.id, clock)
    ready: list[Dispatch] = []
    assert finish(store, first.id, 1, completed(), clock, ready)
    assert ready == []
    assert slots(store, "one") == (0, 0)
    assert store.count_runs() == {"COMPLETED": 1, "CANCELED": 1}


def test_canceling_an_admitted_run_gives_its_slot_to_the_next(store, clock):
    first, second = _two_in_line(store, clock)
    store.cancel(first.id, now=clock.now(), error=CANCELED)
    assert status(store, first.id) == RunStatus.CANCELED
    assert start(store, first.id, clock) is None
    assert taken(store) == [second.id]
    assert slots(store, "one") == (1, 0)


def test_an_executing_run_keeps_its_slot_until_its_attempt_stops(store, clock):
    first, second = _two_in_line(store, clock)
    started(store, first.id, clock)
    run = store.cancel(first.id, now=clock.now(), error=CANCELED)
    assert run.status == RunStatus.CANCELED
    assert attempts(store, first.id) == [(1, "CANCELED")]
    assert store.statuses([first.id]) == {first.id: (RunStatus.CANCELED, 1)}
    assert slots(store, "one") == (1, 1)  # the attempt may still be running
    assert taken(store) == []
    assert store.heartbeat(
        {first.id: 1}, worker_id="w1", lease_until=clock.now() + 30, now=clock.now()
    ) == {first.id}
    ready: list[Dispatch] = []
    store.release_canceled(first.id, 1, now=clock.now(), ready=ready)
    assert [d.run_id for d in ready] == [second.id]
    assert slots(store, "one") == (1, 0)
    assert store.get_run(first.id).status == RunStatus.CANCELED


def test_canceling_a_final_run_changes_nothing(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    finish(store, new.id, 1, completed(), clock)
    run = store.cancel(new.id, now=clock.now(), error=CANCELED)
    assert (run.status, run.error) == (RunStatus.COMPLETED, None)
    assert attempts(store, new.id) == [(1, "COMPLETED")]
    assert store.cancel("run_missing", now=clock.now(), error=CANCELED) is None


def test_canceling_a_frozen_parent_cancels_its_children(store, clock):
    parent = make(clock, **ONE)
    create(store, clock, parent)
    assert taken(store) == [parent.id]
    started(store, parent.id, clock)
    child = make(clock, parent_id=parent.id, root_id=parent.id, **ONE)
    grandchild_parent = make(clock, queue="other", parent_id=parent.id, root_id=parent.id)
    wait = WaitSpec(parent.id, 1, 0, "batch", "fp", batch_id="batch_c")
    create(
        store, clock, child, grandchild_parent, parent_id=parent.id, batch_id="batch_c", wait=wait
    )
    grandchild = make(clock, queue="other", parent_id=grandchild_parent.id, root_id=parent.id)
    create(store, clock, grandchild, parent_id=grandchild_parent.id)
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    assert set(taken(store)) == {child.id, grandchild_parent.id, grandchild.id}
    started(store, child.id, clock)
    assert slots(store, "one") == (1, 0)  # the child runs in the parent's slot
    store.cancel(parent.id, now=clock.now(), error=CANCELED)
    everyone = [parent.id, child.id, grandchild_parent.id, grandchild.id]
    assert {r: s for r, (s, _) in store.statuses(everyone).items()} == dict.fromkeys(
        everyone, RunStatus.CANCELED
    )
    assert attempts(store, parent.id) == [(1, "CANCELED")]
    assert attempts(store, child.id) == [(1, "CANCELED")]
    assert slots(store, "one") == (1, 0)  # the child's attempt has not stopped yet
    assert slots(store, "other") == (0, 0)
    store.release_canceled(child.id, 1, now=clock.now())
    assert slots(store, "one") == (0, 0)
    assert store.count_runs() == {"CANCELED": 4}


def test_a_run_not_started_within_its_ttl_expires(store, clock):
    _two_in_line(store, clock)
    late = make(clock, ttl=60, **ONE)
    create(store, clock, late)
    clock.advance(59)
    assert store.expire_runs(now=clock.now(), limit=100) == []
    assert slots(store, "one") == (1, 2)
    clock.advance(1)
    assert store.expire_runs(now=clock.now(), limit=100) == [late.id]
    run = store.get_run(late.id)
    assert run.status == RunStatus.EXPIRED and run.error.code == "TTL_EXPIRED"
    assert run.expired_at.timestamp() == clock.now()
    assert slots(store, "one") == (1, 1)
    assert store.count_runs() == {"QUEUED": 2, "EXPIRED": 1}


def test_an_admitted_run_that_expires_frees_its_slot(store, clock):
    first = make(clock, ttl=10, **ONE)
    create(store, clock, first)
    second = make(clock, **ONE)
    create(store, clock, second)
    assert taken(store) == [first.id]
    clock.advance(10)
    assert store.expire_runs(now=clock.now(), limit=100) == [first.id]
    assert start(store, first.id, clock) is None
    assert taken(store) == [second.id]
    assert slots(store, "one") == (1, 0)


def test_a_started_run_does_not_expire(store, clock):
    new = make(clock, ttl=10)
    create(store, clock, new)
    started(store, new.id, clock)
    clock.advance(20)
    assert store.expire_runs(now=clock.now(), limit=100) == []
    assert status(store, new.id) == RunStatus.EXECUTING


def test_a_delayed_runs_ttl_counts_from_when_it_is_queued(store, clock):
    new = make(clock, ttl=10, status=RunStatus.DELAYED, delay_until=clock.now() + 60)
    create(store, clock, new)
    clock.advance(60)
    assert store.expire_runs(now=clock.now(), limit=100) == []
    store.set_paused("task/t", None, paused=True, until=None, now=clock.now())
    assert store.promote_due(now=clock.now(), limit=100) == 1
    clock.advance(9)
    assert store.expire_runs(now=clock.now(), limit=100) == []
    clock.advance(1)
    assert store.expire_runs(now=clock.now(), limit=100) == [new.id]
    assert slots(store) == (0, 0)
