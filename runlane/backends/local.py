"""The ``local`` broker: deliveries in the SQLite file of the embedded store.

Works across processes on one machine: a ``runlane dev`` worker picks up runs triggered by any
process that shares the file. Reliable fetch: a delivery is claimed with a visibility lease and
deleted on ack; a claim whose worker died becomes visible again when the lease lapses (the
store's guarded ``start_attempt`` makes a second delivery harmless). Senders in this process
wake local consumers at once; other processes notice within ``poll_interval``. With
``memory://`` the deliveries are in the store's in-memory database: one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence

from runlane.backends.sqlite.db import Database, release_database, shared_database
from runlane.core.types import Delivery, Dispatch, StartRequest

VISIBILITY_TIMEOUT = 300.0


class LocalBroker:
    def __init__(self, path: str, environment: str = "dev", *, poll_interval: float = 0.2) -> None:
        self.db: Database = shared_database(path)
        self._closed = False
        self.environment = environment
        self.poll_interval = poll_interval
        self._wakeup = threading.Condition()
        self._generation = 0

    def send(self, dispatches: Sequence[Dispatch]) -> None:
        if not dispatches:
            return
        with self.db.write() as conn:
            conn.executemany(
                # a run sent again (retried after its worker died, or redelivered) becomes
                # visible at once, even if a dead worker's claim on it was still pending
                "INSERT INTO rl_dispatch (env, run_id, task, queue, machine) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (env, run_id) DO UPDATE SET "
                "claimed_by=NULL, claimed_until=NULL",
                [
                    (self.environment, d.run_id, d.task_identifier, d.queue, d.machine)
                    for d in dispatches
                ],
            )
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    def consumer(
        self, worker_id: str, task_ids: Collection[str], queues: Collection[str] | None = None
    ) -> LocalConsumer:
        return LocalConsumer(self, worker_id, task_ids, queues)

    def wait(self, generation: int, timeout: float) -> int:
        with self._wakeup:
            if self._generation == generation:
                self._wakeup.wait(timeout)
            return self._generation

    def close(self) -> None:
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()
        if not self._closed:
            self._closed = True
            release_database(self.db)

    def pending(self) -> int:
        row = self.db.conn.execute(
            "SELECT COUNT(*) FROM rl_dispatch WHERE env=?", (self.environment,)
        ).fetchone()
        return int(row[0])


class LocalConsumer:
    def __init__(
        self,
        broker: LocalBroker,
        worker_id: str,
        task_ids: Collection[str],
        queues: Collection[str] | None = None,
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.task_ids = sorted(task_ids)
        self.queues = sorted(queues) if queues else None
        self._closed = False

    def _claim(self, max_count: int) -> list[Delivery]:
        if not self.task_ids:
            return []
        now = time.time()
        marks = ", ".join("?" for _ in self.task_ids)
        queue_filter = ""
        args: list[object] = [self.broker.environment, *self.task_ids]
        if self.queues:
            queue_filter = f"AND queue IN ({', '.join('?' for _ in self.queues)}) "
            args += self.queues
        with self.broker.db.write() as conn:
            rows = conn.execute(
                f"SELECT seq, run_id, task, queue, machine FROM rl_dispatch WHERE env=? "
                f"AND task IN ({marks}) {queue_filter}"
                f"AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY seq LIMIT ?",
                (*args, now, max_count),
            ).fetchall()
            if rows:
                conn.execute(
                    f"UPDATE rl_dispatch SET claimed_by=?, claimed_until=? WHERE seq IN "
                    f"({', '.join('?' for _ in rows)})",
                    (self.worker_id, now + VISIBILITY_TIMEOUT, *[r[0] for r in rows]),
                )
        return [Delivery(Dispatch(r[1], r[2], r[3], r[4]), r[0]) for r in rows]

    def fetch(
        self, max_count: int, timeout: float, start: StartRequest | None = None
    ) -> list[Delivery]:
        """Claimed deliveries; ``start`` is not used (the executor starts each attempt)."""
        deadline = time.monotonic() + timeout
        generation = self.broker._generation
        while not self._closed:
            got = self._claim(max_count)
            if got:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            generation = self.broker.wait(generation, min(remaining, self.broker.poll_interval))
        return []

    def ack(self, delivery: Delivery) -> None:
        with self.broker.db.write() as conn:
            conn.execute(
                "DELETE FROM rl_dispatch WHERE seq=? AND claimed_by=?",
                (delivery.tag, self.worker_id),
            )

    def heartbeat(self) -> None:
        """Nothing to do: a claim lapses by itself after ``VISIBILITY_TIMEOUT``."""

    def nack(self, delivery: Delivery) -> None:
        with self.broker.db.write() as conn:
            conn.execute(
                "UPDATE rl_dispatch SET claimed_by=NULL, claimed_until=NULL WHERE seq=? "
                "AND claimed_by=?",
                (delivery.tag, self.worker_id),
            )

    def close(self) -> None:
        self._closed = True
