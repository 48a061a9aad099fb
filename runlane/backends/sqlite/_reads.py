"""SQLite store: the read verbs (runs, batches, waits, queues, logs)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from runlane.backends.sqlite import waits
from runlane.backends.sqlite._base import _Base, _translate
from runlane.backends.sqlite.rows import (
    to_run,
)
from runlane.core.clock import to_datetime
from runlane.core.logs import LogEntry
from runlane.core.models import Batch, PausedKey, QueueInfo, Run, RunStatus
from runlane.core.types import Dispatch, RegisteredTask, RunQuery, Waitpoint


class _Reads(_Base):
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
    def queued_run_ids(self, *, older_than: float, limit: int) -> list[Dispatch]:
        rows = self.db.conn.execute(
            "SELECT id, task, queue, machine FROM rl_runs WHERE env=? AND status='QUEUED' "
            "AND admitted=1 AND updated_at < ? ORDER BY id LIMIT ?",
            (self.environment, older_than, limit),
        ).fetchall()
        return [Dispatch(r[0], r[1], r[2], r[3]) for r in rows]

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

    @_translate
    def waitpoints(self, run_id: str, attempt: int) -> list[Waitpoint]:
        return waits.of_attempt(self.db.conn, self.environment, run_id, attempt)

    @_translate
    def waitpoint_resolved(self, run_id: str, attempt: int, index: int, *, now: float) -> bool:
        return waits.is_resolved(self.db.conn, self.environment, run_id, attempt, index, now)

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
