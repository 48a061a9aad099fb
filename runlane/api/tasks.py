"""``runlane.tasks``: trigger by task id; the caller needs no task code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runlane.core import polling, runtime
from runlane.core.aio import aio
from runlane.core.handles import BatchHandle, RunHandle
from runlane.core.models import Run
from runlane.core.options import check_items

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
    """Trigger, then poll until the run is final; returns the final run (``RunTimeoutError``,
    a ``TimeoutError``, after ``timeout`` seconds).

    Blocks the caller: meant for scripts and tests, not for request handlers.
    """
    polling.check(timeout, poll_interval_ms)  # before anything is written
    handle = trigger(task_id, payload, **options)
    return polling.poll(handle.id, timeout, poll_interval_ms)


aio_trigger = aio(trigger)
aio_batch_trigger = aio(batch_trigger)
aio_trigger_and_poll = aio(trigger_and_poll)
