"""A transition whose caller sends what it admitted (``ready=``) hands those runs back in the
same call, on both stores, so a trigger or a finished attempt needs no second call to read the
outbox; without ``ready=`` they wait in the outbox for ``take_ready``. Stores are used directly
here, apart from any broker (the Redis store unpaired, as under Celery or Dramatiq)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from runlane.core import ids
from runlane.core.models import AttemptStatus, RunStatus, TaskRunError
from runlane.core.types import AttemptOutcome, Dispatch, NewRun, RegisteredTask, WaitSpec

pytestmark = pytest.mark.parametrize("kind", ["sqlite", "redis"])


@pytest.fixture
def make_store(new_store: Callable[..., Any]) -> Callable[[str], Any]:
    def make(kind: str) -> Any:
        store = new_store(kind)
        store.register_tasks([RegisteredTask("t", "q", concurrency_limit=1)], now=time.time())
        return store

    return make


def _new(now: float) -> NewRun:
    return NewRun(
        id=ids.run_id(),
        task_identifier="t",
        status=RunStatus.QUEUED,
        payload="null",
        created_at=now,
        queue="q",
    )


def _start(store: Any, run_id: str, now: float) -> None:
    started = store.start_attempt(
        run_id, worker_id="w", now=now, known_tasks={"t"}, lease_until=time.time() + 30
    )
    assert started is not None and started.attempt_number == 1


def _done() -> AttemptOutcome:
    return AttemptOutcome(
        attempt_status=AttemptStatus.COMPLETED.value,
        run_status=RunStatus.COMPLETED,
        output="null",
    )


def test_a_transition_hands_back_the_runs_it_admitted(kind, make_store):
    store = make_store(kind)
    now = time.time()
    first, second = _new(now), _new(now)
    ready: list[Dispatch] = []
    store.create_runs([first, second], now=now, ready=ready)
    assert [d.run_id for d in ready] == [first.id]  # limit 1: the second one waits
    assert ready[0] == Dispatch(first.id, "t", "q", None)
    _start(store, first.id, now)
    ready = []
    assert store.finish_attempt(first.id, 1, _done(), now=now, ready=ready)
    assert [d.run_id for d in ready] == [second.id]  # the freed slot, in the same call
    assert store.take_ready(limit=100) == []  # nothing went through the outbox


def test_without_ready_the_admitted_runs_wait_in_the_outbox(kind, make_store):
    store = make_store(kind)
    now = time.time()
    first, second = _new(now), _new(now)
    store.create_runs([first, second], now=now)
    assert [d.run_id for d in store.take_ready(limit=100)] == [first.id]
    _start(store, first.id, now)
    assert store.finish_attempt(first.id, 1, _done(), now=now)
    assert [d.run_id for d in store.take_ready(limit=100)] == [second.id]
    assert store.take_ready(limit=100) == []


def _canceled_while_running(store: Any, now: float) -> tuple[NewRun, NewRun]:
    """Two runs of a limit-1 queue: the first started, then canceled while its attempt
    runs (keeping its slot); the second waiting."""
    first, second = _new(now), _new(now)
    store.create_runs([first, second], now=now, ready=[])
    _start(store, first.id, now)
    store.cancel(first.id, now=now, error=TaskRunError(name="Error", message="Canceled"))
    return first, second


def test_a_canceled_run_whose_attempt_stopped_hands_back_the_next(kind, make_store):
    store = make_store(kind)
    now = time.time()
    first, second = _canceled_while_running(store, now)
    assert store.take_ready(limit=100) == []  # the executing attempt keeps its slot
    ready: list[Dispatch] = []
    store.release_canceled(first.id, 1, now=now, ready=ready)
    assert [d.run_id for d in ready] == [second.id]


@pytest.mark.parametrize("ending", ["finish", "suspend"])
def test_an_attempt_ending_after_its_run_was_canceled_frees_the_slot_in_that_call(
    kind, make_store, ending
):
    """The worker did not interrupt the attempt in time: its end is refused (nothing
    recorded) and, in the same transition, the slot it kept goes to the next run."""
    store = make_store(kind)
    now = time.time()
    first, second = _canceled_while_running(store, now)
    ready: list[Dispatch] = []
    if ending == "finish":
        assert store.finish_attempt(first.id, 1, _done(), now=now, ready=ready) is False
    else:  # refused before its waitpoint is looked at
        assert store.suspend(first.id, 1, 0, now=now, ready=ready) is None
    assert [d.run_id for d in ready] == [second.id]
    assert store.get_run(first.id).status == RunStatus.CANCELED
    # done once: a later release_canceled of the same attempt frees nothing more
    again: list[Dispatch] = []
    store.release_canceled(first.id, 1, now=now, ready=again)
    assert again == []


def test_a_child_finishing_hands_back_its_resumed_parent(kind, make_store):
    """trigger_and_wait: the parent, frozen on its child, is resumed and handed back by the
    child's own finish (no engine tick in between), on a queue without a limit."""
    store = make_store(kind)
    store.register_tasks([RegisteredTask("u", "free")], now=time.time())
    now = time.time()
    parent = _new(now)
    parent.task_identifier, parent.queue = "u", "free"
    store.create_runs([parent], now=now, ready=[])
    started = store.start_attempt(
        parent.id, worker_id="w", now=now, known_tasks={"u"}, lease_until=time.time() + 30
    )
    assert started is not None
    child = _new(now)
    child.task_identifier, child.queue, child.parent_id = "u", "free", parent.id
    wait = WaitSpec(parent.id, 1, 0, "run", "fp")
    store.create_runs([child], now=now, parent_id=parent.id, wait=wait, ready=[])
    assert store.suspend(parent.id, 1, 0, now=now, ready=[]) == RunStatus.FROZEN
    started = store.start_attempt(
        child.id, worker_id="w", now=now, known_tasks={"u"}, lease_until=time.time() + 30
    )
    assert started is not None
    ready: list[Dispatch] = []
    assert store.finish_attempt(child.id, 1, _done(), now=now, ready=ready)
    assert [d.run_id for d in ready] == [parent.id]
    assert store.get_run(parent.id).status == RunStatus.QUEUED
    assert store.take_ready(limit=100) == []
