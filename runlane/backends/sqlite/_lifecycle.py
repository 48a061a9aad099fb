"""SQLite store: the lifecycle transitions of runs (each one transaction)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from runlane.backends.sqlite import admission, waits
from runlane.backends.sqlite._base import _Base, _translate
from runlane.backends.sqlite.rows import (
    ATTEMPT_END,
    error_json,
)
from runlane.core import ids, jsonvalue
from runlane.core.durations import format_duration
from runlane.core.metadata import apply_ops
from runlane.core.models import FINAL_STATUSES, Run, RunStatus, TaskRunError
from runlane.core.types import AttemptOutcome, Dispatch, RegisteredTask, RunBrief, StartedAttempt


class _Lifecycle(_Base):
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
            RunBrief.of(run),
            lambda: run,
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
        self,
        run_id: str,
        attempt_number: int,
        outcome: AttemptOutcome,
        *,
        now: float,
        ack: str | None = None,  # the local broker acks apart
        ready: list[Dispatch] | None = None,
        started: StartedAttempt | None = None,  # the attempt's row is updated in place
    ) -> bool:
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
                # canceled before the worker stopped the attempt, which ran to its end
                self._release_stopped(conn, run_id, row, attempt_number, now, ready)
                return False
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
            self._hand_back(conn, ready)
            return True

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
    def reap(self, *, now: float, limit: int, handed_back_by: str | None = None) -> list[str]:
        """EXECUTING runs whose lease lapsed (the worker died or hung, or ``handed_back_by``
        handed them back on shutdown): the attempt ends CRASHED; the run is retried at once
        if attempts remain, else it is CRASHED."""
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
                why = (
                    "handed it back on shutdown"
                    if handed_back_by is not None and r["worker_id"] == handed_back_by
                    else "stopped renewing its lease"
                )
                error = TaskRunError(
                    name="WorkerCrashedError",
                    code="TASK_RUN_CRASHED",
                    message=f"the worker executing attempt {r['attempt_count']} "
                    f"({r['worker_id']}) {why}",
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
    def release_canceled(
        self, run_id: str, attempt: int, *, now: float, ready: list[Dispatch] | None = None
    ) -> None:
        """The attempt of a run canceled while executing has stopped: free its slots."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT status, attempt_count FROM rl_runs WHERE env=? AND id=?",
                (self.environment, run_id),
            ).fetchone()
            self._release_stopped(conn, run_id, row, attempt, now, ready)

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
            return self._take(conn, limit)

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
