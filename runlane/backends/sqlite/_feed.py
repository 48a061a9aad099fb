"""SQLite store: the change feed (rl_changes, written by triggers on rl_runs) and run streams."""

from __future__ import annotations

import time
from collections.abc import Sequence

from runlane.backends.sqlite._base import _Base, _translate
from runlane.core.types import Change, FeedRead, StreamChunk
from runlane.errors import LimitExceededError

# how often a reader waiting on the feed looks for other processes' writes (this process's
# wake it at once)
_POLL = 0.005


class _Feed(_Base):
    @_translate
    def read_feed(self, after: int, *, limit: int, timeout: float = 0.0) -> FeedRead:
        deadline = time.monotonic() + timeout
        while True:
            with self.db.read() as conn:
                if after < 0:
                    row = conn.execute(  # (AUTOINCREMENT's counter: the head, trimmed or not)
                        "SELECT seq FROM sqlite_sequence WHERE name = 'rl_changes'"
                    ).fetchone()
                    return FeedRead([], int(row[0]) if row else 0)
                rows = conn.execute(
                    "SELECT seq, run_id, kind FROM rl_changes WHERE seq > ? AND env = ? "
                    "ORDER BY seq LIMIT ?",
                    (after, self.environment, limit),
                ).fetchall()
                trimmed = conn.execute(
                    "SELECT value FROM rl_counters WHERE env = '*' AND name = 'feed_trimmed'"
                ).fetchone()
            gap = trimmed is not None and after < trimmed[0]
            if rows or gap:
                changes = [Change(r[0], r[1], r[2]) for r in rows]
                return FeedRead(changes, changes[-1].position if changes else after, gap)
            left = deadline - time.monotonic()
            if left <= 0:
                return FeedRead([], after)
            self.db.wait_commit(min(left, _POLL))

    @_translate
    def append_stream(
        self, run_id: str, key: str, chunks: Sequence[str], *, now: float, max_chunks: int
    ) -> int | None:
        env = self.environment
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM rl_runs WHERE env=? AND id=?", (env, run_id)).fetchone():
                have = conn.execute(
                    "SELECT COUNT(*) FROM rl_streams WHERE env=? AND run_id=?", (env, run_id)
                ).fetchone()[0]
            else:
                return None
            if have + len(chunks) > max_chunks:
                raise LimitExceededError(
                    "stream", key, f"run {run_id}'s streams hold at most {max_chunks} chunks"
                )
            last = 0
            for data in chunks:
                cur = conn.execute(
                    "INSERT INTO rl_changes (env, run_id, kind) VALUES (?, ?, 's')", (env, run_id)
                )
                last = int(cur.lastrowid or 0)
                conn.execute(
                    "INSERT INTO rl_streams VALUES (?, ?, ?, ?, ?)", (env, run_id, last, key, data)
                )
            return last

    @_translate
    def read_stream(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[StreamChunk]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT seq, key, data FROM rl_streams WHERE env=? AND run_id=? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (self.environment, run_id, after, limit),
            ).fetchall()
        return [StreamChunk(r[0], r[1], r[2]) for r in rows]
