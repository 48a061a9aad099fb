"""Every trigger option end to end through runlane.Worker on the embedded default."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest

import runlane
from runlane.backends.local import LocalBroker
from runlane.core import runtime
from tests.helpers import wait_final, wait_for, wait_status


def _tick() -> None:
    runtime.get().engine.tick()


def test_run_lifecycle_and_fields(worker):
    seen = {}

    @runlane.task(id="fields")
    def fields(payload, ctx: runlane.Context):
        seen["ctx"] = ctx
        return {"n": payload["n"] * 2}

    handle = fields.trigger(
        {"n": 21},
        tags=["user_1", "org_2"],
        metadata={"a": 1},
        max_attempts=2,
        max_duration=60,
        machine="large-1x",
        concurrency_key="user_1",
        version="v1",
    )
    assert handle.id.startswith("run_") and handle.task_identifier == "fields"
    run = wait_final(handle)
    assert run.status == runlane.RunStatus.COMPLETED == "COMPLETED"
    assert run.is_success and run.is_completed and not run.is_failed
    assert run.output == {"n": 42} and run.payload == {"n": 21}
    assert run.tags == ["user_1", "org_2"] and run.metadata == {"a": 1}
    assert (run.max_attempts, run.max_duration, run.machine) == (2, 60, "large-1x")
    assert (run.concurrency_key, run.version, run.queue) == ("user_1", "v1", "task/fields")
    assert run.attempt_count == 1 and len(run.attempts) == 1
    assert run.attempts[0].status == "COMPLETED" and run.attempts[0].number == 1
    assert run.created_at <= run.started_at <= run.finished_at
    assert run.queued_at is not None and run.number == 1 and run.environment == "dev"
    assert run.ttl == "10m"  # dev runs get the 10 minute default TTL
    ctx = seen["ctx"]
    assert ctx.run.id == run.id and ctx.task.id == "fields" and ctx.attempt.number == 1
    assert ctx.run.tags == ["user_1", "org_2"] and ctx.queue.name == "task/fields"
    assert ctx.environment.type == "DEVELOPMENT" and ctx.machine.name == "large-1x"
    assert ctx.run.concurrency_key == "user_1" and ctx.init is None


def test_ctx_is_optional_and_async_bodies_run(worker):
    @runlane.task(id="no-ctx")
    def no_ctx(payload):
        return payload + 1

    @runlane.task(id="async-body")
    async def async_body(payload, ctx):
        import asyncio

        await asyncio.sleep(0)
        return {"run": ctx.run.id}

    a, b = no_ctx.trigger(1), async_body.trigger(None)
    assert wait_final(a).output == 2
    run_b = wait_final(b)
    assert run_b.output == {"run": b.id}


def test_failing_attempt_fails_the_run_with_a_serialized_error(worker):
    @runlane.task(id="boom", retry={"max_attempts": 1})
    def boom(payload):
        raise KeyError("missing")

    run = wait_final(boom.trigger({}))
    assert run.status == "FAILED" and run.is_failed
    assert run.error.name == "KeyError" and "missing" in run.error.message
    assert "raise KeyError" in run.error.stack_trace
    assert run.attempts[0].error == run.error


def test_non_json_output_fails_the_attempt(worker):
    @runlane.task(id="bad-output", retry={"max_attempts": 1})
    def bad_output(payload):
        return {"s": {1, 2}}

    run = wait_final(bad_output.trigger({}))
    assert run.status == "FAILED" and run.error.name == "PayloadError"
    assert "output" in run.error.message


@pytest.mark.parametrize(
    "delay, seconds",
    [("1h", 3600), ("1h52m18s", 6738), (88, 88), (timedelta(minutes=5), 300), ("2d", 172800)],
)
def test_delay_durations(clock, delay, seconds):
    @runlane.task(id="delayed")
    def delayed(payload):
        return "ran"

    start = clock.now()
    handle = delayed.trigger({}, delay=delay)
    run = runlane.runs.retrieve(handle)
    assert run.status == "DELAYED" and run.is_queued
    assert run.delayed_until.timestamp() == pytest.approx(start + seconds, abs=0.01)
    assert run.queued_at is None
    clock.advance(seconds - 1)
    _tick()
    assert runlane.runs.retrieve(handle).status == "DELAYED"
    clock.advance(2)
    _tick()
    run = runlane.runs.retrieve(handle)
    assert run.status == "QUEUED" and run.queued_at is not None
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        assert wait_final(handle).output == "ran"


@pytest.mark.store_independent
def test_delay_absolute_dates(clock):
    @runlane.task(id="dated")
    def dated(payload):
        return 1

    now = datetime.fromtimestamp(clock.now(), tz=timezone.utc)
    target = now + timedelta(hours=2)
    h1 = dated.trigger({}, delay=target)
    h2 = dated.trigger({}, delay=target.isoformat().replace("+00:00", "Z"))
    h3 = dated.trigger(
        {}, delay=(target + timedelta(hours=2)).astimezone(timezone(timedelta(hours=2))).isoformat()
    )
    for h, expected in ((h1, target), (h2, target), (h3, target + timedelta(hours=2))):
        run = runlane.runs.retrieve(h)
        assert run.status == "DELAYED"
        assert run.delayed_until.timestamp() == pytest.approx(expected.timestamp(), abs=0.01)
    past = dated.trigger({}, delay=now - timedelta(days=1))  # a past date means now
    assert runlane.runs.retrieve(past).status == "QUEUED"
    past_iso = dated.trigger({}, delay="2001-01-01T00:00:00")
    assert runlane.runs.retrieve(past_iso).status == "QUEUED"


def test_ttl_expires_a_run_that_did_not_start(clock):
    @runlane.task(id="ttl-task")
    def ttl_task(payload):
        return 1

    handle = ttl_task.trigger({}, ttl="10s")  # no worker takes it
    run = runlane.runs.retrieve(handle)
    assert run.ttl == "10s" and run.status == "QUEUED"
    clock.advance(9)
    _tick()
    assert runlane.runs.retrieve(handle).status == "QUEUED"
    clock.advance(2)
    _tick()
    run = runlane.runs.retrieve(handle)
    assert run.status == "EXPIRED" and run.is_completed and run.is_failed
    assert run.expired_at is not None and run.finished_at is not None
    assert run.error.message == "Run expired because the TTL (10s) was reached"
    if isinstance(runtime.get().broker, LocalBroker):  # the local queue drops it at once
        assert runtime.get().broker.pending() == 0


def test_ttl_counts_from_enqueue_not_trigger(clock):
    @runlane.task(id="delay-ttl")
    def delay_ttl(payload):
        return 1

    handle = delay_ttl.trigger({}, delay="10m", ttl="1h")
    clock.advance(600)
    _tick()
    assert runlane.runs.retrieve(handle).status == "QUEUED"
    clock.advance(59 * 60)
    _tick()
    assert runlane.runs.retrieve(handle).status == "QUEUED"  # 69 min after trigger, 59 queued
    clock.advance(61)
    _tick()
    assert runlane.runs.retrieve(handle).status == "EXPIRED"


@pytest.mark.store_independent
def test_ttl_defaults_by_environment(db_url):
    @runlane.task(id="ttl-default")
    def ttl_default(payload):
        return 1

    runlane.configure(store=db_url, environment="dev")
    assert runlane.runs.retrieve(ttl_default.trigger({})).ttl == "10m"
    assert runlane.runs.retrieve(ttl_default.trigger({}, ttl=0)).ttl is None
    assert runlane.runs.retrieve(ttl_default.trigger({}, ttl=3600)).ttl == "1h"
    runlane.configure(store=db_url, environment="prod")
    try:
        assert runlane.runs.retrieve(ttl_default.trigger({})).ttl is None
    finally:
        runtime.install(None).close()


def test_started_run_does_not_expire(clock):
    release = threading.Event()

    @runlane.task(id="slow-ttl")
    def slow_ttl(payload):
        release.wait(30)
        return "done"

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        handle = slow_ttl.trigger({}, ttl="5s")
        wait_status(handle, "EXECUTING")
        clock.advance(60)
        _tick()
        assert runlane.runs.retrieve(handle).status == "EXECUTING"
        release.set()
        assert wait_final(handle).status == "COMPLETED"


def test_max_attempts_machine_queue_options_are_stored(rt):
    @runlane.task(id="opts", queue={"name": "shared", "concurrency_limit": 2}, machine="micro")
    def opts(payload):
        return 1

    run = runlane.runs.retrieve(opts.trigger({}))
    assert run.queue == "shared" and run.machine == "micro"
    run = runlane.runs.retrieve(
        opts.trigger(
            {}, queue={"name": "paid", "concurrency_limit": 10}, machine="large-2x", max_attempts=7
        )
    )
    assert run.queue == "paid" and run.machine == "large-2x" and run.max_attempts == 7
    run = runlane.runs.retrieve(opts.trigger({}, max_duration=runlane.TIMEOUT_NONE))
    assert run.max_duration is None


def test_tags_on_trigger_and_tags_add(worker, caplog):
    @runlane.task(id="tagger")
    def tagger(payload, ctx):
        after = runlane.tags.add(["product_1", "product_2"])
        assert ctx.run.tags == ["a"]  # the context is fixed at start
        runlane.tags.add("product_1")  # already there: nothing changes
        with caplog.at_level(logging.ERROR, logger="runlane.tags"):
            final = runlane.tags.add(["x", "y", "z"])  # would make 6: logged and ignored
        return {"after": after, "final": final}

    run = wait_final(tagger.trigger({}, tags="a"))
    assert run.output["after"] == ["a", "product_1", "product_2"]
    assert run.output["final"] == ["a", "product_1", "product_2"]
    assert run.tags == ["a", "product_1", "product_2"]
    assert any("ignored" in r.message for r in caplog.records)
    listed = [r.id for r in runlane.runs.list(tag="product_2")]
    assert listed == [run.id]


def test_metadata_operations_and_periodic_flush(worker):
    step = threading.Event()
    release = threading.Event()

    @runlane.task(id="meta")
    def meta(payload):
        m = runlane.metadata
        m.set("progress", 0.1).append("logs", "step 1").increment("done", 1)
        m.set("progress", 0.5).increment("done", 2).decrement("done", 1)
        m.append("logs", "step 2").remove("logs", "step 1").set("tmp", 1).delete("tmp")
        assert m.get("done") == 2 and m.get("progress") == 0.5
        assert m.current() == {"user": "eric", "progress": 0.5, "logs": ["step 2"], "done": 2}
        step.set()
        release.wait(30)
        m.replace({"final": True})
        return m.current()

    handle = meta.trigger({}, metadata={"user": "eric"})
    step.wait(30)
    # flushed in the background while the run is still executing
    flushed = wait_for(
        lambda: runlane.runs.retrieve(handle).metadata.get("done") == 2, message="metadata flush"
    )
    assert flushed
    assert runlane.runs.retrieve(handle).status == "EXECUTING"
    release.set()
    run = wait_final(handle)
    assert run.output == {"final": True} and run.metadata == {"final": True}


def test_metadata_flush_and_outside_a_run():
    assert runlane.metadata.set("x", 1) is runlane.metadata
    assert runlane.metadata.get("x") is None and runlane.metadata.current() is None
    runlane.metadata.flush()  # a no-op outside a run


def test_metadata_limit_inside_a_run(worker):
    @runlane.task(id="big-meta", retry={"max_attempts": 1})
    def big_meta(payload):
        runlane.metadata.set("ok", 1)
        runlane.metadata.set("huge", "x" * 300_000)

    run = wait_final(big_meta.trigger({}))
    assert run.status == "FAILED" and run.error.name == "LimitExceededError"
    assert run.metadata == {"ok": 1}  # the rejected update was never applied


def test_waiting_for_deploy_until_a_worker_registers_the_task(worker):
    handle = runlane.tasks.trigger("deployed-later", {"v": 1})
    run = runlane.runs.retrieve(handle)
    assert run.status == "WAITING_FOR_DEPLOY" and run.is_queued

    @runlane.task(id="deployed-later")
    def deployed_later(payload):
        return payload["v"]

    assert wait_final(handle).output == 1
    # the store now knows the task: another trigger by id is queued at once
    other = runlane.tasks.trigger("deployed-later", {"v": 2})
    assert runlane.runs.retrieve(other).status in ("QUEUED", "EXECUTING", "COMPLETED")


def test_trigger_by_id_learns_the_queue_from_the_registration(rt):
    @runlane.task(id="with-queue", queue={"name": "llm"})
    def with_queue(payload):
        return 1

    rt.engine.register([with_queue])
    runtime.get().registry.remove("with-queue")  # as if this process had no task code
    run = runlane.runs.retrieve(runlane.tasks.trigger("with-queue", {}))
    assert run.status == "QUEUED" and run.queue == "llm"


def test_trigger_and_poll(worker):
    @runlane.task(id="polled")
    def polled(payload):
        return payload * 3

    run = runlane.tasks.trigger_and_poll("polled", 3, poll_interval_ms=20, timeout=30)
    assert run.status == "COMPLETED" and run.output == 9
