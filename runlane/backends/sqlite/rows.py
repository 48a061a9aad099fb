"""Rows ↔ models for the SQLite store: column lists and conversions (no transactions here)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from runlane.core import jsonvalue
from runlane.core.clock import to_datetime
from runlane.core.durations import format_duration
from runlane.core.models import Attempt, AttemptStatus, Run, RunStatus, TaskRunError
from runlane.core.types import GIVEN_FIELDS

# the columns a new run is inserted with: those the store computes, then GIVEN_FIELDS
COMPUTED_COLUMNS = (
    "env",
    "id",
    "task",
    "status",
    "payload",
    "metadata",
    "seed_metadata",
    "tags",
    "ttl",
    "delay_until",
    "ttl_expires_at",
    "created_at",
    "updated_at",
    "queued_at",
    "queue",
    "max_duration",
    "number",
    "trace_context",
    "ckey",
    "queue_given",
)
RUN_COLUMNS = COMPUTED_COLUMNS + tuple(GIVEN_FIELDS)
INSERT_RUN = (
    f"INSERT INTO rl_runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' for _ in RUN_COLUMNS)})"
)
# Columns a transition may change (the names are never taken from user input).
CHANGEABLE = frozenset(
    {
        "delay_until",
        "ttl_expires_at",
        "queued_at",
        "started_at",
        "finished_at",
        "expired_at",
        "output",
        "worker_id",
        "retry_at",
        "duration_ms",
        "metadata",
        "tags",
        "machine",
        "segment_started_at",
        "lease_until",
        "admitted",
    }
)


ATTEMPT_END = {
    RunStatus.CANCELED: AttemptStatus.CANCELED.value,
    RunStatus.CRASHED: AttemptStatus.CRASHED.value,
    RunStatus.TIMED_OUT: AttemptStatus.TIMED_OUT.value,
    RunStatus.COMPLETED: AttemptStatus.COMPLETED.value,
}


def error_json(error: TaskRunError | None) -> str | None:
    return None if error is None else error.model_dump_json()


def load_error(text: str | None) -> TaskRunError | None:
    return None if text is None else TaskRunError.model_validate_json(text)


def attempts_of(conn: sqlite3.Connection, env: str, run_ids: list[str]) -> dict[str, list[Attempt]]:
    result: dict[str, list[Attempt]] = {rid: [] for rid in run_ids}
    for chunk_start in range(0, len(run_ids), 500):
        chunk = run_ids[chunk_start : chunk_start + 500]
        rows = conn.execute(
            f"SELECT * FROM rl_attempts WHERE env=? AND run_id IN "
            f"({', '.join('?' for _ in chunk)}) ORDER BY run_id, number",
            (env, *chunk),
        ).fetchall()
        for r in rows:
            result[r["run_id"]].append(
                Attempt(
                    id=r["id"],
                    number=r["number"],
                    status=AttemptStatus(r["status"]),
                    started_at=to_datetime(r["started_at"]),
                    finished_at=to_datetime(r["finished_at"]),
                    error=load_error(r["error"]),
                    worker_id=r["worker_id"],
                )
            )
    return result


def _given(value: Any, kind: type) -> Any:
    """A GIVEN_FIELDS column as ``Run`` holds it (SQLite keeps booleans as 0 and 1)."""
    return bool(value) if kind is bool else value


def to_run(r: sqlite3.Row, attempts: list[Attempt] | None) -> Run:
    return Run(
        id=r["id"],
        task_identifier=r["task"],
        status=RunStatus(r["status"]),
        environment=r["env"],
        payload=json.loads(r["payload"]),
        output=jsonvalue.loads(r["output"]),
        error=load_error(r["error"]),
        attempts=attempts or [],
        attempt_count=r["attempt_count"],
        tags=json.loads(r["tags"]),
        metadata=json.loads(r["metadata"]),
        ttl=format_duration(r["ttl"]) if r["ttl"] else None,
        delayed_until=to_datetime(r["delay_until"]),
        created_at=to_datetime(r["created_at"]),
        updated_at=to_datetime(r["updated_at"]),
        queued_at=to_datetime(r["queued_at"]),
        started_at=to_datetime(r["started_at"]),
        finished_at=to_datetime(r["finished_at"]),
        expired_at=to_datetime(r["expired_at"]),
        duration_ms=r["duration_ms"],
        queue=r["queue"],
        max_duration=r["max_duration"] or None,
        retry_at=to_datetime(r["retry_at"]),
        number=r["number"],
        **{name: _given(r[name], kind) for name, kind in GIVEN_FIELDS.items()},
    )
