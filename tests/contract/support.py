"""Shorthands for the contract cases: build runs, drive attempts, read slots."""

from __future__ import annotations

from typing import Any

import runlane
from runlane.core.models import AttemptStatus, RunStatus, TaskRunError
from runlane.core.types import AttemptOutcome, Created, Dispatch, NewRun, StartedAttempt
from tests.helpers import new_run

LEASE = 30.0  # seconds an attempt's lease runs from its start
CANCELED = TaskRunError(name="Error", message="Canceled by the test")


def make(clock: runlane.FakeClock, **fields: Any) -> NewRun:
    """A run of task ``t`` (queue ``task/t`` unless given), created now: QUEUED unless
    ``status`` says otherwise."""
    status = fields.pop("status", RunStatus.QUEUED)
    new = new_run(created_at=clock.now(), **fields)
    new.status = status
    return new


def create(store: Any, clock: runlane.FakeClock, *runs: NewRun, **kw: Any) -> list[Created]:
    """Create ``runs`` now; what they admit stays in the outbox."""
    return store.create_runs(list(runs), now=clock.now(), **kw)


def start(
    store: Any, run_id: str, clock: runlane.FakeClock, *, task: str = "t", lease: float = LEASE
) -> StartedAttempt | None:
    now = clock.now()
    return store.start_attempt(
        run_id, worker_id="w1", now=now, known_tasks={task}, lease_until=now + lease
    )


def started(store: Any, run_id: str, clock: runlane.FakeClock, **kw: Any) -> StartedAttempt:
    attempt = start(store, run_id, clock, **kw)
    assert attempt is not None, f"{run_id} did not start"
    return attempt


def completed(output: str = '"done"') -> AttemptOutcome:
    return AttemptOutcome(AttemptStatus.COMPLETED.value, RunStatus.COMPLETED, output=output)


def failed(message: str = "boom") -> AttemptOutcome:
    error = TaskRunError(name="ValueError", message=message)
    return AttemptOutcome(AttemptStatus.FAILED.value, RunStatus.FAILED, error=error)


def retrying(retry_at: float, message: str = "again") -> AttemptOutcome:
    error = TaskRunError(name="ValueError", message=message)
    return AttemptOutcome(
        AttemptStatus.FAILED.value, RunStatus.REATTEMPTING, error=error, retry_at=retry_at
    )


def finish(
    store: Any,
    run_id: str,
    attempt: int,
    outcome: AttemptOutcome,
    clock: runlane.FakeClock,
    ready: list[Dispatch] | None = None,
) -> bool:
    return store.finish_attempt(run_id, attempt, outcome, now=clock.now(), ready=ready)


def ids(dispatches: list[Dispatch]) -> list[str]:
    return [d.run_id for d in dispatches]


def taken(store: Any) -> list[str]:
    """The run ids the outbox holds now (emptying it)."""
    return ids(store.take_ready(limit=1000))


def slots(store: Any, queue: str = "task/t") -> tuple[int, int]:
    """(running, queued) of ``queue``: the slots its runs hold, and the runs waiting."""
    [info] = store.queues([queue])
    return info.running, info.queued


def status(store: Any, run_id: str) -> RunStatus:
    return store.statuses([run_id])[run_id][0]


def attempts(store: Any, run_id: str) -> list[tuple[int, str]]:
    """(number, status) of each attempt of the run."""
    run = store.get_run(run_id)
    assert run is not None
    return [(a.number, str(a.status)) for a in run.attempts]
