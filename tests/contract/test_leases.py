"""Leases and reaping: a heartbeat renews an attempt's lease; once it lapses the reaper ends
the attempt CRASHED and retries the run if attempts remain, else the run is CRASHED."""

from __future__ import annotations

from runlane.core.models import RunStatus
from tests.contract.support import (
    CANCELED,
    LEASE,
    attempts,
    completed,
    create,
    finish,
    make,
    slots,
    started,
    status,
    taken,
)


def test_a_heartbeat_renews_the_lease_the_reaper_reads(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    begun = clock.now()
    clock.advance(20)
    renewed = store.heartbeat(
        {new.id: 1}, worker_id="w1", lease_until=clock.now() + LEASE, now=clock.now()
    )
    assert renewed == set()
    clock.set(begun + LEASE + 1)  # past the first lease, within the renewed one
    assert store.reap(now=clock.now(), limit=100) == []
    assert status(store, new.id) == RunStatus.EXECUTING
    clock.set(begun + 20 + LEASE + 1)
    assert store.reap(now=clock.now(), limit=100) == [new.id]


def test_a_heartbeat_loses_what_its_attempt_no_longer_holds(store, clock):
    running, other, done = make(clock), make(clock), make(clock)
    create(store, clock, running, other, done)
    for run in (running, other, done):
        started(store, run.id, clock)
    finish(store, done.id, 1, completed(), clock)
    beat = {running.id: 1, other.id: 2, done.id: 1, "run_missing": 1}
    lost = store.heartbeat(beat, worker_id="w1", lease_until=clock.now() + LEASE, now=clock.now())
    assert lost == {other.id, done.id, "run_missing"}
    assert store.heartbeat({}, worker_id="w1", lease_until=clock.now(), now=clock.now()) == set()


def test_a_lapsed_lease_is_lost_to_a_late_heartbeat(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    clock.advance(LEASE + 1)
    lost = store.heartbeat(
        {new.id: 1}, worker_id="w1", lease_until=clock.now() + LEASE, now=clock.now()
    )
    assert lost == {new.id}


def test_a_lapsed_lease_with_attempts_left_is_retried(store, clock):
    new = make(clock, max_attempts=2)
    create(store, clock, new)
    taken(store)
    started(store, new.id, clock)
    clock.advance(LEASE - 1)
    assert store.reap(now=clock.now(), limit=100) == []
    clock.advance(2)
    assert store.reap(now=clock.now(), limit=100) == [new.id]
    run = store.get_run(new.id)
    assert (run.status, run.error.code) == (RunStatus.REATTEMPTING, "TASK_RUN_CRASHED")
    assert "stopped renewing its lease" in run.error.message
    assert [(a.number, str(a.status), a.error.code) for a in run.attempts] == [
        (1, "CRASHED", "TASK_RUN_CRASHED")
    ]
    assert slots(store) == (0, 0)
    assert store.reap(now=clock.now(), limit=100) == []  # reaped once
    assert finish(store, new.id, 1, completed(), clock) is False  # the late worker is refused
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert store.statuses([new.id]) == {new.id: (RunStatus.QUEUED, 1)}
    assert taken(store) == [new.id]
    assert started(store, new.id, clock).attempt_number == 2
    assert attempts(store, new.id) == [(1, "CRASHED"), (2, "EXECUTING")]


def test_a_lapsed_lease_with_no_attempts_left_crashes_the_run(store, clock):
    one = {"queue": "one", "queue_defined": True, "queue_limit": 1}
    new = make(clock, **one)
    create(store, clock, new)
    clock.advance(1)
    waiting = make(clock, **one)
    create(store, clock, waiting)
    assert taken(store) == [new.id]
    started(store, new.id, clock)
    clock.advance(LEASE + 1)
    assert store.reap(now=clock.now(), limit=100, handed_back_by="w1") == [new.id]
    run = store.get_run(new.id)
    assert (run.status, run.error.code) == (RunStatus.CRASHED, "TASK_RUN_CRASHED")
    assert "handed it back on shutdown" in run.error.message
    assert run.finished_at.timestamp() == clock.now()
    assert attempts(store, new.id) == [(1, "CRASHED")]
    assert taken(store) == [waiting.id]
    assert slots(store, "one") == (1, 0)
    assert store.count_runs() == {"CRASHED": 1, "QUEUED": 1}


def test_the_attempts_allowed_come_from_the_start_when_the_run_names_none(store, clock):
    new = make(clock)
    create(store, clock, new)
    now = clock.now()
    assert store.start_attempt(
        new.id,
        worker_id="w1",
        now=now,
        known_tasks={"t"},
        lease_until=now + LEASE,
        default_max_attempts=2,
    )
    clock.advance(LEASE + 1)
    assert store.reap(now=clock.now(), limit=100) == [new.id]
    assert status(store, new.id) == RunStatus.REATTEMPTING


def test_the_reaper_frees_the_slot_of_a_canceled_run_whose_worker_is_gone(store, clock):
    one = {"queue": "one", "queue_defined": True, "queue_limit": 1}
    first = make(clock, **one)
    create(store, clock, first)
    clock.advance(1)
    second = make(clock, **one)
    create(store, clock, second)
    assert taken(store) == [first.id]
    started(store, first.id, clock)
    store.cancel(first.id, now=clock.now(), error=CANCELED)
    assert slots(store, "one") == (1, 1)
    clock.advance(LEASE + 1)
    assert store.reap(now=clock.now(), limit=100) == []  # nothing crashed: it was canceled
    assert status(store, first.id) == RunStatus.CANCELED
    assert attempts(store, first.id) == [(1, "CANCELED")]
    assert taken(store) == [second.id]
    assert slots(store, "one") == (1, 0)
