"""SQLite store: recording waitpoints and suspending attempts on them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from runlane.backends.sqlite import waits
from runlane.backends.sqlite._base import _Base, _translate
from runlane.core import jsonvalue
from runlane.core.metadata import apply_ops
from runlane.core.models import RunStatus
from runlane.core.types import Dispatch, Waitpoint, WaitSpec


class _Waiting(_Base):
    @_translate
    def create_waitpoint(self, wait: WaitSpec, *, now: float) -> Waitpoint:
        with self.db.write() as conn:
            waits.create(conn, self.environment, wait, [], now)
            found = waits.one(conn, self.environment, wait.run_id, wait.attempt, wait.index)
        assert found is not None
        return found

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
        ack: str | None = None,  # the local broker acks apart
        ready: list[Dispatch] | None = None,
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
                self._release_stopped(conn, run_id, row, attempt, now, ready)  # canceled
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
            self._hand_back(conn, ready)
            return status
