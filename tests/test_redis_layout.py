"""Where the Redis store keeps a run's slot and metadata: a slot is fields of its run's hash
(given back when the run ends), and the metadata is the run's ``seed_metadata`` until its
first update creates ``md:<id>``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from runlane.backends.redis.store import RedisStore
from runlane.core.models import RunStatus
from runlane.core.types import AttemptOutcome, Dispatch, WaitSpec
from tests.adapters import private_redis_store
from tests.helpers import new_run

redis = pytest.importorskip("redis")


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    with private_redis_store(redis_url) as s:
        yield s


def _slot(store: RedisStore, run_id: str) -> list[str | None]:
    return store.client.hmget(store._k(f"run:{run_id}"), "holds_queue", "holds_env", "admitted")


def _running(store: RedisStore, queue: str) -> tuple[int, int]:
    qk = store._k(f"queue:{len(queue)}:{queue}")
    return int(store.client.hget(qk, "running") or 0), int(store.client.get(store._k("running")))


def test_a_slot_is_fields_of_its_run_and_goes_when_the_run_ends(store):
    now = time.time()
    ready: list[Dispatch] = []
    [created] = store.create_runs([new_run(created_at=now)], now=now, ready=ready)
    assert [d.run_id for d in ready] == [created.run_id]  # admitted as it was created
    assert ready[0] == Dispatch(created.run_id, "t", "task/t", None)
    assert _slot(store, created.run_id) == ["1", "1", "1"]
    assert _running(store, "task/t") == (1, 1)
    started = store.start_attempt(created.run_id, worker_id="w", now=now, known_tasks=["t"])
    assert started is not None
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output="1")
    assert store.finish_attempt(created.run_id, 1, outcome, now=now, ready=[])
    assert _slot(store, created.run_id) == [None, None, "0"]
    assert _running(store, "task/t") == (0, 0)


def test_metadata_is_the_seed_until_updated_and_a_start_reads_the_update(store):
    now = time.time()
    new = new_run(created_at=now, metadata=json.dumps({"step": 0}))
    store.create_runs([new], now=now, ready=[])
    md_key = store._k(f"md:{new.id}")
    assert not store.client.exists(md_key)  # nothing written but the run
    run = store.get_run(new.id)
    assert run is not None and run.metadata == {"step": 0}
    ops = [{"op": "set", "key": "step", "value": 1}]
    assert store.update_metadata(new.id, ops, now=now, limit=4096) == {"step": 1}
    assert json.loads(store.client.get(md_key)) == {"step": 1}
    assert store.client.hget(store._k(f"run:{new.id}"), "md_set") == "1"
    started = store.start_attempt(new.id, worker_id="w", now=now, known_tasks=["t"])
    assert started is not None and started.brief.metadata == {"step": 1}
    assert started.run.metadata == {"step": 1}
    run = store.get_run(new.id)
    assert run is not None and run.metadata == {"step": 1}
    # updates after the first read md:<id> and change it
    ops = [{"op": "increment", "key": "step", "value": 2}]
    assert store.update_metadata(new.id, ops, now=now, limit=4096) == {"step": 3}
    assert store.update_metadata("run_missing", ops, now=now, limit=4096) is None


def test_a_frozen_parent_lends_its_slot_once_its_queue_is_resumed(store):
    """A parent suspended on its child while their limit-1 queue is paused lends its slot to
    the waiting child when the queue is resumed; the loan is returned when the child
    finishes."""
    now = time.time()
    limit1 = {"queue": "one", "queue_defined": True, "queue_limit": 1}
    parent = new_run(created_at=now, **limit1)
    ready: list[Dispatch] = []
    store.create_runs([parent], now=now, ready=ready)
    assert store.start_attempt(parent.id, worker_id="w", now=now, known_tasks=["t"])
    child = new_run(created_at=now + 0.001, parent_id=parent.id, root_id=parent.id, **limit1)
    wait = WaitSpec(parent.id, 1, 0, "run", "child")
    store.create_runs([child], now=now, parent_id=parent.id, wait=wait, ready=ready)
    assert [d.run_id for d in ready] == [parent.id]  # the child waits: the parent holds the slot
    # paused, the queue lends nothing while the parent suspends
    assert store.set_paused("one", None, paused=True, until=None, now=now)
    assert store.suspend(parent.id, 1, 0, now=now, ready=ready) == RunStatus.FROZEN
    assert [d.run_id for d in ready] == [parent.id]
    run_key = store._k(f"run:{parent.id}")
    assert store.client.hmget(run_key, "holds_queue", "holds_env") == ["1", "0"]
    assert store.set_paused("one", None, paused=False, until=None, now=now)
    assert [d.run_id for d in store.take_ready(limit=10)] == [child.id]
    assert store.client.hmget(run_key, "holds_queue", "lent_to") == ["1", child.id]
    child_key = store._k(f"run:{child.id}")
    assert store.client.hmget(child_key, "holds_queue", "borrowed_from") == ["0", parent.id]
    assert store.start_attempt(child.id, worker_id="w", now=now, known_tasks=["t"])
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output="1")
    resumed: list[Dispatch] = []
    assert store.finish_attempt(child.id, 1, outcome, now=now, ready=resumed)
    assert store.client.hget(run_key, "lent_to") is None  # the loan is back
    # the child's end resumed the parent, which runs again in the slot it kept
    assert [d.run_id for d in resumed] == [parent.id]
    assert store.client.hmget(run_key, "status", "holds_queue", "holds_env") == ["QUEUED", "1", "1"]
    assert _running(store, "one") == (1, 1)
