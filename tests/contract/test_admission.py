"""Admission before dispatch: FIFO within a sub-queue, round robin across concurrency keys,
and the limits of a queue, of a queue's keys together and of the environment."""

from __future__ import annotations

from typing import Any

from runlane.core.models import RunStatus
from runlane.core.types import Dispatch
from tests.contract.support import (
    completed,
    create,
    finish,
    ids,
    make,
    slots,
    start,
    started,
    taken,
)

ONE = {"queue": "one", "queue_defined": True, "queue_limit": 1}


def _run_to_end(store: Any, run_id: str, clock: Any) -> list[str]:
    """Start and complete ``run_id``; the runs its freed slot admitted."""
    attempt = started(store, run_id, clock)
    ready: list[Dispatch] = []
    assert finish(store, run_id, attempt.attempt_number, completed(), clock, ready)
    return ids(ready)


def _serve_all(store: Any, clock: Any, first: list[str]) -> list[str]:
    """Runs admitted one after the other, each run to its end as it is admitted."""
    order, todo = list(first), list(first)
    while todo:
        clock.advance(1)
        admitted = _run_to_end(store, todo.pop(0), clock)
        order += admitted
        todo += admitted
    return order


def test_a_queue_admits_in_the_order_runs_were_queued(store, clock):
    runs = []
    for _ in range(4):
        runs.append(make(clock, **ONE))
        create(store, clock, runs[-1])
        clock.advance(1)
    assert slots(store, "one") == (1, 3)
    first = taken(store)
    assert first == [runs[0].id]
    assert _serve_all(store, clock, first) == [r.id for r in runs]
    assert slots(store, "one") == (0, 0)
    assert store.count_runs() == {"COMPLETED": 4}


def test_runs_created_together_are_admitted_in_their_order(store, clock):
    runs = [make(clock, **ONE) for _ in range(3)]
    create(store, clock, *runs)
    first = taken(store)
    assert first == [runs[0].id]
    assert _serve_all(store, clock, first) == [r.id for r in runs]


def test_concurrency_keys_are_served_round_robin(store, clock):
    """A queue whose keys share one slot (total limit 1): key a has three runs waiting
    before key b's two, yet they alternate."""
    shared = {"queue": "rr", "queue_defined": True, "queue_limit": 1, "queue_total_limit": 1}
    a = [make(clock, concurrency_key="a", **shared) for _ in range(3)]
    create(store, clock, *a)
    clock.advance(1)
    b = [make(clock, concurrency_key="b", **shared) for _ in range(2)]
    create(store, clock, *b)
    assert slots(store, "rr") == (1, 4)
    first = taken(store)
    assert first == [a[0].id]
    assert _serve_all(store, clock, first) == [a[0].id, b[0].id, a[1].id, b[1].id, a[2].id]
    assert slots(store, "rr") == (0, 0)


def test_concurrency_keys_are_served_round_robin_under_the_environment_limit(make_store, clock):
    store = make_store(concurrency_limit=1)
    a = [make(clock, queue="free", concurrency_key="a") for _ in range(3)]
    create(store, clock, *a)
    clock.advance(1)
    b = [make(clock, queue="free", concurrency_key="b") for _ in range(2)]
    create(store, clock, *b)
    first = taken(store)
    assert first == [a[0].id]
    assert _serve_all(store, clock, first) == [a[0].id, b[0].id, a[1].id, b[1].id, a[2].id]


def test_a_queue_limit_applies_to_each_concurrency_key(store, clock):
    per_key = {"queue": "keyed", "queue_defined": True, "queue_limit": 1}
    a1 = make(clock, concurrency_key="a", **per_key)
    a2 = make(clock, concurrency_key="a", **per_key)
    b1 = make(clock, concurrency_key="b", **per_key)
    create(store, clock, a1, a2, b1)
    assert sorted(taken(store)) == sorted([a1.id, b1.id])
    assert slots(store, "keyed") == (2, 1)
    [info] = store.queues(["keyed"])
    assert (info.concurrency_limit, info.total_concurrency_limit) == (1, None)


def test_a_queue_admits_up_to_its_concurrency_limit(store, clock):
    two = {"queue": "two", "queue_defined": True, "queue_limit": 2}
    runs = [make(clock, **two) for _ in range(3)]
    create(store, clock, *runs)
    assert taken(store) == [runs[0].id, runs[1].id]
    assert slots(store, "two") == (2, 1)
    assert store.statuses([r.id for r in runs]) == {r.id: (RunStatus.QUEUED, 0) for r in runs}
    # a waiting run cannot start: it holds no slot
    assert start(store, runs[2].id, clock) is None
    assert _run_to_end(store, runs[0].id, clock) == [runs[2].id]
    assert slots(store, "two") == (2, 0)


def test_the_environment_limit_spans_queues(make_store, clock):
    store = make_store(concurrency_limit=2)
    x = [make(clock, queue="x") for _ in range(2)]
    create(store, clock, *x)
    clock.advance(1)
    y = make(clock, queue="y")
    create(store, clock, y)
    assert taken(store) == [x[0].id, x[1].id]
    assert (slots(store, "x"), slots(store, "y")) == ((2, 0), (0, 1))
    assert _run_to_end(store, x[1].id, clock) == [y.id]
    assert (slots(store, "x"), slots(store, "y")) == ((1, 0), (1, 0))


def test_a_paused_queue_admits_nothing_until_resumed(store, clock):
    assert store.set_paused("one", None, paused=True, until=None, now=clock.now()) is False
    first = make(clock, **ONE)
    create(store, clock, first)
    assert taken(store) == [first.id]
    assert store.set_paused("one", None, paused=True, until=None, now=clock.now())
    second = make(clock, **ONE)
    create(store, clock, second)
    assert _run_to_end(store, first.id, clock) == []
    assert slots(store, "one") == (0, 1)
    [info] = store.queues(["one"])
    assert info.paused
    assert store.set_paused("one", None, paused=False, until=None, now=clock.now())
    assert taken(store) == [second.id]
    assert slots(store, "one") == (1, 0)


def test_a_pause_with_an_end_is_lifted_by_promote_due(store, clock):
    assert store.set_paused("task/t", None, paused=True, until=clock.now() + 10, now=clock.now())
    new = make(clock)
    create(store, clock, new)
    assert taken(store) == []
    clock.advance(10)
    store.promote_due(now=clock.now(), limit=100)
    assert taken(store) == [new.id]
    [info] = store.queues(["task/t"])
    assert (info.paused, info.running, info.queued) == (False, 1, 0)
