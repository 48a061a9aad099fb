"""The native Redis broker (``broker="redis"``): one list per task, reliable fetch.

A delivery moves atomically from its task list into the fetching worker's in-flight hash and
is removed from there when the attempt's outcome is recorded. Paired with the Redis store on
the same prefix (what ``configure(broker="redis")`` builds), the store pushes admitted runs
onto the lists itself, a fetch starts the attempts it delivers in the same Lua call, and the
call that records an attempt's result also removes its delivery: two round trips per run.

An idle worker blocks on its tasks' wake-up lists (``sig:<task>``) rather than polling. A
worker refreshes a heartbeat key on every fetch and from its housekeeping loop; deliveries in
flight on a worker whose heartbeat expired go back to the front of their lists (``recover``,
run by every consumer now and then). Runs already started are protected by the store's leases.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Sequence
from importlib import resources

import redis

from runlane.backends.redis.errors import translate
from runlane.backends.redis.store import RedisStore
from runlane.core.types import Delivery, Dispatch, StartRequest
from runlane.errors import StoreError

_FETCH = resources.files(__package__).joinpath("fetch.lua").read_text()
_RECOVER = resources.files(__package__).joinpath("recover.lua").read_text()
MAX_BLOCK = 1.0  # seconds an idle fetch blocks at a time (heartbeat, recovery, close)


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
        store: RedisStore | None = None,
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
        self.store: RedisStore | None = None
        if store is not None:
            self.pair(store)

    def pair(self, store: object) -> None:
        """Work hand in hand with the Redis store on this very prefix: it pushes admitted runs
        onto these lists itself, and fetches start the attempts they deliver. Any other store
        is left alone (runs then reach this broker through the engine's outbox)."""
        if self.store is None and isinstance(store, RedisStore) and store.prefix == self.prefix:
            self.store = store
            store.direct = self.prefix

    @translate
    def send(self, dispatches: Sequence[Dispatch]) -> None:
        if not dispatches:
            return
        pipe = self.client.pipeline(transaction=False)
        for d in dispatches:
            task = _enc(d.task_identifier)
            pipe.rpush(
                f"{self.prefix}bq:{task}",
                json.dumps([d.run_id, d.task_identifier, d.queue, d.machine]),
            )
            pipe.rpush(f"{self.prefix}sig:{task}", 1)
            pipe.ltrim(f"{self.prefix}sig:{task}", 0, 31)
        pipe.execute()

    def consumer(
        self, worker_id: str, task_ids: Collection[str], queues: Collection[str] | None = None
    ) -> RedisConsumer:
        return RedisConsumer(self, worker_id, task_ids, queues)

    @translate
    def recover(self) -> int:
        return int(self._recover(keys=[self.prefix]))

    @translate
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
        self._last_beat = 0.0
        self._lock = threading.Lock()
        self._turn = 0
        # Who owns a delivery: a run id in _handed belongs to one executor thread of this
        # worker, from its fetch (or its adoption by _reclaim) until ack or nack. Attempts
        # executed here whose delivery could not be removed from in-flight are _spent (run id
        # -> attempt number): a reclaim drops them, never runs them again.
        self._handed: set[str] = set()
        self._spent: dict[str, int] = {}
        self._unsure = False  # a fetch failed: its reply (and deliveries) may have been lost
        self._reclaiming = threading.Lock()  # one thread at a time looks for lost deliveries
        self._turns = threading.Condition()  # fetches under way vs. a reclaim looking
        self._fetching = 0
        self._reclaim_looking = False
        self._inflight = f"{broker.prefix}inflight:{worker_id}"

    @translate
    def heartbeat(self) -> None:
        """Refresh this worker's heartbeat (fetches do too; the housekeeping loop calls this
        so a worker whose threads are all busy in long attempts keeps its deliveries)."""
        now = time.monotonic()
        if now - self._last_beat < self.broker.heartbeat_timeout / 6:
            return
        self._last_beat = now
        pipe = self.broker.client.pipeline(transaction=False)
        pipe.set(
            f"{self.broker.prefix}wk:{self.worker_id}",
            "1",
            px=int(self.broker.heartbeat_timeout * 1000),
        )
        pipe.sadd(f"{self.broker.prefix}workers", self.worker_id)
        pipe.execute()

    def _reclaim(self, start: StartRequest | None) -> list[Delivery]:
        """After a fetch whose reply was lost, the in-flight deliveries no thread here holds:
        with fetch-and-start, each is an attempt started for us, adopted (returned, to run
        here) unless it ended meanwhile or was executed here already; a plain fetch's go back
        to the front of their lists (else they would wait for redelivery). One thread at a
        time, while no fetch is under way: the orphans it finds are its own (in ``_handed``)
        before another thread can look, and none is a delivery a fetch is about to hand."""
        with self._reclaiming:
            if not self._unsure:  # another thread reclaimed meanwhile
                return []
            with self._turns:  # the fetches under way hand theirs first; none starts now
                self._reclaim_looking = True
                while self._fetching:
                    self._turns.wait()
            try:
                return self._reclaim_orphans(start)
            finally:
                with self._turns:
                    self._reclaim_looking = False
                    self._turns.notify_all()

    def _reclaim_orphans(self, start: StartRequest | None) -> list[Delivery]:
        """The in-flight deliveries that no thread here holds, decided one by one (while no
        fetch is under way: see ``_reclaim``)."""
        items = self.broker.client.hgetall(self._inflight)
        self._unsure = False
        with self._lock:
            orphans = {rid: msg for rid, msg in items.items() if rid not in self._handed}
            self._handed.update(orphans)
        adopted: list[Delivery] = []
        try:
            for run_id, msg in orphans.items():
                got = self._adopt(run_id, msg, start)
                if got is not None:
                    adopted.append(got)
        except BaseException:
            with self._lock:  # undecided: found again by the next reclaim
                self._handed.difference_update(orphans)
            self._unsure = True
            raise
        kept = {d.dispatch.run_id for d in adopted}
        with self._lock:
            self._handed.difference_update(orphans.keys() - kept)
        return adopted

    def _adopt(self, run_id: str, msg: str, start: StartRequest | None) -> Delivery | None:
        """An orphan in-flight delivery: the attempt it started, to run here; else None (the
        delivery dropped, or given back to its list)."""
        client = self.broker.client
        store = self.broker.store if start is not None else None
        if store is not None:  # only a started delivery enters in-flight: adopt it or drop it
            started = store.adopt(run_id, self.worker_id)
            if started is not None and self._spent.get(run_id) != started.attempt_number:
                d = Dispatch(*json.loads(msg))
                return Delivery(d, msg, started=started, ack_ref=self.worker_id)
            # finished, canceled or reaped meanwhile, or executed here already
            client.hdel(self._inflight, run_id)
            self._spent.pop(run_id, None)
            return None
        task = json.loads(msg)[1]
        pipe = client.pipeline(transaction=True)
        pipe.hdel(self._inflight, run_id)
        pipe.lpush(f"{self.broker.prefix}bq:{_enc(task)}", msg)
        pipe.execute()
        return None

    def _tasks_in_turn(self) -> list[str]:
        tasks = list(self.task_ids)
        if tasks:  # start at a different list each time, so no task starves another
            self._turn = (self._turn + 1) % len(tasks)
            tasks = tasks[self._turn :] + tasks[: self._turn]
        return tasks

    @translate
    def fetch(
        self, max_count: int, timeout: float, start: StartRequest | None = None
    ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while not self._closed:
            if time.monotonic() - self._last_recover > self.RECOVER_EVERY:
                self._last_recover = time.monotonic()
                self.broker.recover()
            tasks = self._tasks_in_turn()
            if self._unsure:
                adopted = self._reclaim(start)  # (already handed to this thread)
                if adopted:
                    return adopted
            out, more = self._fetch_and_hand(tasks, max_count, start) if tasks else ([], False)
            if out:
                return out
            if more:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            if not tasks:  # no task registered yet
                time.sleep(min(left, 0.05))
                continue
            self._block(tasks, min(left, MAX_BLOCK))  # then look again
        return []

    def _fetch_and_hand(
        self, tasks: list[str], max_count: int, start: StartRequest | None
    ) -> tuple[list[Delivery], bool]:
        """One fetch, its deliveries handed to the calling thread. A reclaim waits for the
        fetches under way to hand theirs (and no fetch starts while it looks), so every
        in-flight delivery it sees is handed already, or lost with a failed fetch's reply."""
        with self._turns:
            while self._reclaim_looking:
                self._turns.wait()
            self._fetching += 1
        try:
            try:
                out, more = self._fetch_once(tasks, max_count, start)
            except (redis.exceptions.RedisError, StoreError):
                self._unsure = True  # the reply may be lost with deliveries in it
                raise
            if out:
                with self._lock:
                    self._handed.update(d.dispatch.run_id for d in out)
            return out, more
        finally:
            with self._turns:
                self._fetching -= 1
                self._turns.notify_all()

    def _block(self, tasks: list[str], timeout: float) -> None:
        """Wait for a wake-up token on any of these tasks' lists (or the timeout)."""
        if timeout <= 0:
            return
        keys = [f"{self.broker.prefix}sig:{_enc(t)}" for t in tasks]
        self.broker.client.blpop(keys, timeout=max(0.01, timeout))

    def _fetch_once(
        self, tasks: list[str], max_count: int, start: StartRequest | None
    ) -> tuple[list[Delivery], bool]:
        store = self.broker.store
        if start is not None and store is not None:
            self._last_beat = time.monotonic()
            got, more = store.fetch_start(
                worker_id=self.worker_id,
                tasks=tasks,
                queues=self.queues,
                max_count=max_count,
                heartbeat_ms=int(self.broker.heartbeat_timeout * 1000),
                lease_until=time.time() + start.lease_timeout,
                default_max_attempts=dict(start.default_max_attempts),
                now=start.now(),
            )
            return [
                Delivery(Dispatch(*json.loads(msg)), msg, started=st, ack_ref=self.worker_id)
                for msg, st in got
            ], more
        self._last_beat = time.monotonic()
        raw = self.broker._fetch(
            keys=[self.broker.prefix],
            args=[
                self.worker_id,
                max_count,
                int(self.broker.heartbeat_timeout * 1000),
                *[_enc(t) for t in tasks],
            ],
        )
        out = []
        for msg in raw:
            d = Dispatch(*json.loads(msg))
            if self.queues is not None and d.queue not in self.queues:
                self.broker.client.hdel(self._inflight, d.run_id)
                self.broker.send([d])  # not ours: back to its list
                continue
            out.append(Delivery(d, msg))
        return out, False

    @translate
    def ack(self, delivery: Delivery) -> None:
        """This worker is done with the delivery (its attempt ended, recorded or not)."""
        run_id = delivery.dispatch.run_id
        try:
            if not delivery.settled:  # else the store removed it as it recorded the result
                self.broker.client.hdel(self._inflight, run_id)
        except BaseException:
            if delivery.started is not None:  # left in flight: a reclaim drops it, never runs it
                self._spent[run_id] = delivery.started.attempt_number
                self._unsure = True
            raise
        finally:
            with self._lock:
                self._handed.discard(run_id)

    @translate
    def nack(self, delivery: Delivery) -> None:
        """Give back a delivery whose attempt was not started here, to the front of its list.
        If that fails it stays in flight, and a reclaim gives it back later."""
        run_id = delivery.dispatch.run_id
        task = _enc(delivery.dispatch.task_identifier)
        pipe = self.broker.client.pipeline(transaction=True)
        pipe.hdel(self._inflight, run_id)
        pipe.lpush(f"{self.broker.prefix}bq:{task}", delivery.tag)
        pipe.rpush(f"{self.broker.prefix}sig:{task}", 1)
        pipe.ltrim(f"{self.broker.prefix}sig:{task}", 0, 31)
        try:
            pipe.execute()
        except BaseException:
            self._unsure = True
            raise
        finally:
            with self._lock:
                self._handed.discard(run_id)

    def close(self) -> None:
        self._closed = True
