"""Less travelled transitions: guarded ``transition`` (reschedule), canceling runs that hold
no slot, TTLs of runs waiting for a deploy, and what ``promote_due`` / ``count_runs`` report."""

from __future__ import annotations

from runlane.core.models import RunStatus
from runlane.core.types import Dispatch, RegisteredTask, WaitSpec
from tests.contract.support import (
    CANCELED,
    attempts,
    create,
    finish,
    make,
    retrying,
    slots,
    started,
    status,
    taken,
)


def test_a_guarded_transition_moves_only_from_the_expected_status(store, clock):
    new = make(clock, status=RunStatus.DELAYED, delay_until=clock.now() + 60)
    create(store, clock, new)
    assert (
        store.transition(new.id, expect=[RunStatus.QUEUED], to=RunStatus.DELAYED, now=clock.now())
        is None
    )
    assert (
        store.transition(
            "run_missing", expect=[RunStatus.DELAYED], to=RunStatus.DELAYED, now=clock.now()
        )
        is None
    )
    run = store.transition(
        new.id,
        expect=[RunStatus.DELAYED],
        to=RunStatus.DELAYED,
        now=clock.now(),
        changes={"delay_until": clock.now() + 10},
    )
    assert run is not None and run.status == RunStatus.DELAYED
    assert run.delayed_until.timestamp() == clock.now() + 10
    clock.advance(10)
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert taken(store) == [new.id]


def test_a_run_rescheduled_later_is_not_promoted_at_its_old_time(store, clock):
    new = make(clock, status=RunStatus.DELAYED, delay_until=clock.now() + 10)
    create(store, clock, new)
    store.transition(
        new.id,
        expect=[RunStatus.DELAYED],
        to=RunStatus.DELAYED,
        now=clock.now(),
        changes={"delay_until": clock.now() + 60},
    )
    clock.advance(10)
    assert store.promote_due(now=clock.now(), limit=100) == 0
    assert status(store, new.id) == RunStatus.DELAYED
    clock.advance(50)
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert status(store, new.id) == RunStatus.QUEUED


def test_a_transition_to_a_final_status_frees_the_slot(store, clock):
    one = {"queue": "one", "queue_defined": True, "queue_limit": 1}
    first, second = make(clock, **one), make(clock, **one)
    create(store, clock, first, second)
    assert taken(store) == [first.id]
    run = store.transition(
        first.id, expect=[RunStatus.QUEUED], to=RunStatus.SYSTEM_FAILURE, now=clock.now()
    )
    assert run.status == RunStatus.SYSTEM_FAILURE
    assert run.finished_at.timestamp() == clock.now()
    assert taken(store) == [second.id]
    assert slots(store, "one") == (1, 0)


def test_canceling_a_delayed_or_retrying_run_leaves_nothing_due(store, clock):
    delayed = make(clock, status=RunStatus.DELAYED, delay_until=clock.now() + 10)
    retried = make(clock, max_attempts=2)
    create(store, clock, delayed, retried)
    started(store, retried.id, clock)
    finish(store, retried.id, 1, retrying(clock.now() + 10), clock)
    for run in (delayed, retried):
        assert store.cancel(run.id, now=clock.now(), error=CANCELED).status == "CANCELED"
    assert attempts(store, retried.id) == [(1, "FAILED")]
    clock.advance(10)
    assert store.promote_due(now=clock.now(), limit=100) == 0
    assert store.count_runs() == {"CANCELED": 2}
    assert slots(store) == (0, 0)
    assert taken(store) == []


def test_a_run_waiting_for_its_deploy_expires_with_its_ttl(store, clock):
    new = make(clock, task="later", queue="task/later", ttl=30)
    new.status = RunStatus.WAITING_FOR_DEPLOY
    create(store, clock, new)
    clock.advance(30)
    assert store.expire_runs(now=clock.now(), limit=100) == [new.id]
    store.register_tasks([RegisteredTask("later", "task/later")], now=clock.now())
    assert status(store, new.id) == RunStatus.EXPIRED
    assert taken(store) == []


def test_a_delayed_run_of_an_unknown_task_waits_for_its_deploy(store, clock):
    new = make(
        clock,
        task="later",
        queue="task/later",
        status=RunStatus.DELAYED,
        delay_until=clock.now() + 5,
    )
    create(store, clock, new)
    clock.advance(5)
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert status(store, new.id) == RunStatus.WAITING_FOR_DEPLOY
    store.register_tasks([RegisteredTask("later", "task/later")], now=clock.now())
    assert status(store, new.id) == RunStatus.QUEUED
    assert taken(store) == [new.id]


def test_count_runs_filters_by_status(store, clock):
    create(store, clock, make(clock), make(clock))
    create(store, clock, make(clock, status=RunStatus.DELAYED, delay_until=clock.now() + 5))
    assert store.count_runs([RunStatus.QUEUED]) == {"QUEUED": 2}
    assert store.count_runs([RunStatus.FAILED]) == {}
    assert store.count_runs() == {"QUEUED": 2, "DELAYED": 1}


def test_promote_due_counts_what_it_changed(store, clock):
    """A time wait resolved in place (the run suspended on it when it was already due)
    leaves nothing for promote_due to do."""
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    spec = WaitSpec(new.id, 1, 0, "time", "0s", resume_at=clock.now())
    store.create_waitpoint(spec, now=clock.now())
    ready: list[Dispatch] = []
    assert store.suspend(new.id, 1, 0, now=clock.now(), ready=ready) == RunStatus.QUEUED
    assert store.promote_due(now=clock.now(), limit=100) == 0
    assert started(store, new.id, clock).resumed


def test_a_suspend_by_an_attempt_that_lost_its_run_is_refused(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    store.create_waitpoint(
        WaitSpec(new.id, 1, 0, "time", "t", resume_at=clock.now() + 9), now=clock.now()
    )
    assert store.suspend(new.id, 2, 0, now=clock.now()) is None
    assert store.suspend("run_missing", 1, 0, now=clock.now()) is None
    assert store.statuses([new.id]) == {new.id: (RunStatus.EXECUTING, 1)}
