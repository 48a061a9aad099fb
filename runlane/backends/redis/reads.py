"""The Redis store's reads: runs (pipelined hashes), lists by index, counts, batches. A mixin
of :class:`~runlane.backends.redis.store.RedisStore`, which holds the connection and the key
prefix."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import redis

from runlane.backends.redis.errors import translate as _translate
from runlane.backends.redis.rows import as_list, attempts_of, to_run
from runlane.core import ids
from runlane.core.clock import to_datetime
from runlane.core.models import Batch, Run, RunStatus
from runlane.core.types import RegisteredTask, RunQuery


def _enc(value: str) -> str:
    return f"{len(value)}:{value}"


class RedisReads:
    """Reads of runs, batches and counts (the store's connection, prefix and calls are
    ``RedisStore``'s)."""

    client: redis.Redis
    environment: str

    def _k(self, name: str) -> str:
        raise NotImplementedError

    def _call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _fetch(self, run_ids: Sequence[str], with_attempts: bool) -> dict[str, Run]:
        pipe = self.client.pipeline(transaction=False)
        for rid in run_ids:
            pipe.hgetall(self._k(f"run:{rid}"))
            pipe.get(self._k(f"md:{rid}"))
            if with_attempts:
                pipe.hgetall(self._k(f"att:{rid}"))
        res = pipe.execute()
        step = 3 if with_attempts else 2
        found: dict[str, Run] = {}
        blobs: list[tuple[str, str]] = []
        rows = []
        for i, rid in enumerate(run_ids):
            h = res[i * step]
            if not h:
                continue
            rows.append((rid, h, res[i * step + 1], res[i * step + 2] if with_attempts else None))
            for field in ("payload", "output"):
                if h.get(f"{field}_blob"):
                    blobs.append((rid, field))
        blob_text: dict[tuple[str, str], str] = {}
        if blobs:
            pipe = self.client.pipeline(transaction=False)
            for rid, field in blobs:
                pipe.get(self._k(f"blob:{rid}:{field}"))
            for key, text in zip(blobs, pipe.execute(), strict=True):
                blob_text[key] = text
        for rid, h, md, att in rows:
            found[rid] = to_run(
                h,
                self.environment,
                md,
                attempts_of(att) if att else None,
                blob_text.get((rid, "payload"), h.get("payload")),
                blob_text.get((rid, "output"), h.get("output")),
            )
        return found

    @_translate
    def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None:
        return self._fetch([run_id], with_attempts).get(run_id)

    @_translate
    def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        found: dict[str, Run] = {}
        unique = list(dict.fromkeys(run_ids))
        for start in range(0, len(unique), 500):
            found.update(self._fetch(unique[start : start + 500], False))
        return [found[i] for i in run_ids if i in found]

    @_translate
    def list_runs(self, query: RunQuery) -> tuple[list[Run], str | None]:
        checks: list[list[Any]] = []
        sources: list[str] = []

        def index_filter(prefix: str, values: Sequence[str], encode: bool = True) -> None:
            names = [f"ix:{prefix}:{_enc(v) if encode else v}" for v in values]
            if len(names) == 1:
                sources.append(names[0])
            checks.append(["index", names])

        for value, prefix in (
            (query.batch, "batch"),
            (query.schedule, "sched"),
            (query.parent, "parent"),
        ):
            if value is not None:
                index_filter(prefix, [value], encode=False)
        if query.tag:
            index_filter("tag", list(query.tag))
        if query.task_identifier:
            index_filter("task", list(query.task_identifier))
        if query.status:
            index_filter("st", list(query.status), encode=False)
        if query.version:
            index_filter("ver", list(query.version))
        if query.queue:
            index_filter("q", list(query.queue))
        if query.is_test is not None:
            checks.append(["is_test", ["1" if query.is_test else "0"]])
        source = sources[0] if sources else "ix:all"
        checks = [c for c in checks if not (c[0] == "index" and c[1] == [source])]
        high = "+"
        if query.created_to is not None:
            high = "[" + ids.bound("run", int(query.created_to * 1000), True)
        if query.after is not None and (high == "+" or query.after <= high[1:]):
            high = "(" + query.after
        low = "-"
        if query.created_from is not None:
            low = "[" + ids.bound("run", int(query.created_from * 1000), False)
        found = as_list(
            self._call(
                "list_runs", index=source, max=high, min=low, checks=checks, limit=query.limit
            )
        )
        more = len(found) > query.limit
        found = found[: query.limit]
        runs = self.get_runs(found)
        if query.created_from is not None or query.created_to is not None:
            lo = -float("inf") if query.created_from is None else query.created_from - 5e-7
            hi = float("inf") if query.created_to is None else query.created_to + 5e-7
            runs = [r for r in runs if lo <= r.created_at.timestamp() <= hi]
        return runs, (found[-1] if more and found else None)

    @_translate
    def seed_metadata(self, run_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self._k(f"run:{run_id}"), "seed_metadata")
        return None if raw is None else json.loads(raw)

    @_translate
    def get_batch(self, batch_id: str) -> Batch | None:
        h = self.client.hgetall(self._k(f"batch:{batch_id}"))
        if not h:
            return None
        return Batch(
            id=batch_id,
            environment=self.environment,
            run_ids=as_list(json.loads(h["run_ids"])),
            created_at=to_datetime(float(h["created_at"])),
            parent_id=h.get("parent_id") or None,
        )

    @_translate
    def count_runs(self, status: Collection[RunStatus] | None = None) -> dict[str, int]:
        wanted = [str(s) for s in (status or list(RunStatus))]
        pipe = self.client.pipeline(transaction=False)
        for s in wanted:
            pipe.zcard(self._k(f"ix:st:{s}"))
        return {s: n for s, n in zip(wanted, pipe.execute(), strict=True) if n}

    @_translate
    def statuses(self, run_ids: Collection[str]) -> dict[str, tuple[RunStatus, int]]:
        ids_ = list(run_ids)
        pipe = self.client.pipeline(transaction=False)
        for rid in ids_:
            pipe.hmget(self._k(f"run:{rid}"), "status", "attempt_count")
        out = {}
        for rid, (status, attempt) in zip(ids_, pipe.execute(), strict=True):
            if status is not None:
                out[rid] = (RunStatus(status), int(attempt or 0))
        return out

    @_translate
    def known_tasks(self, task_ids: Collection[str]) -> dict[str, RegisteredTask]:
        ids_ = list(task_ids)
        if not ids_:
            return {}
        queues = self.client.hmget(self._k("tasks"), ids_)
        return {t: RegisteredTask(t, q) for t, q in zip(ids_, queues, strict=True) if q}
