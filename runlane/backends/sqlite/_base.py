"""The SQLite store's shared internals: row access, guarded updates, admission hooks."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from runlane.backends._translate import translating
from runlane.backends.sqlite import admission, waits
from runlane.backends.sqlite.db import Database, transient
from runlane.backends.sqlite.rows import (
    CHANGEABLE,
    attempts_of,
    to_run,
)
from runlane.core.models import Run, RunStatus
from runlane.core.types import TAKE_LIMIT, Dispatch
from runlane.errors import StoreError

_translate = translating(
    sqlite3.Error, lambda verb, exc: f"SQLite store error in {verb}: {exc}", transient
)


class _Base:
    environment: str
    concurrency_limit: int | None
    retention: float | None
    db: Database

    def _get(self, conn: sqlite3.Connection, run_id: str, with_attempts: bool) -> Run | None:
        row = conn.execute(
            "SELECT * FROM rl_runs WHERE env=? AND id=?", (self.environment, run_id)
        ).fetchone()
        if row is None:
            return None
        attempts = attempts_of(conn, self.environment, [run_id])[run_id] if with_attempts else None
        return to_run(row, attempts)

    def _set(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        expect: Collection[RunStatus],
        to: RunStatus,
        now: float,
        changes: dict[str, Any],
    ) -> bool:
        bad = set(changes) - CHANGEABLE - {"error"}
        if bad:
            raise StoreError(f"transition may not change {sorted(bad)}")
        cols = ["status = ?", "updated_at = ?"] + [f"{c} = ?" for c in changes]
        expected = [s.value for s in expect]
        cur = conn.execute(
            f"UPDATE rl_runs SET {', '.join(cols)} WHERE env = ? AND id = ? "
            f"AND status IN ({', '.join('?' for _ in expected)})",
            (to.value, now, *changes.values(), self.environment, run_id, *expected),
        )
        return cur.rowcount == 1

    def _queue_or_wait(self, conn: sqlite3.Connection, rows: list[sqlite3.Row], now: float) -> None:
        """Move each row to QUEUED (its task is known) or WAITING_FOR_DEPLOY."""
        known = self._known(conn, {r["task"] for r in rows})
        for r in rows:
            status = RunStatus.QUEUED if r["task"] in known else RunStatus.WAITING_FOR_DEPLOY
            ttl_expires = now + r["ttl"] if r["ttl"] else None
            conn.execute(
                "UPDATE rl_runs SET status=?, queued_at=?, ttl_expires_at=?, updated_at=? "
                "WHERE env=? AND id=?",
                (status.value, now, ttl_expires, now, self.environment, r["id"]),
            )
            if status is RunStatus.QUEUED:
                self._enqueue(conn, r["id"], r["queue"], r["ckey"], now)

    def _enqueue(
        self, conn: sqlite3.Connection, run_id: str, queue: str, ckey: str, now: float
    ) -> None:
        """The run (already QUEUED) waits for admission, keeping its place if it had one."""
        conn.execute(
            "UPDATE rl_runs SET admitted=0, ckey=?, queue_ts=COALESCE(queue_ts, ?) "
            "WHERE env=? AND id=?",
            (ckey, now, self.environment, run_id),
        )
        admission.enqueue(conn, self.environment, run_id, queue, ckey)

    def _take(self, conn: sqlite3.Connection, limit: int) -> list[Dispatch]:
        """Empty the outbox (up to ``limit``) in the caller's write transaction: the runs
        still QUEUED, to send."""
        env = self.environment
        ids_ = [
            r[0]
            for r in conn.execute(
                "SELECT run_id FROM rl_ready WHERE env=? LIMIT ?", (env, limit)
            ).fetchall()
        ]
        if not ids_:
            return []
        marks = ", ".join("?" for _ in ids_)
        conn.execute(f"DELETE FROM rl_ready WHERE env=? AND run_id IN ({marks})", (env, *ids_))
        found = conn.execute(
            f"SELECT id, task, queue, machine FROM rl_runs WHERE env=? AND status='QUEUED' "
            f"AND id IN ({marks})",
            (env, *ids_),
        ).fetchall()
        return [Dispatch(r[0], r[1], r[2], r[3]) for r in found]

    def _hand_back(self, conn: sqlite3.Connection, ready: list[Dispatch] | None) -> None:
        """A transition whose caller sends what it admitted: the outbox, taken now."""
        if ready is not None:
            ready.extend(self._take(conn, TAKE_LIMIT))

    def _admit(
        self, conn: sqlite3.Connection, now: float, changed: Collection[str | tuple[str, str]]
    ) -> None:
        """Admission after a change of demand or capacity. With an environment limit every
        queue competes for a freed slot. Otherwise only what changed: a queue, or just one
        sub-queue (queue, key) when the queue has no total limit, since keys are independent
        then (this keeps a release O(1) with a thousand keys)."""
        env = self.environment
        if self.concurrency_limit is not None:
            admission.admit(conn, env, now, self.concurrency_limit, None)
            return
        queues = {c for c in changed if isinstance(c, str)}
        for c in changed:
            if isinstance(c, tuple):
                total = conn.execute(
                    "SELECT total_limit FROM rl_queues WHERE env=? AND name=?", (env, c[0])
                ).fetchone()
                if total is not None and total[0] is not None:
                    queues.add(c[0])
                elif c[0] not in queues:
                    admission.admit(conn, env, now, None, subqueue=c)
        # always once with the queues (maybe none): resumed runs need only an env slot
        admission.admit(conn, env, now, None, queues)

    def _release_stopped(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        row: sqlite3.Row | tuple[Any, ...] | None,
        attempt: int,
        now: float,
        ready: list[Dispatch] | None,
    ) -> None:
        """The attempt ``attempt`` has stopped. If its run was canceled while it ran (``row``:
        the run's status and attempt count, read in this transaction), the slots it kept
        while stopping are free now; otherwise nothing changes."""
        if row is None or row[0] != "CANCELED" or row[1] != attempt:
            return
        queues = self._release(conn, run_id)
        conn.execute(
            "UPDATE rl_runs SET lease_until=NULL WHERE env=? AND id=?", (self.environment, run_id)
        )
        self._admit(conn, now, queues)
        self._hand_back(conn, ready)

    def _release(
        self, conn: sqlite3.Connection, run_id: str, *, keep_queue_slot: bool = False
    ) -> set[str | tuple[str, str]]:
        """Give back a leaving run's slots, or its place in line; returns what to re-admit."""
        row = conn.execute(
            "SELECT status, admitted, resume, queue, ckey FROM rl_runs WHERE env=? AND id=?",
            (self.environment, run_id),
        ).fetchone()
        freed = admission.release(conn, self.environment, run_id, keep_queue_slot=keep_queue_slot)
        if (
            freed is None
            and row is not None
            and row["status"] == "QUEUED"
            and not (row["admitted"] or row["resume"])
        ):
            admission.leave_waiting(conn, self.environment, row["queue"], row["ckey"])
        return {freed} if freed else set()

    def _known(self, conn: sqlite3.Connection, task_ids: Collection[str]) -> set[str]:
        if not task_ids:
            return set()
        ids_ = list(task_ids)
        rows = conn.execute(
            f"SELECT id FROM rl_tasks WHERE env=? AND id IN ({', '.join('?' for _ in ids_)})",
            (self.environment, *ids_),
        ).fetchall()
        return {r[0] for r in rows}

    def _finalized(
        self,
        conn: sqlite3.Connection,
        run_ids: Sequence[str],
        now: float,
        queues: set[str | tuple[str, str]],
    ) -> None:
        """Runs became final: resolve the waits on them, then admit into what they freed (and
        the parents that resumed)."""
        waits.finalized(conn, self.environment, run_ids, now)
        self._admit(conn, now, queues)

    def _executed_ms(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        attempt: int,
        row: sqlite3.Row,
        now: float,
        attempt_ms: int | None,
    ) -> int:
        """Execution time to add for this stretch: from the attempt's own measure when given
        (waits excluded), else the wall time since the stretch began."""
        if attempt_ms is None:
            return self._segment_ms(row, now)
        used = conn.execute(
            "SELECT duration_ms FROM rl_attempts WHERE env=? AND run_id=? AND number=?",
            (self.environment, run_id, attempt),
        ).fetchone()
        return max(0, attempt_ms - (used[0] if used else 0))

    @staticmethod
    def _segment_ms(row: sqlite3.Row, now: float) -> int:
        start = row["segment_started_at"]
        return 0 if start is None else int(max(0.0, now - start) * 1000)
