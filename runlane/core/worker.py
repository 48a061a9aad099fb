"""``runlane.Worker``: executes runs of this process's tasks and runs the engine loops.

Threads: ``concurrency`` executor threads pulling deliveries from the broker, and the
housekeeping thread of a :class:`~runlane.core.host.Host` (engine ticks as leader, metadata
flushes, lease heartbeat, cancel and max-duration supervision).
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
from runlane.core.broker import NativeBroker
from runlane.core.context import ActiveRun
from runlane.core.executor import ActiveRuns, Executor
from runlane.core.host import INTERRUPT_GRACE, Host
from runlane.core.interrupt import CANCEL
from runlane.core.options import validate_queue_name
from runlane.core.storecalls import backoff, describe_wait
from runlane.core.task import Task
from runlane.core.types import Delivery, StartRequest
from runlane.errors import ConfigurationError, InvalidOptionError, StoreUnavailableError

log = logging.getLogger("runlane.worker")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{ids.ulid()[-8:]}"


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
        self.id = name or default_worker_id()
        self._rt = runtime_
        self.fetch_timeout = fetch_timeout
        self._draining = threading.Event()  # executors take no new runs
        self._forced = threading.Event()  # stop at once: hand back the runs in flight
        self._threads: list[threading.Thread] = []
        self.host = Host(self.id, runtime_, on_abandon=self._replace_thread, on_tick=self._beat)
        self._consumer: Any = None
        self._start_request: StartRequest | None = None
        self._started = False

    @property
    def runtime(self) -> runtime.Runtime:
        return self._rt or runtime.get()

    @property
    def active(self) -> ActiveRuns:
        return self.host.active

    @property
    def is_leader(self) -> bool:
        return self.host.is_leader

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Worker:
        if self._started:
            return self
        rt = self.runtime
        self._rt = rt
        self.host._rt = rt
        broker = rt.broker
        if not isinstance(broker, NativeBroker):
            raise ConfigurationError(
                f"{type(broker).__name__} delivers runs to its own workers (celery/dramatiq); "
                "runlane.Worker needs the 'local' or 'redis' broker"
            )
        self._draining.clear()
        self._forced.clear()
        self.active.handed_back.clear()
        self._start_request = None
        self._consumer = broker.consumer(self.id, rt.registry.ids(), self.queues)
        rt.registry.on_add(self._on_task_added)
        try:
            rt.engine.deploy(rt.registry.all())
        except BaseException:  # e.g. the store is unavailable: start() may be called again
            rt.registry.off_add(self._on_task_added)
            self._consumer.close()
            self._consumer = None
            raise
        self.host.start()
        for i in range(self.concurrency):
            self._spawn(f"runlane-exec-{i}")
        self._started = True
        return self

    def _spawn(self, name: str) -> threading.Thread:
        t = threading.Thread(target=self._executor_loop, name=f"{name}-{self.id}", daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def _replace_thread(self, thread_id: int) -> None:
        if not self._draining.is_set():
            self._spawn("runlane-exec")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully: no new runs; running attempts get ``timeout`` seconds to finish
        (``force_stop()`` ends that wait), then the ones left are handed back."""
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
        for t in self._threads:
            if t.ident in self.host.abandoned:  # blocked in a call we already gave up on
                continue
            while t.is_alive() and not self._forced.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                t.join(min(0.1, remaining))  # short joins: a force_stop() is seen at once
        # 2. attempts still running after the grace period (or a forced stop) are handed back
        left = [a for a in self.active.snapshot() if a.control is not None]
        if left:
            self._hand_back(left, None if self._forced.is_set() else timeout)
        gone = self.host.abandoned
        alive = [t.name for t in self._threads if t.is_alive() and t.ident not in gone]
        if alive:
            log.warning("worker %s: threads still running after %.0fs: %s", self.id, timeout, alive)
        # 3. then the housekeeping loop
        self.host.stop(max(1.0, deadline - time.monotonic()))
        self._threads = []
        self._started = False

    def force_stop(self) -> None:
        """Stop at once (Celery's cold shutdown; a second Ctrl-C on ``runlane worker``): a
        ``stop()`` in progress, or the next one, hands the running attempts back without
        waiting for them. Safe to call from a signal handler."""
        self._forced.set()

    def _hand_back(self, actives: list[ActiveRun], grace: float | None) -> None:
        """Stop the attempts that outlived the grace period (``grace``; None: a forced stop)
        and end their leases now, so each run is retried at once on another worker as a
        crashed attempt, recorded as handed back on shutdown, instead of after
        ``lease_timeout``. Their results are discarded."""
        rt = self.runtime
        self.active.handed_back.update(a.run_id for a in actives)
        for active in actives:
            assert active.control is not None
            active.control.interrupt(CANCEL)
        now = time.time()
        try:
            rt.store.heartbeat(
                {a.run_id: a.attempt_number for a in actives},
                worker_id=self.id,
                lease_until=now - 1.0,
                now=now,
            )
            rt.store.reap(now=time.time(), limit=len(actives) + 1000, handed_back_by=self.id)
            rt.engine.send_ready()
        except Exception:  # the leader's reaper recovers them when the leases lapse
            log.exception("could not hand back %d run(s)", len(actives))
            return
        why = "on a forced stop" if grace is None else f"still executing after {grace:.0f}s"
        log.warning(
            "worker %s: handed back %d run(s) %s: %s",
            self.id,
            len(actives),
            why,
            ", ".join(a.run_id for a in actives),
        )
        until = time.monotonic() + INTERRUPT_GRACE
        for t in self._threads:  # let the interrupted attempts unwind
            t.join(max(0.0, until - time.monotonic()))

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
        self._start_request = None
        rt.engine.deploy([task])

    def _beat(self) -> None:
        consumer = self._consumer
        if consumer is not None:
            consumer.heartbeat()

    # ------------------------------------------------------------------ loops
    def _executor_loop(self) -> None:
        executor = self.host.executor(busy=self._all_busy)
        me = threading.get_ident()
        fetch_failures = 0
        while not self._draining.is_set() and me not in self.host.abandoned:
            start = self._start_request
            if start is None:
                start = self._start_request = executor.start_request()
            try:
                deliveries = self._consumer.fetch(1, self.fetch_timeout, start)
                fetch_failures = 0
            except Exception as exc:
                fetch_failures += 1
                wait = backoff(fetch_failures, first=0.5, cap=5.0)
                _log_failure(exc, "fetch", f"retrying in {describe_wait(wait)}")
                self._draining.wait(wait)
                continue
            for delivery in deliveries:
                self._execute(executor, delivery)
        self.host.abandoned.discard(me)

    def _execute(self, executor: Executor, delivery: Delivery) -> None:
        """Execute one delivery, then ack it; a delivery whose attempt never started is given
        back (nack). One whose attempt started is never given back nor run again here, even
        when its end could not be recorded: its run then goes back to its queue when its
        lease lapses (the reaper), as if this worker had died."""
        run_id = delivery.dispatch.run_id
        try:
            executor.execute(delivery.dispatch, delivery)
        except Exception as exc:
            if delivery.started is None:
                _log_failure(exc, f"starting run {run_id}", "it is delivered again")
                try:  # now, not when its claim lapses
                    self._consumer.nack(delivery)
                except Exception as again:
                    _log_failure(again, f"giving back run {run_id}", "it is given back later")
                self._draining.wait(1.0)  # the store may be down: do not spin
                return
            _log_failure(
                exc,
                f"recording run {run_id}",
                "its result is lost; the run is retried when its lease lapses",
            )
        try:
            self._consumer.ack(delivery)
        except Exception as exc:
            _log_failure(exc, f"ack of run {run_id}", "it is dropped later")


def _log_failure(exc: BaseException, what: str, then: str) -> None:
    """One line for a store that is unavailable (expected in an outage); a traceback for
    anything else."""
    if isinstance(exc, StoreUnavailableError):
        log.warning("store unavailable (%s: %s); %s", what, exc, then)
    else:
        log.error("%s failed; %s", what, then, exc_info=exc)
