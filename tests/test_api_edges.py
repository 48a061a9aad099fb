"""Edges a new user meets in the first hour: schema_task payload errors, one duration grammar
for every option, blocking waits outside tasks (``runs.poll``, ``handle.wait``), and
``self.request`` of a wrapped ``bind=True`` Celery task."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import celery
import pydantic
import pytest

import runlane
from runlane.backends.celery import wrap
from runlane.core import runtime
from runlane.core.polling import MIN_POLL_INTERVAL_MS
from runlane.core.polling import _looks as _polling
from runlane.errors import (
    InvalidOptionError,
    RunlaneError,
    RunNotFoundError,
    RunTimeoutError,
    TaskPayloadParsedError,
)
from tests.adapters import REPO, CeleryUnderTest, FrameworkWorker, unique_prefix

pytestmark = pytest.mark.timeout(300)


# ---------------------------------------------------------------------- schema_task
class Signup(pydantic.BaseModel):
    email: str
    age: int


def test_schema_task_payload_error_is_a_runlane_error_with_the_field_errors(worker):
    @runlane.schema_task(id="signup-edges", schema=Signup, retry={"max_attempts": 3})
    def signup(payload: Signup) -> int:
        return payload.age

    with pytest.raises(TaskPayloadParsedError) as info:
        signup.trigger({"age": "old"})
    err = info.value
    assert isinstance(err, RunlaneError) and isinstance(err, ValueError)
    assert isinstance(err.cause, pydantic.ValidationError)
    assert [(e["loc"], e["type"]) for e in err.errors] == [
        (("email",), "missing"),
        (("age",), "int_parsing"),
    ]
    assert "2 errors" in str(err) and "email: Field required" in str(err)
    assert "age: Input should be a valid integer" in str(err)
    assert list(runlane.runs.list()) == []  # nothing was written

    # by id the payload is not parsed at trigger; at run start it fails the same way, once
    run = runlane.tasks.trigger("signup-edges", {"age": "old"}).wait(timeout=60)
    assert run.status == "FAILED" and run.attempt_count == 1
    assert run.error.name == "TaskPayloadParsedError"
    assert run.error.message == str(err)


def test_a_parser_callable_error_is_wrapped_too(rt):
    def parse(payload: Any) -> int:
        if not isinstance(payload, int):
            raise ValueError("an int please")
        return payload

    @runlane.schema_task(id="parsed-edges", schema=parse)
    def parsed(value: int) -> int:
        return value

    with pytest.raises(TaskPayloadParsedError, match="payload failed to parse: an int please"):
        parsed.trigger("x")
    with pytest.raises(TaskPayloadParsedError) as info:
        parsed.trigger("x")
    assert info.value.errors == [] and isinstance(info.value.cause, ValueError)
    assert TaskPayloadParsedError(info.value).cause is info.value.cause  # wrapping twice


# ---------------------------------------------------------------------- durations
@pytest.mark.parametrize(("ttl", "seconds"), [("1w", 604_800), ("1hr", 3600), ("1h30m", 5400)])
def test_idempotency_key_ttl_takes_every_duration(clock, ttl, seconds):
    @runlane.task(id="idem-grammar")
    def idem(payload: Any) -> None:
        return None

    first = idem.trigger({}, idempotency_key="k", idempotency_key_ttl=ttl, ttl=0)
    clock.advance(seconds - 10)
    assert idem.trigger({}, idempotency_key="k", ttl=0).id == first.id
    clock.advance(20)
    assert idem.trigger({}, idempotency_key="k", ttl=0).id != first.id


# ---------------------------------------------------------------------- runs.poll / wait
def test_wait_and_poll_return_the_final_run(worker):
    @runlane.task(id="doubled")
    def doubled(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n * 2

    handle = doubled.trigger(21)
    run = handle.wait(timeout=60)
    assert run.id == handle.id and run.status == "COMPLETED" and run.output == 42
    assert run.attempts and run.attempts[0].status == "COMPLETED"
    again = runlane.runs.poll(handle.id, timeout=60, poll_interval_ms=100)
    assert again.output == 42 and runlane.runs.poll(run).id == run.id

    failed = runlane.runs.poll(doubled.trigger(-1, max_attempts=1), timeout=60)
    assert failed.status == "FAILED" and failed.error.message == "negative"  # not raised


def test_wait_times_out_with_a_timeout_error_that_is_a_runlane_error(rt):
    @runlane.task(id="never-run")
    def never_run(payload: Any) -> None:
        return None

    handle = never_run.trigger({})  # no worker: the run stays QUEUED
    with pytest.raises(RunTimeoutError) as info:
        handle.wait(timeout=0.3)
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, RunlaneError)
    assert err.run_id == handle.id and err.status == "QUEUED"
    assert f"run {handle.id} was still QUEUED after 0.3s" == str(err)
    with pytest.raises(TimeoutError):
        runlane.runs.poll(handle, timeout=0)
    assert runlane.runs.retrieve(handle).status == "QUEUED"  # waiting changed nothing


def test_the_async_twins(worker):
    @runlane.task(id="aio-wait")
    async def aio_wait(payload: str) -> str:
        return payload.upper()

    async def main() -> tuple[runlane.Run, runlane.Run]:
        handle = await aio_wait.aio_trigger("hi")
        return await handle.aio_wait(timeout=60), await runlane.runs.aio_poll(handle.id)

    by_handle, by_id = asyncio.run(main())
    assert by_handle.output == by_id.output == "HI"


def test_aio_wait_times_out(rt):
    @runlane.task(id="aio-never")
    def aio_never(payload: Any) -> None:
        return None

    handle = aio_never.trigger({})
    with pytest.raises(RunTimeoutError):
        asyncio.run(handle.aio_wait(timeout=0.2, poll_interval_ms=50))


@pytest.mark.store_independent
@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"poll_interval_ms": 0}, "poll_interval_ms"),
        ({"poll_interval_ms": MIN_POLL_INTERVAL_MS - 1}, "poll_interval_ms"),
        ({"poll_interval_ms": 100.0}, "poll_interval_ms"),
        ({"poll_interval_ms": True}, "poll_interval_ms"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "30"}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
    ],
)
def test_poll_arguments_are_checked(rt, kwargs, option):
    @runlane.task(id="checked")
    def checked(payload: Any) -> None:
        return None

    handle = checked.trigger({})
    with pytest.raises(InvalidOptionError) as info:
        runlane.runs.poll(handle, **kwargs)
    assert info.value.option == option


@pytest.mark.store_independent
def test_poll_of_an_unknown_run(rt):
    with pytest.raises(InvalidOptionError):
        runlane.runs.poll("not-a-run-id")
    with pytest.raises(RunNotFoundError):
        runlane.runs.poll("run_doesnotexist", timeout=5)


def test_polling_starts_fast_and_backs_off_to_the_interval(rt):
    @runlane.task(id="schedule")
    def schedule(payload: Any) -> None:
        return None

    queued = runlane.runs.retrieve(schedule.trigger({}))
    steps = _polling(queued.id, None, 400)
    pauses = [next(steps)] + [steps.send(queued) for _ in range(6)]
    assert pauses == [0.0, 0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    done = queued.model_copy(update={"status": runlane.RunStatus.COMPLETED})
    with pytest.raises(StopIteration) as stop:
        steps.send(done)
    assert stop.value.value is done


# ---------------------------------------------------------------------- wrap(): self.request
def _request_seen(request: Any) -> dict[str, Any]:
    return {
        "id": request.id,
        "retries": request.retries,
        "called_directly": request.called_directly,
        "is_eager": request.is_eager,
        "hostname": request.hostname,
        "delivery_info": request.delivery_info,
        "args": list(request.args or ()),
        "kwargs": request.kwargs,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "time_limit": request.time_limit,
    }


def test_a_wrapped_bound_task_sees_the_run_in_self_request(worker):
    app = celery.Celery("edges", set_as_current=False)

    @app.task(name="legacy.fetch", bind=True, shared=False)
    def fetch(self: Any, url: str) -> dict:
        if self.request.retries < 2:  # the common pattern: give up after two retries
            raise self.retry(exc=ConnectionError(json.dumps(_request_seen(self.request))))
        return _request_seen(self.request)

    task = wrap(fetch, retry={"max_attempts": 3, "min_timeout_in_ms": 0, "max_timeout_in_ms": 1})
    run = task.trigger({"url": "u"}, max_duration=60).wait(timeout=60)
    assert run.status == "COMPLETED" and run.attempt_count == 3
    first = json.loads(run.attempts[0].error.message)  # the exc given to self.retry()
    assert run.attempts[0].error.name == "ConnectionError"
    assert first["retries"] == 0 and json.loads(run.attempts[1].error.message)["retries"] == 1
    seen = run.output
    assert seen["id"] == run.id and seen["root_id"] == run.id and seen["parent_id"] is None
    assert seen["retries"] == 2
    assert seen["called_directly"] is False and seen["is_eager"] is True
    assert seen["args"] == [] and seen["kwargs"] == {"url": "u"}
    assert seen["time_limit"] == 60
    assert seen["delivery_info"]["routing_key"] == "task/legacy.fetch"
    assert seen["hostname"] == run.attempts[-1].worker_id
    assert fetch.request.id is None  # popped after the run


WRAPPED_PROJECT = """
import json, os

import runlane
from runlane.backends.celery import wrap
from tests.adapters import CeleryUnderTest

harness = CeleryUnderTest(os.environ["RL_BROKER_URL"], prefix=os.environ["RL_PREFIX"])
app = harness.app
runlane.configure(store=os.environ["RUNLANE_STORE_URL"], broker=harness.broker,
                  engine_interval=0.05)


@app.task(name="legacy.charge", bind=True)
def charge(self, order):
    r = self.request
    seen = {"id": r.id, "retries": r.retries, "called_directly": r.called_directly,
            "hostname": r.hostname, "delivery_info": dict(r.delivery_info or {})}
    with open(os.environ["RL_JOURNAL"], "a") as f:
        f.write(json.dumps(seen) + "\\n")
    if r.retries < 2:
        raise self.retry(exc=ConnectionError("gateway down"), countdown=3600)
    return seen


charge_run = wrap(charge, retry={"max_attempts": 3, "min_timeout_in_ms": 0,
                                 "max_timeout_in_ms": 10})
"""


def test_self_request_in_a_celery_worker_process(redis_url: str, tmp_path: Path) -> None:
    """``celery -A project worker`` (prefork) runs a wrapped bind=True task: ``self.request``
    describes the run and its Celery delivery, and ``self.retry()`` sends no Celery message."""
    (tmp_path / "wrapped_project.py").write_text(WRAPPED_PROJECT)
    prefix = unique_prefix()
    store = f"sqlite:///{tmp_path}/runlane.db"
    journal = tmp_path / "journal"
    env = {
        **os.environ,
        "RL_BROKER_URL": redis_url,
        "RL_PREFIX": prefix,
        "RL_JOURNAL": str(journal),
        "RUNLANE_STORE_URL": store,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    harness = CeleryUnderTest(redis_url, prefix=prefix)
    runlane.configure(store=store, broker=harness.broker, engine_interval=0.05)
    argv = [
        sys.executable, "-m", "celery", "-A", "wrapped_project", "worker", "-P", "prefork",
        "-c", "1", "-n", f"{prefix}@%h", "--loglevel=INFO",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    worker = FrameworkWorker(argv, env, tmp_path / "worker.log", cwd=tmp_path)
    try:
        handle = runlane.tasks.trigger("legacy.charge", {"order": 7})  # by id: no task code
        try:
            run = handle.wait(timeout=120, poll_interval_ms=100)
        except RunTimeoutError:
            raise AssertionError(f"no result:\n{worker.output()[-4000:]}") from None
        assert run.status == "COMPLETED", run.error
        assert run.attempt_count == 3
        assert [a.error.message for a in run.attempts[:2]] == ["gateway down"] * 2
        seen = run.output
        assert seen["id"] == run.id and seen["retries"] == 2
        assert seen["called_directly"] is False
        assert seen["hostname"].startswith(f"{prefix}@")
        assert seen["delivery_info"]["routing_key"] in harness.broker.queues
    finally:
        worker.stop()
        old = runtime.install(None)
        if old is not None:
            old.close()
    # every execution was one of the run's attempts, and self.retry() sent no Celery message
    # (with its countdown of an hour, one would be left in a queue after the worker stopped)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(s["id"], s["retries"]) for s in lines] == [(run.id, 0), (run.id, 1), (run.id, 2)]
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for queue in [*harness.broker.queues, f"{prefix}.default"]:
            assert client.llen(f"{prefix}:{queue}") == 0, queue
        assert client.hlen(f"{prefix}:unacked") == 0
    finally:
        client.close()
        harness.close()
