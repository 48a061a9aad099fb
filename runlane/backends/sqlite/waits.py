"""Durable waits in SQLite: waitpoints, their resolution, and resuming FROZEN runs.

Every function runs inside the caller's write transaction, so creating children with their
waitpoint, suspending, and resolving are each one atomic step: a child that finishes while its
parent is deciding to suspend can never leave the parent FROZEN forever.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from runlane.core.types import Waitpoint, WaitSpec


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def create(
    conn: sqlite3.Connection, env: str, wait: WaitSpec, run_ids: Sequence[str], now: float
) -> None:
    """Record a waitpoint on ``run_ids`` (children, maybe cached and already final) or on time."""
    pending = 0
    if run_ids and wait.kind in ("run", "batch"):  # triggers are only recorded, not awaited
        unique = list(dict.fromkeys(run_ids))
        open_ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM rl_runs WHERE env=? AND id IN ({_marks(len(unique))}) AND "
                "status NOT IN ('COMPLETED','CANCELED','FAILED','CRASHED','INTERRUPTED',"
                "'SYSTEM_FAILURE','EXPIRED','TIMED_OUT')",
                (env, *unique),
            )
        ]
        pending = len(open_ids)
        conn.executemany(
            "INSERT OR IGNORE INTO rl_wait_children VALUES (?, ?, ?, ?, ?)",
            [(env, child, wait.run_id, wait.attempt, wait.index) for child in open_ids],
        )
    resolved = now if pending == 0 and wait.kind != "time" else None  # nothing left to wait
    conn.execute(
        "INSERT OR IGNORE INTO rl_waitpoints (env, run_id, attempt, idx, kind, fingerprint, "
        "run_ids, batch_id, pending, resume_at, resolved_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            env,
            wait.run_id,
            wait.attempt,
            wait.index,
            wait.kind,
            wait.fingerprint,
            json.dumps(list(run_ids)),
            wait.batch_id,
            pending,
            wait.resume_at,
            resolved,
            now,
        ),
    )


def _to_waitpoint(r: sqlite3.Row) -> Waitpoint:
    return Waitpoint(
        index=r["idx"],
        kind=r["kind"],
        fingerprint=r["fingerprint"],
        run_ids=json.loads(r["run_ids"]),
        batch_id=r["batch_id"],
        resume_at=r["resume_at"],
        resolved=r["resolved_at"] is not None,
    )


def of_attempt(conn: sqlite3.Connection, env: str, run_id: str, attempt: int) -> list[Waitpoint]:
    rows = conn.execute(
        "SELECT * FROM rl_waitpoints WHERE env=? AND run_id=? AND attempt=? ORDER BY idx",
        (env, run_id, attempt),
    ).fetchall()
    return [_to_waitpoint(r) for r in rows]


def one(
    conn: sqlite3.Connection, env: str, run_id: str, attempt: int, index: int
) -> Waitpoint | None:
    row = conn.execute(
        "SELECT * FROM rl_waitpoints WHERE env=? AND run_id=? AND attempt=? AND idx=?",
        (env, run_id, attempt, index),
    ).fetchone()
    return None if row is None else _to_waitpoint(row)


def _resume_if_frozen_on(
    conn: sqlite3.Connection, env: str, run_id: str, attempt: int, index: int, now: float
) -> int:
    # the run keeps its queue slot; admission gives it an environment slot and sends it
    cur = conn.execute(
        "UPDATE rl_runs SET status='QUEUED', resume=1, admitted=0, wait_index=NULL, updated_at=? "
        "WHERE env=? AND id=? AND status='FROZEN' AND attempt_count=? AND wait_index=?",
        (now, env, run_id, attempt, index),
    )
    return cur.rowcount


def finalized(conn: sqlite3.Connection, env: str, run_ids: Sequence[str], now: float) -> None:
    """Runs became final: count them off their waitpoints, resolve and resume what is done."""
    if not run_ids:
        return
    hits = conn.execute(
        f"DELETE FROM rl_wait_children WHERE env=? AND child_id IN ({_marks(len(run_ids))}) "
        "RETURNING run_id, attempt, idx",
        (env, *run_ids),
    ).fetchall()
    for run_id, attempt, index in hits:
        row = conn.execute(
            "UPDATE rl_waitpoints SET pending = pending - 1 WHERE env=? AND run_id=? "
            "AND attempt=? AND idx=? RETURNING pending",
            (env, run_id, attempt, index),
        ).fetchone()
        if row is not None and row[0] <= 0:
            conn.execute(
                "UPDATE rl_waitpoints SET resolved_at=? WHERE env=? AND run_id=? AND attempt=? "
                "AND idx=? AND resolved_at IS NULL",
                (now, env, run_id, attempt, index),
            )
            _resume_if_frozen_on(conn, env, run_id, attempt, index, now)


def resolve_due_times(conn: sqlite3.Connection, env: str, now: float, limit: int) -> int:
    """Resolve time waits that are due; returns how many FROZEN runs resumed."""
    rows = conn.execute(
        "SELECT run_id, attempt, idx FROM rl_waitpoints WHERE env=? AND kind='time' "
        "AND resolved_at IS NULL AND resume_at <= ? ORDER BY resume_at LIMIT ?",
        (env, now, limit),
    ).fetchall()
    resumed = 0
    for run_id, attempt, index in rows:
        conn.execute(
            "UPDATE rl_waitpoints SET resolved_at=? WHERE env=? AND run_id=? AND attempt=? "
            "AND idx=?",
            (now, env, run_id, attempt, index),
        )
        resumed += _resume_if_frozen_on(conn, env, run_id, attempt, index, now)
    return resumed


def is_resolved(
    conn: sqlite3.Connection, env: str, run_id: str, attempt: int, index: int, now: float
) -> bool:
    row = conn.execute(
        "SELECT kind, resume_at, resolved_at FROM rl_waitpoints WHERE env=? AND run_id=? "
        "AND attempt=? AND idx=?",
        (env, run_id, attempt, index),
    ).fetchone()
    if row is None:
        return False
    if row["resolved_at"] is not None:
        return True
    return row["kind"] == "time" and row["resume_at"] <= now
