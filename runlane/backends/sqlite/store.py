"""SQLiteStore: the Store protocol on one SQLite file. Each verb is one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runlane.backends.sqlite import admission, waits
from runlane.backends.sqlite._feed import _Feed
from runlane.backends.sqlite._lifecycle import _Lifecycle
from runlane.backends.sqlite._reads import _Reads
from runlane.backends.sqlite._records import _Keys, _Records
from runlane.backends.sqlite._schedules import _Schedules, fire_guard
from runlane.backends.sqlite._waiting import _Waiting
from runlane.backends.sqlite.db import Database, release_database, shared_database
from runlane.backends.sqlite.rows import (
    INSERT_RUN,
    RUN_COLUMNS,
)
from runlane.core.broker import Broker
from runlane.core.models import RunStatus
from runlane.core.types import (
    GIVEN_FIELDS,
    Created,
    Dispatch,
    NewRun,
    Push,
    ScheduleFire,
    WaitSpec,
)
from runlane.errors import ConfigurationError


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


class SQLiteStore(_Lifecycle, _Waiting, _Reads, _Records, _Schedules, _Keys, _Feed):
    """Runs in a SQLite file. Safe for many threads and several processes on one machine."""

    dispatches_itself = False  # admitted runs go through the outbox (``take_ready``)
    native_broker = "local"

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

    def message_writer(self, broker: Broker) -> Callable[[Sequence[Dispatch]], Push | None] | None:
        return None  # no broker keeps its messages in SQLite: admitted runs go to ``ready``

    def create_runs(
        self,
        runs: Sequence[NewRun],
        *,
        now: float,
        batch_id: str | None = None,
        parent_id: str | None = None,
        wait: WaitSpec | None = None,
        ready: list[Dispatch] | None = None,
        push: Push | None = None,
        token: str | None = None,
        fires: Sequence[ScheduleFire] | None = None,
    ) -> list[Created]:
        # push: never given (no message_writer); admitted runs go to ready.
        # token: unused: a transaction that raised wrote nothing (no reply is lost between a
        # commit and this process), so the same call may simply be made again
        env = self.environment
        out: list[Created] = []
        with self.db.write() as conn:
            for position, new in enumerate(runs):
                if fires is not None and not fire_guard(conn, env, fires[position]):
                    continue  # the tick was fired already (or the schedule changed)
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
                row: dict[str, Any] = {name: getattr(new, name) for name in GIVEN_FIELDS}
                row.update(
                    env=env,
                    id=new.id,
                    task=new.task_identifier,
                    status=new.status.value,
                    payload=new.payload,
                    metadata=new.metadata,
                    seed_metadata=new.metadata,
                    tags=json.dumps(new.tags),
                    ttl=new.ttl,
                    delay_until=new.delay_until,
                    ttl_expires_at=ttl_expires,
                    created_at=new.created_at,
                    updated_at=now,
                    queued_at=queued_at,
                    queue=new.queue,
                    max_duration=new.max_duration,
                    number=number,
                    trace_context=json.dumps(new.trace_context) if new.trace_context else None,
                    ckey=new.concurrency_key or "",
                    queue_given=int(new.queue_given),
                )
                conn.execute(INSERT_RUN, [row[name] for name in RUN_COLUMNS])
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
            self._hand_back(conn, ready)
        return out
