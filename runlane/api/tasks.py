"""``runlane.tasks``: trigger by task id; the caller needs no task code."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from runlane.api import runs
from runlane.core import runtime
from runlane.core.aio import aio
from runlane.core.models import BatchHandle, Run, RunHandle
from runlane.core.options import check_items
from runlane.errors import InvalidOptionError

__all__ = [
    "aio_batch_trigger",
    "aio_trigger",
    "aio_trigger_and_poll",
    "batch_trigger",
    "trigger",
    "trigger_and_poll",
]


def trigger(task_id: str, payload: Any = None, **options: Any) -> RunHandle:
    """Trigger a run of ``task_id`` (options as in ``Task.trigger``)."""
    return runtime.get().engine.trigger(task_id, payload, options)


def batch_trigger(task_id: str, items: Sequence[Mapping[str, Any]]) -> BatchHandle:
    """Trigger up to 500 runs of one task: items ``{"payload": ..., "options": {...}}``."""
    return runtime.get().engine.batch_trigger(
        [(task_id, item, None) for item in check_items(items)]
    )


def trigger_and_poll(
    task_id: str,
    payload: Any = None,
    *,
    poll_interval_ms: int = 1000,
    timeout: float | None = None,
    **options: Any,
) -> Run:
    """Trigger, then poll until the run is final; returns the final run.

    Blocks the caller: meant for scripts and tests, not for request handlers.
    """
    if (
        isinstance(poll_interval_ms, bool)
        or not isinstance(poll_interval_ms, int)
        or (poll_interval_ms < 10)
    ):
        raise InvalidOptionError("poll_interval_ms", poll_interval_ms, "must be an int >= 10")
    handle = trigger(task_id, payload, **options)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = runs.retrieve(handle)
        if run.is_completed:
            return run
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"run {handle.id} was still {run.status.value} after {timeout}s")
        time.sleep(poll_interval_ms / 1000)


aio_trigger = aio(trigger)
aio_batch_trigger = aio(batch_trigger)
aio_trigger_and_poll = aio(trigger_and_poll)
