"""SQLite store: schedules (saved, read, listed, deleted; the due ones; a tick's guard)."""

from __future__ import annotations

import sqlite3

from runlane.backends.sqlite._base import _Base, _translate
from runlane.core.types import SCHEDULE_FIELDS, ScheduleFire, ScheduleQuery, ScheduleRow

COLUMNS = SCHEDULE_FIELDS
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM rl_schedules"
_INSERT = (
    f"INSERT OR REPLACE INTO rl_schedules (env, {', '.join(COLUMNS)}) "
    f"VALUES (?, {', '.join('?' for _ in COLUMNS)})"
)


def schedule_of(r: sqlite3.Row) -> ScheduleRow:
    return ScheduleRow(**{name: r[name] for name in COLUMNS} | {"active": bool(r["active"])})


def fire_guard(conn: sqlite3.Connection, env: str, fire: ScheduleFire) -> bool:
    """In the transaction of a tick's run: the schedule is still active at the tick the
    caller expects, and moves on to its next; False (nothing to create) otherwise."""
    moved = conn.execute(
        "UPDATE rl_schedules SET last_at=?, next_at=? "
        "WHERE env=? AND id=? AND active=1 AND next_at=?",
        (fire.tick, fire.next_at, env, fire.schedule_id, fire.expect),
    ).rowcount
    return moved == 1


class _Schedules(_Base):
    @_translate
    def save_schedule(self, row: ScheduleRow, *, now: float) -> tuple[ScheduleRow, bool]:
        env = self.environment
        with self.db.write() as conn:
            stored = None
            if row.deduplication_key is not None:
                found = conn.execute(
                    f"{_SELECT} WHERE env=? AND deduplication_key=?",
                    (env, row.deduplication_key),
                ).fetchone()
                stored = schedule_of(found) if found is not None else None
            if stored is None:
                found = conn.execute(f"{_SELECT} WHERE env=? AND id=?", (env, row.id)).fetchone()
                stored = schedule_of(found) if found is not None else None
            fresh = ScheduleRow(**vars(row))
            if stored is not None:
                if (
                    row.generation is not None
                    and stored.generation is not None
                    and stored.generation > row.generation
                ):
                    return stored, False  # declared by a later generation
                fresh.id, fresh.created_at, fresh.last_at = (
                    stored.id,
                    stored.created_at,
                    stored.last_at,
                )
                if (
                    row.generation is not None
                    and stored.cron == row.cron
                    and stored.timezone == row.timezone
                    and stored.task == row.task
                ):
                    fresh.next_at = stored.next_at  # the same declaration: keep its tick
            conn.execute(
                _INSERT, (env, *[int(v) if k == "active" else v for k, v in _values(fresh)])
            )
            return fresh, True

    @_translate
    def delete_schedule(self, schedule_id: str, *, generation: str | None = None) -> bool:
        with self.db.write() as conn:
            if generation is None:
                sql, args = "DELETE FROM rl_schedules WHERE env=? AND id=?", ()
            else:
                sql = (
                    "DELETE FROM rl_schedules WHERE env=? AND id=? "
                    "AND (generation IS NULL OR generation <= ?)"
                )
                args = (generation,)
            return conn.execute(sql, (self.environment, schedule_id, *args)).rowcount == 1

    @_translate
    def get_schedule(self, schedule_id: str) -> ScheduleRow | None:
        with self.db.read() as conn:
            r = conn.execute(
                f"{_SELECT} WHERE env=? AND id=?", (self.environment, schedule_id)
            ).fetchone()
        return schedule_of(r) if r is not None else None

    @_translate
    def list_schedules(self, query: ScheduleQuery) -> tuple[list[ScheduleRow], str | None]:
        where: list[str] = ["env=?"]
        args: list[object] = [self.environment]
        if query.task:
            where.append(f"task IN ({', '.join('?' for _ in query.task)})")
            args.extend(query.task)
        if query.after is not None:
            where.append(
                "(created_at, id) < (SELECT created_at, id FROM rl_schedules WHERE env=? AND id=?)"
            )
            args.extend([self.environment, query.after])
        with self.db.read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?",
                (*args, query.limit + 1),
            ).fetchall()
        page = [schedule_of(r) for r in rows[: query.limit]]
        cursor = page[-1].id if len(rows) > query.limit else None
        return page, cursor

    @_translate
    def due_schedules(self, *, now: float, limit: int) -> list[ScheduleRow]:
        with self.db.read() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE env=? AND active=1 AND next_at<=? ORDER BY next_at LIMIT ?",
                (self.environment, now, limit),
            ).fetchall()
        return [schedule_of(r) for r in rows]


def _values(row: ScheduleRow) -> list[tuple[str, object]]:
    return [(name, getattr(row, name)) for name in COLUMNS]
