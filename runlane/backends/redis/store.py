"""RedisStore: the Store protocol on Redis. Every transition is one Lua call (lib/ and
commands/: a function library called with FCALL on Redis 7, scripts called with EVALSHA
before; see scripts.py and lane.py); reads are pipelined (reads.py). Metadata documents are
updated by compare-and-set (WATCH/MULTI), so JSON keeps its exact shape and concurrent updates
(a thousand children incrementing their parent's counter) all count."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from runlane.backends._pushing import message_writer, server_of_client
from runlane.backends.redis.codec import _dumps, _loads, _num, _text
from runlane.backends.redis.feed import RedisFeed
from runlane.backends.redis.lane import ScriptLane
from runlane.backends.redis.reads import RedisReads, _enc, _translate
from runlane.backends.redis.rows import as_list, current_metadata, to_run, waitpoint_of
from runlane.backends.redis.schedules import RedisKeys, RedisSchedules
from runlane.backends.redis.scripts import LIBRARY, PROGRAM, SCRIPTS
from runlane.core import ids, jsonvalue
from runlane.core.broker import Broker
from runlane.core.clock import to_datetime
from runlane.core.logs import LogEntry
from runlane.core.metadata import apply_ops, check_size
from runlane.core.models import PausedKey, QueueInfo, Run, RunStatus, TaskRunError
from runlane.core.types import (
    AttemptOutcome,
    Created,
    Dispatch,
    NewRun,
    Push,
    RegisteredTask,
    RunBrief,
    ScheduleFire,
    StartedAttempt,
    Waitpoint,
    WaitSpec,
)
from runlane.errors import ConfigurationError

_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")


# commands that never finish a run (the others may keep a finished run for the retention)
_NO_RETENTION = frozenset({"create_runs", "start_attempt", "fetch_start", "heartbeat", "list_runs"})


class RedisStore(RedisReads, RedisSchedules, RedisKeys, RedisFeed):
    """Runs in Redis; any number of processes and machines share it."""

    native_broker = "redis"  # its broker: runs on this Redis, started as they are fetched

    def __init__(
        self,
        url: str | redis.Redis,
        environment: str = "dev",
        *,
        prefix: str = "runlane",
        concurrency_limit: int | None = None,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ConfigurationError(f"Redis key prefix {prefix!r}: 1-64 letters, digits, - or _")
        self.environment = environment
        self.concurrency_limit = concurrency_limit
        self.retention: float | None = 30 * 86400.0  # seconds a finished run is kept
        self.key_prefix = prefix
        self.prefix = f"{prefix}:{{{environment}}}:"
        if isinstance(url, redis.Redis):
            self.client, self._owns = url, False
        else:
            self.client = redis.Redis.from_url(url, decode_responses=True)
            self._owns = True
        self._lane = ScriptLane(
            self.client,
            {name: self.client.register_script(text) for name, text in SCRIPTS.items()},
            self.client.register_script(PROGRAM),
            decode=True,
            library=LIBRARY,
            # a second start of a run whose first start was written starts nothing: the
            # attempt the first started would wait for the reaper; its caller recovers it
            # (the native broker's reclaim) or leaves it to the reaper (an adapter's start)
            not_resent=frozenset({"start_attempt", "fetch_start"}),
        )
        # where this store's client connects (None for a cluster): what a broker's messages
        # must share for the store to write them (message_writer)
        self._server = server_of_client(self.client)
        # the key prefix of the native Redis broker paired with this store (set by the broker,
        # configure(broker="redis")): admission pushes runs onto its lists in the same
        # transition, and its fetch starts the attempts at once
        self.direct: str | None = None

    @classmethod
    def from_url(
        cls, url: str, environment: str = "dev", *, concurrency_limit: int | None = None
    ) -> RedisStore:
        """``redis://host:6379/0``; ``?prefix=name`` sets the key prefix (default runlane),
        so several runlane deployments (or test runs) can share one Redis."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = "runlane"
        rest = []
        for name, value in query:
            if name == "prefix":
                if not _PREFIX.fullmatch(value):
                    raise ConfigurationError(
                        f"Redis key prefix {value!r}: 1-64 letters, digits, - or _"
                    )
                prefix = value
            else:
                rest.append((name, value))
        clean = urlunsplit(parts._replace(query=urlencode(rest)))
        return cls(clean, environment, prefix=prefix, concurrency_limit=concurrency_limit)

    def close(self) -> None:
        self._lane.close()
        if self._owns:
            self.client.close()

    def _k(self, name: str) -> str:
        return self.prefix + name

    @property
    def dispatches_itself(self) -> bool:
        """True when admitted runs go straight onto the native broker's lists (no outbox)."""
        return self.direct is not None

    def message_writer(self, broker: Broker) -> Callable[[Sequence[Dispatch]], Push | None] | None:
        """Celery's or Dramatiq's messages on this store's own Redis server, reached with the
        same credentials (any database), are written in the store's transitions. Not with
        Redis Cluster, whose scripts reach only their own slot."""
        return message_writer(broker, self._server)

    def _call(
        self,
        command: str,
        ready: list[Dispatch] | None = None,
        push: Push | None = None,
        **args: Any,
    ) -> Any:
        """Run one command. ``ready``: the caller sends what the transition admitted, which
        comes back in the same reply and is appended to it (unless the store pushes admitted
        runs onto its native broker itself). ``push``: the messages of runs the transition
        may admit, which it writes itself (their ids come back in ``push.done``)."""
        # left out when unset: the script reads an absent field as unset
        if self.concurrency_limit is not None:
            args.setdefault("env_limit", self.concurrency_limit)
        if self.retention is not None and command not in _NO_RETENTION:
            args.setdefault("retention", self.retention)
        if self.direct is not None:
            args["direct"] = self.direct
        take = ready if self.direct is None else None
        if take is not None:
            args["take"] = True
            if push is not None and push.messages:
                args["push"] = push.messages  # by run id, the commands that deliver it
                if self._server is None or push.target != self._server.db:
                    args["push_db"] = push.target
        return self._reply(self._lane(self.prefix, command, _dumps(args)), take, push)

    def _call_plain(self, command: str, args: list[str], take: list[Dispatch] | None) -> Any:
        """Run one of the hot commands, which take plain string arguments (their parsers
        in commands/: "" is unset, and trailing unset ones are left out). ``take`` as
        ``ready`` in ``_call``, when the call's arguments ask for it."""
        while args[-1] == "":
            args.pop()
        return self._reply(self._lane(self.prefix, command, *args), take, None)

    def _reply(self, raw: Any, take: list[Dispatch] | None, push: Push | None) -> Any:
        """A command's decoded reply, what it admitted for the caller to send (TAKE)
        appended to ``take``."""
        if take is not None and isinstance(raw, list):
            raw, taken, pushed, failed = raw
            take.extend(Dispatch(*row) for row in _loads(taken))
            if push is not None and pushed != "[]":
                push.done.extend(json.loads(pushed))
            if push is not None and failed != "[]":  # admitted, but not written: sent
                take.extend(push.dispatches[run_id] for run_id in json.loads(failed))
        return _loads(raw)

    # ------------------------------------------------------------------ creation
    @_translate
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
        payloads = []
        for new in runs:
            # shallow (asdict deep-copies): every value is JSON-ready; fields left unset are
            # left out (less for the script to decode; it reads them as absent)
            d = {k: v for k, v in vars(new).items() if v is not None}
            d["task"] = d.pop("task_identifier")
            d["status"] = new.status.value
            d["created_at"] = _num(new.created_at)  # stored as it is (see _num), as now
            d.pop("trace_context", None)
            if new.trace_context:  # JSON text; none, or empty, is left out
                d["trace_context"] = json.dumps(new.trace_context)
            payloads.append(d)
        out = self._call(
            "create_runs",
            ready,
            push,
            runs=payloads,
            now=_num(now),
            batch_id=batch_id,
            parent_id=parent_id,
            wait=asdict(wait) if wait else None,
            token=token,
            fires=[asdict(f) for f in fires] if fires is not None else None,
        )
        if isinstance(out, dict):  # schedules' ticks: those fired already were skipped
            skipped = set(out["skipped"])
            return [
                Created(n.id, False, n.status, n.queue, n.task_identifier)
                for position, n in enumerate(runs, 1)
                if position not in skipped
            ]
        # the runs created are as given; the reply lists those an idempotency key answered
        # with an existing run: [position (from 1), run id, its status, its queue]
        result = [Created(n.id, False, n.status, n.queue, n.task_identifier) for n in runs]
        if out:
            by_id = {n.id: n.task_identifier for n in runs}
            for position, run_id, status, queue in out:
                new = runs[position - 1]
                result[position - 1] = Created(
                    run_id, True, RunStatus(status), queue, by_id.get(run_id, new.task_identifier)
                )
        return result

    # ------------------------------------------------------------------ transitions
    @_translate
    def transition(
        self,
        run_id: str,
        *,
        expect: Collection[RunStatus],
        to: RunStatus,
        now: float,
        changes: dict[str, Any] | None = None,
        error: TaskRunError | None = None,
    ) -> Run | None:
        changes = dict(changes or {})
        if error is not None:
            changes["error"] = error.model_dump_json()
        done = self._call(
            "transition",
            run_id=run_id,
            expect=[s.value for s in expect],
            to=to.value,
            now=now,
            changes=changes,
        )
        return self.get_run(run_id) if done else None

    @_translate
    def promote_due(self, *, now: float, limit: int) -> int:
        return int(self._call("promote_due", now=now, limit=limit))

    @_translate
    def expire_runs(self, *, now: float, limit: int) -> list[str]:
        return as_list(self._call("expire_runs", now=now, limit=limit))

    @_translate
    def register_tasks(self, tasks: Sequence[RegisteredTask], *, now: float) -> None:
        if tasks:
            self._call(
                "register_tasks",
                now=now,
                tasks=[
                    {
                        "id": t.id,
                        "queue": t.queue,
                        "limit": t.concurrency_limit,
                        "total": t.total_limit,
                    }
                    for t in tasks
                ],
            )

    @_translate
    def start_attempt(
        self,
        run_id: str,
        *,
        worker_id: str,
        now: float,
        known_tasks: Collection[str],
        lease_until: float | None = None,
        default_max_attempts: int = 1,
    ) -> StartedAttempt | None:
        got = self._call_plain(
            "start_attempt",
            [
                _num(now),  # stored as it is: the text the script would write
                run_id,
                worker_id,
                "" if lease_until is None else _num(lease_until),
                repr(default_max_attempts),
                ids.attempt_id(),
                *known_tasks,
            ],
            None,
        )
        if got is None:
            return None
        started, h, md = got
        return self._started(started, h, md, worker_id)

    def _started(
        self, got: dict[str, Any], h: dict[str, str], md: str | None, worker_id: str
    ) -> StartedAttempt:
        """A StartedAttempt from what a start returned and the run's hash (``worker_id``: the
        attempt's worker)."""
        payload = h.get("payload")
        if h.get("payload_blob"):
            payload = self.client.get(self._k(f"blob:{h['id']}:payload"))
        trace = h.get("trace_context")
        max_attempts = h.get("max_attempts")
        md = current_metadata(h, md)
        brief = RunBrief(
            h["id"],
            _loads(payload),
            _loads(h.get("tags")) or [],
            _loads(md) or {},
            int(float(max_attempts)) if max_attempts else None,
        )
        return StartedAttempt(
            brief,
            lambda: to_run(h, self.environment, md, None, payload, None),
            got["attempt_id"],
            int(got["number"]),
            float(got["started_at"]),
            json.loads(trace) if trace else None,
            got.get("max_duration"),
            resumed=bool(got["resumed"]),
            used_ms=int(got["used_ms"] or 0),
            worker_id=worker_id,
            machine=got["machine"],
        )

    @_translate
    def fetch_start(
        self,
        *,
        worker_id: str,
        tasks: Sequence[str],
        queues: Collection[str] | None,
        max_count: int,
        heartbeat_ms: int,
        lease_until: float,
        default_max_attempts: dict[str, int],
        now: float,
    ) -> tuple[list[tuple[str, StartedAttempt]], bool]:
        """The native broker's fetch and ``start_attempt`` in one call (fetch_start.lua):
        the deliveries it started, and whether it stopped with deliveries possibly left."""
        out, more = self._call(
            "fetch_start",
            worker_id=worker_id,
            tasks=list(tasks),
            queues=sorted(queues) if queues is not None else None,
            max=max_count,
            heartbeat_ms=heartbeat_ms,
            lease_until=lease_until,
            defaults=default_max_attempts,
            attempt_ids=[ids.attempt_id() for _ in range(max_count + 2)],
            now=now,
        )
        started = [(msg, self._started(got, h, md, worker_id)) for msg, got, h, md in out]
        return started, bool(more)

    @_translate
    def adopt(self, run_id: str, worker_id: str) -> StartedAttempt | None:
        """The attempt a fetch started for this worker but whose reply was lost, if it is still
        this worker's to run (EXECUTING here, the attempt not ended); else None."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._k(f"run:{run_id}"))
        pipe.get(self._k(f"md:{run_id}"))
        h, md = pipe.execute()
        if not h or h.get("status") != "EXECUTING" or h.get("worker_id") != worker_id:
            return None
        number = h.get("attempt_count", "0")
        raw = self.client.hget(self._k(f"att:{run_id}"), number)
        at = json.loads(raw) if raw else {}
        if at.get("status") != "EXECUTING" or at.get("worker_id") != worker_id:
            return None
        resumed = self.client.hlen(self._k(f"wp:{run_id}:{number}")) > 0
        md_value = h.get("max_duration")
        got = {
            "attempt_id": at["id"],
            "number": number,
            "started_at": at["started_at"],
            "resumed": resumed,
            "used_ms": at.get("duration_ms") or 0,
            "max_duration": int(float(md_value)) if md_value not in (None, "") else None,
            "machine": at.get("machine"),
        }
        return self._started(got, h, md, worker_id)

    def _apply_metadata(
        self,
        run_id: str,
        ops: Sequence[dict[str, Any]],
        limit: int | None,
        once: str | None = None,
    ) -> dict[str, Any] | None:
        """Apply ``ops`` to the run's metadata. ``once``: names these ops (an attempt's last
        ones, sent with the transition that ends it): tried again after a lost reply, they
        are not applied twice."""
        # md:<id> holds the document once updated; until then the run's seed_metadata does,
        # and the first update creates md:<id> (saying so in the run's hash, so that a start
        # reads it): only that one, and one with ``once``, watches the run's hash too (a
        # purge deletes both; later updates are not retried for every change of the run)
        key, run_key = self._k(f"md:{run_id}"), self._k(f"run:{run_id}")
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    if once is not None:
                        pipe.watch(run_key)
                        if pipe.hget(run_key, "md_once") == once:
                            pipe.unwatch()
                            return None  # applied by an earlier try
                    raw = pipe.get(key)
                    first = raw is None
                    if first:
                        pipe.watch(run_key)
                        raw = pipe.hget(run_key, "seed_metadata")
                        if raw is None:
                            pipe.unwatch()
                            return None
                    md = apply_ops(json.loads(raw), ops)
                    if limit is not None:
                        check_size(md, limit)
                    pipe.multi()
                    pipe.set(key, jsonvalue.dumps(md))
                    if first:
                        pipe.hset(run_key, "md_set", "1")
                    if once is not None:
                        pipe.hset(run_key, "md_once", once)
                    pipe.execute()
                    return md
                except redis.exceptions.WatchError:
                    continue

    @_translate
    def finish_attempt(
        self,
        run_id: str,
        attempt_number: int,
        outcome: AttemptOutcome,
        *,
        now: float,
        ack: str | None = None,
        ready: list[Dispatch] | None = None,
        started: StartedAttempt | None = None,
    ) -> bool:
        if outcome.metadata_ops:
            self._apply_metadata(run_id, outcome.metadata_ops, None, f"end:{attempt_number}")
        error = outcome.error.model_dump_json() if outcome.error is not None else ""
        record = used_ms = ""
        if (
            started is not None
            and started.worker_id is not None
            and started.attempt_number == attempt_number
            and started.run_id == run_id
        ):
            # the attempt's final record up to its duration, which the script appends: what
            # the script would make of the record this attempt's start wrote (which a run
            # EXECUTING this attempt still has): its times as cjson writes numbers ("%.14g"),
            # the error as given. An attempt id is runlane's own (nothing to escape)
            record = (
                f'{{"id":"{started.attempt_id}","number":{attempt_number},'
                f'"status":"{outcome.attempt_status}",'
                f'"started_at":{started.started_at:.14g},"finished_at":{now:.14g},'
                f'"worker_id":{_text(started.worker_id)},"machine":{_text(started.machine)},'
                f'"error":{error or "null"},"duration_ms":'
            )
            used_ms = repr(started.used_ms)
        take = ready if self.direct is None else None
        limit, retention = self.concurrency_limit, self.retention
        done = self._call_plain(
            "finish_attempt",
            [
                _num(now),
                "" if take is None else "1",
                "" if retention is None else _num(now + retention),  # kept until then
                run_id,
                repr(attempt_number),
                outcome.attempt_status,
                outcome.run_status.value,
                "" if outcome.output is None else outcome.output,
                "" if outcome.attempt_ms is None else repr(outcome.attempt_ms),
                record,
                used_ms,
                error,
                "" if outcome.retry_at is None else _num(outcome.retry_at),
                outcome.machine or "",
                ack or "",
                "" if limit is None else repr(limit),
                self.direct or "",
            ],
            take,
        )
        return done == 1

    @_translate
    def queued_run_ids(self, *, older_than: float, limit: int) -> list[Dispatch]:
        ids_ = self.client.zrange(self._k("ix:st:QUEUED"), 0, 9999)
        pipe = self.client.pipeline(transaction=False)
        for rid in ids_:
            pipe.hmget(self._k(f"run:{rid}"), "admitted", "updated_at", "task", "queue", "machine")
        out = []
        for rid, (admitted, updated, task, queue, machine) in zip(
            ids_, pipe.execute(), strict=True
        ):
            if admitted == "1" and updated is not None and float(updated) < older_than:
                out.append(Dispatch(rid, task, queue, machine))
                if len(out) >= limit:
                    break
        return out

    # ------------------------------------------------------------------ metadata, tags, logs
    @_translate
    def update_metadata(
        self, run_id: str, ops: Sequence[dict[str, Any]], *, now: float, limit: int
    ) -> dict[str, Any] | None:
        md = self._apply_metadata(run_id, ops, limit)
        if md is not None:
            self._call("touch", run_id=run_id, now=now)
        return md

    @_translate
    def add_tags(self, run_id: str, tags: Sequence[str], *, now: float, max_tags: int) -> list[str]:
        got = self._call("add_tags", run_id=run_id, tags=list(tags), max=max_tags, now=now)
        return as_list(got)

    @_translate
    def append_logs(self, run_id: str, entries: Sequence[dict[str, Any]]) -> None:
        if not entries:
            return
        last = int(self.client.incrby(self._k("n:logseq"), len(entries)))
        first = last - len(entries) + 1
        self.client.rpush(
            self._k(f"logs:{run_id}"),
            *[jsonvalue.dumps({**e, "seq": first + i}) for i, e in enumerate(entries)],
        )

    @_translate
    def get_logs(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[LogEntry]:
        raw = self.client.lrange(self._k(f"logs:{run_id}"), 0, -1)
        entries = sorted((json.loads(r) for r in raw), key=lambda e: e["seq"])
        out = []
        for e in entries:
            if e["seq"] <= after:
                continue
            out.append(
                LogEntry(
                    seq=e["seq"],
                    run_id=e["run_id"],
                    attempt=e["attempt"],
                    time=to_datetime(e["time"]),
                    level=e["level"],
                    kind=e["kind"],
                    message=e["message"],
                    attributes=e["attributes"],
                    duration_ms=e.get("duration_ms"),
                )
            )
            if len(out) >= limit:
                break
        return out

    # ------------------------------------------------------------------ leader election
    @_translate
    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool:
        return bool(
            self._call(
                "acquire_lease", name=name, owner=owner, ttl_ms=max(1, int(ttl * 1000)), now=now
            )
        )

    @_translate
    def release_lease(self, name: str, owner: str) -> None:
        self._call("release_lease", name=name, owner=owner, now=0)

    # ------------------------------------------------------------------ durable waits
    @_translate
    def create_waitpoint(self, wait: WaitSpec, *, now: float) -> Waitpoint:
        self._call("create_waitpoint", wait=asdict(wait), now=now)
        found = self.waitpoints(wait.run_id, wait.attempt)
        return next(w for w in found if w.index == wait.index)

    @_translate
    def waitpoints(self, run_id: str, attempt: int) -> list[Waitpoint]:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._k(f"wp:{run_id}:{attempt}"))
        pipe.hgetall(self._k(f"wpr:{run_id}:{attempt}"))
        raw, resolved = pipe.execute()
        return sorted(
            (waitpoint_of(i, r, i in resolved) for i, r in raw.items()), key=lambda w: w.index
        )

    @_translate
    def waitpoint_resolved(self, run_id: str, attempt: int, index: int, *, now: float) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self._k(f"wp:{run_id}:{attempt}"), str(index))
        pipe.hexists(self._k(f"wpr:{run_id}:{attempt}"), str(index))
        raw, resolved = pipe.execute()
        if raw is None:
            return False
        w = waitpoint_of(str(index), raw, bool(resolved))
        return w.resolved or (w.kind == "time" and w.resume_at is not None and w.resume_at <= now)

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
        ack: str | None = None,
        ready: list[Dispatch] | None = None,
    ) -> RunStatus | None:
        if metadata_ops:
            self._apply_metadata(run_id, metadata_ops, None, f"wait:{attempt}:{index}")
        got = self._call(
            "suspend",
            ready,
            run_id=run_id,
            attempt=attempt,
            index=index,
            now=now,
            attempt_ms=attempt_ms,
            ack=ack,
        )
        return None if got is None else RunStatus(got)

    @_translate
    def take_ready(self, *, limit: int) -> list[Dispatch]:
        return [Dispatch(*row) for row in as_list(self._call("take_ready", limit=limit, now=0))]

    @_translate
    def cancel(self, run_id: str, *, now: float, error: TaskRunError) -> Run | None:
        got = self._call("cancel", run_id=run_id, now=now, error=error.model_dump_json())
        return None if got is None else self.get_run(run_id)

    # ------------------------------------------------------------------ leases
    @_translate
    def heartbeat(
        self, attempts: dict[str, int], *, worker_id: str, lease_until: float, now: float
    ) -> set[str]:
        if not attempts:
            return set()
        return set(
            as_list(self._call("heartbeat", attempts=attempts, lease_until=lease_until, now=now))
        )

    @_translate
    def purge(self, *, now: float, limit: int) -> int:
        return int(self._call("purge", now=now, limit=limit))

    @_translate
    def release_canceled(
        self, run_id: str, attempt: int, *, now: float, ready: list[Dispatch] | None = None
    ) -> None:
        self._call("release_canceled", ready, run_id=run_id, attempt=attempt, now=now)

    @_translate
    def reap(self, *, now: float, limit: int, handed_back_by: str | None = None) -> list[str]:
        if handed_back_by is None:
            return as_list(self._call("reap", now=now, limit=limit))
        return as_list(self._call("reap", now=now, limit=limit, handed_back_by=handed_back_by))

    # ------------------------------------------------------------------ queues
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
        return bool(
            self._call(
                "set_paused",
                queue=queue,
                key=concurrency_key,
                paused=paused,
                now=now,
                **{"until": until},
            )
        )

    @_translate
    def queues(self, names: Sequence[str] | None = None) -> list[QueueInfo]:
        all_names = sorted(self.client.smembers(self._k("queues")))
        if names is not None:
            all_names = [n for n in all_names if n in set(names)]
        rr = self.client.zrange(self._k("rr"), 0, -1)
        paused_keys = self.client.smembers(self._k("pausedkeys"))
        subqueues: dict[str, list[str]] = {}
        for m in set(rr) | set(paused_keys):
            q, ck = json.loads(m)
            subqueues.setdefault(q, []).append(ck)
        pipe = self.client.pipeline(transaction=False)
        for name in all_names:
            pipe.hgetall(self._k(f"queue:{_enc(name)}"))
            for ck in subqueues.get(name, []):
                pipe.zcard(self._k(f"sqw:{_enc(name)}:{_enc(ck)}"))
                pipe.hmget(self._k(f"sq:{_enc(name)}:{_enc(ck)}"), "paused", "until")
        res = iter(pipe.execute())
        out = []
        for name in all_names:
            h = next(res)
            queued, pk = 0, []
            for ck in subqueues.get(name, []):
                queued += next(res)
                p, until = next(res)
                if p == "1":
                    pk.append(
                        PausedKey(
                            concurrency_key=ck,
                            paused_until=to_datetime(float(until)) if until else None,
                        )
                    )
            out.append(
                QueueInfo(
                    name=name,
                    concurrency_limit=int(h["limit"]) if h.get("limit") else None,
                    total_concurrency_limit=int(h["total"]) if h.get("total") else None,
                    running=int(h.get("running") or 0),
                    queued=queued,
                    paused=h.get("paused") == "1",
                    paused_until=to_datetime(float(h["until"])) if h.get("until") else None,
                    paused_keys=sorted(pk, key=lambda p: p.concurrency_key),
                )
            )
        return out
