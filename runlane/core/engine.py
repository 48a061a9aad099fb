"""The engine: trigger (validation → one store transaction → dispatch), sending admitted runs
to the broker, and the loops that move time-driven runs (delayed promotion, TTL expiry,
redelivery). The management verbs (retrieve, cancel, replay, ...) are in ``operations``.

Every state change goes through one guarded store verb; the broker only ever carries
``Dispatch(run_id)`` for runs that are QUEUED.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runlane.core import context, deferral, ids, jsonvalue, keys, schedules, signals, tracing
from runlane.core.handles import BatchHandle, RunHandle
from runlane.core.metadata import check_size, make_op
from runlane.core.models import Run, RunStatus
from runlane.core.options import (
    UNSET,
    TriggerOptions,
    check_items,
    parse_trigger_options,
    validate_task_id,
)
from runlane.core.registry import default_queue_name
from runlane.core.storecalls import retrying
from runlane.core.types import (
    TAKE_LIMIT,
    Created,
    Dispatch,
    NewRun,
    Push,
    RegisteredTask,
    ScheduleFire,
    Waitpoint,
    WaitSpec,
)
from runlane.core.waits import await_waitpoint, fingerprint, payload_digest
from runlane.errors import InvalidOptionError, LimitExceededError

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime
    from runlane.core.task import Task

log = logging.getLogger("runlane.engine")
PURGE_EVERY = 60.0  # seconds between passes that delete runs past their retention
REDELIVER_LIMIT = 1000  # runs a redelivery pass looks at (the oldest)


class _Sending:
    """``with engine.sending() as ready``: collects the runs a transition admitted and sends
    them once the block ends without an error (a plain class rather than a generator-based
    context manager: it runs on every transition)."""

    __slots__ = ("engine", "ready")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready: list[Dispatch] = []

    def __enter__(self) -> list[Dispatch]:
        return self.ready

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is None:
            self.engine.send(self.ready)


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._registered: set[str] = set()
        self._last_purge = 0.0
        # runs sent again by redeliver(): run id -> (times, when next)
        self._resent: dict[str, tuple[int, float]] = {}
        # (broker, store) → what prepares the broker's messages, when the store writes them
        self._writer_pair: tuple[Any, Any] | None = None
        self._writer: Callable[[Sequence[Dispatch]], Push | None] | None = None
        # what orders this process's declarative schedules against other workers' (its code's
        # version, then when it started)
        self._generation = schedules.generation(runtime.settings.version, time.time())

    # ------------------------------------------------------------------ trigger
    def _prepare(
        self,
        task_id: str,
        payload: Any,
        raw_options: Mapping[str, Any] | None,
        task: Task[Any] | None,
        now: float,
        known: Mapping[str, RegisteredTask],
        batch_id: str | None,
    ) -> tuple[NewRun, int]:
        settings = self.rt.settings
        limits = settings.limits  # (task_id: checked by the callers)
        opts: TriggerOptions = parse_trigger_options(raw_options, now, limits)
        if task is not None and task.parse_payload is not None:
            task.parse_payload(payload)  # schema tasks validate before anything is written
        # a trigger by id does not validate, but still learns the task's queue and machine
        task = task or self.rt.registry.get(task_id)
        payload_text = jsonvalue.encode(payload, "payload", limits.payload_bytes)
        metadata_text = "{}"
        if opts.metadata is not None:
            md = jsonvalue.to_json_value(opts.metadata, "metadata")
            make_op("replace", value=md)  # rejects forbidden keys
            check_size(md, limits.metadata_bytes)
            metadata_text = jsonvalue.dumps(md)

        if opts.delay_until is not None and opts.delay_until > now:
            status = RunStatus.DELAYED
        elif task is not None or task_id in known:
            status = RunStatus.QUEUED
        else:
            status = RunStatus.WAITING_FOR_DEPLOY

        if opts.queue is not None and opts.queue.name:
            queue = opts.queue.name
        elif task is not None:
            queue = task.queue_name
        elif task_id in known:
            queue = known[task_id].queue
        else:
            queue = default_queue_name(task_id)

        if opts.ttl_given:
            ttl = opts.ttl or None
        elif settings.environment == "dev" and limits.dev_default_ttl_seconds:
            ttl = float(limits.dev_default_ttl_seconds)
        else:
            ttl = None

        idem_expires = None
        if opts.idempotency_key is not None:
            idem_expires = now + (opts.idempotency_key_ttl or limits.idempotency_key_ttl_seconds)

        parent = context.current()
        parent_id = root_id = None
        depth = 0
        if parent is not None:
            parent_id = parent.ctx.run.id
            root_id = parent.ctx.run.root_id or parent.ctx.run.id
            depth = parent.ctx.run.depth + 1

        # stored: seconds, 0 for "no limit" (timeout.NONE), None to decide at execution
        if opts.max_duration_given:
            max_duration: int | None = opts.max_duration or 0
        elif task is not None and task.max_duration is not UNSET:
            max_duration = task.max_duration or 0
        else:
            max_duration = None
        new = NewRun(
            id=ids.run_id(),
            task_identifier=task_id,
            status=status,
            payload=payload_text,
            created_at=now,
            queue=queue,
            metadata=metadata_text,
            tags=opts.tags,
            idempotency_key=opts.idempotency_key,
            idempotency_key_expires_at=idem_expires,
            ttl=ttl,
            delay_until=opts.delay_until if status is RunStatus.DELAYED else None,
            concurrency_key=opts.concurrency_key,
            max_attempts=opts.max_attempts,
            max_duration=max_duration,
            machine=opts.machine or (task.machine if task else None),
            version=opts.version,
            is_test=opts.is_test,
            batch_id=batch_id,
            parent_id=parent_id,
            root_id=root_id,
            depth=depth,
            trace_context=tracing.get().inject(),
        )
        new.queue_given = opts.queue is not None
        if opts.queue is not None and (
            opts.queue.concurrency_limit is not None
            or opts.queue.total_concurrency_limit is not None
        ):  # trigger-time queue options select the queue and set its limits
            new.queue_defined = True
            new.queue_limit = opts.queue.concurrency_limit
            new.queue_total_limit = opts.queue.total_concurrency_limit
        return new, len(payload_text.encode("utf-8"))

    def _known(self, task_ids: set[str]) -> dict[str, RegisteredTask]:
        """Tasks not defined in this process that the store knows (a worker registered)."""
        unknown = {t for t in task_ids if self.rt.registry.get(t) is None}
        if not unknown:
            return {}
        store = self.rt.store
        return retrying(
            lambda: store.known_tasks(unknown), "trigger", self.rt.settings.store_retry_timeout
        )

    def _register_local(self, news: Sequence[NewRun]) -> None:
        """A task defined in this process is registered in the store (with its queue's limits)
        before its first run is written, so admission knows the limits and its delayed runs
        are queued later rather than WAITING_FOR_DEPLOY. Called after validation."""
        if len(news) == 1 and news[0].task_identifier in self._registered:
            return  # a trigger of a task registered already (most)
        local = {self.rt.registry.get(n.task_identifier) for n in news}
        fresh = [t for t in local if t is not None and t.id not in self._registered]
        if fresh:
            self.register(fresh)

    def _create(
        self,
        news: list[NewRun],
        now: float,
        batch_id: str | None,
        parent_id: str | None,
        wait: WaitSpec | None = None,
        fires: Sequence[ScheduleFire] | None = None,
    ) -> list[Created]:
        """Create runs and send what the store admitted in the same transition (or, with a
        broker on the store's own Redis server, let that transition write their messages).
        ``fires``: the runs are schedules' ticks, one each (a tick fired already is skipped
        and left out of the result)."""
        push = self._push(news)
        store = self.rt.store
        token = ids.ulid()  # the same on every try: a retry never creates the runs twice
        with self.sending() as ready:
            created = retrying(
                lambda: store.create_runs(
                    news,
                    now=now,
                    batch_id=batch_id,
                    parent_id=parent_id,
                    wait=wait,
                    ready=ready,
                    push=push,
                    token=token,
                    fires=fires,
                ),
                "trigger",
                self.rt.settings.store_retry_timeout,
            )
        if signals.run_triggered.receivers:
            secret = self.rt.settings.secret_key
            handles = [
                RunHandle(
                    id=c.run_id,
                    task_identifier=c.task_identifier,
                    is_cached=c.cached,
                    public_access_token=keys.run_token(secret, c.run_id),
                )
                for c in created
            ]
            signals.send_triggered(handles, batch_id, context.current())
        return created

    def _push(self, news: Sequence[NewRun]) -> Push | None:
        """The messages of the new QUEUED runs, for the store to write as it admits them,
        when it can write its broker's messages (``Store.message_writer``)."""
        broker, store = self.rt.broker, self.rt.store
        if self._writer_pair is None or not (
            self._writer_pair[0] is broker and self._writer_pair[1] is store
        ):
            writer = None
            try:
                writer = store.message_writer(broker)
            except Exception:
                log.exception("cannot tell whether the store can write the broker's messages")
            self._writer_pair, self._writer = (broker, store), writer
        if self._writer is None:
            return None
        queued = [
            Dispatch(n.id, n.task_identifier, n.queue, n.machine)
            for n in news
            if n.status is RunStatus.QUEUED
        ]
        return self._writer(queued) if queued else None

    def sending(self) -> _Sending:
        """``with engine.sending() as ready: store.<transition>(..., ready=ready)``: the runs
        the transition admitted are sent once it has been recorded (not if it raised)."""
        return _Sending(self)

    def send(self, dispatches: Sequence[Dispatch]) -> None:
        """Hand QUEUED runs to the broker. A failure here loses nothing: the runs stay QUEUED
        in the store and the redelivery loop sends them again."""
        if not dispatches:
            return
        try:
            self.rt.broker.send(dispatches)
        except Exception as exc:  # one line (an outage would log a traceback per trigger)
            log.warning(
                "broker send failed for %d run(s) (%s: %s); they are sent again later",
                len(dispatches),
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )

    def trigger(
        self,
        task_id: str,
        payload: Any,
        options: Mapping[str, Any] | None,
        task: Task[Any] | None = None,
    ) -> RunHandle:
        if task is None or task.id != task_id:  # a Task's own id was checked when defined
            validate_task_id(task_id, "task")
        options, deferrable = deferral.take_option(options)
        with tracing.get().span(f"trigger {task_id}", {"runlane.task": task_id}):
            now = self.rt.now()
            known = self._known({task_id})
            new, _ = self._prepare(task_id, payload, options, task, now, known, None)
            if deferrable and deferral.defer([new], lambda: self._create_later([new], None)):
                run_id, cached = new.id, False  # created later, with this id
            else:
                self._register_local([new])
                created, _, _ = self._create_recorded([new], now, None, "trigger")
                run_id, cached = created[0].run_id, created[0].cached
        return RunHandle(
            id=run_id,
            task_identifier=task_id,
            is_cached=cached,
            # with a secret key configured: a token that reads this run, for a browser
            public_access_token=keys.run_token(self.rt.settings.secret_key, run_id),
        )

    def _create_later(self, news: list[NewRun], batch_id: str | None) -> None:
        """A deferred trigger's creation (``core.deferral``): the runs, with the ids their
        handles carry, are created now."""
        self._register_local(news)
        kind = "trigger" if batch_id is None else "batch-trigger"
        self._create_recorded(news, self.rt.now(), batch_id, kind)

    def _create_recorded(
        self, news: list[NewRun], now: float, batch_id: str | None, kind: str
    ) -> tuple[list[Created], Waitpoint | None, int]:
        """Create runs. Inside a run the creation is also recorded in the attempt's replay log
        (as the next wait index, awaited or not by ``kind``), so a resumed attempt running the
        same code again gets the same runs back instead of triggering duplicates. Returns
        (created, the recorded entry when replaying, the index; -1 outside a run)."""
        active = context.current()
        if active is None or active.waits is None:
            parent = active.run_id if active else None
            return self._create(news, now, batch_id, parent), None, -1
        digest = fingerprint(kind, [payload_digest(n.task_identifier, n.payload) for n in news])
        index, recorded = active.waits.take(kind, digest)
        if recorded is not None:
            runs = {r.id: r for r in self.rt.store.get_runs(recorded.run_ids)}
            created = [
                Created(rid, True, runs[rid].status, runs[rid].queue, runs[rid].task_identifier)
                for rid in recorded.run_ids
                if rid in runs
            ]
            return created, recorded, index
        wait = WaitSpec(
            run_id=active.run_id,
            attempt=active.attempt_number,
            index=index,
            kind=kind,
            fingerprint=digest,
            batch_id=batch_id,
        )
        return self._create(news, now, batch_id, active.run_id, wait), None, index

    def _prepare_items(
        self,
        items: Sequence[tuple[str, Mapping[str, Any], Task[Any] | None]],
        option_name: str,
        now: float,
        batch_id: str | None,
    ) -> list[NewRun]:
        """Validate a batch (shape, count, each item, total size) and prepare its runs."""
        limits = self.rt.settings.limits
        check_items(items, option_name)
        for index, (task_id, _, _) in enumerate(items):
            validate_task_id(task_id, f"{option_name}[{index}].task")
        if not items:
            raise InvalidOptionError(option_name, items, "a batch needs at least one item")
        if len(items) > limits.batch_items:
            raise LimitExceededError(
                option_name,
                f"<{len(items)} items>",
                f"a batch can have at most {limits.batch_items} items, got {len(items)}",
            )
        known = self._known({t for t, _, _ in items})
        news: list[NewRun] = []
        total = 0
        for index, (task_id, item, task) in enumerate(items):
            if not isinstance(item, Mapping) or set(item) - {"payload", "options", "id"}:
                raise InvalidOptionError(
                    f"{option_name}[{index}]",
                    item,
                    'each item is a dict {"payload": ..., "options": {...}}',
                )
            try:
                new, size = self._prepare(
                    task_id, item.get("payload"), item.get("options"), task, now, known, batch_id
                )
            except InvalidOptionError as exc:
                raise type(exc)(
                    f"{option_name}[{index}].{exc.option}", exc.value, exc.reason
                ) from exc
            total += size
            news.append(new)
        if total > limits.batch_bytes:
            raise LimitExceededError(
                option_name,
                f"<{total} bytes>",
                f"the batch's payloads total {total} bytes, over the limit of {limits.batch_bytes}",
            )
        self._register_local(news)
        return news

    def batch_trigger(
        self,
        items: Sequence[tuple[str, Mapping[str, Any], Task[Any] | None]],
        *,
        option_name: str = "items",
    ) -> BatchHandle:
        """``items``: (task id, {"payload": ..., "options": {...}}, task or None)."""
        now = self.rt.now()
        batch_id = ids.batch_id()
        deferrable = True
        taken: list[tuple[str, Mapping[str, Any], Task[Any] | None]] = []
        # each item's on_commit (core.deferral): one False opts the whole batch out
        for index, (task_id, item, task) in enumerate(check_items(items, option_name)):
            if isinstance(item, Mapping) and isinstance(item.get("options"), Mapping):
                try:
                    rest, allowed = deferral.take_option(item["options"])
                except InvalidOptionError as exc:
                    raise type(exc)(
                        f"{option_name}[{index}].{exc.option}", exc.value, exc.reason
                    ) from exc
                deferrable = deferrable and allowed
                item = {**item, "options": rest}
            taken.append((task_id, item, task))
        news = self._prepare_items(taken, option_name, now, batch_id)
        if deferrable and deferral.defer(news, lambda: self._create_later(news, batch_id)):
            return BatchHandle(
                batch_id=batch_id,
                runs=[RunHandle(id=n.id, task_identifier=n.task_identifier) for n in news],
            )
        created, recorded, _ = self._create_recorded(news, now, batch_id, "batch-trigger")
        if recorded is not None:
            batch_id = recorded.batch_id or batch_id
        return BatchHandle(
            batch_id=batch_id,
            runs=[
                RunHandle(id=c.run_id, task_identifier=c.task_identifier, is_cached=c.cached)
                for c in created
            ],
        )

    # ------------------------------------------------------------------ durable waits
    def trigger_and_wait(
        self,
        items: Sequence[tuple[str, Mapping[str, Any], Task[Any] | None]],
        *,
        kind: str,
        what: str,
        option_name: str = "items",
    ) -> tuple[str | None, list[Run]]:
        """Trigger children and wait for all of them (durably). Returns (batch id, final runs
        in item order)."""
        active = context.require(what)
        assert active.waits is not None
        now = self.rt.now()
        batch_id = ids.batch_id() if kind == "batch" else None
        news = self._prepare_items(items, option_name, now, batch_id)
        with tracing.get().span(f"{what} {news[0].task_identifier}", {"runlane.wait": 0}):
            created, recorded, index = self._create_recorded(news, now, batch_id, kind)
        if recorded is not None:  # replaying: the children exist already
            run_ids, batch_id = recorded.run_ids, recorded.batch_id
            if not recorded.resolved:
                await_waitpoint(active, index)
        else:
            run_ids = [c.run_id for c in created]
            await_waitpoint(active, index)
        return batch_id, self.rt.store.get_runs(run_ids)

    def wait_until(self, when: float, what: str) -> None:
        """Wait (durably) until the timestamp ``when``."""
        active = context.require(what)
        assert active.waits is not None
        index, recorded = active.waits.take("time", fingerprint("time", []))
        if recorded is not None:
            if recorded.resolved:
                return
            resume_at = recorded.resume_at or when
        else:
            resume_at = when
            self.rt.store.create_waitpoint(
                WaitSpec(
                    run_id=active.run_id,
                    attempt=active.attempt_number,
                    index=index,
                    kind="time",
                    fingerprint=fingerprint("time", []),
                    resume_at=resume_at,
                ),
                now=self.rt.now(),
            )
        await_waitpoint(active, index, resume_at=resume_at)

    def send_ready(self, *, always: bool = False) -> None:
        """Send the runs the store admitted to the broker (its outbox). A store that pushes
        them onto its own broker as it admits them has none, except what an earlier
        configuration left (drained by the engine's tick: ``always``)."""
        if not always and self.rt.store.dispatches_itself:
            return
        while True:
            ready = self.rt.store.take_ready(limit=TAKE_LIMIT)
            self.send(ready)
            if len(ready) < TAKE_LIMIT:
                return

    # ------------------------------------------------------------------ loops
    def tick_due(self, now: float) -> int:
        moved = self.rt.store.promote_due(now=now, limit=1000)
        self.send_ready()
        return moved

    def tick(self, *, redeliver: bool = False, reap: bool = True) -> None:
        """One pass of the time-driven loops (the leader runs it every engine_interval):
        delayed runs, retries and time waits that are due; TTL expiry; dead workers' leases
        (unless ``reap`` is false)."""
        now = self.rt.now()
        self.rt.store.promote_due(now=now, limit=1000)
        expired = self.rt.store.expire_runs(now=now, limit=1000)
        if expired and signals.run_expired.receivers:
            signals.send_runs(signals.run_expired, self.rt.store.get_runs(expired))
        schedules.fire_due(self.rt, now)
        if reap:
            self.reap(time.time())  # leases use real time
        self.send_ready(always=True)
        if now - self._last_purge >= PURGE_EVERY:
            self._last_purge = now
            self.rt.store.purge(now=now, limit=1000)
        # a store that pushes admitted runs onto its native broker in the same transition
        # loses no dispatch (a dead worker's deliveries go back to their lists)
        if redeliver and not self.rt.store.dispatches_itself:
            self.redeliver(now)

    def reap(self, now: float) -> list[str]:
        """Retry or end CRASHED the runs whose worker's lease ran out before ``now``; a crash
        sends ``run_failed`` (leader side)."""
        reaped = self.rt.store.reap(now=now, limit=1000)
        if reaped and signals.run_failed.receivers:
            runs = self.rt.store.get_runs(reaped)
            signals.send_runs(
                signals.run_failed, [r for r in runs if r.status is RunStatus.CRASHED]
            )
        return reaped

    def redeliver(self, now: float) -> None:
        """Send again the runs sent to the broker a lease period ago or more that have not
        started: the worker that took them may have died before it started them (Celery and
        Dramatiq workers prefetch messages; a broker may lose one). A second message for a
        run is harmless (a start admits one attempt), but a long backlog is not multiplied:
        each run is sent again after 1, 2, 4, ... lease periods (at most an hour apart)."""
        period = self.rt.settings.lease_timeout
        stale = self.rt.store.queued_run_ids(older_than=now - period, limit=REDELIVER_LIMIT)
        resent: dict[str, tuple[int, float]] = {}
        due: list[Dispatch] = []
        for dispatch in stale:
            times, next_at = self._resent.get(dispatch.run_id, (0, now))
            if next_at <= now:
                due.append(dispatch)
                times += 1
                next_at = now + min(3600.0, period * 2**times)
            resent[dispatch.run_id] = (times, next_at)
        self._resent = resent  # runs that started since are forgotten
        if due:
            log.info("sending %d run(s) again: sent %.0f s ago, not started", len(due), period)
            self.send(due)

    def fire_schedules(self, ticks: Sequence[tuple[str, Any, str, ScheduleFire]]) -> int:
        """Create the runs of schedules' ticks — (task id, payload, run id derived from the
        schedule and the tick, the fire) each — in one store call that moves each schedule
        on, skipping a tick fired already. Returns the runs created."""
        now = self.rt.now()
        known = self._known({task_id for task_id, _, _, _ in ticks})
        news: list[NewRun] = []
        fires: list[ScheduleFire] = []
        for task_id, payload, run_id, fire in ticks:
            try:
                new, _ = self._prepare(task_id, payload, None, None, now, known, None)
            except InvalidOptionError as exc:  # this schedule's tick cannot be a run
                log.warning(
                    "schedule %s of task %r cannot fire: %s", fire.schedule_id, task_id, exc
                )
                continue
            new.id, new.schedule_id = run_id, fire.schedule_id
            news.append(new)
            fires.append(fire)
        if not news:
            return 0
        self._register_local(news)
        return len(self._create(news, now, None, None, fires=fires))

    def deploy(self, tasks: Sequence[Task[Any]]) -> None:
        """A worker's tasks: registered (``register``), and their declarative schedules
        written (added, changed, or removed from a task that no longer declares one)."""
        self.register(tasks)
        settings = self.rt.settings
        retrying(
            lambda: schedules.sync_declared(self.rt, tasks, self._generation),
            "sync schedules",
            settings.store_retry_timeout,
        )

    def register(self, tasks: Sequence[Task[Any]]) -> None:
        """Tell the store these tasks are deployed; queue their WAITING_FOR_DEPLOY runs."""
        registered = [
            RegisteredTask(
                t.id,
                t.queue_name,
                t.queue_spec.concurrency_limit,
                t.queue_spec.total_concurrency_limit,
            )
            for t in tasks
        ]
        store, now = self.rt.store, self.rt.now()
        retrying(  # the same tasks registered twice are registered once
            lambda: store.register_tasks(registered, now=now),
            "register tasks",
            self.rt.settings.store_retry_timeout,
        )
        self._registered.update(t.id for t in tasks)
        self.send_ready()
