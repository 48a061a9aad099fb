"""The Redis store's schedules and secret keys. Schedules are saved and deleted by Lua
commands (``save_schedule``, ``delete_schedule``; a tick is fired inside ``create_runs``), and
read with pipelined reads (the due ones with ``due_schedules``).

Keys (under the store's prefix): ``sch:<id>`` the schedule's hash (fields as ``ScheduleRow``,
absent = None), ``schdd:<dedup key>`` → id, ``schix`` and ``schix:<task>`` zsets of ids by
creation time, ``schdue`` the active schedules by next tick.
"""

from __future__ import annotations

from typing import Any

import redis

from runlane.backends.redis.reads import _enc, _translate
from runlane.core.types import SCHEDULE_FIELDS, KeyRow, ScheduleQuery, ScheduleRow


def schedule_of(h: dict[str, str]) -> ScheduleRow:
    def number(name: str) -> float | None:
        v = h.get(name)
        return float(v) if v is not None else None

    return ScheduleRow(
        id=h["id"],
        task=h["task"],
        cron=h["cron"],
        timezone=h["timezone"],
        type=h["type"],
        active=h.get("active") == "1",
        created_at=float(h["created_at"]),
        updated_at=float(h["updated_at"]),
        next_at=number("next_at"),
        external_id=h.get("external_id"),
        deduplication_key=h.get("deduplication_key"),
        last_at=number("last_at"),
        generation=h.get("generation"),
    )


def _flat(items: list[str]) -> dict[str, str]:
    return dict(zip(items[::2], items[1::2], strict=True))


class RedisSchedules:
    """Schedule verbs of ``RedisStore`` (its client, prefix and calls)."""

    client: redis.Redis

    def _k(self, name: str) -> str:
        raise NotImplementedError

    def _call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    @_translate
    def save_schedule(self, row: ScheduleRow, *, now: float) -> tuple[ScheduleRow, bool]:
        written, stored = self._call("save_schedule", row=vars(row), now=now)
        return schedule_of(_flat(stored)), written == "1"

    @_translate
    def delete_schedule(self, schedule_id: str, *, generation: str | None = None) -> bool:
        return self._call("delete_schedule", id=schedule_id, generation=generation, now=0) == 1

    @_translate
    def get_schedule(self, schedule_id: str) -> ScheduleRow | None:
        h = self.client.hgetall(self._k(f"sch:{schedule_id}"))
        return schedule_of(h) if h else None

    def _rows(self, ids: list[str]) -> list[ScheduleRow]:
        pipe = self.client.pipeline(transaction=False)
        for sid in ids:
            pipe.hgetall(self._k(f"sch:{sid}"))
        return [schedule_of(h) for h in pipe.execute() if h]

    @_translate
    def list_schedules(self, query: ScheduleQuery) -> tuple[list[ScheduleRow], str | None]:
        if len(query.task) == 1:
            index = self._k(f"schix:{_enc(query.task[0])}")
        else:
            index = self._k("schix")
        wanted = set(query.task)
        page: list[ScheduleRow] = []
        start = 0
        if query.after is not None:
            rank = self.client.zrevrank(index, query.after)
            if rank is None:
                return [], None
            start = rank + 1
        batch = max(query.limit + 1, 100)
        while len(page) <= query.limit:
            ids = self.client.zrevrange(index, start, start + batch - 1)
            if not ids:
                break
            start += len(ids)
            rows = self._rows(ids)
            page.extend(r for r in rows if not wanted or r.task in wanted)
        cursor = page[query.limit - 1].id if len(page) > query.limit else None
        return page[: query.limit], cursor

    @_translate
    def due_schedules(self, *, now: float, limit: int) -> list[ScheduleRow]:
        # one Lua call, one JSON document: a busy minute's thousands of due schedules are
        # read without a reply per hash
        due = self._call("due_schedules", now=now, limit=limit) or []
        return [
            schedule_of(
                {k: v for k, v in zip(SCHEDULE_FIELDS, values, strict=True) if v is not None}
            )
            for values in due
        ]


class RedisKeys:
    """Secret keys of ``RedisStore`` (their digests): ``apikey:<id>`` hashes and the
    ``apikeys`` zset of ids by creation time, under the store's prefix."""

    client: redis.Redis

    def _k(self, name: str) -> str:
        raise NotImplementedError

    @_translate
    def save_key(self, row: KeyRow) -> None:
        fields = {
            k: repr(v) if isinstance(v, float) else str(v) if isinstance(v, int) else v
            for k, v in vars(row).items()
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._k(f"apikey:{row.id}"))
        pipe.hset(
            self._k(f"apikey:{row.id}"), mapping={k: v for k, v in fields.items() if v is not None}
        )
        pipe.zadd(self._k("apikeys"), {row.id: row.created_at})
        pipe.execute()

    @_translate
    def get_key(self, key_id: str) -> KeyRow | None:
        h = self.client.hgetall(self._k(f"apikey:{key_id}"))
        return _key_of(h) if h else None

    @_translate
    def list_keys(self) -> list[KeyRow]:
        ids = self.client.zrange(self._k("apikeys"), 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(self._k(f"apikey:{key_id}"))
        return [_key_of(h) for h in pipe.execute() if h]

    @_translate
    def count_request(self, key_id: str, *, window_start: float, window: float) -> int:
        name = self._k(f"hits:{key_id}:{int(window_start)}")
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, max(1, int(window * 2)))  # past windows are forgotten
        count, _ = pipe.execute()
        return int(count)

    @_translate
    def revoke_key(self, key_id: str, *, now: float) -> bool:
        name = self._k(f"apikey:{key_id}")
        if not self.client.exists(name):  # (keys are revoked, never deleted)
            return False
        self.client.hsetnx(name, "revoked_at", repr(now))  # the first revocation stays
        return True


def _key_of(h: dict[str, str]) -> KeyRow:
    revoked = h.get("revoked_at")
    limit = h.get("rate_limit")
    return KeyRow(
        id=h["id"],
        digest=h["digest"],
        name=h["name"],
        created_at=float(h["created_at"]),
        hint=h["hint"],
        revoked_at=float(revoked) if revoked is not None else None,
        rate_limit=int(limit) if limit is not None else None,
    )
