"""The Broker protocol: what carries "execute run X now" (a ``Dispatch``) to workers.

A broker knows nothing of runs' state; the store does. ``Broker`` sends; a ``NativeBroker``
(local, redis) also hands deliveries to runlane's own worker through a ``Consumer``. Celery
and Dramatiq are brokers whose workers are their own (``backends/celery``,
``backends/dramatiq``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from runlane.core.types import Delivery, Dispatch, StartRequest


@runtime_checkable
class Broker(Protocol):
    def send(self, dispatches: Sequence[Dispatch]) -> None: ...
    def close(self) -> None: ...


class Consumer(Protocol):
    def fetch(
        self, max_count: int, timeout: float, start: StartRequest | None = None
    ) -> list[Delivery]:
        """Up to ``max_count`` deliveries, waiting up to ``timeout`` seconds for the first.
        With ``start``, a broker that can start attempts as it delivers (Redis) returns only
        runs it started (``delivery.started``); others ignore it."""
        ...

    def ack(self, delivery: Delivery) -> None: ...
    def heartbeat(self) -> None:
        """Tell the broker this worker is alive (its worker's housekeeping loop calls this),
        for a broker that gives a silent worker's deliveries to others."""
        ...

    def nack(self, delivery: Delivery) -> None:
        """Give a delivery back at once (its run could not be started here just now)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class NativeBroker(Broker, Protocol):
    """A broker whose messages runlane's own Worker consumes (local, redis)."""

    def consumer(
        self, worker_id: str, task_ids: Collection[str], queues: Collection[str] | None = None
    ) -> Consumer:
        """Deliveries of these tasks (and, when given, only these runlane queues)."""
        ...
