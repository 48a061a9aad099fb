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
from runlane.core.executor import ActiveRuns
from runlane.core.host import Host
from runlane.core.options import validate_queue_name
from runlane.core.task import Task
from runlane.core.types import NativeBroker
from runlane.errors import ConfigurationError, InvalidOptionError

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
        self._threads: list[threading.Thread] = []
        self.host = Host(self.id, runtime_, on_abandon=self._replace_thread)
        self._consumer: Any = None
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
        self._consumer = broker.consumer(self.id, rt.registry.ids(), self.queues)
        rt.registry.on_add(self._on_task_added)
        rt.engine.register(rt.registry.all())
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
            t.join(max(0.0, deadline - time.monotonic()))
        gone = self.host.abandoned
        alive = [t.name for t in self._threads if t.is_alive() and t.ident not in gone]
        if alive:
            log.warning("worker %s: threads still running after %.0fs: %s", self.id, timeout, alive)
        # 2. then the housekeeping loop
        self.host.stop(deadline - time.monotonic())
        self._threads = []
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
        executor = self.host.executor(busy=self._all_busy)
        me = threading.get_ident()
        while not self._draining.is_set() and me not in self.host.abandoned:
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
        self.host.abandoned.discard(me)
