"""SQLite store: metadata, tags, logs, leader leases, queue pauses and retention."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from runlane.backends.sqlite._base import _Base, _translate
from runlane.core import jsonvalue
from runlane.core.metadata import apply_ops, check_size
from runlane.core.models import FINAL_STATUSES
from runlane.core.types import KeyRow


class _Records(_Base):
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
                ("rl_streams", "run_id"),
            ):
                conn.execute(
                    f"DELETE FROM {table} WHERE env=? AND {column} IN ({marks})", (env, *ids_)
                )
            return len(ids_)

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


class _Keys(_Base):
    """Secret keys of the HTTP API (their digests)."""

    @_translate
    def save_key(self, row: KeyRow) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO rl_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.environment,
                    row.id,
                    row.digest,
                    row.name,
                    row.created_at,
                    row.hint,
                    row.revoked_at,
                    row.rate_limit,
                ),
            )

    @_translate
    def get_key(self, key_id: str) -> KeyRow | None:
        with self.db.read() as conn:
            r = conn.execute(
                "SELECT id, digest, name, created_at, hint, revoked_at, rate_limit FROM rl_keys "
                "WHERE env=? AND id=?",
                (self.environment, key_id),
            ).fetchone()
        return KeyRow(*r) if r is not None else None

    @_translate
    def list_keys(self) -> list[KeyRow]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, digest, name, created_at, hint, revoked_at, rate_limit FROM rl_keys "
                "WHERE env=? ORDER BY created_at, id",
                (self.environment,),
            ).fetchall()
        return [KeyRow(*r) for r in rows]

    @_translate
    def revoke_key(self, key_id: str, *, now: float) -> bool:
        with self.db.write() as conn:
            return (
                conn.execute(
                    "UPDATE rl_keys SET revoked_at=COALESCE(revoked_at, ?) WHERE env=? AND id=?",
                    (now, self.environment, key_id),
                ).rowcount
                == 1
            )

    @_translate
    def count_request(self, key_id: str, *, window_start: float, window: float) -> int:
        # one row a key: the current window's count (a new window starts it again at 1)
        with self.db.write() as conn:
            return int(
                conn.execute(
                    "INSERT INTO rl_key_hits VALUES (?, ?, ?, 1) ON CONFLICT (env, key_id) "
                    "DO UPDATE SET count = CASE WHEN window_start = excluded.window_start "
                    "THEN count + 1 ELSE 1 END, window_start = excluded.window_start "
                    "RETURNING count",
                    (self.environment, key_id, window_start),
                ).fetchone()[0]
            )
