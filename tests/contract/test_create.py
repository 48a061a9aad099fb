"""Creating runs: status and slots as created, idempotency keys, batches, delays."""

from __future__ import annotations

from runlane.core.models import RunStatus
from runlane.core.types import Dispatch, RegisteredTask
from tests.contract.support import CANCELED, create, make, slots, status, taken


def test_a_queued_run_is_admitted_as_it_is_created(store, clock):
    new = make(clock)
    [created] = create(store, clock, new)
    assert (created.run_id, created.cached, created.status) == (new.id, False, RunStatus.QUEUED)
    run = store.get_run(new.id)
    assert run.status == RunStatus.QUEUED and run.attempt_count == 0 and run.attempts == []
    assert store.statuses([new.id, "run_missing"]) == {new.id: (RunStatus.QUEUED, 0)}
    assert store.count_runs() == {"QUEUED": 1}
    assert slots(store) == (1, 0)  # the slot is held from admission on
    assert store.take_ready(limit=10) == [Dispatch(new.id, "t", "task/t", None)]


def test_the_same_idempotency_key_returns_the_same_run(store, clock):
    first = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    create(store, clock, first)
    clock.advance(30)
    again = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    [created] = create(store, clock, again)
    assert (created.run_id, created.cached, created.status) == (first.id, True, RunStatus.QUEUED)
    assert store.get_run(again.id) is None
    assert store.count_runs() == {"QUEUED": 1}
    assert slots(store) == (1, 0)


def test_an_idempotency_key_is_per_task(store, clock):
    store.register_tasks([RegisteredTask("u", "task/u")], now=clock.now())
    first = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    other = make(
        clock,
        task="u",
        queue="task/u",
        idempotency_key="k",
        idempotency_key_expires_at=clock.now() + 60,
    )
    [a] = create(store, clock, first)
    [b] = create(store, clock, other)
    assert (a.cached, b.cached, b.run_id) == (False, False, other.id)
    assert store.count_runs() == {"QUEUED": 2}


def test_an_expired_idempotency_key_makes_a_new_run(store, clock):
    first = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    create(store, clock, first)
    clock.advance(61)
    again = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    [created] = create(store, clock, again)
    assert (created.run_id, created.cached) == (again.id, False)
    clock.advance(30)  # the new run owns the key now
    third = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    [cached] = create(store, clock, third)
    assert (cached.run_id, cached.cached) == (again.id, True)
    assert store.count_runs() == {"QUEUED": 2}


def test_a_key_answers_with_its_run_whatever_the_run_became(store, clock):
    first = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    create(store, clock, first)
    store.cancel(first.id, now=clock.now(), error=CANCELED)
    again = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    [created] = create(store, clock, again)
    assert (created.run_id, created.cached, created.status) == (
        first.id,
        True,
        RunStatus.CANCELED,
    )


def test_a_batch_is_created_whole_in_item_order(store, clock):
    existing = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    create(store, clock, existing)
    items = [make(clock), make(clock, idempotency_key="k", idempotency_key_expires_at=1e12)]
    items.append(make(clock))
    created = create(store, clock, *items, batch_id="batch_1")
    assert [c.run_id for c in created] == [items[0].id, existing.id, items[2].id]
    assert [c.cached for c in created] == [False, True, False]
    batch = store.get_batch("batch_1")
    assert batch is not None and batch.run_ids == [items[0].id, existing.id, items[2].id]
    assert store.count_runs() == {"QUEUED": 3}
    assert slots(store) == (3, 0)


def test_one_key_twice_in_one_batch_makes_one_run(store, clock):
    a = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    b = make(clock, idempotency_key="k", idempotency_key_expires_at=clock.now() + 60)
    created = create(store, clock, a, b, batch_id="batch_2")
    assert [(c.run_id, c.cached) for c in created] == [(a.id, False), (a.id, True)]
    assert store.get_batch("batch_2").run_ids == [a.id, a.id]
    assert store.count_runs() == {"QUEUED": 1}


def test_a_delayed_run_holds_no_slot_until_its_time(store, clock):
    new = make(clock, status=RunStatus.DELAYED, delay_until=clock.now() + 60)
    [created] = create(store, clock, new)
    assert created.status == RunStatus.DELAYED
    assert store.count_runs() == {"DELAYED": 1}
    assert slots(store) == (0, 0)
    assert taken(store) == []
    clock.advance(59)
    assert store.promote_due(now=clock.now(), limit=100) == 0
    assert status(store, new.id) == RunStatus.DELAYED
    clock.advance(1)
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert store.statuses([new.id]) == {new.id: (RunStatus.QUEUED, 0)}
    assert slots(store) == (1, 0)
    assert taken(store) == [new.id]


def test_a_run_of_an_unknown_task_waits_for_its_deploy(store, clock):
    new = make(clock, task="later", queue="task/later", status=RunStatus.WAITING_FOR_DEPLOY)
    create(store, clock, new)
    assert store.count_runs() == {"WAITING_FOR_DEPLOY": 1}
    assert taken(store) == []
    store.register_tasks([RegisteredTask("later", "task/later", 1)], now=clock.now())
    assert status(store, new.id) == RunStatus.QUEUED
    assert slots(store, "task/later") == (1, 0)
    assert taken(store) == [new.id]
