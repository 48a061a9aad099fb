"""runs.retrieve / list / cancel / replay / reschedule / update_metadata, and batches."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

import runlane
from runlane.backends.local import LocalBroker
from runlane.core import runtime
from runlane.errors import InvalidRunStateError, RunNotFoundError
from tests.helpers import wait_final, wait_for


@pytest.fixture
def noop(rt):
    @runlane.task(id="noop")
    def noop(payload):
        return payload

    return noop


def test_retrieve_accepts_handle_id_and_run(noop):
    handle = noop.trigger({"a": 1})
    run = runlane.runs.retrieve(handle)
    assert runlane.runs.retrieve(handle.id) == run
    assert runlane.runs.retrieve(run).id == run.id


def test_list_filters(rt, noop):
    @runlane.task(id="other")
    def other(payload):
        return payload

    a = noop.trigger(1, tags=["t1"], version="v1")
    b = noop.trigger(2, tags=["t2"], delay="1h")
    c = other.trigger(3, tags=["t1", "t2"], version="v2")
    batch = other.batch_trigger([{"payload": 4}, {"payload": 5}])

    def ids(**filters):
        return [r.id for r in runlane.runs.list(**filters)]

    everything = ids()
    assert everything == [*reversed([h.id for h in batch.runs]), c.id, b.id, a.id]  # newest first
    assert ids(status="DELAYED") == [b.id]
    assert ids(status=["DELAYED", "QUEUED"]) == everything
    assert set(ids(task_identifier="noop")) == {a.id, b.id}
    assert set(ids(task_identifier=["noop", "other"])) == set(everything)
    assert set(ids(tag="t1")) == {a.id, c.id}
    assert set(ids(tag=["t1", "t2"])) == {a.id, b.id, c.id}
    assert ids(version="v2") == [c.id]
    assert ids(batch=batch.batch_id) == list(reversed([h.id for h in batch.runs]))
    assert ids(batch=batch) == ids(batch=batch.batch_id)
    assert ids(queue="task/noop") == [b.id, a.id]
    created = runlane.runs.retrieve(c).created_at
    assert set(ids(from_=created)) >= {c.id, *[h.id for h in batch.runs]}
    assert a.id not in ids(from_=created)
    assert ids(to=datetime(2000, 1, 1, tzinfo=timezone.utc)) == []
    assert set(ids(to=created.isoformat())) >= {a.id, b.id}
    assert ids(schedule="sched_nope") == []


def test_pagination(rt, noop):
    handles = noop.batch_trigger([{"payload": i} for i in range(45)]).runs
    newest_first = [h.id for h in reversed(handles)]
    page = runlane.runs.list(limit=20)
    assert [r.id for r in page.data] == newest_first[:20] and page.has_next_page()
    page2 = page.get_next_page()
    assert [r.id for r in page2.data] == newest_first[20:40] and page2.has_next_page()
    page3 = page2.get_next_page()
    assert [r.id for r in page3.data] == newest_first[40:] and not page3.has_next_page()
    assert page3.get_next_page().data == []
    # iterating a page walks all pages; runs created meanwhile do not shift the cursor
    seen = []
    for i, run in enumerate(runlane.runs.list(limit=7)):
        seen.append(run.id)
        if i == 3:
            noop.trigger("late")
    assert seen == newest_first


def test_cancel_before_start(clock):
    @runlane.task(id="cancel-me")
    def cancel_me(payload):
        return 1

    delayed = cancel_me.trigger({}, delay="1h")
    queued = cancel_me.trigger({})
    waiting = runlane.tasks.trigger("not-deployed", {})
    assert runlane.runs.retrieve(waiting).status == "WAITING_FOR_DEPLOY"
    for h in (delayed, queued, waiting):
        run = runlane.runs.cancel(h)
        assert run.status == "CANCELED" and run.is_canceled and run.finished_at is not None
        assert run.error.message == "Canceled by user"
    if isinstance(runtime.get().broker, LocalBroker):
        assert runtime.get().broker.pending() == 0  # removed from the local queue
    clock.advance(7200)
    runtime.get().engine.tick()
    assert runlane.runs.retrieve(delayed).status == "CANCELED"
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        done = wait_final(cancel_me.trigger({}))
        assert runlane.runs.cancel(done).status == "COMPLETED"  # a finished run: no-op
        assert runlane.runs.retrieve(queued).status == "CANCELED"


def test_cancel_executing_run_discards_its_result(worker):
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    @runlane.task(id="long")
    def long(payload):
        started.set()
        release.wait(30)
        finished.set()
        return "late"

    handle = long.trigger({})
    started.wait(30)
    run = runlane.runs.cancel(handle)
    assert run.status == "CANCELED" and run.attempts[0].status == "CANCELED"
    release.set()
    finished.wait(30)
    wait_for_idle(worker)
    run = runlane.runs.retrieve(handle)
    assert run.status == "CANCELED" and run.output is None


def wait_for_idle(worker):
    wait_for(lambda: len(worker.active) == 0, message="worker idle")


def test_replay_creates_a_new_run(worker):
    @runlane.task(id="replayable", queue="custom-q")
    def replayable(payload):
        runlane.metadata.set("progress", 1.0)
        return payload["x"]

    original = wait_final(
        replayable.trigger({"x": 5}, tags=["t"], metadata={"seed": 1}, concurrency_key="k")
    )
    assert original.metadata == {"seed": 1, "progress": 1.0}
    handle = runlane.runs.replay(original)
    assert handle.id != original.id
    replayed = wait_final(handle)
    assert replayed.task_identifier == "replayable" and replayed.payload == {"x": 5}
    assert replayed.output == 5 and replayed.tags == ["t"] and replayed.queue == "custom-q"
    assert replayed.concurrency_key == "k"
    assert replayed.metadata == {"seed": 1, "progress": 1.0}
    assert runlane.runs.replay(original.id).id not in (original.id, handle.id)


def test_reschedule(clock):
    @runlane.task(id="resched")
    def resched(payload):
        return 1

    handle = resched.trigger({}, delay="1h")
    before = runlane.runs.retrieve(handle).delayed_until
    run = runlane.runs.reschedule(handle, delay="2h")
    assert run.status == "DELAYED"
    assert run.delayed_until - before == timedelta(hours=1)
    run = runlane.runs.reschedule(handle, delay=datetime(2000, 1, 1))  # past: now
    assert run.status == "QUEUED"
    with pytest.raises(InvalidRunStateError, match="Cannot reschedule a run that is not delayed"):
        runlane.runs.reschedule(handle, delay="1h")


def test_update_metadata(rt, noop):
    handle = noop.trigger({}, metadata={"a": 1})
    assert runlane.runs.update_metadata(handle, {"b": 2}) == {"b": 2}
    assert runlane.runs.retrieve(handle).metadata == {"b": 2}
    with pytest.raises(RunNotFoundError):
        runlane.runs.update_metadata("run_missing", {})


def test_batches(worker):
    @runlane.task(id="double")
    def double(payload):
        return payload * 2

    @runlane.task(id="negate")
    def negate(payload):
        return -payload

    handle = double.batch_trigger([{"payload": i} for i in range(10)])
    assert handle.batch_id.startswith("batch_") and len(handle) == 10
    outputs = [wait_final(h).output for h in handle.runs]
    assert outputs == [i * 2 for i in range(10)]  # handles in item order
    for h in handle:
        assert runlane.runs.retrieve(h).batch_id == handle.batch_id
    retrieved = runlane.batch.retrieve(handle.batch_id)
    assert retrieved.run_ids == [h.id for h in handle.runs] and retrieved.run_count == 10

    by_id = runlane.tasks.batch_trigger("negate", [{"payload": 1}, {"payload": 2}])
    assert [wait_final(h).output for h in by_id.runs] == [-1, -2]

    mixed = runlane.batch.trigger(
        [{"id": "double", "payload": 3}, {"id": "negate", "payload": 3, "options": {"tags": "x"}}]
    )
    assert [wait_final(h).output for h in mixed.runs] == [6, -3]
    assert runlane.runs.retrieve(mixed.runs[1]).tags == ["x"]

    by_task = runlane.batch.trigger_by_task(
        [(double, 4), (negate, 4, {"delay": "1s"}), {"task": double, "payload": 5}]
    )
    assert [h.task_identifier for h in by_task.runs] == ["double", "negate", "double"]
    assert [wait_final(h).output for h in by_task.runs] == [8, -4, 10]


def test_batch_items_with_options(clock):
    @runlane.task(id="batch-opts")
    def batch_opts(payload):
        return 1

    handle = batch_opts.batch_trigger(
        [{"payload": 1, "options": {"delay": "1h", "tags": ["a"]}}, {"payload": 2}]
    )
    first, second = (runlane.runs.retrieve(h) for h in handle.runs)
    assert first.status == "DELAYED" and first.tags == ["a"]
    assert second.status == "QUEUED"


def test_retrieve_missing_run(rt):
    with pytest.raises(RunNotFoundError):
        runlane.runs.retrieve("run_01aaaaaaaaaaaaaaaaaaaaaaaa")
    with pytest.raises(RunNotFoundError):
        runlane.batch.retrieve("batch_01aaaaaaaaaaaaaaaaaaaaaaaa")


def test_environments_do_not_see_each_other(db_url):
    @runlane.task(id="env-task")
    def env_task(payload):
        return 1

    runlane.configure(store=db_url, environment="staging")
    try:
        h = env_task.trigger({})
        runlane.configure(store=db_url, environment="prod")
        with pytest.raises(RunNotFoundError):
            runlane.runs.retrieve(h)
        assert list(runlane.runs.list()) == []
    finally:
        runtime.install(None).close()


def test_status_enum_is_str():
    assert runlane.RunStatus.QUEUED == "QUEUED" and str(runlane.RunStatus.FAILED) == "FAILED"
    assert [s for s in runlane.RunStatus if s.is_final] == [
        "COMPLETED",
        "CANCELED",
        "FAILED",
        "CRASHED",
        "INTERRUPTED",
        "SYSTEM_FAILURE",
        "EXPIRED",
        "TIMED_OUT",
    ]


def test_finished_runs_are_deleted_after_the_retention(db_url):
    clock = runlane.FakeClock()
    rt = runlane.configure(store=db_url, engine_interval=0.05, clock=clock, retention="1d")

    @runlane.task(id="kept-a-day")
    def kept(payload):
        runlane.logger.info("hello")
        return payload

    try:
        with runlane.Worker(concurrency=2, fetch_timeout=0.1):
            done = wait_final(kept.trigger(1, tags=["t"], idempotency_key="k"))
            canceled = runlane.runs.cancel(kept.trigger(2, delay="1h"))
            pending = kept.trigger(3, delay="30d")  # not finished: never purged
        assert runlane.runs.logs(done)
        clock.advance(86400 - 60)
        rt.engine.tick()
        assert runlane.runs.retrieve(done).status == "COMPLETED"  # not yet
        clock.advance(120)
        rt.engine.tick()
        for gone in (done, canceled):
            with pytest.raises(RunNotFoundError):
                runlane.runs.retrieve(gone)
        assert [r.id for r in runlane.runs.list()] == [pending.id]
        assert runlane.runs.list(tag="t").data == []
        # the idempotency key went with its run
        assert not kept.trigger(4, idempotency_key="k", delay="1h").is_cached
    finally:
        runtime.install(None).close()
