"""Waiting outside a task for a run to be final (``runs.poll``, ``handle.wait``,
``tasks.trigger_and_poll``): one schedule of looks, without I/O, behind a blocking and an
awaitable edge. Inside a task, ``trigger_and_wait`` frees the worker instead."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator

from runlane.core import current
from runlane.core.aio import run_sync
from runlane.core.models import Run
from runlane.errors import InvalidOptionError, RunTimeoutError

MIN_POLL_INTERVAL_MS = 10
FIRST_LOOK_MS = 50  # the first looks come sooner than poll_interval_ms


def check(timeout: float | None, poll_interval_ms: int) -> None:
    """Refuse bad arguments before anything is done (a trigger_and_poll triggers after)."""
    if isinstance(timeout, bool) or not (
        timeout is None or (isinstance(timeout, (int, float)) and timeout >= 0)
    ):
        raise InvalidOptionError("timeout", timeout, "must be None or seconds >= 0")
    if (
        isinstance(poll_interval_ms, bool)
        or not isinstance(poll_interval_ms, int)
        or poll_interval_ms < MIN_POLL_INTERVAL_MS
    ):
        raise InvalidOptionError(
            "poll_interval_ms", poll_interval_ms, f"must be an int >= {MIN_POLL_INTERVAL_MS}"
        )


def _looks(run_id: str, timeout: float | None, poll_interval_ms: int) -> Generator[float, Run, Run]:
    """When to look again: yields the seconds to sleep before the next look and is sent the
    run seen; returns it once final. The first looks come sooner (50 ms, doubling up to
    ``poll_interval_ms``), so a short run is seen finished at once."""
    check(timeout, poll_interval_ms)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = min(FIRST_LOOK_MS, poll_interval_ms) / 1000
    run = yield 0.0
    while not run.is_completed:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunTimeoutError(run_id, run.status.value, timeout or 0)
        run = yield pause if deadline is None else min(pause, left)
        pause = min(pause * 2, poll_interval_ms / 1000)
    return run


def poll(run_id: str, timeout: float | None = None, poll_interval_ms: int = 1000) -> Run:
    """Block until run ``run_id`` is final and return it; ``RunTimeoutError`` (a
    ``TimeoutError``) after ``timeout`` seconds (the run goes on)."""
    looks = _looks(run_id, timeout, poll_interval_ms)
    pause = next(looks)
    try:
        while True:
            if pause:
                time.sleep(pause)
            pause = looks.send(current.get().ops.retrieve_run(run_id))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def aio_poll(run_id: str, timeout: float | None = None, poll_interval_ms: int = 1000) -> Run:
    """Awaitable twin of :func:`poll` (it holds no thread while it sleeps)."""
    looks = _looks(run_id, timeout, poll_interval_ms)
    pause = next(looks)
    try:
        while True:
            if pause:
                await asyncio.sleep(pause)
            pause = looks.send(await run_sync(current.get().ops.retrieve_run, run_id))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
