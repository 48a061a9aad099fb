"""The native Redis broker (``broker="redis"``): one list per task, reliable fetch.

A delivery moves atomically from its task list into the fetching worker's in-flight hash and
is removed from there on ack, after the attempt's outcome is recorded. A worker refreshes a
heartbeat key on every fetch; deliveries in flight on a worker whose heartbeat expired go back
to the front of their list (``recover``, run by every consumer now and then). Runs already
started are protected by the store's leases instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Sequence
from importlib import resources

import redis

from runlane.core.types import Delivery, Dispatch

_FETCH = resources.files(__package__).joinpath("fetch.lua").read_text()
_RECOVER = resources.files(__package__).joinpath("recover.lua").read_text()


def _enc(value: str) -> str:
    return f"{len(value)}:{value}"


class RedisBroker:
    def __init__(
        self,
        url: str | redis.Redis,
        environment: str = "dev",
        *,
        prefix: str = "runlane",
        heartbeat_timeout: float = 30.0,
    ) -> None:
        self.prefix = f"{prefix}:{{{environment}}}:"
        if isinstance(url, redis.Redis):
            self.client, self._owns = url, False
        else:
            self.client = redis.Redis.from_url(url, decode_responses=True)
            self._owns = True
        self.heartbeat_timeout = heartbeat_timeout
        self._fetch = self.client.register_script(_FETCH)
        self._recover = self.client.register_script(_RECOVER)

    def send(self, dispatches: Sequence[Dispatch]) -> None:
        if not dispatches:
            return
        pipe = self.client.pipeline(transaction=False)
        for d in dispatches:
            pipe.rpush(
                f"{self.prefix}bq:{_enc(d.task_identifier)}",
                json.dumps([d.run_id, d.task_identifier, d.queue, d.machine]),
            )
        pipe.execute()

    def consumer(
        self, worker_id: str, task_ids: Collection[str], queues: Collection[str] | None = None
    ) -> RedisConsumer:
        return RedisConsumer(self, worker_id, task_ids, queues)

    def recover(self) -> int:
        return int(self._recover(keys=[self.prefix]))

    def pending(self) -> int:
        keys = list(self.client.scan_iter(match=f"{self.prefix}bq:*", count=1000))
        return sum(self.client.llen(k) for k in keys)

    def close(self) -> None:
        if self._owns:
            self.client.close()


class RedisConsumer:
    RECOVER_EVERY = 5.0

    def __init__(
        self,
        broker: RedisBroker,
        worker_id: str,
        task_ids: Collection[str],
        queues: Collection[str] | None,
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.task_ids = sorted(task_ids)
        self.queues = set(queues) if queues else None
        self._closed = False
        self._last_recover = 0.0
        self._lock = threading.Lock()
        self._turn = 0
        self._handed: set[str] = set()  # deliveries given to this worker's threads, not acked
        self._unsure = False  # a fetch failed: its reply (and deliveries) may have been lost

    def _reclaim(self) -> None:
        """After a fetch whose reply was lost, in-flight deliveries no thread here holds go
        back to the front of their lists (else they would wait for the redelivery loop)."""
        inflight = f"{self.broker.prefix}inflight:{self.worker_id}"
        items = self.broker.client.hgetall(inflight)
        with self._lock:
            orphans = {rid: msg for rid, msg in items.items() if rid not in self._handed}
        for run_id, msg in orphans.items():
            task = json.loads(msg)[1]
            pipe = self.broker.client.pipeline(transaction=True)
            pipe.hdel(inflight, run_id)
            pipe.lpush(f"{self.broker.prefix}bq:{_enc(task)}", msg)
            pipe.execute()

    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while not self._closed:
            if time.monotonic() - self._last_recover > self.RECOVER_EVERY:
                self._last_recover = time.monotonic()
                self.broker.recover()
            tasks = list(self.task_ids)
            if tasks:  # start at a different list each time, so no task starves another
                self._turn = (self._turn + 1) % len(tasks)
                tasks = tasks[self._turn :] + tasks[: self._turn]
            if self._unsure:
                self._reclaim()
                self._unsure = False
            try:
                raw = (
                    self.broker._fetch(
                        keys=[self.broker.prefix],
                        args=[
                            self.worker_id,
                            max_count,
                            int(self.broker.heartbeat_timeout * 1000),
                            *[_enc(t) for t in tasks],
                        ],
                    )
                    if tasks
                    else []
                )
            except redis.exceptions.RedisError:
                self._unsure = True  # the reply may be lost with deliveries in it
                raise
            out = []
            for msg in raw:
                run_id, task, queue, machine = json.loads(msg)
                d = Dispatch(run_id, task, queue, machine)
                if self.queues is not None and queue not in self.queues:
                    self.broker.client.hdel(
                        f"{self.broker.prefix}inflight:{self.worker_id}", run_id
                    )
                    self.broker.send([d])  # not ours: back to its list
                    continue
                out.append(Delivery(d, msg))
            if out:
                with self._lock:
                    self._handed.update(d.dispatch.run_id for d in out)
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
        return []

    def ack(self, delivery: Delivery) -> None:
        self.broker.client.hdel(
            f"{self.broker.prefix}inflight:{self.worker_id}", delivery.dispatch.run_id
        )
        with self._lock:
            self._handed.discard(delivery.dispatch.run_id)

    def nack(self, delivery: Delivery) -> None:
        with self._lock:
            self._handed.discard(delivery.dispatch.run_id)
        pipe = self.broker.client.pipeline(transaction=True)
        pipe.hdel(f"{self.broker.prefix}inflight:{self.worker_id}", delivery.dispatch.run_id)
        pipe.lpush(
            f"{self.broker.prefix}bq:{_enc(delivery.dispatch.task_identifier)}", delivery.tag
        )
        pipe.execute()

    def close(self) -> None:
        self._closed = True
