"""``runlane.queues``: inspect queues, and pause / resume dispatch of a queue or one key.

Pausing holds runs in the store (they stay QUEUED, spend no attempt and keep their TTL clock);
it does not interrupt runs already executing. ``until`` lifts the pause by itself, e.g. at an
upstream API's rate-limit reset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runlane.core import runtime
from runlane.core.aio import aio
from runlane.core.durations import parse_point_in_time
from runlane.core.models import QueueInfo
from runlane.core.options import validate_concurrency_key, validate_queue_name
from runlane.errors import RunlaneError

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


class QueueNotFoundError(RunlaneError, LookupError):
    pass


def _set(name: str, concurrency_key: str | None, paused: bool, until: Any) -> QueueInfo:
    validate_queue_name(name, "name")
    if concurrency_key is not None:
        validate_concurrency_key(concurrency_key)
    rt = runtime.get()
    now = rt.now()
    at = None if until is None else parse_point_in_time(until, "until", now)
    if not rt.store.set_paused(name, concurrency_key, paused=paused, until=at, now=now):
        raise QueueNotFoundError(f"no queue {name!r} in environment {rt.environment!r}")
    rt.engine.send_ready()
    return retrieve(name)


def pause(
    name: str, concurrency_key: str | None = None, until: datetime | str | float | None = None
) -> QueueInfo:
    """Hold dispatch of queue ``name`` (or of one ``concurrency_key`` in it), until resumed or
    until ``until`` (a datetime, ISO date or duration)."""
    return _set(name, concurrency_key, True, until)


def resume(name: str, concurrency_key: str | None = None) -> QueueInfo:
    """Dispatch again from a paused queue (or key)."""
    return _set(name, concurrency_key, False, None)


def list() -> _list[QueueInfo]:
    """Every queue of the environment with its limits, running and queued counts."""
    return runtime.get().store.queues()


def retrieve(name: str) -> QueueInfo:
    validate_queue_name(name, "name")
    rt = runtime.get()
    found = rt.store.queues([name])
    if not found:
        raise QueueNotFoundError(f"no queue {name!r} in environment {rt.environment!r}")
    return found[0]


aio_pause = aio(pause)
aio_resume = aio(resume)
aio_list = aio(list)
aio_retrieve = aio(retrieve)
