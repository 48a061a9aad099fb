"""Time, behind a seam so tests can move it: the engine never calls ``time.time()`` directly."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol, overload


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to (``advance``), for tests of delays and TTLs."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, when: float) -> None:
        with self._lock:
            self._now = when


@overload
def to_datetime(ts: float) -> datetime: ...
@overload
def to_datetime(ts: None) -> None: ...
@overload
def to_datetime(ts: float | None) -> datetime | None: ...
def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def to_timestamp(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
