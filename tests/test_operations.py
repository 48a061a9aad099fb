"""The operations layer called directly (as the HTTP API will): plain ids in, models out,
runlane's errors; a fake clock and no worker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import runlane
from runlane.core import operations as ops
from runlane.core.clock import FakeClock
from runlane.core.models import RunStatus
from runlane.errors import InvalidOptionError, InvalidRunStateError, RunNotFoundError
from runlane.testing import memory_runtime

MISSING = "run_doesnotexist"


@pytest.fixture
def rt():
    with memory_runtime(FakeClock()) as rt:
        yield rt


@pytest.fixture
def noop(rt):
    @runlane.task(id="ops-noop", queue={"name": "ops-q", "concurrency_limit": 2})
    def noop(payload):
        return payload

    return noop


def test_retrieve_run_and_missing_run(rt, noop):
    handle = noop.trigger({"a": 1})
    run = ops.retrieve_run(rt, handle.id)
    assert run.id == handle.id and run.payload == {"a": 1}
    assert run == runlane.runs.retrieve(handle)
    with pytest.raises(RunNotFoundError):
        ops.retrieve_run(rt, MISSING)


def test_list_runs_pages_with_the_cursor(rt, noop):
    ids = [noop.trigger(i, tags=["t"]).id for i in range(5)]
    first = ops.list_runs(rt, ops.run_query(tag="t", limit=2))
    assert [r.id for r in first.data] == ids[::-1][:2]  # newest first
    assert first.next_cursor is not None
    seen = [r.id for r in first.data]
    page = first
    while page.next_cursor is not None:
        page = ops.list_runs(rt, ops.run_query(tag="t", limit=2, after=page.next_cursor))
        seen += [r.id for r in page.data]
    assert seen == ids[::-1]
    assert ops.RunList.model_validate_json(first.model_dump_json()) == first  # serialisable


def test_run_query_checks_its_values():
    with pytest.raises(InvalidOptionError, match="unknown status"):
        ops.run_query(status="NOPE")
    with pytest.raises(InvalidOptionError, match="limit"):
        ops.run_query(limit=ops.MAX_PAGE + 1)
    with pytest.raises(InvalidOptionError, match="tag"):
        ops.run_query(tag=[1])
    query = ops.run_query(status="QUEUED", from_="2024-01-01T00:00:00Z")
    assert query.status == ("QUEUED",) and query.created_from == 1704067200.0


def test_cancel_run(rt, noop):
    handle = noop.trigger(1)
    run = ops.cancel_run(rt, handle.id)
    assert run.status is RunStatus.CANCELED
    assert ops.cancel_run(rt, handle.id).status is RunStatus.CANCELED  # final: left as it is
    with pytest.raises(RunNotFoundError):
        ops.cancel_run(rt, MISSING)


def test_replay_run_copies_the_trigger(rt, noop):
    first = noop.trigger({"x": 1}, tags=["a"], metadata={"m": 1}, concurrency_key="k")
    again = ops.replay_run(rt, first.id)
    run = ops.retrieve_run(rt, again.id)
    assert again.id != first.id
    assert (run.payload, run.tags, run.metadata, run.concurrency_key) == (
        {"x": 1},
        ["a"],
        {"m": 1},
        "k",
    )
    with pytest.raises(RunNotFoundError):
        ops.replay_run(rt, MISSING)


def test_reschedule_run(rt, noop):
    delayed = noop.trigger(1, delay="1h")
    later = ops.reschedule_run(rt, delayed.id, "2h")
    assert later.status is RunStatus.DELAYED
    assert later.delayed_until is not None
    assert later.delayed_until.timestamp() == pytest.approx(rt.now() + 7200)
    assert ops.reschedule_run(rt, delayed.id, 0).status is RunStatus.QUEUED  # due: queued now
    with pytest.raises(InvalidRunStateError):
        ops.reschedule_run(rt, delayed.id, "1h")
    with pytest.raises(RunNotFoundError):
        ops.reschedule_run(rt, MISSING, "1h")


def test_update_run_metadata_and_add_run_tags(rt, noop):
    handle = noop.trigger(1, tags=["a"])
    assert ops.update_run_metadata(rt, handle.id, {"k": [1, 2]}) == {"k": [1, 2]}
    assert ops.retrieve_run(rt, handle.id).metadata == {"k": [1, 2]}
    assert ops.add_run_tags(rt, handle.id, ["b", "a"]) == ["a", "b"]
    limit = rt.settings.limits.tags_per_run
    too_many = [f"t{i}" for i in range(limit)]
    assert ops.add_run_tags(rt, handle.id, too_many) == ["a", "b"]  # past the limit: none added
    with pytest.raises(InvalidOptionError):
        ops.add_run_tags(rt, handle.id, [""])
    with pytest.raises(RunNotFoundError):
        ops.update_run_metadata(rt, MISSING, {})
    with pytest.raises(RunNotFoundError):
        ops.add_run_tags(rt, MISSING, ["a"])


def test_run_logs(rt, noop):
    handle = noop.trigger(1)
    assert ops.run_logs(rt, handle.id) == []
    with pytest.raises(InvalidOptionError):
        ops.run_logs(rt, handle.id, limit=0)
    with pytest.raises(RunNotFoundError):
        ops.run_logs(rt, MISSING)


def test_retrieve_batch(rt, noop):
    batch = noop.batch_trigger([{"payload": 1}, {"payload": 2}])
    found = ops.retrieve_batch(rt, batch.batch_id)
    assert found.run_ids == [h.id for h in batch.runs]
    with pytest.raises(RunNotFoundError):
        ops.retrieve_batch(rt, "batch_doesnotexist")


def test_queues(rt, noop):
    noop.trigger(1)
    assert "ops-q" in [q.name for q in ops.list_queues(rt)]
    assert ops.retrieve_queue(rt, "ops-q").concurrency_limit == 2
    paused = ops.pause_queue(rt, "ops-q", until="1h")
    assert paused.paused and paused.paused_until is not None
    assert ops.pause_queue(rt, "ops-q", "key").paused_keys[0].concurrency_key == "key"
    assert not ops.resume_queue(rt, "ops-q").paused
    for verb in (ops.retrieve_queue, ops.pause_queue, ops.resume_queue):
        with pytest.raises(ops.QueueNotFoundError):
            verb(rt, "no-such-queue")
    assert runlane.queues.QueueNotFoundError is ops.QueueNotFoundError


def test_registered_tasks(rt, noop):
    noop.trigger(1)  # registers the task defined here
    assert ops.registered_tasks(rt, ["ops-noop", "elsewhere"]) == ["ops-noop"]


def test_api_and_cli_reach_the_store_only_through_operations():
    root = Path(runlane.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("api", "cli")
        for path in sorted((root / folder).glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.store\.", line)
    ]
    assert offenders == []


def test_bulk_cancel_and_replay(rt, noop):
    kept = noop.trigger({"keep": True}, tags=["other"])
    ids = [noop.trigger(i, tags=["bulk"]).id for i in range(5)]
    runlane.runs.cancel(ids[0])
    done = runlane.runs.bulk_cancel(tag="bulk")
    assert sorted(done.ids) == sorted(ids[1:]) and done.skipped == 1  # ids[0] was final
    assert {runlane.runs.retrieve(i).status for i in ids} == {RunStatus.CANCELED}
    assert runlane.runs.retrieve(kept).status == RunStatus.QUEUED
    again = runlane.runs.bulk_replay(tag="bulk", status="CANCELED", limit=2)
    assert len(again.ids) == 2 and not set(again.ids) & set(ids)
    assert [runlane.runs.retrieve(i).payload for i in again.ids] == [4, 3]  # newest first
    with pytest.raises(InvalidOptionError, match="at least one filter"):
        runlane.runs.bulk_cancel()
    with pytest.raises(InvalidOptionError, match="not a filter"):
        runlane.runs.bulk_cancel(colour="red")
    with pytest.raises(InvalidOptionError, match="limit"):
        ops.bulk_cancel_runs(rt, ops.run_query(tag="bulk"), limit=0)
    assert runlane.runs.retrieve(kept).status == RunStatus.QUEUED
