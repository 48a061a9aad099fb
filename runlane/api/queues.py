"""``runlane.queues``: inspect queues, and pause / resume dispatch of a queue or one key.

Pausing holds runs in the store (they stay QUEUED, spend no attempt and keep their TTL clock);
it does not interrupt runs already executing. ``until`` lifts the pause by itself, e.g. at an
upstream API's rate-limit reset.
"""

from __future__ import annotations

from datetime import datetime

from runlane.core import runtime
from runlane.core.aio import aio
from runlane.core.models import QueueInfo
from runlane.core.operations import QueueNotFoundError

__all__ = [
    "QueueNotFoundError",
    "aio_list",
    "aio_pause",
    "aio_resume",
    "aio_retrieve",
    "list",
    "pause",
    "resume",
    "retrieve",
]

_list = list


def pause(
    name: str, concurrency_key: str | None = None, until: datetime | str | float | None = None
) -> QueueInfo:
    """Hold dispatch of queue ``name`` (or of one ``concurrency_key`` in it), until resumed or
    until ``until`` (a datetime, ISO date or duration)."""
    return runtime.get().ops.pause_queue(name, concurrency_key, until)


def resume(name: str, concurrency_key: str | None = None) -> QueueInfo:
    """Dispatch again from a paused queue (or key)."""
    return runtime.get().ops.resume_queue(name, concurrency_key)


def list() -> _list[QueueInfo]:
    """Every queue of the environment with its limits, running and queued counts."""
    return runtime.get().ops.list_queues()


def retrieve(name: str) -> QueueInfo:
    return runtime.get().ops.retrieve_queue(name)


aio_pause = aio(pause)
aio_resume = aio(resume)
aio_list = aio(list)
aio_retrieve = aio(retrieve)
