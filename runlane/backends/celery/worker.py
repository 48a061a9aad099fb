"""The Celery worker side: the ``runlane.execute`` task and the hooks that host runlane.

- The task is sent with ``acks_late`` and ``reject_on_worker_lost`` (a delivery whose worker
  died is delivered again; the store makes the second delivery harmless) and JSON only: its
  message handler refuses any other content type before the body is decoded, whatever the
  app's ``accept_content`` allows for your other tasks (Celery's task protocol 2, its default;
  a protocol 1 message is decoded by Celery before the task is known).
- A worker bootstep adds runlane's Celery queues to what a worker consumes (unless ``-Q``
  chooses), and starts one :class:`~runlane.backends._hosting.ProcessHost` per process that
  executes runs: the worker process itself for the ``threads`` and ``solo`` pools, and each
  child (``worker_process_init``) for ``prefork``. The Host heartbeats, interrupts canceled and
  timed-out attempts (an exception raised in the executing thread), and runs the engine loops
  when it holds the store's engine lease. Green pools (eventlet, gevent) are refused: every
  green thread shares one OS thread, so an interrupt could not reach the right run.
- A prefork child whose attempt stays blocked in a call after an interrupt exits once the run
  has been ended in the store; Celery replaces the process (the message, delivered again, is
  a no-op).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import celery
from celery import bootsteps, signals
from celery.exceptions import Reject
from kombu.exceptions import ContentDisallowed

from runlane.backends._hosting import ProcessHost
from runlane.backends.celery.broker import TASK_NAME, CeleryBroker, brokers
from runlane.core.types import Dispatch
from runlane.errors import ConfigurationError, StoreUnavailableError

log = logging.getLogger("runlane.celery")

process = ProcessHost("Celery", CeleryBroker)
ABANDON_EXIT_CODE = 70  # a prefork child leaving a blocked attempt behind
STORE_DOWN_PAUSE = 1.0  # seconds before a delivery that could not start is given back

# set in the worker process before the prefork pool forks its children
_child_hosts = False


def _json_only(handle: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the task's message handler: refuse a delivery that is not JSON before anything
    decodes its body (Celery's consumer rejects it and logs the refusal)."""

    def handler(message: Any, *args: Any, **kwargs: Any) -> Any:
        content_type = getattr(message, "content_type", None)
        if content_type != "application/json":
            raise ContentDisallowed(
                f"runlane's {TASK_NAME} task accepts JSON messages only, not {content_type!r}"
            )
        return handle(message, *args, **kwargs)

    return handler


class RunlaneTask(celery.Task):  # type: ignore[misc]
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    serializer = "json"
    max_retries = 0
    track_started = False

    def start_strategy(self, app: celery.Celery, consumer: Any, **kwargs: Any) -> Any:
        return _json_only(super().start_strategy(app, consumer, **kwargs))


def execute(
    run_id: str,
    task_identifier: str,
    queue: str = "",
    machine: str | None = None,
    environment: str | None = None,
) -> None:
    """Execute run ``run_id`` in this worker (the body of the ``runlane.execute`` task)."""
    try:
        process.execute(Dispatch(run_id, task_identifier, queue, machine), environment)
    except ConfigurationError:
        raise
    except Exception as exc:  # the store is unreachable: give the delivery back, slowly
        if isinstance(exc, StoreUnavailableError):
            log.warning("store unavailable (run %s: %s); it is delivered again", run_id, exc)
        else:
            log.exception("run %s could not be executed; it is delivered again", run_id)
        time.sleep(STORE_DOWN_PAUSE)
        raise Reject(exc, requeue=True) from exc


def register(app: celery.Celery) -> celery.Task:
    """Register the runlane task and the worker bootstep on ``app`` (idempotent)."""
    _connect_signals()
    app.steps["worker"].add(RunlaneStep)
    return app.task(name=TASK_NAME, base=RunlaneTask, shared=False)(execute)


def _add_queues(app: celery.Celery, broker: CeleryBroker, *, known: bool = True) -> None:
    """Make runlane's queues part of what a worker consumes by default, before ``-Q``/``-X``
    select (so they keep their meaning). ``known=False``: only queues the app has never seen
    (after ``-X`` ran, a known queue left out was excluded on purpose)."""
    queues = app.amqp.queues
    for name in broker.queues:
        if name not in (queues.consume_from if known else queues):
            queues.select_add(name)


def _exit_child(thread_id: int) -> None:
    log.warning(
        "the attempt in pool process %d is blocked after its run ended; exiting so "
        "Celery starts a fresh process",
        os.getpid(),
    )
    logging.shutdown()
    os._exit(ABANDON_EXIT_CODE)


class RunlaneStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Hosts runlane in a Celery worker (see the module docstring)."""

    label = "runlane"
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        global _child_hosts
        super().__init__(worker, **kwargs)
        self.broker = brokers.get(worker.app)
        self.hosting = False
        self.prefork = False
        if self.broker is None:
            return
        self.broker.check_app()
        self.broker.warn_ignored_route()
        if "pickle" in {str(a).lower() for a in worker.app.conf.accept_content or ()}:
            log.warning(
                "this Celery app accepts pickle messages for its tasks; runlane's task accepts "
                "JSON only, but consider accept_content=['json'] for the whole app"
            )
        queues = worker.app.amqp.queues
        if queues._consume_from is None:  # no -Q: consume runlane's queues too
            _add_queues(worker.app, self.broker, known=False)
        consumed = set(queues.consume_from)
        self.hosting = any(name in consumed for name in self.broker.queues)
        pool_cls = worker.pool_cls
        if self.hosting and getattr(pool_cls, "is_green", False):
            raise ConfigurationError(
                f"runlane runs need the prefork, threads or solo pool, not {pool_cls.__name__} "
                "(an interrupt could not reach a run in a green thread): start such workers "
                f"with -X {','.join(self.broker.queues)}, and runlane's on another pool"
            )
        self.prefork = pool_cls.__module__ == "celery.concurrency.prefork"
        _child_hosts = self.hosting and self.prefork

    def start(self, worker: Any) -> None:
        if not self.hosting or self.prefork:  # prefork: each child hosts its own runs
            return
        threads = worker.pool_cls.__module__ == "celery.concurrency.thread"
        process.start(slots=worker.concurrency if threads else 1, engine=True)

    def stop(self, worker: Any) -> None:
        """The pool still drains after this step stops: the Host stops at worker_shutdown."""

    def terminate(self, worker: Any) -> None:
        process.stop()


# ---------------------------------------------------------------------- signals
_connected = False


def _connect_signals() -> None:
    global _connected
    if _connected:
        return
    _connected = True
    signals.import_modules.connect(_on_import_modules, weak=False)
    signals.worker_process_init.connect(_on_child_start, weak=False)
    signals.worker_process_shutdown.connect(_on_child_stop, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)


def _on_import_modules(sender: Any = None, **kwargs: Any) -> None:
    broker = brokers.get(sender) if isinstance(sender, celery.Celery) else None
    if broker is not None:  # a worker is being built: before -Q/-X select its queues
        _add_queues(sender, broker)


def _on_child_start(**kwargs: Any) -> None:
    if _child_hosts:
        process.start(slots=1, engine=True, on_abandon=_exit_child)


def _on_child_stop(**kwargs: Any) -> None:
    process.stop()


def _on_worker_shutdown(**kwargs: Any) -> None:
    process.stop()
