"""The Redis store's hot transitions (start_attempt, finish_attempt) take plain arguments:
``now`` is stored as the text the client sent, a malformed call is refused before it writes,
and a finish given the attempt as its start returned it writes the attempt's final record
from what the client knows — the same record the finish that reads it back writes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from runlane.backends.redis.store import RedisStore
from runlane.core.models import RunStatus, TaskRunError
from runlane.core.types import AttemptOutcome, Dispatch, StartedAttempt, WaitSpec
from tests.adapters import private_redis_store
from tests.helpers import new_run

redis = pytest.importorskip("redis")

WORKER = 'host "a"/\\b é'  # escaped in JSON (and "/" by cjson but not by Python)


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    with private_redis_store(redis_url) as s:
        yield s


def _record(store: RedisStore, run_id: str, number: int) -> dict:
    return json.loads(store.client.hget(store._k(f"att:{run_id}"), str(number)))


def _twins(store: RedisStore, now: float, **fields) -> list[StartedAttempt]:
    """Two identical runs started by the same worker at the same time."""
    out = []
    for _ in range(2):
        new = new_run(created_at=now, **fields)
        store.create_runs([new], now=now, ready=[])
        started = store.start_attempt(
            new.id, worker_id=WORKER, now=now, known_tasks=["t"], default_max_attempts=3
        )
        assert started is not None
        out.append(started)
    return out


def _finish_both(
    store: RedisStore, pair: list[StartedAttempt], outcome: AttemptOutcome, now: float
) -> tuple[dict, dict]:
    """The first finished as a caller without its start (the record read and rewritten), the
    second given it (the record written from it); both records, their ids left out."""
    read, given = pair
    assert store.finish_attempt(read.run_id, read.attempt_number, outcome, now=now, ready=[])
    assert store.finish_attempt(
        given.run_id, given.attempt_number, outcome, now=now, ready=[], started=given
    )
    old = _record(store, read.run_id, read.attempt_number)
    new = _record(store, given.run_id, given.attempt_number)
    assert old.pop("id") == read.attempt_id and new.pop("id") == given.attempt_id
    return old, new


def test_a_completed_attempt_record_is_the_same_written_from_the_start(store):
    now = time.time()
    pair = _twins(store, now, machine="large-1x")
    assert pair[1].worker_id == WORKER and pair[1].machine == "large-1x"
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output='{"ok": 1}', attempt_ms=7)
    old, new = _finish_both(store, pair, outcome, now + 0.123456789)
    assert old == new
    assert new["status"] == "COMPLETED" and new["duration_ms"] == 7 and new["error"] is None
    assert new["worker_id"] == WORKER and new["machine"] == "large-1x"
    run = store.get_run(pair[1].run_id)
    assert run is not None and run.attempts[0].worker_id == WORKER


def test_a_failed_attempt_retried_has_the_same_record_error_included(store):
    now = time.time()
    pair = _twins(store, now)
    error = TaskRunError(name="ValueError", message='bad "input" / é', stack_trace="x\ny")
    outcome = AttemptOutcome(
        "FAILED", RunStatus.REATTEMPTING, error=error, retry_at=now + 5, machine="small-2x"
    )
    old, new = _finish_both(store, pair, outcome, now + 2)  # no attempt_ms: the run's clock
    assert old == new
    assert new["status"] == "FAILED" and new["machine"] is None and new["duration_ms"] == 2000
    assert new["error"] == json.loads(error.model_dump_json())
    run = store.get_run(pair[1].run_id)
    assert run is not None and run.status == RunStatus.REATTEMPTING
    assert run.error is not None and run.error.message == error.message
    assert run.machine == "small-2x" and run.attempts[0].error == run.error


def test_a_resumed_attempt_record_adds_this_stretch_to_its_earlier_duration(store):
    now = time.time()
    pair = _twins(store, now)
    resumed = []
    for started in pair:
        wait = WaitSpec(started.run_id, 1, 0, "time", "f", resume_at=now)
        store.create_waitpoint(wait, now=now)
        ready: list[Dispatch] = []
        status = store.suspend(started.run_id, 1, 0, now=now + 1, attempt_ms=40, ready=ready)
        assert status == RunStatus.QUEUED and [d.run_id for d in ready] == [started.run_id]
        again = store.start_attempt(
            started.run_id, worker_id=WORKER, now=now + 2, known_tasks=["t"]
        )
        assert again is not None and again.resumed and again.used_ms == 40
        assert again.attempt_id == started.attempt_id
        assert again.started_at == pytest.approx(started.started_at)  # cjson's 14 digits
        resumed.append(again)
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output="1", attempt_ms=65)
    old, new = _finish_both(store, resumed, outcome, now + 3)
    assert old == new and new["duration_ms"] == 65


def test_a_start_that_is_not_this_attempts_is_not_used(store):
    """Another attempt's start (here: another run's) is ignored: the record is read."""
    now = time.time()
    first, other = _twins(store, now)
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output="1", attempt_ms=1)
    assert store.finish_attempt(first.run_id, 1, outcome, now=now, ready=[], started=other)
    assert _record(store, first.run_id, 1)["id"] == first.attempt_id


def test_now_is_stored_as_the_script_would_format_it(store):
    """The text sent ("%.17g") is what the script's N() writes: stored as it is, an
    integral clock as an integer."""
    for now, text in ((1796240356.3802087, "1796240356.3802087"), (1_000_000.0, "1000000")):
        [started] = _twins(store, now)[:1]
        h = store.client.hmget(store._k(f"run:{started.run_id}"), "updated_at", "started_at")
        assert h == [text, text]
        assert started.started_at == now
    # what the JSON commands store (the script formats the number itself)
    created_at = store.client.hget(store._k(f"run:{started.run_id}"), "created_at")
    assert created_at == "1000000"


def _call(store: RedisStore, command: str, *args: str):
    return store._lane(store.prefix, command, *args)


@pytest.mark.parametrize(
    "args, why",
    [
        (("soon", "run", "w", "", "1", "att"), "now is not a number"),
        (("1.5", "run", "w", "later", "1", "att"), "expected now, run_id"),
        (("1.5", "run", "w", "", "", "att"), "expected now, run_id"),
        (("1.5", "run", "", "", "1", "att"), "expected now, run_id"),
        (("1.5", "run", "w"), "expected now, run_id"),
    ],
)
def test_a_malformed_start_is_refused_before_it_writes(store, args, why):
    now = time.time()
    new = new_run(created_at=now)
    store.create_runs([new], now=now, ready=[])
    args = tuple(new.id if a == "run" else a for a in args)
    with pytest.raises(redis.exceptions.ResponseError, match=f"start_attempt: .*{why}"):
        _call(store, "start_attempt", *args, "t")
    assert store.client.hget(store._k(f"run:{new.id}"), "status") == "QUEUED"


@pytest.mark.parametrize(
    "changed",
    [
        {4: "one"},  # attempt: not a number
        {2: "month"},  # purge_at
        {8: "fast"},  # attempt_ms
        {9: '{"id":"x","duration_ms":'},  # a record without used_ms
        {10: "5"},  # used_ms without a record
        {6: ""},  # no run_status
        {15: "lots"},  # env_limit
    ],
)
def test_a_malformed_finish_is_refused_before_it_writes(store, changed):
    now = time.time()
    new = new_run(created_at=now)
    store.create_runs([new], now=now, ready=[])
    assert store.start_attempt(new.id, worker_id="w", now=now, known_tasks=["t"])
    # now, take, purge_at, run_id, attempt, attempt_status, run_status, output, attempt_ms,
    # record, used_ms, error, retry_at, machine, ack, env_limit
    args = [f"{now:.17g}", "", "", new.id, "1", "COMPLETED", "COMPLETED", "1", "1", "", "", ""]
    args += ["", "", "", ""]
    for i, v in changed.items():
        args[i] = v
    expected = "finish_attempt: malformed arguments \\(expected now, take, purge_at, run_id"
    with pytest.raises(redis.exceptions.ResponseError, match=expected):
        _call(store, "finish_attempt", *args)
    assert store.client.hget(store._k(f"run:{new.id}"), "status") == "EXECUTING"


def test_a_started_run_is_the_run_as_stored_after_the_start(store):
    """A start returns the fields its caller reads (not the run's bookkeeping): the run built
    from them is the run as read back."""
    now = time.time()
    new = new_run(
        created_at=now,
        tags=["a", "b"],
        machine="large-1x",
        concurrency_key="k",
        ttl=60.0,
        max_attempts=3,
        max_duration=30,
        version="v1",
        payload='{"x": [1, "é"]}',
        metadata='{"m": 1}',
    )
    store.create_runs([new], now=now, ready=[])
    started = store.start_attempt(
        new.id, worker_id="w", now=now + 1, known_tasks=["t"], lease_until=now + 60
    )
    assert started is not None
    stored = store.get_run(new.id, with_attempts=False)
    assert stored is not None and started.run.model_dump() == stored.model_dump()
    assert started.run.status == RunStatus.EXECUTING and started.run.attempt_count == 1


def test_a_start_knowing_no_task_starts_nothing(store):
    now = time.time()
    new = new_run(created_at=now)
    store.create_runs([new], now=now, ready=[])
    assert store.start_attempt(new.id, worker_id="w", now=now, known_tasks=[]) is None
    assert store.client.hget(store._k(f"run:{new.id}"), "status") == "QUEUED"
