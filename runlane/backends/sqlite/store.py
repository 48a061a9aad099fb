"""SQLiteStore: the Store protocol on one SQLite file. Each verb is one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from runlane.backends._translate import translating
from runlane.backends.sqlite import admission, waits
from runlane.backends.sqlite.db import Database, release_database, shared_database
from runlane.backends.sqlite.rows import (
    ATTEMPT_END,
    CHANGEABLE,
    INSERT_RUN,
    attempts_of,
    error_json,
    to_run,
)
from runlane.core import ids, jsonvalue
from runlane.core.clock import to_datetime
from runlane.core.durations import format_duration
from runlane.core.logs import LogEntry
from runlane.core.metadata import apply_ops, check_size
from runlane.core.models import (
    FINAL_STATUSES,
    Batch,
    PausedKey,
    QueueInfo,
    Run,
    RunStatus,
    TaskRunError,
)
from runlane.core.types import (
    AttemptOutcome,
    Created,
    Dispatch,
    NewRun,
    RegisteredTask,
    RunQuery,
    StartedAttempt,
    Waitpoint,
    WaitSpec,
)
from runlane.errors import ConfigurationError, StoreError


def path_from_url(url: str) -> str:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` → a file path."""
    if not url.startswith("sqlite://"):
        raise ConfigurationError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
    path = url[len("sqlite://") :]
    if path.startswith("/"):
        path = path[1:]
    if not path or path in (":memory:",):
        raise ConfigurationError(
            f"{url!r}: give the SQLite store a file path (it is shared by threads and processes)"
        )
    return path


_translate = translating(sqlite3.Error, lambda verb, exc: f"SQLite store error in {verb}: {exc}")


class SQLiteStore:
    """Runs in a SQLite file. Safe for many threads and several processes on one machine."""

    def __init__(
        self, path: str | Path, environment: str = "dev", *, concurrency_limit: int | None = None
    ) -> None:
        self.environment = environment
        self.concurrency_limit = concurrency_limit  # executing runs in the environment
        self.retention: float | None = 30 * 86400.0  # seconds a finished run is kept
        self.db: Database = shared_database(path)
        self.path = self.db.path
        self._closed = False

    @classmethod
    def from_url(
        cls, url: str, environment: str = "dev", *, concurrency_limit: int | None = None
    ) -> SQLiteStore:
        return cls(path_from_url(url), environment, concurrency_limit=concurrency_limit)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_database(self.db)

    # ------------------------------------------------------------------ creation
    @_translate
    def create_runs(
        self,
        runs: Sequence[NewRun],
        *,
        now: float,
        batch_id: str | None = None,
        parent_id: str | None = None,
        wait: WaitSpec | None = None,
    ) -> list[Created]:
        env = self.environment
        out: list[Created] = []
        with self.db.write() as conn:
            for new in runs:
                if new.idempotency_key is not None:
                    row = conn.execute(
                        "SELECT k.run_id, r.status, r.queue FROM rl_idempotency k "
                        "JOIN rl_runs r ON r.env = k.env AND r.id = k.run_id "
                        "WHERE k.env=? AND k.task=? AND k.key=? AND k.expires_at > ?",
                        (env, new.task_identifier, new.idempotency_key, now),
                    ).fetchone()
                    if row is not None:
                        out.append(
                            Created(row[0], True, RunStatus(row[1]), row[2], new.task_identifier)
                        )
                        continue
                    conn.execute(
                        "INSERT OR REPLACE INTO rl_idempotency VALUES (?, ?, ?, ?, ?)",
                        (
                            env,
                            new.task_identifier,
                            new.idempotency_key,
                            new.id,
                            new.idempotency_key_expires_at,
                        ),
                    )
                number = conn.execute(
                    "INSERT INTO rl_counters VALUES (?, ?, 1) ON CONFLICT (env, name) "
                    "DO UPDATE SET value = value + 1 RETURNING value",
                    (env, "task:" + new.task_identifier),
                ).fetchone()[0]
                queued_at = now if new.status is not RunStatus.DELAYED else None
                ttl_expires = (
                    now + new.ttl if new.ttl and new.status is not RunStatus.DELAYED else None
                )
                conn.execute(
                    INSERT_RUN,
                    (
                        env,
                        new.id,
                        new.task_identifier,
                        new.status.value,
                        new.payload,
                        new.metadata,
                        new.metadata,
                        json.dumps(new.tags),
                        new.idempotency_key,
                        new.ttl,
                        new.delay_until,
                        ttl_expires,
                        new.created_at,
                        now,
                        queued_at,
                        new.batch_id,
                        new.parent_id,
                        new.root_id,
                        new.depth,
                        new.schedule_id,
                        new.queue,
                        new.concurrency_key,
                        new.max_attempts,
                        new.max_duration,
                        new.machine,
                        new.version,
                        number,
                        int(new.is_test),
                        json.dumps(new.trace_context) if new.trace_context else None,
                        new.concurrency_key or "",
                        int(new.queue_given),
                    ),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO rl_run_tags VALUES (?, ?, ?)",
                    [(env, tag, new.id) for tag in new.tags],
                )
                if new.queue_defined:
                    admission.upsert_queue(
                        conn, env, new.queue, new.queue_limit, new.queue_total_limit
                    )
                if new.status is RunStatus.QUEUED:
                    self._enqueue(conn, new.id, new.queue, new.concurrency_key or "", now)
                out.append(Created(new.id, False, new.status, new.queue, new.task_identifier))
            if batch_id is not None:
                conn.execute(
                    "INSERT INTO rl_batches VALUES (?, ?, ?, ?, ?)",
                    (env, batch_id, json.dumps([c.run_id for c in out]), now, parent_id),
                )
            if wait is not None:
                waits.create(conn, env, wait, [c.run_id for c in out], now)
            self._admit(conn, now, {c.queue for c in out})
        return out

    # ------------------------------------------------------------------ reads
    def _get(self, conn: sqlite3.Connection, run_id: str, with_attempts: bool) -> Run | None:
        row = conn.execute(
            "SELECT * FROM rl_runs WHERE env=? AND id=?", (self.environment, run_id)
        ).fetchone()
        if row is None:
            return None
        attempts = attempts_of(conn, self.environment, [run_id])[run_id] if with_attempts else None
        return to_run(row, attempts)

    @_translate
    def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None:
        with self.db.read() as conn:
            return self._get(conn, run_id, with_attempts)

    @_translate
    def list_runs(self, query: RunQuery) -> tuple[list[Run], str | None]:
        where = ["r.env = ?"]
        args: list[Any] = [self.environment]

        def any_of(column: str, values: Sequence[Any]) -> None:
            where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            args.extend(values)

        if query.status:
            any_of("r.status", list(query.status))
        if query.task_identifier:
            any_of("r.task", list(query.task_identifier))
        if query.version:
            any_of("r.version", list(query.version))
        if query.queue:
            any_of("r.queue", list(query.queue))
        if query.tag:
            where.append(
                "EXISTS (SELECT 1 FROM rl_run_tags t WHERE t.env = r.env AND t.run_id = r.id "
                f"AND t.tag IN ({', '.join('?' for _ in query.tag)}))"
            )
            args.extend(query.tag)
        for column, value in (
            ("r.batch_id", query.batch),
            ("r.schedule_id", query.schedule),
            ("r.parent_id", query.parent),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.is_test is not None:
            where.append("r.is_test = ?")
            args.append(int(query.is_test))
        # datetimes have microsecond resolution: compare at that resolution
        if query.created_from is not None:
            where.append("r.created_at >= ?")
            args.append(query.created_from - 5e-7)
        if query.created_to is not None:
            where.append("r.created_at <= ?")
            args.append(query.created_to + 5e-7)
        if query.after is not None:
            where.append("r.id < ?")
            args.append(query.after)
        sql = f"SELECT r.* FROM rl_runs r WHERE {' AND '.join(where)} ORDER BY r.id DESC LIMIT ?"
        with self.db.read() as conn:
            rows = conn.execute(sql, (*args, query.limit + 1)).fetchall()
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            runs = [to_run(r, None) for r in rows]
        return runs, (runs[-1].id if more and runs else None)

    @_translate
    def seed_metadata(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.conn.execute(
            "SELECT seed_metadata FROM rl_runs WHERE env=? AND id=?", (self.environment, run_id)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    @_translate
    def get_batch(self, batch_id: str) -> Batch | None:
        row = self.db.conn.execute(
            "SELECT * FROM rl_batches WHERE env=? AND id=?", (self.environment, batch_id)
        ).fetchone()
        if row is None:
            return None
        return Batch(
            id=row["id"],
            environment=row["env"],
            run_ids=json.loads(row["run_ids"]),
            created_at=to_datetime(row["created_at"]),
            parent_id=row["parent_id"],
        )

    @_translate
    def count_runs(self, status: Collection[RunStatus] | None = None) -> dict[str, int]:
        rows = self.db.conn.execute(
            "SELECT status, COUNT(*) FROM rl_runs WHERE env=? GROUP BY status",
            (self.environment,),
        ).fetchall()
        counts = {r[0]: r[1] for r in rows}
        if status is not None:
            counts = {k: v for k, v in counts.items() if k in {str(s) for s in status}}
        return counts

    # ------------------------------------------------------------------ transitions
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

    @_translate
    def transition(
        self,
        run_id: str,
        *,
        expect: Collection[RunStatus],
        to: RunStatus,
        now: float,
        changes: dict[str, Any] | None = None,
        error: TaskRunError | None = None,
    ) -> Run | None:
        changes = dict(changes or {})
        if error is not None:
            changes["error"] = error_json(error)
        if to.is_final:
            changes.setdefault("finished_at", now)
        with self.db.write() as conn:
            current = conn.execute(
                "SELECT status FROM rl_runs WHERE env=? AND id=?", (self.environment, run_id)
            ).fetchone()
            if current is None or RunStatus(current[0]) not in expect:
                return None
            queues: set[str | tuple[str, str]] = set()
            if to.is_final:
                queues = self._release(conn, run_id)
                changes["admitted"] = 0
            self._set(conn, run_id, expect, to, now, changes)
            if to.is_final:
                self._finalized(conn, [run_id], now, queues)
                conn.execute(
                    "DELETE FROM rl_dispatch WHERE env=? AND run_id=?", (self.environment, run_id)
                )
                # an attempt still open (a run canceled while executing) ends with the run
                conn.execute(
                    "UPDATE rl_attempts SET status=?, finished_at=?, error=? WHERE env=? "
                    "AND run_id=? AND status='EXECUTING'",
                    (
                        ATTEMPT_END.get(to, "FAILED"),
                        now,
                        changes.get("error"),
                        self.environment,
                        run_id,
                    ),
                )
            return self._get(conn, run_id, True)

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

    @_translate
    def promote_due(self, *, now: float, limit: int) -> int:
        env = self.environment
        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT id, task, queue, ckey, ttl FROM rl_runs WHERE env=? "
                "AND status='DELAYED' AND delay_until <= ? ORDER BY delay_until LIMIT ?",
                (env, now, limit),
            ).fetchall()
            self._queue_or_wait(conn, rows, now)
            retries = conn.execute(
                "SELECT id, queue, ckey FROM rl_runs WHERE env=? "
                "AND status='REATTEMPTING' AND retry_at <= ? ORDER BY retry_at LIMIT ?",
                (env, now, limit),
            ).fetchall()
            for r in retries:
                conn.execute(
                    "UPDATE rl_runs SET status='QUEUED', retry_at=NULL, updated_at=? "
                    "WHERE env=? AND id=?",
                    (now, env, r["id"]),
                )
                self._enqueue(conn, r["id"], r["queue"], r["ckey"], now)
            resumed = waits.resolve_due_times(conn, env, now, limit)
            queues = {r["queue"] for r in rows} | {r["queue"] for r in retries}
            if rows or retries or resumed:
                self._admit(conn, now, queues)
            # a paused queue whose pause has ended admits again
            ended = conn.execute(
                "SELECT DISTINCT q.name FROM rl_queues q JOIN rl_subqueues sq ON sq.env = q.env "
                "AND sq.queue = q.name WHERE q.env=? AND sq.waiting > 0 AND "
                "((q.paused = 1 AND q.paused_until <= ?) OR (sq.paused = 1 AND "
                "sq.paused_until <= ?))",
                (env, now, now),
            ).fetchall()
            if ended:
                conn.execute(
                    "UPDATE rl_queues SET paused=0, paused_until=NULL WHERE env=? AND paused=1 "
                    "AND paused_until <= ?",
                    (env, now),
                )
                conn.execute(
                    "UPDATE rl_subqueues SET paused=0, paused_until=NULL WHERE env=? AND "
                    "paused=1 AND paused_until <= ?",
                    (env, now),
                )
                self._admit(conn, now, {r[0] for r in ended})
            return len(rows) + len(retries) + resumed

    @_translate
    def statuses(self, run_ids: Collection[str]) -> dict[str, tuple[RunStatus, int]]:
        ids_ = list(run_ids)
        if not ids_:
            return {}
        rows = self.db.conn.execute(
            "SELECT id, status, attempt_count FROM rl_runs WHERE env=? AND id IN "
            f"({', '.join('?' for _ in ids_)})",
            (self.environment, *ids_),
        ).fetchall()
        return {r[0]: (RunStatus(r[1]), r[2]) for r in rows}

    @_translate
    def expire_runs(self, *, now: float, limit: int) -> list[str]:
        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT id, ttl FROM rl_runs WHERE env=? AND status IN "
                "('QUEUED', 'WAITING_FOR_DEPLOY') AND ttl_expires_at IS NOT NULL "
                "AND ttl_expires_at <= ? ORDER BY ttl_expires_at LIMIT ?",
                (self.environment, now, limit),
            ).fetchall()
            queues: set[str | tuple[str, str]] = set()
            for r in rows:
                err = TaskRunError(
                    name="Error",
                    code="TTL_EXPIRED",
                    message=(
                        f"Run expired because the TTL ({format_duration(r['ttl'])}) was reached"
                    ),
                )
                queues |= self._release(conn, r["id"])
                conn.execute(
                    "UPDATE rl_runs SET status='EXPIRED', expired_at=?, finished_at=?, "
                    "updated_at=?, error=?, admitted=0 WHERE env=? AND id=?",
                    (now, now, now, error_json(err), self.environment, r["id"]),
                )
                conn.execute(
                    "DELETE FROM rl_dispatch WHERE env=? AND run_id=?", (self.environment, r["id"])
                )
            self._finalized(conn, [r["id"] for r in rows], now, queues)
            return [r["id"] for r in rows]

    def _known(self, conn: sqlite3.Connection, task_ids: Collection[str]) -> set[str]:
        if not task_ids:
            return set()
        ids_ = list(task_ids)
        rows = conn.execute(
            f"SELECT id FROM rl_tasks WHERE env=? AND id IN ({', '.join('?' for _ in ids_)})",
            (self.environment, *ids_),
        ).fetchall()
        return {r[0] for r in rows}

    @_translate
    def register_tasks(self, tasks: Sequence[RegisteredTask], *, now: float) -> None:
        if not tasks:
            return
        env = self.environment
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO rl_tasks VALUES (?, ?, ?, ?) ON CONFLICT (env, id) "
                "DO UPDATE SET queue = excluded.queue, registered_at = excluded.registered_at",
                [(env, t.id, t.queue, now) for t in tasks],
            )
            for t in tasks:
                admission.upsert_queue(conn, env, t.queue, t.concurrency_limit, t.total_limit)
            ids_ = [t.id for t in tasks]
            rows = conn.execute(
                "SELECT id, task, concurrency_key FROM rl_runs "
                f"WHERE env=? AND status='WAITING_FOR_DEPLOY' AND task IN "
                f"({', '.join('?' for _ in ids_)}) ORDER BY id",
                (env, *ids_),
            ).fetchall()
            queue_of = {t.id: t.queue for t in tasks}
            queues = set(queue_of.values())
            for r in rows:  # the TTL keeps counting from the first enqueue
                conn.execute(  # the task's own queue, unless the trigger chose one
                    "UPDATE rl_runs SET status='QUEUED', updated_at=?, queue = CASE WHEN "
                    "queue_given = 1 THEN queue ELSE ? END WHERE env=? AND id=?",
                    (now, queue_of[r["task"]], env, r["id"]),
                )
                queue = conn.execute(
                    "SELECT queue FROM rl_runs WHERE env=? AND id=?", (env, r["id"])
                ).fetchone()[0]
                self._enqueue(conn, r["id"], queue, r["concurrency_key"] or "", now)
                queues.add(queue)
            self._admit(conn, now, queues)

    @_translate
    def known_tasks(self, task_ids: Collection[str]) -> dict[str, RegisteredTask]:
        ids_ = list(task_ids)
        if not ids_:
            return {}
        rows = self.db.conn.execute(
            "SELECT id, queue FROM rl_tasks WHERE env=? AND id IN "
            f"({', '.join('?' for _ in ids_)})",
            (self.environment, *ids_),
        ).fetchall()
        return {r[0]: RegisteredTask(r[0], r[1]) for r in rows}

    @_translate
    def start_attempt(
        self,
        run_id: str,
        *,
        worker_id: str,
        now: float,
        known_tasks: Collection[str],
        lease_until: float | None = None,
        default_max_attempts: int = 1,
    ) -> StartedAttempt | None:
        env = self.environment
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT task, status, attempt_count, machine, trace_context, max_duration, "
                "resume, admitted, max_attempts FROM rl_runs WHERE env=? AND id=?",
                (env, run_id),
            ).fetchone()
            if (
                row is None
                or row["status"] != "QUEUED"
                or not row["admitted"]
                or row["task"] not in known_tasks
            ):
                return None
            if row["resume"]:  # a suspended attempt continues
                number = row["attempt_count"]
                attempt = conn.execute(
                    "UPDATE rl_attempts SET status='EXECUTING', worker_id=? WHERE env=? AND "
                    "run_id=? AND number=? RETURNING id, started_at, duration_ms",
                    (worker_id, env, run_id, number),
                ).fetchone()
                attempt_id, started_at, used_ms = attempt[0], attempt[1], attempt[2]
            else:
                number = row["attempt_count"] + 1
                attempt_id, started_at, used_ms = ids.attempt_id(), now, 0
                conn.execute(
                    "INSERT INTO rl_attempts (env, run_id, number, id, status, started_at, "
                    "worker_id, machine) VALUES (?, ?, ?, ?, 'EXECUTING', ?, ?, ?)",
                    (env, run_id, number, attempt_id, now, worker_id, row["machine"]),
                )
            conn.execute(
                "UPDATE rl_runs SET status='EXECUTING', attempt_count=?, worker_id=?, "
                "started_at=COALESCE(started_at, ?), updated_at=?, ttl_expires_at=NULL, "
                "resume=0, segment_started_at=?, lease_until=?, attempts_allowed=? "
                "WHERE env=? AND id=?",
                (
                    number,
                    worker_id,
                    now,
                    now,
                    now,
                    lease_until,
                    row["max_attempts"] or default_max_attempts,
                    env,
                    run_id,
                ),
            )
            run = self._get(conn, run_id, True)
        assert run is not None
        trace = json.loads(row["trace_context"]) if row["trace_context"] else None
        return StartedAttempt(
            run,
            attempt_id,
            number,
            started_at,
            trace,
            row["max_duration"],
            resumed=bool(row["resume"]),
            used_ms=used_ms,
        )

    @_translate
    def finish_attempt(
        self, run_id: str, attempt_number: int, outcome: AttemptOutcome, *, now: float
    ) -> Run | None:
        env = self.environment
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT status, attempt_count, metadata, segment_started_at, duration_ms "
                "FROM rl_runs WHERE env=? AND id=?",
                (env, run_id),
            ).fetchone()
            if (
                row is None
                or row["status"] != "EXECUTING"
                or row["attempt_count"] != attempt_number
            ):
                return None
            elapsed_ms = self._executed_ms(
                conn, run_id, attempt_number, row, now, outcome.attempt_ms
            )
            changes: dict[str, Any] = {"duration_ms": row["duration_ms"] + elapsed_ms}
            if outcome.metadata_ops:
                md = apply_ops(json.loads(row["metadata"]), outcome.metadata_ops)
                changes["metadata"] = jsonvalue.dumps(md)
            if outcome.output is not None:
                changes["output"] = outcome.output
            if outcome.error is not None:
                changes["error"] = error_json(outcome.error)
            elif outcome.run_status is RunStatus.COMPLETED:
                changes["error"] = None  # an earlier attempt's error is not the run's
            if outcome.run_status.is_final:
                changes["finished_at"] = now
            if outcome.retry_at is not None:
                changes["retry_at"] = outcome.retry_at
            if outcome.machine is not None:
                changes["machine"] = outcome.machine
            changes["segment_started_at"] = None
            changes["lease_until"] = None
            changes["admitted"] = 0
            self._set(conn, run_id, [RunStatus.EXECUTING], outcome.run_status, now, changes)
            queues = self._release(conn, run_id)
            conn.execute(
                "UPDATE rl_attempts SET status=?, finished_at=?, error=?, "
                "duration_ms=duration_ms+? WHERE env=? AND run_id=? AND number=?",
                (
                    outcome.attempt_status,
                    now,
                    error_json(outcome.error),
                    elapsed_ms,
                    env,
                    run_id,
                    attempt_number,
                ),
            )
            if outcome.run_status.is_final:
                self._finalized(conn, [run_id], now, queues)
            else:
                self._admit(conn, now, queues)
            return self._get(conn, run_id, True)

    @_translate
    def queued_run_ids(self, *, older_than: float, limit: int) -> list[Dispatch]:
        rows = self.db.conn.execute(
            "SELECT id, task, queue, machine FROM rl_runs WHERE env=? AND status='QUEUED' "
            "AND admitted=1 AND updated_at < ? ORDER BY id LIMIT ?",
            (self.environment, older_than, limit),
        ).fetchall()
        return [Dispatch(r[0], r[1], r[2], r[3]) for r in rows]

    # ------------------------------------------------------------------ metadata and tags
    @_translate
    def update_metadata(
        self, run_id: str, ops: Sequence[dict[str, Any]], *, now: float, limit: int
    ) -> dict[str, Any] | None:
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT metadata FROM rl_runs WHERE env=? AND id=?", (self.environment, run_id)
            ).fetchone()
            if row is None:
                return None
            md = apply_ops(json.loads(row["metadata"]), ops)
            check_size(md, limit)
            conn.execute(
                "UPDATE rl_runs SET metadata=?, updated_at=? WHERE env=? AND id=?",
                (jsonvalue.dumps(md), now, self.environment, run_id),
            )
            return md

    @_translate
    def add_tags(self, run_id: str, tags: Sequence[str], *, now: float, max_tags: int) -> list[str]:
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT tags FROM rl_runs WHERE env=? AND id=?", (self.environment, run_id)
            ).fetchone()
            if row is None:
                return []
            current = json.loads(row["tags"])
            new = [t for t in dict.fromkeys(tags) if t not in current]
            if not new or len(current) + len(new) > max_tags:
                return current
            current += new
            conn.execute(
                "UPDATE rl_runs SET tags=?, updated_at=? WHERE env=? AND id=?",
                (json.dumps(current), now, self.environment, run_id),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO rl_run_tags VALUES (?, ?, ?)",
                [(self.environment, t, run_id) for t in new],
            )
            return current

    # ------------------------------------------------------------------ logs
    @_translate
    def append_logs(self, run_id: str, entries: Sequence[dict[str, Any]]) -> None:
        if not entries:
            return
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO rl_logs (env, run_id, attempt, time, level, kind, message, "
                "attributes, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        self.environment,
                        run_id,
                        e["attempt"],
                        e["time"],
                        e["level"],
                        e["kind"],
                        e["message"],
                        jsonvalue.dumps(e["attributes"]),
                        e["duration_ms"],
                    )
                    for e in entries
                ],
            )

    @_translate
    def get_logs(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[LogEntry]:
        rows = self.db.conn.execute(
            "SELECT * FROM rl_logs WHERE env=? AND run_id=? AND seq > ? ORDER BY seq LIMIT ?",
            (self.environment, run_id, after, limit),
        ).fetchall()
        return [
            LogEntry(
                seq=r["seq"],
                run_id=r["run_id"],
                attempt=r["attempt"],
                time=to_datetime(r["time"]),
                level=r["level"],
                kind=r["kind"],
                message=r["message"],
                attributes=json.loads(r["attributes"]),
                duration_ms=r["duration_ms"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ leader election
    @_translate
    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT INTO rl_leases VALUES (?, ?, ?, ?) ON CONFLICT (env, name) DO UPDATE "
                "SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE rl_leases.owner = excluded.owner OR rl_leases.expires_at < ?",
                (self.environment, name, owner, now + ttl, now),
            )
            return cur.rowcount == 1

    @_translate
    def release_lease(self, name: str, owner: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM rl_leases WHERE env=? AND name=? AND owner=?",
                (self.environment, name, owner),
            )

    # ------------------------------------------------------------------ durable waits
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

    @_translate
    def create_waitpoint(self, wait: WaitSpec, *, now: float) -> Waitpoint:
        with self.db.write() as conn:
            waits.create(conn, self.environment, wait, [], now)
            found = waits.one(conn, self.environment, wait.run_id, wait.attempt, wait.index)
        assert found is not None
        return found

    @_translate
    def waitpoints(self, run_id: str, attempt: int) -> list[Waitpoint]:
        return waits.of_attempt(self.db.conn, self.environment, run_id, attempt)

    @_translate
    def waitpoint_resolved(self, run_id: str, attempt: int, index: int, *, now: float) -> bool:
        return waits.is_resolved(self.db.conn, self.environment, run_id, attempt, index, now)

    @_translate
    def suspend(
        self,
        run_id: str,
        attempt: int,
        index: int,
        *,
        now: float,
        metadata_ops: Sequence[dict[str, Any]] = (),
        attempt_ms: int | None = None,
    ) -> RunStatus | None:
        """EXECUTING → FROZEN on waitpoint ``index``; straight back to QUEUED (resumed) when it
        is already resolved. None when the attempt no longer holds the run."""
        env = self.environment
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT status, attempt_count, metadata, segment_started_at, duration_ms "
                "FROM rl_runs WHERE env=? AND id=?",
                (env, run_id),
            ).fetchone()
            if row is None or row["status"] != "EXECUTING" or row["attempt_count"] != attempt:
                return None
            elapsed_ms = self._executed_ms(conn, run_id, attempt, row, now, attempt_ms)
            md = row["metadata"]
            if metadata_ops:
                md = jsonvalue.dumps(apply_ops(json.loads(md), metadata_ops))
            queues = self._release(conn, run_id, keep_queue_slot=True)
            resolved = waits.is_resolved(conn, env, run_id, attempt, index, now)
            status = RunStatus.QUEUED if resolved else RunStatus.FROZEN
            conn.execute(
                "UPDATE rl_runs SET status=?, resume=?, wait_index=?, metadata=?, "
                "duration_ms=duration_ms+?, segment_started_at=NULL, updated_at=?, admitted=0, "
                "lease_until=NULL WHERE env=? AND id=?",
                (
                    status.value,
                    int(resolved),
                    None if resolved else index,
                    md,
                    elapsed_ms,
                    now,
                    env,
                    run_id,
                ),
            )
            conn.execute(
                "UPDATE rl_attempts SET status='SUSPENDED', duration_ms=duration_ms+? "
                "WHERE env=? AND run_id=? AND number=?",
                (elapsed_ms, env, run_id, attempt),
            )
            self._admit(conn, now, queues)  # lends the slot, or resumes at once when resolved
            return status

    # ------------------------------------------------------------------ leases
    @_translate
    def heartbeat(
        self, attempts: dict[str, int], *, worker_id: str, lease_until: float, now: float
    ) -> set[str]:
        """Renew the leases of the attempts this worker executes; returns the runs it lost
        (no longer EXECUTING under that attempt: canceled, reaped, finished elsewhere)."""
        if not attempts:
            return set()
        env = self.environment
        lost = set()
        with self.db.write() as conn:
            for run_id, attempt in attempts.items():
                cur = conn.execute(
                    "UPDATE rl_runs SET lease_until=? WHERE env=? AND id=? AND "
                    "status='EXECUTING' AND attempt_count=? AND lease_until >= ?",
                    (lease_until, env, run_id, attempt, now),
                )
                if not cur.rowcount:
                    lost.add(run_id)
        return lost

    @_translate
    def reap(self, *, now: float, limit: int) -> list[str]:
        """EXECUTING runs whose lease lapsed (the worker died or hung): the attempt ends
        CRASHED; the run is retried at once if attempts remain, else it is CRASHED."""
        env = self.environment
        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT id, attempt_count, attempts_allowed, segment_started_at, duration_ms, "
                "worker_id FROM rl_runs WHERE env=? AND status='EXECUTING' AND lease_until < ? "
                "ORDER BY lease_until LIMIT ?",
                (env, now, limit),
            ).fetchall()
            finals, queues = [], set()
            for r in rows:
                error = TaskRunError(
                    name="WorkerCrashedError",
                    code="TASK_RUN_CRASHED",
                    message=f"the worker executing attempt {r['attempt_count']} "
                    f"({r['worker_id']}) stopped renewing its lease",
                )
                retry = r["attempt_count"] < (r["attempts_allowed"] or 1)
                queues |= self._release(conn, r["id"])
                conn.execute(
                    "UPDATE rl_runs SET status=?, error=?, retry_at=?, finished_at=?, "
                    "duration_ms=duration_ms+?, segment_started_at=NULL, lease_until=NULL, "
                    "admitted=0, updated_at=? WHERE env=? AND id=?",
                    (
                        "REATTEMPTING" if retry else "CRASHED",
                        error_json(error),
                        now if retry else None,
                        None if retry else now,
                        self._segment_ms(r, now),
                        now,
                        env,
                        r["id"],
                    ),
                )
                conn.execute(
                    "UPDATE rl_attempts SET status='CRASHED', finished_at=?, error=? WHERE env=? "
                    "AND run_id=? AND number=?",
                    (now, error_json(error), env, r["id"], r["attempt_count"]),
                )
                if not retry:
                    finals.append(r["id"])
            stale = conn.execute(
                "SELECT id FROM rl_runs WHERE env=? AND status='CANCELED' AND lease_until < ? "
                "LIMIT ?",
                (env, now, limit),
            ).fetchall()
            for (stale_id,) in stale:  # canceled while executing; its worker never reported
                queues |= self._release(conn, stale_id)
                conn.execute(
                    "UPDATE rl_runs SET lease_until=NULL WHERE env=? AND id=?", (env, stale_id)
                )
            if rows or stale:
                self._finalized(conn, finals, now, queues)
            return [r["id"] for r in rows]

    @_translate
    def purge(self, *, now: float, limit: int) -> int:
        """Delete finished runs older than the retention, with everything about them."""
        if self.retention is None:
            return 0
        env = self.environment
        with self.db.write() as conn:
            ids_ = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM rl_runs WHERE env=? AND finished_at < ? AND status IN "
                    f"({', '.join(repr(s.value) for s in FINAL_STATUSES)}) LIMIT ?",
                    (env, now - self.retention, limit),
                )
            ]
            if not ids_:
                return 0
            marks = ", ".join("?" for _ in ids_)
            for table, column in (
                ("rl_runs", "id"),
                ("rl_attempts", "run_id"),
                ("rl_run_tags", "run_id"),
                ("rl_logs", "run_id"),
                ("rl_waitpoints", "run_id"),
                ("rl_wait_children", "child_id"),
                ("rl_idempotency", "run_id"),
                ("rl_slots", "run_id"),
                ("rl_dispatch", "run_id"),
                ("rl_ready", "run_id"),
            ):
                conn.execute(
                    f"DELETE FROM {table} WHERE env=? AND {column} IN ({marks})", (env, *ids_)
                )
            return len(ids_)

    @_translate
    def release_canceled(self, run_id: str, attempt: int, *, now: float) -> None:
        """The attempt of a run canceled while executing has stopped: free its slots."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT status, attempt_count FROM rl_runs WHERE env=? AND id=?",
                (self.environment, run_id),
            ).fetchone()
            if row is None or row[0] != "CANCELED" or row[1] != attempt:
                return
            queues = self._release(conn, run_id)
            conn.execute(
                "UPDATE rl_runs SET lease_until=NULL WHERE env=? AND id=?",
                (self.environment, run_id),
            )
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

    @_translate
    def take_ready(self, *, limit: int) -> list[Dispatch]:
        if (
            self.db.conn.execute(
                "SELECT 1 FROM rl_ready WHERE env=? LIMIT 1", (self.environment,)
            ).fetchone()
            is None
        ):
            return []  # the common case costs no write transaction
        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT run_id FROM rl_ready WHERE env=? LIMIT ?", (self.environment, limit)
            ).fetchall()
            ids_ = [r[0] for r in rows]
            if not ids_:
                return []
            conn.execute(
                f"DELETE FROM rl_ready WHERE env=? AND run_id IN ({', '.join('?' for _ in ids_)})",
                (self.environment, *ids_),
            )
            found = conn.execute(
                f"SELECT id, task, queue, machine FROM rl_runs WHERE env=? AND status='QUEUED' "
                f"AND id IN ({', '.join('?' for _ in ids_)})",
                (self.environment, *ids_),
            ).fetchall()
        return [Dispatch(r[0], r[1], r[2], r[3]) for r in found]

    @_translate
    def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs in the order asked (missing ones left out), without attempts."""
        if not run_ids:
            return []
        found: dict[str, Run] = {}
        with self.db.read() as conn:
            unique = list(dict.fromkeys(run_ids))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                rows = conn.execute(
                    f"SELECT * FROM rl_runs WHERE env=? AND id IN "
                    f"({', '.join('?' for _ in chunk)})",
                    (self.environment, *chunk),
                ).fetchall()
                for r in rows:
                    found[r["id"]] = to_run(r, None)
        return [found[i] for i in run_ids if i in found]

    @_translate
    def cancel(self, run_id: str, *, now: float, error: TaskRunError) -> Run | None:
        """Cancel a run that is not final, and all its non-final descendants, in one step."""
        env = self.environment
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT status FROM rl_runs WHERE env=? AND id=?", (env, run_id)
            ).fetchone()
            if row is None:
                return None
            if RunStatus(row[0]).is_final:
                return self._get(conn, run_id, True)
            todo, canceled = [run_id], []
            queues: set[str | tuple[str, str]] = set()
            while todo:
                current = todo.pop()
                state = conn.execute(
                    "SELECT status FROM rl_runs WHERE env=? AND id=?", (env, current)
                ).fetchone()
                if state is None or RunStatus(state[0]).is_final:
                    continue
                # an executing attempt keeps its slots (and lease) until it has stopped:
                # release_canceled() then, or the reaper if its worker is gone
                executing = state[0] == RunStatus.EXECUTING.value
                if not executing:
                    queues |= self._release(conn, current)
                cur = conn.execute(
                    "UPDATE rl_runs SET status='CANCELED', error=?, finished_at=?, updated_at=?, "
                    "resume=0, wait_index=NULL, admitted=0, "
                    "lease_until = CASE WHEN ? THEN lease_until ELSE NULL END "
                    "WHERE env=? AND id=? AND status NOT IN "
                    f"({', '.join(repr(s.value) for s in FINAL_STATUSES)})",
                    (error_json(error), now, now, int(executing), env, current),
                )
                if not cur.rowcount:
                    continue
                canceled.append(current)
                todo.extend(
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM rl_runs WHERE env=? AND parent_id=?", (env, current)
                    )
                )
            marks = ", ".join("?" for _ in canceled)
            conn.execute(
                f"UPDATE rl_attempts SET status='CANCELED', finished_at=?, error=? WHERE env=? "
                f"AND run_id IN ({marks}) AND status IN ('EXECUTING', 'SUSPENDED')",
                (now, error_json(error), env, *canceled),
            )
            conn.execute(
                f"DELETE FROM rl_dispatch WHERE env=? AND run_id IN ({marks})", (env, *canceled)
            )
            self._finalized(conn, canceled, now, queues)
            return self._get(conn, run_id, True)

    # ------------------------------------------------------------------ queues
    @_translate
    def set_paused(
        self,
        queue: str,
        concurrency_key: str | None,
        *,
        paused: bool,
        until: float | None,
        now: float,
    ) -> bool:
        """Pause or resume a queue, or one key of it. False when the queue does not exist."""
        env = self.environment
        with self.db.write() as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM rl_queues WHERE env=? AND name=?", (env, queue)
                ).fetchone()
                is None
            ):
                return False
            if concurrency_key is None:
                conn.execute(
                    "UPDATE rl_queues SET paused=?, paused_until=? WHERE env=? AND name=?",
                    (int(paused), until if paused else None, env, queue),
                )
            else:
                conn.execute(
                    "INSERT INTO rl_subqueues (env, queue, ckey, paused, paused_until) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (env, queue, ckey) DO UPDATE SET "
                    "paused = excluded.paused, paused_until = excluded.paused_until",
                    (env, queue, concurrency_key, int(paused), until if paused else None),
                )
            if not paused:
                self._admit(conn, now, {queue})
            return True

    @_translate
    def queues(self, names: Sequence[str] | None = None) -> list[QueueInfo]:
        env = self.environment
        where, args = "env=?", [env]
        if names is not None:
            if not names:
                return []
            where += f" AND name IN ({', '.join('?' for _ in names)})"
            args += list(names)
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT * FROM rl_queues WHERE {where} ORDER BY name", args
            ).fetchall()
            subs: dict[str, list[sqlite3.Row]] = {}
            for sq in conn.execute("SELECT * FROM rl_subqueues WHERE env=?", (env,)):
                subs.setdefault(sq["queue"], []).append(sq)
        out = []
        for q in rows:
            mine = subs.get(q["name"], [])
            out.append(
                QueueInfo(
                    name=q["name"],
                    concurrency_limit=q["concurrency_limit"],
                    total_concurrency_limit=q["total_limit"],
                    running=q["running"],
                    queued=sum(sq["waiting"] for sq in mine),
                    paused=bool(q["paused"]),
                    paused_until=to_datetime(q["paused_until"]),
                    paused_keys=[
                        PausedKey(
                            concurrency_key=sq["ckey"],
                            paused_until=to_datetime(sq["paused_until"]),
                        )
                        for sq in mine
                        if sq["paused"]
                    ],
                )
            )
        return out
