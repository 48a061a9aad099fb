"""The outbox: what a transition admits goes to the caller's ``ready`` list in the same call,
or else waits in the store for ``take_ready``; and redelivery of admitted runs."""

from __future__ import annotations

from runlane.core.models import RunStatus
from runlane.core.types import Dispatch
from tests.contract.support import CANCELED, create, ids, make, started, taken


def test_a_ready_list_gets_what_the_call_admitted_and_the_outbox_nothing(store, clock):
    a, b = make(clock, machine="large-1x"), make(clock)
    ready: list[Dispatch] = []
    create(store, clock, a, b, ready=ready)
    assert ready == [Dispatch(a.id, "t", "task/t", "large-1x"), Dispatch(b.id, "t", "task/t")]
    assert taken(store) == []


def test_the_outbox_hands_each_run_out_once_up_to_the_limit(store, clock):
    runs = [make(clock) for _ in range(3)]
    create(store, clock, *runs)
    first = ids(store.take_ready(limit=2))
    rest = ids(store.take_ready(limit=2))
    assert len(first) == 2 and len(rest) == 1
    assert sorted(first + rest) == sorted(r.id for r in runs)
    assert taken(store) == []


def test_the_outbox_drops_a_run_that_left_the_queue(store, clock):
    gone, kept, begun = make(clock), make(clock), make(clock)
    create(store, clock, gone, kept, begun)
    store.cancel(gone.id, now=clock.now(), error=CANCELED)
    started(store, begun.id, clock)
    assert taken(store) == [kept.id]


def test_admitted_runs_not_started_are_listed_for_redelivery(store, clock):
    one = {"queue": "one", "queue_defined": True, "queue_limit": 1}
    admitted, waiting, begun = make(clock, **one), make(clock, **one), make(clock)
    create(store, clock, admitted, waiting, begun)
    started(store, begun.id, clock)
    assert store.queued_run_ids(older_than=clock.now(), limit=100) == []
    clock.advance(60)
    again = store.queued_run_ids(older_than=clock.now(), limit=100)
    assert again == [Dispatch(admitted.id, "t", "one")]
    assert store.statuses([waiting.id]) == {waiting.id: (RunStatus.QUEUED, 0)}
