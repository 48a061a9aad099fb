"""Slot lending: a FROZEN run keeps its queue slot and lends it to a descendant it waits on
in the same sub-queue, so recursive waits on a limit-1 queue do not deadlock."""

from __future__ import annotations

from runlane.core.models import RunStatus
from runlane.core.types import Dispatch, WaitSpec
from tests.contract.support import (
    CANCELED,
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


def _parent_on_one(store, clock):
    parent = make(clock, **ONE)
    create(store, clock, parent)
    assert taken(store) == [parent.id]
    started(store, parent.id, clock)
    clock.advance(1)
    return parent


def _child(store, clock, parent, index=0, **fields):
    child = make(clock, parent_id=parent.id, root_id=parent.root_id or parent.id, **fields)
    create(store, clock, child, parent_id=parent.id, wait=WaitSpec(parent.id, 1, index, "run", "c"))
    clock.advance(1)
    return child


def test_a_frozen_parent_lends_its_slot_to_its_child(store, clock):
    parent = _parent_on_one(store, clock)
    child = _child(store, clock, parent, **ONE)
    assert slots(store, "one") == (1, 1)  # the child waits for the only slot
    ready: list[Dispatch] = []
    assert store.suspend(parent.id, 1, 0, now=clock.now(), ready=ready) == RunStatus.FROZEN
    assert [d.run_id for d in ready] == [child.id]  # on loan
    assert slots(store, "one") == (1, 0)  # one slot, held by the parent, used by the child
    started(store, child.id, clock)
    ready = []
    assert finish(store, child.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [parent.id]  # back in the slot it kept
    assert slots(store, "one") == (1, 0)
    assert started(store, parent.id, clock).resumed
    assert finish(store, parent.id, 1, completed(), clock)
    assert slots(store, "one") == (0, 0)
    assert store.count_runs() == {"COMPLETED": 2}


def test_a_loan_goes_to_the_awaited_child_not_to_a_run_ahead_of_it(store, clock):
    parent = _parent_on_one(store, clock)
    stranger = make(clock, **ONE)
    create(store, clock, stranger)
    clock.advance(1)
    child = _child(store, clock, parent, **ONE)
    assert slots(store, "one") == (1, 2)
    store.suspend(parent.id, 1, 0, now=clock.now())
    assert taken(store) == [child.id]
    assert start(store, stranger.id, clock) is None
    started(store, child.id, clock)
    finish(store, child.id, 1, completed(), clock)
    assert taken(store) == [parent.id]  # the parent first: it holds the slot
    assert status(store, stranger.id) == RunStatus.QUEUED
    started(store, parent.id, clock)
    ready: list[Dispatch] = []
    finish(store, parent.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [stranger.id]
    assert slots(store, "one") == (1, 0)


def test_a_frozen_parent_keeps_its_slot_from_a_stranger(store, clock):
    """The child runs on another queue: nothing to lend, and the slot stays the parent's."""
    parent = _parent_on_one(store, clock)
    stranger = make(clock, **ONE)
    create(store, clock, stranger)
    child = _child(store, clock, parent, queue="free")
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    assert taken(store) == [child.id]
    assert (slots(store, "one"), slots(store, "free")) == ((1, 1), (1, 0))
    started(store, child.id, clock)
    finish(store, child.id, 1, completed(), clock)
    assert taken(store) == [parent.id]
    assert slots(store, "one") == (1, 1)


def test_a_loan_reaches_a_grandchild_through_another_queue(store, clock):
    """parent (one) → child (free) → grandchild (one): the grandchild runs on the parent's
    slot, and every wait unwinds."""
    parent = _parent_on_one(store, clock)
    child = _child(store, clock, parent, queue="free")
    store.suspend(parent.id, 1, 0, now=clock.now())
    assert taken(store) == [child.id]
    started(store, child.id, clock)
    grandchild = _child(store, clock, child, **ONE)
    assert taken(store) == [grandchild.id]  # the parent's slot is idle: lent at once
    assert slots(store, "one") == (1, 0)
    assert store.suspend(child.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    started(store, grandchild.id, clock)
    ready = []
    finish(store, grandchild.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [child.id]
    started(store, child.id, clock)
    ready = []
    finish(store, child.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [parent.id]
    started(store, parent.id, clock)
    finish(store, parent.id, 1, completed(), clock)
    assert (slots(store, "one"), slots(store, "free")) == ((0, 0), (0, 0))
    assert store.count_runs() == {"COMPLETED": 3}


def test_a_paused_queue_lends_nothing(store, clock):
    parent = _parent_on_one(store, clock)
    child = _child(store, clock, parent, **ONE)
    assert store.set_paused("one", None, paused=True, until=None, now=clock.now())
    assert store.suspend(parent.id, 1, 0, now=clock.now()) == RunStatus.FROZEN
    assert taken(store) == []
    assert slots(store, "one") == (1, 1)
    assert store.set_paused("one", None, paused=False, until=None, now=clock.now())
    assert taken(store) == [child.id]
    assert slots(store, "one") == (1, 0)


def test_a_borrower_needs_an_environment_slot_of_its_own(make_store, clock):
    """Environment limit 1: the frozen parent gives its environment slot up, which the
    borrowing child takes; the resumed parent waits until the child has ended."""
    store = make_store(concurrency_limit=1)
    parent = _parent_on_one(store, clock)
    child = _child(store, clock, parent, **ONE)
    store.suspend(parent.id, 1, 0, now=clock.now())
    assert taken(store) == [child.id]
    started(store, child.id, clock)
    ready: list[Dispatch] = []
    finish(store, child.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [parent.id]
    assert slots(store, "one") == (1, 0)


def test_a_canceled_borrower_returns_the_loan(store, clock):
    parent = _parent_on_one(store, clock)
    first = _child(store, clock, parent, **ONE)
    store.suspend(parent.id, 1, 0, now=clock.now())
    assert taken(store) == [first.id]
    started(store, first.id, clock)
    store.cancel(first.id, now=clock.now(), error=CANCELED)
    store.release_canceled(first.id, 1, now=clock.now())
    assert status(store, parent.id) == RunStatus.QUEUED  # its wait resolved
    assert taken(store) == [parent.id]
    assert slots(store, "one") == (1, 0)
    started(store, parent.id, clock)
    finish(store, parent.id, 1, completed(), clock)
    assert slots(store, "one") == (0, 0)
