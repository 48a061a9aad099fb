"""Testing your own tasks: an in-memory runtime, a drain that runs everything now, and fixtures.

``run_until_idle()`` executes, in the calling thread, every run that can run (children, retries,
resumed waits included) through the engine's own executor, one delivery at a time, ticking the
engine between them. With a ``FakeClock`` it moves the clock to the next moment something is
due (a delay, a retry's backoff, a ``wait.for_``, a TTL) until nothing is left to happen, so
tests never sleep. ``pytest_plugins = ["runlane.testing"]`` in a conftest adds the fixtures
``runlane_clock`` and ``runlane_memory``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runlane.config import configure
from runlane.core import context, ids, runtime
from runlane.core.broker import Consumer, NativeBroker
from runlane.core.clock import FakeClock, to_timestamp
from runlane.core.durations import parse_duration
from runlane.core.executor import Executor
from runlane.core.models import Run, RunStatus
from runlane.core.runtime import Runtime
from runlane.core.types import Delivery, RunQuery
from runlane.errors import ConfigurationError, RunlaneError, RunTimeoutError

__all__ = ["IdleReport", "IdleTimeoutError", "memory_runtime", "run_until_idle"]

_POLL = 0.02  # seconds between looks while runs progress elsewhere or wait on real time
# the clock is set just past a due time: times read back from a Run are rounded to the µs
_PAST_DUE = 0.001
_TTL_ROUNDING = 0.5  # a Run gives its TTL in whole seconds


class IdleTimeoutError(RunTimeoutError):
    """``run_until_idle`` still had work after its timeout (real seconds): ``remaining``
    counts the unfinished runs by status; ``run_id`` and ``status`` name one of them."""

    def __init__(self, run_id: str, status: str, timeout: float, remaining: dict[str, int]):
        super().__init__(run_id, status, timeout)
        self.remaining = remaining
        counts = ", ".join(f"{n} {s}" for s, n in sorted(remaining.items()))
        self.args = (
            f"run_until_idle: work remains after {timeout:g} s ({counts}; {run_id} is "
            f"{status}). A run may loop (it triggers or retries for ever), be blocked by a "
            "concurrency limit, or run on another worker; raise the timeout if the work is "
            "just long",
        )


@dataclass(frozen=True)
class IdleReport:
    """What one ``run_until_idle()`` did."""

    attempts: int  # attempts executed (an attempt resumed after a wait counts again)
    runs: list[Run]  # the runs executed, as they are now, in the order first executed
    advanced: float  # seconds the fake clock was moved forward


def run_until_idle(timeout: float = 10.0, *, advance_clock: bool = True) -> IdleReport:
    """Run every queued run, and every delayed run, retry and wait that is due, until each
    ends (final) or waits on something nothing here will resolve (``FROZEN``).

    In this thread, on the configured runtime (``memory://``, the SQLite file store or Redis,
    with the ``local`` or ``redis`` broker). With a ``FakeClock`` (and ``advance_clock``), the
    clock is moved to each next due time; with the system clock, retries are waited for in
    real time while delayed runs and time waits not yet due are left as they are. Raises
    ``IdleTimeoutError`` if work remains after ``timeout`` seconds (checked between attempts:
    a task body that never returns is not interrupted, and ``max_duration`` is not enforced
    here; a ``runlane.Worker`` does both).
    """
    if context.current() is not None:
        raise RunlaneError("run_until_idle() is for tests: call it outside a running task")
    rt = runtime.get()
    if not isinstance(rt.broker, NativeBroker):
        raise ConfigurationError(
            f"run_until_idle() executes runs itself, which {type(rt.broker).__name__} cannot "
            "hand it: configure(store='memory://') (or the 'local' or 'redis' broker) in tests"
        )
    fake = rt.clock if advance_clock and isinstance(rt.clock, FakeClock) else None
    real_time = not isinstance(rt.clock, FakeClock)
    executor = Executor(rt, f"runlane-testing-{ids.ulid()[-8:]}", busy=lambda: True)
    rt.engine.deploy(rt.registry.all())  # as a worker: WAITING_FOR_DEPLOY runs queued, schedules
    consumer = rt.broker.consumer(executor.worker_id, rt.registry.ids())
    deadline = time.monotonic() + timeout
    started_at = rt.now()
    executed: dict[str, None] = {}
    attempts = 0
    try:
        while True:
            rt.engine.tick(reap=False)
            if time.monotonic() > deadline:
                _raise_if_unfinished(rt, timeout, retries=real_time)
            deliveries = consumer.fetch(1, 0.0, executor.start_request())
            for delivery in deliveries:
                _execute(executor, consumer, delivery)
                if delivery.started is not None:
                    attempts += 1
                    executed[delivery.dispatch.run_id] = None
            if deliveries:
                continue
            if fake is not None and (due := _next_due(rt)) is not None:
                fake.set(due)
            elif _busy(rt, retries=real_time):
                time.sleep(_POLL)  # runs executing elsewhere, or retries due in real time
            else:
                break
    finally:
        consumer.close()
    runs = [run for run in map(rt.store.get_run, executed) if run is not None]
    return IdleReport(attempts, runs, rt.now() - started_at)


def _execute(executor: Executor, consumer: Consumer, delivery: Delivery) -> None:
    """As a worker does: execute, then ack; a delivery whose attempt never started is given
    back. An error of runlane's own (not of the task) is raised to the test."""
    try:
        executor.execute(delivery.dispatch, delivery)
    except BaseException:
        if delivery.started is None:
            consumer.nack(delivery)
        else:
            consumer.ack(delivery)
        raise
    consumer.ack(delivery)


_WAITING = ["DELAYED", "REATTEMPTING", "FROZEN", "QUEUED", "WAITING_FOR_DEPLOY"]


def _runs(rt: Runtime, status: list[str]) -> Iterator[Run]:
    after = None
    while True:
        page, after = rt.store.list_runs(RunQuery(status=status, limit=500, after=after))
        yield from page
        if after is None:
            return


def _next_due(rt: Runtime) -> float | None:
    """Just past the earliest future moment a run's delay, retry, time wait or TTL is due."""
    now = rt.now()
    times: list[float] = []
    for run in _runs(rt, _WAITING):
        if run.status is RunStatus.DELAYED and run.delayed_until is not None:
            times.append(to_timestamp(run.delayed_until))
        elif run.status is RunStatus.REATTEMPTING and run.retry_at is not None:
            times.append(to_timestamp(run.retry_at))
        elif run.status is RunStatus.FROZEN:
            times.extend(
                w.resume_at
                for w in rt.store.waitpoints(run.id, run.attempt_count)
                if not w.resolved and w.resume_at is not None
            )
        elif run.ttl is not None and run.queued_at is not None:  # QUEUED, WAITING_FOR_DEPLOY
            expires = to_timestamp(run.queued_at) + parse_duration(run.ttl, "ttl")
            times += [expires, expires + _TTL_ROUNDING]  # the later one if the first is early
    later = [t for t in times if t > now]
    return min(later) + _PAST_DUE if later else None


def _unfinished(*, retries: bool) -> list[str]:
    """The statuses of runs that still have to run or finish: queued or executing (here or
    elsewhere), and retrying when the clock moves by itself."""
    return ["QUEUED", "EXECUTING", "REATTEMPTING"] if retries else ["QUEUED", "EXECUTING"]


def _busy(rt: Runtime, *, retries: bool) -> bool:
    return any(rt.store.count_runs(_unfinished(retries=retries)).values())


def _raise_if_unfinished(rt: Runtime, timeout: float, *, retries: bool) -> None:
    statuses = _unfinished(retries=retries)
    page, _ = rt.store.list_runs(RunQuery(status=statuses, limit=1))
    if page:
        remaining = {k: v for k, v in rt.store.count_runs(statuses).items() if v}
        raise IdleTimeoutError(page[0].id, page[0].status.value, timeout, remaining)


@contextlib.contextmanager
def memory_runtime(clock: FakeClock | None = None, **options: Any) -> Iterator[Runtime]:
    """``configure(store="memory://", clock=clock, **options)`` for the block, then the runtime
    that was installed before (if any) is installed again, untouched."""
    previous = runtime.install(None)
    try:
        rt = configure(store="memory://", clock=clock, **options)
        yield rt
    finally:
        current = runtime.install(previous)
        if current is not None and current is not previous:
            current.close()  # ours, or one the test configured meanwhile


try:
    import pytest
except ImportError:  # run_until_idle and memory_runtime need no pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def runlane_clock() -> FakeClock:
        """A ``FakeClock`` at the current time; ``runlane_memory`` runs on it."""
        return FakeClock()

    @pytest.fixture
    def runlane_memory(runlane_clock: FakeClock) -> Iterator[Runtime]:
        """A fresh in-memory runtime (``memory://``, the fake clock ``runlane_clock``) for
        the test; the runtime installed before comes back afterwards."""
        with memory_runtime(runlane_clock) as rt:
            yield rt
