"""``runlane.Worker``: executes runs of this process's tasks and runs the engine loops.

Threads: ``concurrency`` executor threads pulling deliveries from the broker, and one engine
thread that (while it holds the store's "engine" lease, so one process at a time does it)
promotes delayed runs, expires TTLs and redelivers lost dispatches, and that flushes the
metadata of the attempts running here.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from runlane.core import ids, runtime
from runlane.core.context import ActiveRun
from runlane.core.executor import ActiveRuns, Executor, flush_active, timed_out_error
from runlane.core.interrupt import CANCEL, TIMEOUT
from runlane.core.models import AttemptStatus, RunStatus
from runlane.core.options import validate_queue_name
from runlane.core.task import Task
from runlane.core.types import AttemptOutcome, NativeBroker
from runlane.errors import ConfigurationError, InvalidOptionError

log = logging.getLogger("runlane.worker")

ENGINE_LEASE = "engine"
REDELIVER_EVERY = 30.0
STATUS_CHECK_EVERY = 0.5  # how often executing runs are checked for a cancel
INTERRUPT_GRACE = 2.0  # seconds an interrupted attempt gets before its slot is replaced


class Worker:
    def __init__(
        self,
        concurrency: int = 4,
        *,
        name: str | None = None,
        queues: Sequence[str] | None = None,
        runtime_: runtime.Runtime | None = None,
        fetch_timeout: float = 0.5,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidOptionError("concurrency", concurrency, "must be an integer >= 1")
        self.concurrency = concurrency
        self.queues = [validate_queue_name(q, "queues") for q in queues] if queues else None
        self.id = name or f"{socket.gethostname()}-{os.getpid()}-{ids.ulid()[-8:]}"
        self._rt = runtime_
        self.fetch_timeout = fetch_timeout
        self._stop = threading.Event()  # housekeeping ends
        self._draining = threading.Event()  # executors take no new runs
        self._housekeeper: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self.active = ActiveRuns()
        self._consumer: Any = None
        self._started = False
        self.is_leader = False
        self._abandoned: set[int] = set()
        self._last_renewal = time.time()

    @property
    def runtime(self) -> runtime.Runtime:
        return self._rt or runtime.get()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Worker:
        if self._started:
            return self
        rt = self.runtime
        self._rt = rt
        broker = rt.broker
        if not isinstance(broker, NativeBroker):
            raise ConfigurationError(
                f"{type(broker).__name__} delivers runs to its own workers (celery/dramatiq); "
                "runlane.Worker needs the 'local' or 'redis' broker"
            )
        self._stop.clear()
        self._draining.clear()
        self._consumer = broker.consumer(self.id, rt.registry.ids(), self.queues)
        rt.registry.on_add(self._on_task_added)
        rt.engine.register(rt.registry.all())
        self._housekeeper = self._spawn(self._housekeeping_loop, "runlane-engine")
        for i in range(self.concurrency):
            self._spawn(self._executor_loop, f"runlane-exec-{i}")
        self._started = True
        return self

    def _spawn(self, target: Any, name: str) -> threading.Thread:
        t = threading.Thread(target=target, name=f"{name}-{self.id}", daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def stop(self, timeout: float = 30.0) -> None:
        if not self._started:
            return
        rt = self.runtime
        # 1. stop taking runs; let the running attempts finish while housekeeping still renews
        #    their leases and interrupts the ones canceled or out of time meanwhile
        self._draining.set()
        rt.registry.off_add(self._on_task_added)
        if self._consumer is not None:
            self._consumer.close()
        deadline = time.monotonic() + timeout
        executors = [t for t in self._threads if t is not self._housekeeper]
        for t in executors:
            if t.ident in self._abandoned:  # blocked in a call we already gave up on
                continue
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in executors if t.is_alive() and t.ident not in self._abandoned]
        if alive:
            log.warning("worker %s: threads still running after %.0fs: %s", self.id, timeout, alive)
        # 2. then the housekeeping loop
        self._stop.set()
        if self._housekeeper is not None:
            self._housekeeper.join(max(1.0, deadline - time.monotonic()))
        self._threads = []
        try:
            rt.store.release_lease(ENGINE_LEASE, self.id)
        except Exception:
            log.exception("could not release the engine lease")
        self._started = False

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _all_busy(self) -> bool:
        return len(self.active) >= self.concurrency

    def _on_task_added(self, task: Task[Any]) -> None:
        rt = self.runtime
        if self._consumer is not None:
            self._consumer.task_ids = rt.registry.ids()
        rt.engine.register([task])

    # ------------------------------------------------------------------ loops
    def _executor_loop(self) -> None:
        rt = self.runtime
        executor = Executor(rt, self.id, self.active, busy=self._all_busy)
        me = threading.get_ident()
        while not self._draining.is_set() and me not in self._abandoned:
            try:
                deliveries = self._consumer.fetch(1, self.fetch_timeout)
            except Exception:
                log.exception("fetch failed; retrying")
                self._draining.wait(1.0)
                continue
            for delivery in deliveries:
                try:
                    executor.execute(delivery.dispatch)
                except Exception:
                    log.exception(
                        "executing run %s failed; it will be delivered again",
                        delivery.dispatch.run_id,
                    )
                    try:  # give it back now, not when its claim lapses
                        self._consumer.nack(delivery)
                    except Exception:
                        log.exception("could not give back run %s", delivery.dispatch.run_id)
                    self._draining.wait(1.0)  # the store may be down: do not spin
                    continue
                try:
                    self._consumer.ack(delivery)
                except Exception:
                    log.exception("ack of run %s failed", delivery.dispatch.run_id)
        self._abandoned.discard(me)

    def _housekeeping_loop(self) -> None:
        """Engine ticks (as leader), metadata/log flushes, and attempt supervision."""
        rt = self.runtime
        interval = rt.settings.engine_interval
        lease_ttl = max(5.0, interval * 20)
        last_redeliver = time.monotonic()
        last_flush = last_status = 0.0
        failures = 0
        while not self._stop.is_set():
            try:
                self.is_leader = rt.store.acquire_lease(
                    ENGINE_LEASE, self.id, ttl=lease_ttl, now=rt.now()
                )
                if self.is_leader:
                    redeliver = time.monotonic() - last_redeliver >= REDELIVER_EVERY
                    if redeliver:
                        last_redeliver = time.monotonic()
                    rt.engine.tick(redeliver=redeliver)
                failures = 0
            except Exception:  # the store is unreachable: back off, and say so once
                failures += 1
                if failures == 1:
                    log.exception("engine tick failed; retrying with backoff")
                else:
                    log.debug("engine tick failed again (%d in a row)", failures, exc_info=True)
            check_status = time.monotonic() - last_status >= STATUS_CHECK_EVERY
            if check_status:
                last_status = time.monotonic()
            try:
                self._supervise(check_status)
            except Exception:
                log.exception("supervising attempts failed")
            if time.monotonic() - last_flush >= rt.settings.metadata_flush_interval:
                last_flush = time.monotonic()
                for active in self.active.snapshot():
                    try:
                        flush_active(rt, active)
                    except Exception:
                        log.exception("flush of run %s failed", active.run_id)
            self._stop.wait(interval if failures == 0 else min(5.0, interval * 2**failures))

    def _supervise(self, check_status: bool) -> None:
        """Interrupt attempts past their max duration or canceled; free the slot of an attempt
        stuck in a blocking call after ``INTERRUPT_GRACE`` seconds."""
        rt = self.runtime
        actives = [a for a in self.active.snapshot() if a.control is not None]
        if not actives:
            self._last_renewal = time.time()
            return
        now = time.monotonic()
        for active in actives:
            control = active.control
            assert control is not None
            if control.past_deadline(now):
                control.interrupt(TIMEOUT)
        if check_status:  # canceled, or taken from this worker (lease lost): stop it
            statuses = rt.store.statuses([a.run_id for a in actives])
            for active in actives:
                status, attempt = statuses.get(active.run_id, (None, None))
                if status is not None and (
                    status is not RunStatus.EXECUTING or attempt != active.ctx.attempt.number
                ):
                    assert active.control is not None
                    active.control.interrupt(CANCEL)
        self._renew_leases(actives)
        for active in actives:
            control = active.control
            assert control is not None
            stuck = (
                control.interrupted_at is not None
                and not control.finished.is_set()
                and now - control.interrupted_at >= INTERRUPT_GRACE
                and control.thread_id not in self._abandoned
            )
            if stuck:
                self._abandon(active)

    def _renew_leases(self, actives: list[ActiveRun]) -> None:
        """Heartbeat: renew the leases of the attempts running here. A worker that cannot renew
        for most of the lease stops its attempts itself (fencing), before the leader reaps."""
        rt = self.runtime
        timeout = rt.settings.lease_timeout
        now = time.time()
        if now - self._last_renewal < timeout / 6:
            return
        try:
            lost = rt.store.heartbeat(
                {a.run_id: a.ctx.attempt.number for a in actives},
                worker_id=self.id,
                lease_until=now + timeout,
                now=now,
            )
        except Exception:
            log.exception("lease renewal failed")
            if now - self._last_renewal > timeout * 0.8:
                for active in actives:
                    assert active.control is not None
                    active.control.interrupt(CANCEL)
            return
        self._last_renewal = now
        for active in actives:
            if active.run_id in lost:
                assert active.control is not None
                active.control.interrupt(CANCEL)

    def _abandon(self, active: ActiveRun) -> None:
        """The attempt does not return from a blocking call: end the run now and give its
        slot to a new executor thread. The old thread stops when the call returns."""
        rt = self.runtime
        control = active.control
        assert control is not None
        self._abandoned.add(control.thread_id)
        if control.reason == TIMEOUT:
            rt.store.finish_attempt(
                active.run_id,
                active.ctx.attempt.number,
                AttemptOutcome(
                    attempt_status=AttemptStatus.TIMED_OUT.value,
                    run_status=RunStatus.TIMED_OUT,
                    error=timed_out_error(active.ctx.run.max_duration),
                    metadata_ops=active.metadata.take_pending(),
                ),
                now=rt.now(),
            )
        else:  # canceled: stop waiting for the blocked call, give its slots back
            rt.store.release_canceled(active.run_id, active.ctx.attempt.number, now=rt.now())
        rt.engine.send_ready()
        log.warning(
            "run %s is blocked after being interrupted (%s); its slot goes to a new thread",
            active.run_id,
            control.reason,
        )
        if not self._draining.is_set():
            self._spawn(self._executor_loop, "runlane-exec")
