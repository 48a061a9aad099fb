"""The Dramatiq worker side: the ``runlane_execute`` actor body and the middleware that hosts
runlane in each worker process.

``RunlaneMiddleware`` starts one :class:`~runlane.backends._hosting.ProcessHost` when a worker
boots (``dramatiq proj`` boots one worker per process) and stops it once the worker has shut
down (after its threads finished their messages, so their leases are renewed meanwhile). The
Host heartbeats, interrupts canceled and timed-out attempts (an exception raised in the worker
thread) and runs the engine loops when it holds the store's engine lease.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from runlane.backends._hosting import ProcessHost
from runlane.backends.dramatiq.broker import DramatiqBroker, check_encoder
from runlane.core.types import Dispatch
from runlane.errors import StoreUnavailableError

log = logging.getLogger("runlane.dramatiq")

process = ProcessHost("Dramatiq", DramatiqBroker)


def execute(
    run_id: str,
    task_identifier: str,
    queue: str = "",
    machine: str | None = None,
    environment: str | None = None,
) -> None:
    """Execute run ``run_id`` in this worker (the body of the ``runlane_execute`` actor).
    While the store is unavailable the message is dropped with a line in the log: the run
    stays QUEUED in the store and the engine sends it again after a lease period (sooner than
    Dramatiq's own retries, which would also log a traceback each time). Other failures fail
    the message."""
    try:
        process.execute(Dispatch(run_id, task_identifier, queue, machine), environment)
    except StoreUnavailableError as exc:
        log.warning("store unavailable (run %s: %s); the engine sends it again", run_id, exc)


class RunlaneMiddleware(Middleware):  # type: ignore[misc]
    """Hosts runlane in Dramatiq workers (added by ``DramatiqBroker``)."""

    def __init__(self) -> None:
        self.worker: dramatiq.Worker | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        check_encoder()
        self.worker = worker
        process.start(slots=worker.worker_threads, engine=True, on_abandon=self._replace)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        process.stop()
        self.worker = None

    def _replace(self, thread_id: int) -> None:
        """An attempt stays blocked in a call after its run ended: its worker thread stops
        once the call returns, and a new thread takes its place now."""
        worker = self.worker
        threads: list[Any] = list(getattr(worker, "workers", None) or ())
        blocked = next((t for t in threads if t.ident == thread_id), None)
        if worker is None or blocked is None or not hasattr(worker, "_add_worker"):
            log.warning("a Dramatiq worker thread is blocked in a run that has ended")
            return
        blocked.stop()
        worker.workers.remove(blocked)  # a shutdown does not wait for a run that has ended
        worker._add_worker()
        log.warning(
            "a Dramatiq worker thread is blocked in a run that has ended; a new thread took "
            "its place"
        )

    def __repr__(self) -> str:
        return "RunlaneMiddleware()"
