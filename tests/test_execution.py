"""Execution semantics end to end: retries, hooks, errors, max duration, cancel, schema tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

import pydantic
import pytest

import runlane
from runlane.core import runtime
from runlane.core.options import RetryOptions
from runlane.core.retrying import backoff_delay_ms
from runlane.errors import AbortTaskRunError, OutOfMemoryError, TaskPayloadParsedError
from tests.helpers import wait_final, wait_for, wait_status


@pytest.fixture
def fast(db_url):
    """A runtime that allows 1-second max durations, with a worker."""
    runlane.configure(store=db_url, engine_interval=0.05, limits={"min_max_duration_seconds": 1})
    with runlane.Worker(concurrency=1, fetch_timeout=0.1) as w:
        yield w
    runtime.install(None).close()


def test_backoff_formula():
    opts = RetryOptions(
        max_attempts=6, factor=2, min_timeout_in_ms=1000, max_timeout_in_ms=10000, randomize=False
    )
    assert [backoff_delay_ms(opts, n) for n in range(1, 7)] == [
        1000,
        2000,
        4000,
        8000,
        10000,
        None,
    ]
    jitter = RetryOptions(max_attempts=3, min_timeout_in_ms=500, randomize=True)
    assert backoff_delay_ms(jitter, 1, rand=lambda: 0.5) == 750
    assert backoff_delay_ms(jitter, 2, rand=lambda: 0.999) == round(1.999 * 500 * 2)
    assert (
        backoff_delay_ms(RetryOptions(factor=1.8, min_timeout_in_ms=500, randomize=False), 2) == 900
    )


def test_retries_with_backoff_on_a_fake_clock(clock):
    calls = []

    @runlane.task(
        id="flaky",
        retry={"max_attempts": 4, "min_timeout_in_ms": 1000, "factor": 2, "randomize": False},
        on_start=lambda payload, ctx: calls.append(("start", ctx.attempt.number)),
    )
    def flaky(payload, ctx):
        calls.append(("run", ctx.attempt.number))
        if ctx.attempt.number < 3:
            raise RuntimeError(f"fail {ctx.attempt.number}")
        return "ok"

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        handle = flaky.trigger({})
        run = wait_status(handle, "REATTEMPTING")
        assert run.retry_at.timestamp() == pytest.approx(clock.now() + 1.0)
        assert run.error.message == "fail 1" and run.attempt_count == 1
        runtime.get().engine.tick()
        assert runlane.runs.retrieve(handle).status == "REATTEMPTING"  # holds no worker
        clock.advance(1.0)
        run = wait_for(
            lambda: (
                (r := runlane.runs.retrieve(handle)).attempt_count == 2
                and r.status == "REATTEMPTING"
                and r
            )
        )
        assert run.retry_at.timestamp() == pytest.approx(clock.now() + 2.0)
        clock.advance(1.5)
        runtime.get().engine.tick()
        assert runlane.runs.retrieve(handle).status == "REATTEMPTING"
        clock.advance(0.5)
        run = wait_final(handle)
    assert run.status == "COMPLETED" and run.output == "ok" and run.attempt_count == 3
    assert [a.status for a in run.attempts] == ["FAILED", "FAILED", "COMPLETED"]
    assert [a.error.message if a.error else None for a in run.attempts] == [
        "fail 1",
        "fail 2",
        None,
    ]
    assert calls == [("start", 1), ("run", 1), ("run", 2), ("run", 3)]  # on_start once


def test_exhausted_attempts_fail_and_call_on_failure_once(worker):
    failures = []

    @runlane.task(
        id="always-fails",
        retry={"max_attempts": 3, "min_timeout_in_ms": 0, "randomize": False},
        on_failure=lambda payload, error, ctx: failures.append(
            (type(error).__name__, ctx.attempt.number)
        ),
    )
    def always_fails(payload):
        raise ValueError("nope")

    run = wait_final(always_fails.trigger({}))
    assert run.status == "FAILED" and run.attempt_count == 3
    assert failures == [("ValueError", 3)]


class _Ready:
    """An awaitable that is done at once (it never waits)."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        if False:  # a generator that returns at once
            yield
        return self.value


@pytest.mark.parametrize("hooked", [False, True], ids=["plain", "with-hook"])
def test_a_sync_task_that_returns_an_awaitable(worker, hooked):
    """A plain task and one with a hook (the pipeline's two paths) treat an awaitable a sync
    function returns alike: awaited when it is done at once, else the attempt fails, asking
    for ``async def``, without retrying (it would fail the same way again)."""
    hooks = {"on_success": lambda payload, output: None} if hooked else {}
    retry = {"max_attempts": 3, "min_timeout_in_ms": 0, "randomize": False}

    @runlane.task(id=f"returns-ready-{hooked}", retry=retry, **hooks)
    def returns_ready(payload):
        return _Ready({"got": payload})

    class Pending:
        """An awaitable that waits (for an event loop this attempt does not have)."""

        def __await__(self):
            yield
            return 1

    @runlane.task(id=f"returns-coroutine-{hooked}", retry=retry, **hooks)
    def returns_coroutine(payload):
        return Pending()

    run = wait_final(returns_ready.trigger(7))
    assert run.status == "COMPLETED" and run.output == {"got": 7}
    run = wait_final(returns_coroutine.trigger(None))
    assert run.status == "FAILED" and run.attempt_count == 1
    assert "declare it with `async def`" in run.error.message


def test_trigger_max_attempts_overrides_and_dev_retry_switch(db_url):
    @runlane.task(id="override", retry={"max_attempts": 5, "min_timeout_in_ms": 0})
    def override(payload):
        raise ValueError("x")

    runlane.configure(store=db_url, engine_interval=0.05)
    try:
        with runlane.Worker(concurrency=2, fetch_timeout=0.1):
            assert wait_final(override.trigger({}, max_attempts=2)).attempt_count == 2
            runlane.configure(store=db_url, engine_interval=0.05, retries={"enabled_in_dev": False})
        with runlane.Worker(concurrency=2, fetch_timeout=0.1):
            assert wait_final(override.trigger({})).attempt_count == 1
    finally:
        runtime.install(None).close()


def test_configured_default_retry(db_url):
    @runlane.task(id="default-retry")
    def default_retry(payload):
        raise ValueError("x")

    runlane.configure(
        store=db_url,
        engine_interval=0.05,
        retries={"default": {"max_attempts": 2, "min_timeout_in_ms": 0}},
    )
    try:
        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            run = wait_final(default_retry.trigger({}))
        assert run.attempt_count == 2 and run.max_attempts is None
    finally:
        runtime.install(None).close()


def test_abort_fails_without_retry_or_handle_error(worker):
    handled = []

    @runlane.task(
        id="aborts",
        retry={"max_attempts": 5, "min_timeout_in_ms": 0},
        handle_error=lambda *a: handled.append(a),
    )
    def aborts(payload):
        raise AbortTaskRunError("bad input")

    run = wait_final(aborts.trigger({}))
    assert run.status == "FAILED" and run.attempt_count == 1
    assert run.error.name == "AbortTaskRunError" and run.error.message == "bad input"
    assert handled == []


@pytest.mark.parametrize(
    "answer, attempts, status",
    [
        ({"skip_retrying": True}, 1, "FAILED"),
        ({"retry_delay_in_ms": 0}, 3, "FAILED"),
        ({"error": ValueError("replaced")}, 1, "FAILED"),
        (None, 3, "FAILED"),
        ({"retry": {"max_attempts": 2, "min_timeout_in_ms": 0}}, 2, "FAILED"),
    ],
)
def test_handle_error_answers(worker, answer, attempts, status):
    seen = []

    def handle_error(payload, error, ctx, retry_delay_in_ms=None, retry_at=None, retry=None):
        seen.append((ctx.attempt.number, retry_delay_in_ms, retry.max_attempts))
        return answer

    @runlane.task(
        id="handled",
        retry={"max_attempts": 3, "min_timeout_in_ms": 0, "randomize": False},
        handle_error=handle_error,
    )
    def handled(payload):
        raise RuntimeError("original")

    run = wait_final(handled.trigger({}))
    assert run.status == status and run.attempt_count == attempts
    assert seen[0] == (1, 0, 3)
    if answer and "error" in answer:
        assert run.error.name == "ValueError" and run.error.message == "replaced"
    else:
        assert run.error.message == "original"


def test_handle_error_retry_at_and_global_hook(clock):
    target = datetime.fromtimestamp(clock.now(), tz=timezone.utc) + timedelta(minutes=5)
    global_seen = []

    runlane.configure(
        store=runtime.get().settings.store_url,
        engine_interval=0.05,
        clock=clock,
        handle_error=lambda payload, error, ctx: (
            global_seen.append(str(error)) or {"retry_at": target}
        ),
    )

    @runlane.task(id="retry-at", retry={"max_attempts": 2})
    def retry_at(payload):
        raise RuntimeError("later")

    @runlane.task(
        id="task-first",
        retry={"max_attempts": 2},
        handle_error=lambda payload, error, ctx: {"skip_retrying": True},
    )
    def task_first(payload):
        raise RuntimeError("skip")

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        h = retry_at.trigger({})
        run = wait_status(h, "REATTEMPTING")
        assert run.retry_at == target
        skipped = wait_final(task_first.trigger({}))
        assert skipped.status == "FAILED" and skipped.attempt_count == 1
    assert global_seen == ["later"]  # the task's own handler answered for task-first


def test_exception_in_handle_error(worker):
    def broken(payload, error, ctx):
        raise TypeError("handler broke")

    @runlane.task(id="broken-handler", retry={"max_attempts": 3}, handle_error=broken)
    def broken_handler(payload):
        raise RuntimeError("x")

    run = wait_final(broken_handler.trigger({}))
    assert run.status == "FAILED" and run.attempt_count == 1
    assert run.error.code == "HANDLE_ERROR_ERROR" and run.error.message == "handler broke"


def test_hook_order_with_retry_and_global_hooks(db_url):
    events = []

    def rec(name):
        def hook(payload, *rest):
            ctx = rest[-1]
            events.append((name, ctx.attempt.number))
            return {"db": "conn"} if name == "task.init" else None

        return hook

    def middleware(name):
        def mw(payload, ctx, next):
            events.append((f"{name}.before", ctx.attempt.number))
            try:
                return next()
            finally:
                events.append((f"{name}.after", ctx.attempt.number))

        return mw

    runlane.configure(
        store=db_url,
        engine_interval=0.05,
        init=rec("global.init"),
        on_start=rec("global.on_start"),
        on_success=rec("global.on_success"),
        on_failure=rec("global.on_failure"),
        cleanup=rec("global.cleanup"),
        middleware=middleware("global.mw"),
    )

    @runlane.task(
        id="hooked",
        retry={"max_attempts": 2, "min_timeout_in_ms": 0},
        init=rec("task.init"),
        on_start=rec("task.on_start"),
        on_success=rec("task.on_success"),
        on_failure=rec("task.on_failure"),
        cleanup=rec("task.cleanup"),
        middleware=middleware("task.mw"),
    )
    def hooked(payload, ctx):
        events.append(("run", ctx.attempt.number))
        assert ctx.init == {"db": "conn"}
        if ctx.attempt.number == 1:
            raise RuntimeError("first fails")
        return "done"

    try:
        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            assert wait_final(hooked.trigger({})).status == "COMPLETED"
    finally:
        runtime.install(None).close()
    attempt = lambda n: [e for e, a in events if a == n]  # noqa: E731
    assert attempt(1) == [
        "global.init",
        "task.init",
        "global.mw.before",
        "task.mw.before",
        "global.on_start",
        "task.on_start",
        "run",
        "task.mw.after",
        "global.mw.after",
        "task.cleanup",
        "global.cleanup",
    ]
    assert attempt(2) == [
        "global.init",
        "task.init",
        "global.mw.before",
        "task.mw.before",
        "run",
        "task.mw.after",
        "global.mw.after",
        "task.cleanup",
        "global.cleanup",
        "global.on_success",
        "task.on_success",
    ]


def test_async_hooks_and_init_errors_ignored(worker):
    events = []

    async def init(payload, ctx):
        raise RuntimeError("init errors are ignored")

    async def mw(payload, ctx, next):
        events.append("mw")
        return {"wrapped": await next()}

    async def on_success(payload, output, ctx):
        events.append(("success", output))

    @runlane.task(id="async-hooks", init=init, middleware=mw, on_success=on_success)
    async def async_hooks(payload, ctx):
        await asyncio.sleep(0)
        return ctx.init

    run = wait_final(async_hooks.trigger({}))
    assert run.status == "COMPLETED" and run.output == {"wrapped": None}
    assert events == ["mw", ("success", {"wrapped": None})]


def test_cleanup_error_fails_the_attempt(worker):
    @runlane.task(id="cleanup-fails", retry={"max_attempts": 1}, cleanup=lambda payload, ctx: 1 / 0)
    def cleanup_fails(payload):
        return "would have succeeded"

    run = wait_final(cleanup_fails.trigger({}))
    assert run.status == "FAILED" and run.error.name == "ZeroDivisionError"
    assert run.output is None


def test_out_of_memory_retries_on_a_larger_machine(worker):
    machines = []

    @runlane.task(
        id="oom",
        machine="small-1x",
        retry={"max_attempts": 2, "min_timeout_in_ms": 0, "out_of_memory": {"machine": "large-1x"}},
    )
    def oom(payload, ctx):
        machines.append(ctx.machine.name)
        if ctx.attempt.number == 1:
            raise OutOfMemoryError("too big")
        return "fits"

    run = wait_final(oom.trigger({}))
    assert run.status == "COMPLETED" and machines == ["small-1x", "large-1x"]
    assert run.machine == "large-1x"


def test_max_duration_interrupts_a_busy_loop(fast):
    hooks = []

    @runlane.task(
        id="busy",
        retry={"max_attempts": 3, "min_timeout_in_ms": 0},
        cleanup=lambda *a: hooks.append("cleanup"),
        on_failure=lambda *a: hooks.append("failure"),
    )
    def busy(payload):
        n = 0
        while True:
            n += 1

    run = wait_final(busy.trigger({}, max_duration=1), timeout=60)
    assert run.status == "TIMED_OUT" and run.attempt_count == 1  # never retried
    assert run.error.message == "Run exceeded maxDuration of 1 seconds"
    assert run.attempts[0].status == "TIMED_OUT"
    assert hooks == []
    # the thread came back by itself (its attempt is active until the end it recorded returns)
    wait_for(lambda: len(fast.active) == 0, message="the attempt's thread to come back")


@pytest.mark.not_on_adapter(
    "celery", "a blocked call keeps its Celery thread until it returns (prefork replaces it)"
)
def test_max_duration_of_a_blocking_call_frees_the_slot(fast):
    @runlane.task(id="sleeper")
    def sleeper(payload):
        time.sleep(payload)
        return "woke"

    @runlane.task(id="after-sleeper")
    def after(payload):
        return "ran"

    handle = sleeper.trigger(30, max_duration=1)
    run = wait_final(handle, timeout=60)
    assert run.status == "TIMED_OUT"
    # concurrency=1: the blocked thread's slot went to a new thread
    assert wait_final(after.trigger({}), timeout=60).output == "ran"


def test_max_duration_of_an_async_await(fast):
    @runlane.task(id="async-sleeper")
    async def async_sleeper(payload):
        await asyncio.sleep(60)

    run = wait_final(async_sleeper.trigger({}, max_duration=1), timeout=60)
    assert run.status == "TIMED_OUT"
    wait_for(lambda: len(fast.active) == 0, message="slot released")


def test_max_duration_from_task_and_config(db_url):
    runlane.configure(store=db_url, max_duration=30)

    @runlane.task(id="limited", max_duration=10)
    def limited(payload, ctx):
        return ctx.run.max_duration

    @runlane.task(id="config-limited")
    def config_limited(payload, ctx):
        return ctx.run.max_duration

    @runlane.task(id="unlimited", max_duration=runlane.timeout.NONE)
    def unlimited(payload, ctx):
        return ctx.run.max_duration

    try:
        with runlane.Worker(concurrency=2, fetch_timeout=0.1):
            assert wait_final(limited.trigger({})).output == 10
            assert wait_final(limited.trigger({}, max_duration=20)).output == 20
            assert wait_final(config_limited.trigger({})).output == 30
            assert wait_final(unlimited.trigger({})).output is None
            assert wait_final(limited.trigger({}, max_duration=runlane.timeout.NONE)).output is None
    finally:
        runtime.install(None).close()


@pytest.mark.not_on_adapter(
    "celery", "a blocked call keeps its Celery thread until it returns (prefork replaces it)"
)
def test_cancel_a_run_blocked_in_sleep(db_url):
    runlane.configure(store=db_url, engine_interval=0.05)
    started = threading.Event()

    @runlane.task(id="blocked", retry={"max_attempts": 3, "min_timeout_in_ms": 0})
    def blocked(payload):
        started.set()
        time.sleep(30)
        return "finished"

    @runlane.task(id="next-one")
    def next_one(payload):
        return "ran"

    try:
        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            handle = blocked.trigger({})
            assert started.wait(30)
            assert runlane.runs.cancel(handle).status == "CANCELED"
            assert wait_final(next_one.trigger({}), timeout=60).output == "ran"
            run = runlane.runs.retrieve(handle)
            assert run.status == "CANCELED" and run.attempt_count == 1
            assert run.attempts[0].status == "CANCELED"
    finally:
        runtime.install(None).close()


def test_cancel_interrupts_a_busy_loop(worker):
    started = threading.Event()
    stopped = threading.Event()

    @runlane.task(id="spin")
    def spin(payload):
        started.set()
        try:
            while True:
                pass
        finally:
            stopped.set()

    handle = spin.trigger({})
    assert started.wait(30)
    runlane.runs.cancel(handle)
    assert stopped.wait(30)  # the loop itself was interrupted
    wait_for(lambda: len(worker.active) == 0, message="slot released")
    assert runlane.runs.retrieve(handle).status == "CANCELED"


class Signup(pydantic.BaseModel):
    email: str
    age: int


def test_schema_task(worker):
    @runlane.schema_task(id="signup", schema=Signup, retry={"max_attempts": 3})
    def signup(payload: Signup, ctx):
        assert isinstance(payload, Signup)
        return {"email": payload.email, "next_age": payload.age + 1}

    before = runtime.get().store.count_runs()
    with pytest.raises(TaskPayloadParsedError):
        signup.trigger({"email": "a@b.c", "age": "not a number"})
    assert runtime.get().store.count_runs() == before  # nothing written
    ok = wait_final(signup.trigger({"email": "a@b.c", "age": "41"}))
    assert ok.output == {"email": "a@b.c", "next_age": 42}
    assert wait_final(signup.trigger(Signup(email="m@n.o", age=1))).output["next_age"] == 2
    # by id: no validation at trigger; the run fails at start, without retrying
    bad = wait_final(runlane.tasks.trigger("signup", {"email": "x"}))
    assert bad.status == "FAILED" and bad.attempt_count == 1
    assert bad.error.name == "TaskPayloadParsedError"


def test_schema_task_with_a_parser_callable(worker):
    def parse(payload):
        if not isinstance(payload, int):
            raise ValueError("an int please")
        return payload * 10

    @runlane.schema_task(id="parsed", schema=parse)
    def parsed(value):
        return value + 1

    with pytest.raises(ValueError, match="an int please"):
        parsed.trigger("x")
    assert wait_final(parsed.trigger(4)).output == 41


def test_logs_spans_prints_and_usage(worker, caplog):
    @runlane.task(id="logs", retry={"max_attempts": 2, "min_timeout_in_ms": 0})
    def logs(payload, ctx):
        runlane.logger.info("Video converted", video_id="v1")
        runlane.logger.debug("details", frames=10)
        with runlane.logger.trace("ffmpeg", codec="h264") as span:
            span.set_attribute("frames", 10)
        print("printed line")
        print("partial", end="")
        usage = runlane.usage.get_current()
        assert usage.attempt.duration_ms >= 0
        if ctx.attempt.number == 1:
            runlane.logger.error("failing first attempt")
            raise RuntimeError("x")
        return usage.total.duration_ms

    with caplog.at_level("INFO", logger="runlane.task"):
        run = wait_final(logs.trigger({}))
    assert run.status == "COMPLETED"
    entries = runlane.runs.logs(run)
    first = [(e.kind, e.level, e.message) for e in entries if e.attempt == 1]
    assert first == [
        ("log", "info", "Video converted"),
        ("log", "debug", "details"),
        ("span", "info", "ffmpeg"),
        ("stdout", "info", "printed line"),
        ("log", "error", "failing first attempt"),
        ("stdout", "info", "partial"),
    ]
    assert entries[0].attributes == {"video_id": "v1"}
    span = next(e for e in entries if e.kind == "span")
    assert span.attributes == {"codec": "h264", "frames": 10} and span.duration_ms >= 0
    assert {e.attempt for e in entries} == {1, 2}
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert any(r.getMessage().startswith("Video converted") for r in caplog.records)
    after = runlane.runs.logs(run, after=entries[2].seq)
    assert after[0].seq == entries[3].seq
    assert runlane.usage.get_current() is None  # outside a run
