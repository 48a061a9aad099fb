"""Attempts: start (numbering, guards), finish (COMPLETED, FAILED, REATTEMPTING → promote_due
→ the next attempt), and the guard on the attempt that holds the run."""

from __future__ import annotations

from runlane.core.models import RunStatus
from tests.contract.support import (
    attempts,
    completed,
    create,
    failed,
    finish,
    make,
    retrying,
    slots,
    start,
    started,
    status,
    taken,
)


def test_an_admitted_run_starts_its_first_attempt(store, clock):
    new = make(clock, payload='{"x": 1}', tags=["a"], max_attempts=3)
    create(store, clock, new)
    attempt = started(store, new.id, clock)
    assert (attempt.run_id, attempt.attempt_number, attempt.resumed) == (new.id, 1, False)
    assert attempt.started_at == clock.now()
    assert (attempt.brief.payload, attempt.brief.tags, attempt.brief.max_attempts) == (
        {"x": 1},
        ["a"],
        3,
    )
    assert attempt.run.status == RunStatus.EXECUTING
    assert store.statuses([new.id]) == {new.id: (RunStatus.EXECUTING, 1)}
    assert attempts(store, new.id) == [(1, "EXECUTING")]
    run = store.get_run(new.id)
    assert run.attempts[0].id == attempt.attempt_id and run.attempts[0].worker_id == "w1"
    assert store.count_runs() == {"EXECUTING": 1}
    assert slots(store) == (1, 0)


def test_a_run_starts_once(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    assert start(store, new.id, clock) is None
    assert attempts(store, new.id) == [(1, "EXECUTING")]


def test_a_run_of_a_task_this_worker_does_not_know_does_not_start(store, clock):
    new = make(clock)
    create(store, clock, new)
    assert start(store, new.id, clock, task="other") is None
    assert start(store, "run_missing", clock) is None
    assert store.statuses([new.id]) == {new.id: (RunStatus.QUEUED, 0)}


def test_a_completed_attempt_completes_the_run_and_frees_its_slot(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    clock.advance(2)
    assert finish(store, new.id, 1, completed('{"ok": true}'), clock)
    run = store.get_run(new.id)
    assert (run.status, run.output, run.error) == (RunStatus.COMPLETED, {"ok": True}, None)
    assert run.finished_at is not None and run.finished_at.timestamp() == clock.now()
    assert attempts(store, new.id) == [(1, "COMPLETED")]
    assert store.statuses([new.id]) == {new.id: (RunStatus.COMPLETED, 1)}
    assert store.count_runs() == {"COMPLETED": 1}
    assert slots(store) == (0, 0)


def test_only_the_attempt_that_holds_the_run_may_finish_it(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    assert not finish(store, new.id, 2, completed(), clock)
    assert status(store, new.id) == RunStatus.EXECUTING
    assert finish(store, new.id, 1, completed(), clock)
    assert not finish(store, new.id, 1, failed(), clock)  # a duplicate report changes nothing
    assert status(store, new.id) == RunStatus.COMPLETED
    assert attempts(store, new.id) == [(1, "COMPLETED")]
    assert not finish(store, "run_missing", 1, completed(), clock)


def test_a_failed_attempt_fails_the_run(store, clock):
    new = make(clock)
    create(store, clock, new)
    started(store, new.id, clock)
    assert finish(store, new.id, 1, failed("no"), clock)
    run = store.get_run(new.id)
    assert run.status == RunStatus.FAILED
    assert (run.error.name, run.error.message) == ("ValueError", "no")
    assert [(a.number, str(a.status), a.error.message) for a in run.attempts] == [
        (1, "FAILED", "no")
    ]
    assert slots(store) == (0, 0)


def test_a_retry_waits_for_its_time_then_starts_attempt_two(store, clock):
    new = make(clock, max_attempts=3)
    create(store, clock, new)
    taken(store)
    started(store, new.id, clock)
    assert finish(store, new.id, 1, retrying(clock.now() + 10), clock)
    assert store.statuses([new.id]) == {new.id: (RunStatus.REATTEMPTING, 1)}
    assert attempts(store, new.id) == [(1, "FAILED")]
    assert slots(store) == (0, 0)  # a run waiting to retry holds no slot
    assert start(store, new.id, clock) is None
    clock.advance(9)
    assert store.promote_due(now=clock.now(), limit=100) == 0
    assert status(store, new.id) == RunStatus.REATTEMPTING
    clock.advance(1)
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert store.statuses([new.id]) == {new.id: (RunStatus.QUEUED, 1)}
    assert slots(store) == (1, 0)
    assert taken(store) == [new.id]
    attempt = started(store, new.id, clock)
    assert (attempt.attempt_number, attempt.resumed) == (2, False)
    assert attempts(store, new.id) == [(1, "FAILED"), (2, "EXECUTING")]
    assert finish(store, new.id, 2, completed(), clock)
    run = store.get_run(new.id)
    assert (run.status, run.error, run.attempt_count) == (RunStatus.COMPLETED, None, 2)
    assert attempts(store, new.id) == [(1, "FAILED"), (2, "COMPLETED")]


def test_a_retried_run_keeps_its_place_in_line(store, clock):
    """Limit 1: the first run retries while two wait; the slot it frees goes to the second,
    and once due the first is next again, ahead of the third (queued before its retry)."""
    one = {"queue": "one", "queue_defined": True, "queue_limit": 1}
    runs = []
    for _ in range(3):
        runs.append(make(clock, **one))
        create(store, clock, runs[-1])
        clock.advance(1)
    first, second, third = runs
    assert taken(store) == [first.id]
    started(store, first.id, clock)
    ready = []
    assert finish(store, first.id, 1, retrying(clock.now()), clock, ready)
    assert [d.run_id for d in ready] == [second.id]
    assert store.promote_due(now=clock.now(), limit=100) == 1
    assert slots(store, "one") == (1, 2)
    assert store.statuses([first.id, third.id]) == {
        first.id: (RunStatus.QUEUED, 1),
        third.id: (RunStatus.QUEUED, 0),
    }
    started(store, second.id, clock)
    ready = []
    assert finish(store, second.id, 1, completed(), clock, ready)
    assert [d.run_id for d in ready] == [first.id]
    assert slots(store, "one") == (1, 1)
