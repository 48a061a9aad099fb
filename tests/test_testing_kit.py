"""The testing kit: the in-memory store, ``run_until_idle`` (children, retries, delays, waits,
TTLs, failures, its timeout), ``memory_runtime``, the pytest fixtures, and the example of
docs/testing.md run as its readers would run it."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import runlane
from runlane.core import runtime
from runlane.errors import ConfigurationError, RunTimeoutError, StoreError
from runlane.testing import IdleTimeoutError, memory_runtime, run_until_idle

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> Iterator[runlane.FakeClock]:
    """A memory:// runtime on a fake clock for the test."""
    clock = runlane.FakeClock()
    with memory_runtime(clock):
        yield clock


@pytest.mark.parametrize("url", ["memory://", "sqlite:///:memory:"])
def test_the_memory_store_writes_nothing_to_disk(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNLANE_STORE_URL", f"sqlite:///{tmp_path}/default.db")
    rt = runlane.configure(store=url)
    try:

        @runlane.task(id="disk-free")
        def disk_free(payload):
            return payload + 1

        handle = disk_free.trigger(1, delay="1s", ttl="1m", tags=["t"], metadata={"m": 1})
        assert rt.broker.db is rt.store.db  # the local broker's deliveries are in memory too
        files = rt.store.db.conn.execute("PRAGMA database_list").fetchall()
        assert [row["file"] for row in files] == [""]
    finally:
        runtime.install(None)
        rt.close()
    assert list(tmp_path.iterdir()) == []
    assert handle.id.startswith("run_")


def test_each_configure_gets_a_fresh_memory_store():
    first = runlane.configure(store="memory://")

    @runlane.task(id="counted")
    def counted(payload):
        return payload

    counted.trigger(1)
    assert first.store.count_runs() == {"QUEUED": 1}
    second = runlane.configure(store="memory://")
    try:
        assert second.store.count_runs() == {}
        with pytest.raises(StoreError, match="closed"):  # replaced: closed, its memory freed
            first.store.count_runs()
        counted.trigger(2)
        assert run_until_idle().attempts == 1
    finally:
        runtime.install(None)
        second.close()


def test_children_and_batches_run_and_the_parent_resumes(fake):
    @runlane.task(id="double")
    def double(payload):
        return payload * 2

    @runlane.task(id="parent")
    def parent(payload):
        one = double.trigger_and_wait(21).unwrap()
        many = double.batch_trigger_and_wait([{"payload": 1}, {"payload": 2}])
        return [one, [r.output for r in many.runs]]

    handle = parent.trigger({})
    report = run_until_idle()

    run = runlane.runs.retrieve(handle)
    assert run.status == "COMPLETED" and run.output == [42, [2, 4]]
    # the parent: started, resumed after the child, resumed after the batch; three children
    assert report.attempts == 6
    assert [r.task_identifier for r in report.runs] == ["parent", "double", "double", "double"]
    assert all(r.parent_id == handle.id for r in report.runs[1:])
    assert all(r.status == "COMPLETED" for r in report.runs)


def test_retries_move_the_fake_clock_past_each_backoff(fake):
    seen: list[float] = []

    @runlane.task(
        id="flaky",
        retry={"max_attempts": 3, "factor": 2, "min_timeout_in_ms": 1000, "randomize": False},
    )
    def flaky(payload, ctx):
        seen.append(fake.now())
        if ctx.attempt.number < 3:
            raise ConnectionError("try again")
        return "done"

    handle = flaky.trigger({})
    report = run_until_idle()

    run = runlane.runs.retrieve(handle)
    assert run.status == "COMPLETED" and run.output == "done"
    assert [a.status for a in run.attempts] == ["FAILED", "FAILED", "COMPLETED"]
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert 1.0 <= gaps[0] < 1.1 and 2.0 <= gaps[1] < 2.1  # fake seconds: 1 s, then 2 s
    assert report.attempts == 3


def test_a_failing_run_ends_failed_with_its_error(fake):
    @runlane.task(id="broken", retry={"max_attempts": 2, "min_timeout_in_ms": 500})
    def broken(payload):
        raise ValueError(f"bad payload {payload}")

    handle = broken.trigger(7)
    report = run_until_idle()

    run = runlane.runs.retrieve(handle)
    assert run.status == "FAILED" and run.attempt_count == 2
    assert run.error.name == "ValueError" and run.error.message == "bad payload 7"
    assert report.attempts == 2


def test_a_delayed_run_runs_when_the_clock_reaches_it(fake):
    @runlane.task(id="later")
    def later(payload):
        return fake.now()

    start = fake.now()
    handle = later.trigger({}, delay="1h")
    assert run_until_idle(advance_clock=False).attempts == 0
    assert runlane.runs.retrieve(handle).status == "DELAYED"

    report = run_until_idle()
    run = runlane.runs.retrieve(handle)
    assert run.status == "COMPLETED"
    assert 3600 <= run.output - start < 3601
    assert 3600 <= report.advanced < 3601


def test_wait_for_resumes_when_the_fake_clock_passes_it(fake):
    @runlane.task(id="patient")
    def patient(payload):
        runlane.wait.for_(minutes=30)
        return fake.now()

    start = fake.now()
    handle = patient.trigger({})
    run_until_idle(advance_clock=False)
    assert runlane.runs.retrieve(handle).status == "FROZEN"

    report = run_until_idle()
    run = runlane.runs.retrieve(handle)
    assert run.status == "COMPLETED"
    assert 1800 <= run.output - start < 1801
    assert report.attempts == 1  # the resumed attempt


def test_a_run_that_cannot_start_expires_at_its_ttl(fake):
    single = runlane.queue(name="single", concurrency_limit=1)

    @runlane.task(id="holder", queue=single)
    def holder(payload):
        runlane.wait.for_(hours=1)  # a waiting run keeps its queue's one slot
        return "held"

    @runlane.task(id="late", queue=single)
    def late(payload):
        return "ran"

    held = holder.trigger({})
    blocked = late.trigger({}, ttl="10m")
    report = run_until_idle()

    assert runlane.runs.retrieve(held).status == "COMPLETED"
    run = runlane.runs.retrieve(blocked)
    assert run.status == "EXPIRED" and run.attempt_count == 0
    assert 600 <= (run.expired_at - run.created_at).total_seconds() < 601
    assert [r.task_identifier for r in report.runs] == ["holder"]


def test_work_that_never_ends_raises_a_timeout(fake):
    @runlane.task(id="forever")
    def forever(payload):
        forever.trigger(payload + 1)

    forever.trigger(0)
    with pytest.raises(
        IdleTimeoutError, match=r"work remains after 0.3 s \(1 QUEUED; run_"
    ) as info:
        run_until_idle(timeout=0.3)
    error = info.value
    assert isinstance(error, RunTimeoutError) and isinstance(error, TimeoutError)
    assert error.remaining == {"QUEUED": 1} and error.status == "QUEUED"
    assert runlane.runs.retrieve(error.run_id).task_identifier == "forever"


def test_on_the_system_clock_retries_are_waited_for_and_the_future_left_alone():
    @runlane.task(
        id="quick-retry",
        retry={"max_attempts": 2, "min_timeout_in_ms": 10, "max_timeout_in_ms": 10},
    )
    def quick_retry(payload, ctx):
        if ctx.attempt.number == 1:
            raise ConnectionError("once")
        return "ok"

    @runlane.task(id="sleeper")
    def sleeper(payload):
        runlane.wait.for_(hours=1)

    with memory_runtime():
        retried = quick_retry.trigger({})
        delayed = quick_retry.trigger({}, delay="1h")
        waiting = sleeper.trigger({})
        run_until_idle()
        statuses = [runlane.runs.retrieve(h).status for h in (retried, delayed, waiting)]
    assert statuses == ["COMPLETED", "DELAYED", "FROZEN"]


def test_run_until_idle_refuses_inside_a_task_and_on_a_foreign_broker(fake):
    @runlane.task(id="nested")
    def nested(payload):
        run_until_idle()

    handle = nested.trigger({})
    run_until_idle()
    run = runlane.runs.retrieve(handle)
    assert run.status == "FAILED" and "outside a running task" in run.error.message

    class Elsewhere:  # a broker whose messages go to workers of its own (Celery, Dramatiq)
        def send(self, dispatches):
            raise AssertionError("not sent in this test")

        def close(self):
            pass

    with memory_runtime(broker=Elsewhere()), pytest.raises(ConfigurationError, match="memory"):
        run_until_idle()


def test_memory_runtime_puts_the_previous_runtime_back():
    before = runlane.configure(store="memory://")
    try:
        with memory_runtime() as inside:
            assert runtime.get() is inside and inside is not before
        assert runtime.get() is before and not before.closed and inside.closed
        with memory_runtime():
            replaced = runlane.configure(store="memory://")  # a test may configure its own
        assert runtime.get() is before and replaced.closed
    finally:
        runtime.install(None)
        before.close()


def _pytest(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_fixtures_through_pytest_plugins(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["runlane.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import runlane
            from runlane.core import runtime
            from runlane.testing import run_until_idle

            before = runlane.configure(store="memory://")

            @runlane.task(id="greet")
            def greet(payload):
                return f"hello {payload}"

            def test_in_memory_on_the_fake_clock(runlane_memory, runlane_clock):
                assert runtime.get() is runlane_memory is not before
                assert runlane_memory.clock is runlane_clock
                assert runlane_memory.settings.store_url == "memory://"
                handle = greet.trigger("ada", delay="1d")
                assert run_until_idle().advanced >= 86400
                assert runlane.runs.retrieve(handle).output == "hello ada"

            def test_the_runtime_before_is_back():
                assert runtime.get() is before and not before.closed
                assert before.store.count_runs() == {}
            """
        )
    )
    done = _pytest([], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert not [p for p in tmp_path.rglob("*") if p.name == ".runlane" or ".db" in p.name]


def test_the_example_of_the_testing_page_passes():
    done = _pytest(["examples/testing_tasks"], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
