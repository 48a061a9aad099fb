"""The Redis store's own documents (call arguments, replies) go through orjson where it is
installed and through ``json`` otherwise, with the same runs either way; a document orjson
refuses but ``json`` reads (an integer past 64 bits, NaN) is read by ``json``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import pytest

import runlane.backends.redis.codec as redis_store
from runlane.backends.redis.store import RedisStore
from runlane.core.models import RunStatus
from runlane.core.types import AttemptOutcome, Dispatch
from tests.adapters import private_redis_store
from tests.helpers import new_run

pytest.importorskip("redis")
orjson = pytest.importorskip("orjson")

BIG = 2**70  # past 64 bits: orjson refuses it, json reads it


@pytest.fixture(params=["orjson", "json"])
def store(request, redis_url: str, monkeypatch) -> Iterator[RedisStore]:
    if request.param == "json":
        monkeypatch.setattr(redis_store, "orjson", None)
    with private_redis_store(redis_url) as s:
        yield s


def test_a_run_round_trips_with_either_codec(store):
    now = time.time()
    payload = json.dumps({"big": BIG, "text": 'é \u2028 "quoted"', "nested": [1.5, None, True]})
    new = new_run(created_at=now, payload=payload, metadata=json.dumps({"n": BIG}), tags=["a"])
    ready: list[Dispatch] = []
    [created] = store.create_runs([new], now=now, ready=ready)
    assert ready == [Dispatch(new.id, "t", "task/t", None)] and not created.cached
    started = store.start_attempt(new.id, worker_id="w", now=now, known_tasks=["t"])
    assert started is not None
    assert started.brief.payload == {
        "big": BIG,
        "text": 'é \u2028 "quoted"',
        "nested": [1.5, None, True],
    }
    assert started.brief.metadata == {"n": BIG} and started.brief.tags == ["a"]
    assert started.run.status == RunStatus.EXECUTING
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output=json.dumps([BIG]))
    assert store.finish_attempt(new.id, 1, outcome, now=now, ready=[])
    run = store.get_run(new.id)
    assert run is not None and run.output == [BIG] and run.payload["big"] == BIG


def test_documents_orjson_refuses_are_read_by_json():
    assert redis_store._loads(str(BIG)) == BIG
    assert math.isnan(redis_store._loads("NaN"))
    assert redis_store._loads('{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    assert isinstance(redis_store._dumps({"a": 1}), bytes)  # orjson: UTF-8 bytes, sent as is


def test_a_start_reads_every_field_even_one_holding_a_nul(store):
    """Every field a start returns is read back as stored, a NUL byte included (in a
    concurrency key here, and escaped in the payload)."""
    now = time.time()
    for key in ("plain", "with\x00nul"):
        new = new_run(created_at=now, concurrency_key=key, payload='{"k": "\\u0000"}')
        store.create_runs([new], now=now, ready=[])
        started = store.start_attempt(new.id, worker_id="w", now=now, known_tasks=["t"])
        assert started is not None and started.brief.payload == {"k": "\x00"}
        assert started.run.concurrency_key == key and started.run.status == RunStatus.EXECUTING
        assert started.attempt_number == 1 and started.run.queue == "task/t"


def test_an_attempt_written_as_json_text_reads_back_whatever_its_worker_id(store):
    """A start writes its attempt record as JSON text; a worker id with quotes, a backslash
    or a control character in it is escaped, and the numbers read back as numbers."""
    now = time.time()
    worker = 'host "a"\\b\tc'
    new = new_run(created_at=now, machine="large-1x")
    store.create_runs([new], now=now, ready=[])
    started = store.start_attempt(new.id, worker_id=worker, now=now, known_tasks=["t"])
    assert started is not None and started.attempt_number == 1
    assert started.started_at == pytest.approx(now) and started.used_ms == 0
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output="1")
    assert store.finish_attempt(new.id, 1, outcome, now=now + 1, ready=[])
    run = store.get_run(new.id)
    assert run is not None
    [attempt] = run.attempts
    assert attempt.worker_id == worker and attempt.machine == "large-1x"
    assert attempt.id == started.attempt_id and attempt.number == 1
    assert attempt.started_at.timestamp() == pytest.approx(now)
    assert attempt.finished_at is not None and attempt.finished_at.timestamp() == pytest.approx(
        now + 1
    )
