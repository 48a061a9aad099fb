"""Realtime subscriptions (runs.subscribe_to_*) and run streams (metadata.stream), on every
store; the first case also on each Celery/Dramatiq adapter (a contract module)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import runlane
from runlane import metadata, runs
from runlane.core import realtime
from runlane.errors import InvalidOptionError, RunNotFoundError
from tests.helpers import wait_for

ORDER = ["WAITING_FOR_DEPLOY", "DELAYED", "QUEUED", "EXECUTING", "COMPLETED"]


def _gate() -> dict[str, threading.Event]:
    return {"go": threading.Event(), "started": threading.Event()}


def test_a_run_in_order_with_its_streams_and_the_end(rt, worker):
    @runlane.task(id="rt-steps")
    def steps(payload):
        for i in range(1, 4):
            metadata.set("progress", i / 3).flush()
        return sum(1 for _ in metadata.stream("llm", (f"t{i}" for i in range(50))))

    handle = steps.trigger({})
    statuses, progress, chunks = [], [], []
    sub = runs.subscribe_to_run(handle).with_streams()
    for part in sub:
        if part.type == "run":
            statuses.append(part.run.status.value)
            progress.append(part.run.metadata.get("progress", 0))
        else:
            assert part.type == "llm" and part.run_id == handle.id
            chunks.append(part.chunk)
    # ended by itself, on the final state, with every chunk in order
    assert statuses[-1] == "COMPLETED" and statuses.count("COMPLETED") == 1
    assert [ORDER.index(s) for s in statuses] == sorted(ORDER.index(s) for s in statuses)
    assert progress == sorted(progress) and progress[-1] == 1
    assert chunks == [f"t{i}" for i in range(50)]
    assert runs.retrieve(handle).output == 50
    assert sub.cursor > 0
    # resuming at its cursor: nothing more, and it ends at once (the run is final)
    again = list(runs.subscribe_to_run(handle, cursor=sub.cursor).with_streams())
    assert again == []


@pytest.mark.native_only
def test_resume_after_a_dropped_subscriber_misses_nothing(rt, worker):
    gate = _gate()

    @runlane.task(id="rt-resume")
    def paced(payload):
        for _word in metadata.stream("words", ["a", "b"]):
            pass
        metadata.set("phase", 1).flush()
        gate["started"].set()
        gate["go"].wait(30)
        for _word in metadata.stream("words", ["c", "d"]):
            pass
        metadata.set("phase", 2)
        return "ok"

    handle = paced.trigger({})
    first = runs.subscribe_to_run(handle).with_streams()
    seen: list[Any] = []
    for part in first:
        seen.append(part.chunk if part.type == "words" else part.run.metadata.get("phase"))
        if part.type == "run" and part.run.metadata.get("phase") == 1:
            break  # the subscriber goes away mid-run
    assert first._closed  # leaving the loop let it go
    assert [c for c in seen if isinstance(c, str)] == ["a", "b"]
    gate["go"].set()
    wait_for(lambda: runs.retrieve(handle).is_completed, message="the run completes")
    rest = list(runs.subscribe_to_run(handle, cursor=first.cursor).with_streams())
    assert [p.chunk for p in rest if p.type == "words"] == ["c", "d"]  # none twice
    final = [p.run for p in rest if p.type == "run"]
    assert final[-1].status == "COMPLETED" and final[-1].metadata == {"phase": 2}
    assert final[-1].output == "ok"


@pytest.mark.native_only
def test_a_feed_that_lost_the_changes_resyncs_from_state(rt, worker):
    """The feed keeps the latest entries only: a subscriber behind them gets the runs' state
    (and every chunk after its cursor) instead of the changes."""

    @runlane.task(id="rt-gap")
    def talk(payload):
        return list(metadata.stream("s", [1, 2, 3]))

    handle = talk.trigger({})
    wait_for(lambda: runs.retrieve(handle).is_completed, message="the run completes")
    store = rt.store
    head = store.read_feed(-1, limit=1).head
    _forget_feed(store, head)
    assert store.read_feed(1, limit=10).gap
    parts = list(runs.subscribe_to_run(handle, cursor=1).with_streams())
    assert [p.chunk for p in parts if p.type == "s"] == [1, 2, 3]
    assert [p.run.status for p in parts if p.type == "run"] == ["COMPLETED"]


def _forget_feed(store: Any, head: int) -> None:
    if hasattr(store, "db"):  # SQLite: what the trim trigger does
        with store.db.write() as conn:
            conn.execute("DELETE FROM rl_changes WHERE seq <= ?", (head,))
            conn.execute(
                "INSERT OR REPLACE INTO rl_counters VALUES ('*', 'feed_trimmed', ?)", (head,)
            )
    else:
        store.client.xtrim(store._k("feed"), maxlen=0)


@pytest.mark.native_only
def test_runs_with_a_tag_and_a_batch(rt, worker):
    gate = _gate()

    @runlane.task(id="rt-tagged")
    def tagged(payload):
        gate["go"].wait(30)
        return payload

    other = tagged.trigger("other", tags=["team:b"])
    first = tagged.trigger("first", tags=["team:a"])
    got: list[tuple[str, str]] = []
    sub = runs.subscribe_to_runs_with_tag("team:a")
    for run in sub:
        assert "team:a" in run.tags
        got.append((run.id, run.status.value))
        if len(got) == 1:
            second = tagged.trigger("second", tags=["team:a", "x"])
            gate["go"].set()
        if {(first.id, "COMPLETED"), (second.id, "COMPLETED")} <= set(got):
            break
    assert other.id not in {run_id for run_id, _ in got}
    # a batch: its runs until every one is final
    batch = tagged.batch_trigger([{"payload": i} for i in range(3)])
    final = {r.id: r.status for r in runs.subscribe_to_batch(batch.batch_id)}
    assert set(final) == {r.id for r in batch.runs}
    assert set(final.values()) == {"COMPLETED"}


@pytest.mark.native_only
def test_async_iteration(rt, worker):
    @runlane.task(id="rt-async")
    async def chatty(payload):
        async def tokens():
            for i in range(5):
                await asyncio.sleep(0)
                yield {"i": i}

        return [t async for t in metadata.stream("tokens", tokens())]

    async def main() -> tuple[list[str], list[Any]]:
        handle = await chatty.aio_trigger({})
        statuses, chunks = [], []
        async for part in runs.subscribe_to_run(handle).with_streams():
            if part.type == "run":
                statuses.append(part.run.status.value)
            else:
                chunks.append(part.chunk)
        return statuses, chunks

    statuses, chunks = asyncio.run(main())
    assert statuses[-1] == "COMPLETED" and chunks == [{"i": i} for i in range(5)]


@pytest.mark.native_only
def test_a_slow_subscriber_gets_the_state_not_a_growing_backlog(rt, worker, monkeypatch):
    """A run's later change replaces its earlier one in a subscriber's mailbox; past MAILBOX
    runs the subscriber re-reads their state instead."""
    monkeypatch.setattr(realtime, "MAILBOX", 3)
    gate = threading.Event()

    @runlane.task(id="rt-busy")
    def busy(payload):
        gate.wait(30)
        for i in range(10):
            metadata.set("i", i).flush()
        return "done"

    batch = busy.batch_trigger([{"payload": n} for n in range(6)])
    sub = runs.subscribe_to_batch(batch.batch_id)
    it = iter(sub)
    first = [next(it) for _ in range(6)]  # the current state: nothing ran yet
    assert {r.status for r in first} <= {"QUEUED", "EXECUTING"}
    gate.set()  # 6 runs x 12 changes pile up while nobody reads
    wait_for(
        lambda: (
            runs.retrieve(batch.runs[-1]).is_completed
            and all(runs.retrieve(h).is_completed for h in batch.runs)
        ),
        message="the runs complete",
    )
    rest = list(it)
    assert len(sub._mailbox) == 0 and len(rest) < 6 * 12
    final = {r.id: r for r in rest}
    assert set(final) == {h.id for h in batch.runs}
    assert all(r.status == "COMPLETED" and r.metadata == {"i": 9} for r in final.values())


@pytest.mark.store_independent
def test_bad_input_is_refused_before_anything(rt):
    with pytest.raises(RunNotFoundError):
        next(iter(runs.subscribe_to_run("run_doesnotexist")))
    with pytest.raises(RunNotFoundError):
        next(iter(runs.subscribe_to_batch("batch_doesnotexist")))
    for bad in ([], [""], ["t"] * 11):
        with pytest.raises(InvalidOptionError):
            runs.subscribe_to_runs_with_tag(bad)
    for cursor in (-1, "3", True):
        with pytest.raises(InvalidOptionError):
            runs.subscribe_to_runs_with_tag("t", cursor=cursor)
    with pytest.raises(InvalidOptionError):
        runs.subscribe_to_run("not-a-run")
    with pytest.raises(InvalidOptionError):
        metadata.stream("run", [1])  # reserved: a part's type "run" is the run itself
    with pytest.raises(InvalidOptionError):
        metadata.stream("k", 42)
    assert list(metadata.stream("k", [1, 2])) == [1, 2]  # outside a run: passed through


@pytest.mark.native_only
def test_a_chunk_too_large_or_not_json_fails_the_attempt(rt, worker):
    @runlane.task(id="rt-bad-chunk", retry={"max_attempts": 1})
    def bad(payload):
        for _ in metadata.stream("s", [object() if payload == "object" else payload]):
            pass

    too_big = bad.trigger("x" * (rt.settings.limits.stream_chunk_bytes + 1))
    not_json = bad.trigger("object")
    for handle in (too_big, not_json):
        run = handle.wait(timeout=30)
        assert run.status == "FAILED"
    assert "stream chunk" in runs.retrieve(too_big).error.message
