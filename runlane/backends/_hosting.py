"""One supervising Host per worker process, for frameworks that own the worker pool.

Celery and Dramatiq deliver "execute run X" to a task/actor body running in their own threads
or processes. Each such process needs one :class:`~runlane.core.host.Host`: it heartbeats the
leases of the attempts running there, interrupts those canceled or past their max duration,
flushes their metadata and logs, and (leader-elected through the store) runs the engine loops.
``ProcessHost`` keeps that Host: started by the adapter's worker hook, restarted after a fork
or when ``runlane.configure()`` installs another runtime, stopped with the worker.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from runlane.core import runtime
from runlane.core.executor import Executor
from runlane.core.host import Host
from runlane.core.runtime import Runtime
from runlane.core.task import Task
from runlane.core.types import Dispatch
from runlane.core.worker import default_worker_id
from runlane.errors import ConfigurationError

log = logging.getLogger("runlane.worker")


class ProcessHost:
    """The one Host of this process for a framework's worker (see the module docstring)."""

    def __init__(self, framework: str, broker_type: type) -> None:
        self.framework = framework
        self.broker_type = broker_type
        self._lock = threading.RLock()
        self._host: Host | None = None
        self._pid: int | None = None
        self._listener: Callable[[Task[Any]], None] | None = None
        self._registry: Any = None
        self.slots: int | None = None
        self.engine = True
        self.on_abandon: Callable[[int], None] | None = None
        self._kept: tuple[Runtime, Host, Executor] | None = None  # see _executor

    # ------------------------------------------------------------------ lifecycle
    def start(
        self,
        *,
        slots: int | None,
        engine: bool = True,
        on_abandon: Callable[[int], None] | None = None,
    ) -> Host:
        """Start this process's Host (``slots``: runs this process executes at once, so a
        wait in a run frees its slot at once when every slot is taken; None: unknown)."""
        with self._lock:
            self.slots, self.engine, self.on_abandon = slots, engine, on_abandon
            return self._ensure(self.configured())

    def configured(self) -> Runtime:
        rt = runtime.peek()
        if rt is None or not isinstance(rt.broker, self.broker_type):
            raise ConfigurationError(
                f"runlane is not configured with a {self.broker_type.__name__} in this "
                f"{self.framework} worker process: call runlane.configure(store=..., "
                f"broker={self.broker_type.__name__}(...)) in the module the worker imports"
            )
        return rt

    def current(self) -> Host:
        """The running Host of this process for the current runtime (started if needed)."""
        rt = self.configured()
        host = self._host
        if host is not None and self._pid == os.getpid() and host.runtime is rt and host.running:
            return host
        with self._lock:
            return self._ensure(rt)

    def _ensure(self, rt: Runtime) -> Host:
        host = self._host
        if host is not None and self._pid == os.getpid():
            if host.runtime is rt and host.running:
                return host
            self._stop_locked()
        elif self._registry is not None and self._listener is not None:
            # forked: the parent's Host is only an object here (its thread stayed behind)
            self._registry.off_add(self._listener)
        host = Host(default_worker_id(), rt, on_abandon=self.on_abandon, engine=self.engine)

        def registered(task: Task[Any]) -> None:  # a task defined after the worker started
            rt.engine.deploy([task])

        rt.registry.on_add(registered)
        rt.engine.deploy(rt.registry.all())  # their WAITING_FOR_DEPLOY runs are queued
        host.start()
        self._host, self._pid = host, os.getpid()
        self._listener, self._registry = registered, rt.registry
        log.debug("runlane host %s started (%s, engine=%s)", host.id, self.framework, self.engine)
        return host

    def stop(self) -> None:
        with self._lock:
            if self._host is not None and self._pid == os.getpid():
                self._stop_locked()
            self._host = self._pid = None

    def _stop_locked(self) -> None:
        self._kept = None
        if self._registry is not None and self._listener is not None:
            self._registry.off_add(self._listener)
        self._listener = self._registry = None
        if self._host is not None:
            self._host.stop()
        self._host = self._pid = None

    @property
    def host(self) -> Host | None:
        return self._host if self._pid == os.getpid() else None

    def busy(self) -> bool:
        """Every slot of this process is executing a run (a wait then suspends at once)."""
        host = self.host
        return self.slots is not None and host is not None and len(host.active) >= self.slots

    # ------------------------------------------------------------------ one delivery
    def execute(self, dispatch: Dispatch, environment: str | None = None) -> None:
        """Execute one delivered run in the calling thread. A delivery whose run is not
        startable (finished, canceled, taken by another worker) is a no-op: the store fences
        duplicates. ``environment``: the one the run was triggered in, when the message says.
        Raises only when the store cannot be reached."""
        executor = self._executor()
        rt = executor.rt
        if environment is not None and environment != rt.environment:
            log.error(
                "run %s belongs to environment %r but this %s worker runs %r: the delivery is "
                "dropped (give each environment queues of its own, or configure this worker "
                "with environment=%r); the run stays QUEUED in its own store",
                dispatch.run_id,
                environment,
                self.framework,
                rt.environment,
                environment,
            )
            return
        if rt.registry.get(dispatch.task_identifier) is None:
            log.warning(
                "run %s: task %r is not defined in this %s worker; the run stays QUEUED and is "
                "sent again later (route its queue to workers that import the task)",
                dispatch.run_id,
                dispatch.task_identifier,
                self.framework,
            )
            return
        executor.execute(dispatch)

    def _executor(self) -> Executor:
        """An executor of the attempts this process's Host supervises, kept while the
        runtime, the process and the Host stay the same (asked on every delivery)."""
        kept = self._kept
        if (
            kept is not None
            and kept[0] is runtime.peek()
            and self._pid == os.getpid()
            and kept[1] is self._host
            and kept[1].running
        ):
            return kept[2]
        host = self.current()
        executor = host.executor(busy=self.busy)
        self._kept = (executor.rt, host, executor)
        return executor


def sender_environment(broker: object) -> str | None:
    """The environment of the runtime that sends through ``broker`` (None: not known)."""
    rt = runtime.peek()
    return rt.environment if rt is not None and rt.broker is broker else None
