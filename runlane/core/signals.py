"""Signals (blinker): what happened to a run, for receivers in the process where it happened.

Public as ``runlane.signals``. Every signal's sender is the run's **task id** (a string), so
``run_failed.connect(fn, sender="send-email")`` hears only that task's runs; ``connect(fn)``
hears every task's. Receivers are called as ``fn(sender, **kwargs)`` and should accept
``**kwargs`` (keyword arguments may be added).

Unlike blinker's default, receivers are held strongly (``connect(lambda sender, **kw: ...)``
stays connected until ``disconnect``); pass ``weak=True`` for a weak reference. A receiver
that raises is logged (one line, on the ``runlane.signals`` logger) and the others are still
called: a receiver never breaks a trigger, an attempt or a cancel. The order in which the
receivers of one signal are called is undefined (blinker's).

Senders check ``signal.receivers`` before building any argument, so a signal nobody
connected to costs one attribute test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from inspect import iscoroutinefunction
from typing import TYPE_CHECKING, Any, TypeVar

from blinker import ANY, NamedSignal, Namespace

from runlane.core import jsonvalue
from runlane.core.clock import to_datetime
from runlane.core.models import RunStatus

if TYPE_CHECKING:
    from runlane.core.context import ActiveRun
    from runlane.core.handles import RunHandle
    from runlane.core.models import Run
    from runlane.core.types import AttemptOutcome, StartedAttempt

log = logging.getLogger("runlane.signals")

F = TypeVar("F", bound=Callable[..., Any])


class RunlaneSignal(NamedSignal):
    """A blinker signal whose receivers are held strongly by default and whose failing
    receivers are logged instead of raised."""

    def connect(self, receiver: F, sender: Any = ANY, weak: bool = False) -> F:
        return super().connect(receiver, sender, weak)

    def send(
        self,
        sender: Any | None = None,
        /,
        *,
        _async_wrapper: Callable[[Callable[..., Coroutine[Any, Any, Any]]], Callable[..., Any]]
        | None = None,
        **kwargs: Any,
    ) -> list[tuple[Callable[..., Any], Any]]:
        if self.is_muted:
            return []
        results: list[tuple[Callable[..., Any], Any]] = []
        for receiver in self.receivers_for(sender):
            if iscoroutinefunction(receiver) and _async_wrapper is None:
                log.warning(
                    "receiver %s of signal %s is async and was not called: runlane sends "
                    "signals synchronously",
                    _name(receiver),
                    self.name,
                )
                continue
            try:
                if _async_wrapper is not None and iscoroutinefunction(receiver):
                    result = _async_wrapper(receiver)(sender, **kwargs)
                else:
                    result = receiver(sender, **kwargs)
            except Exception as exc:
                log.warning(
                    "receiver %s of signal %s failed (ignored): %s: %s",
                    _name(receiver),
                    self.name,
                    type(exc).__name__,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                continue
            results.append((receiver, result))
        return results


def _name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}" if module else name


class _Namespace(Namespace):
    def signal(self, name: str, doc: str | None = None) -> NamedSignal:
        if name not in self:
            self[name] = RunlaneSignal(name, doc)
        return self[name]


namespace = _Namespace()


def _signal(name: str, doc: str) -> RunlaneSignal:
    made = namespace.signal(name, doc)
    assert isinstance(made, RunlaneSignal)
    return made


run_triggered = _signal(
    "run_triggered",
    """A trigger returned a run: **trigger side**, in the process that triggered (a web
    process, a script, a worker whose task triggers children, the engine leader firing a
    schedule, ``runlane serve`` for HTTP triggers; in remote mode also the client process),
    after the store recorded the run and it was handed to the broker.

    Sent once per run, for a batch too (one per item, each with its task id as sender).
    A run an idempotency key returned again is sent with ``handle.is_cached`` true; a task
    that resumes after a wait and replays its triggers does not send them again.

    Keyword arguments: ``handle`` (:class:`RunHandle`: ``id``, ``task_identifier``,
    ``is_cached``), ``batch_id`` (or None), ``ctx`` (the :class:`Context` of the run that
    triggered, or None outside a run; None in remote mode).""",
)

attempt_started = _signal(
    "attempt_started",
    """An attempt started: **worker side**, in the worker process and thread that executes
    it, once the store recorded the start, before any hook or the task runs. Also sent when
    an attempt suspended on a wait resumes (``resumed`` true).

    Keyword arguments: ``run`` (the :class:`Run` as the start left it: EXECUTING),
    ``attempt`` (its number, from 1), ``ctx`` (the attempt's :class:`Context`),
    ``resumed``.""",
)

run_succeeded = _signal(
    "run_succeeded",
    """A run COMPLETED: **worker side**, once the attempt's end was recorded.

    Keyword arguments: ``run`` (the :class:`Run` as the attempt ended it, built in the worker
    without reading the store: ``status``, ``output``, ``metadata``, ``attempt_count``,
    ``finished_at`` are those recorded; ``attempts`` may be incomplete, use
    ``runs.retrieve(run.id)`` for the full record), ``attempt``, ``ctx``.""",
)

run_failed = _signal(
    "run_failed",
    """A run ended FAILED or TIMED_OUT (max duration): **worker side**, once its last
    attempt's end was recorded (after the ``run_retrying`` of earlier attempts). Keyword
    arguments: ``run`` (as for ``run_succeeded``), ``attempt``, ``ctx``, ``error``
    (:class:`TaskRunError`).

    Also a run the leader's reaper ended CRASHED (its worker was lost): **leader side**, with
    ``run`` only (read from the store).""",
)

run_retrying = _signal(
    "run_retrying",
    """An attempt failed and another follows (the run is REATTEMPTING): **worker side**,
    once the attempt's end was recorded.

    Keyword arguments: ``run`` (as for ``run_succeeded``), ``attempt`` (the one that
    failed), ``ctx``, ``error`` (:class:`TaskRunError`), ``retry_at`` (an aware
    ``datetime``: when the next attempt is queued).""",
)

run_canceled = _signal(
    "run_canceled",
    """A run was canceled: in **the process that canceled it** (``runs.cancel``, bulk cancel,
    the CLI, ``runlane serve`` for HTTP cancels), once the store recorded it. Sent for the
    run the cancel named (or each run a bulk cancel canceled), not for its descendants that
    were canceled with it, and not for a run that was finished already.

    Keyword arguments: ``run`` (the :class:`Run` as canceled).""",
)

run_expired = _signal(
    "run_expired",
    """A run expired (not started within its TTL): in **the engine leader's process** (the
    worker or ``runlane serve`` holding the engine lease), after the tick that expired it.

    Keyword arguments: ``run`` (the :class:`Run` as expired).""",
)

ALL = (
    run_triggered,
    attempt_started,
    run_succeeded,
    run_failed,
    run_retrying,
    run_canceled,
    run_expired,
)


# ---------------------------------------------------------------------- senders
# Called only after the caller checked ``<signal>.receivers``; each never raises.


def send_triggered(
    handles: Sequence[RunHandle], batch_id: str | None, active: ActiveRun | None
) -> None:
    try:
        ctx = active.ctx if active is not None else None
        for handle in handles:
            run_triggered.send(handle.task_identifier, handle=handle, batch_id=batch_id, ctx=ctx)
    except Exception:
        log.exception("could not send run_triggered")


def send_attempt_started(task_id: str, started: StartedAttempt, active: ActiveRun) -> None:
    try:
        attempt_started.send(
            task_id,
            run=started.run,
            attempt=started.attempt_number,
            ctx=active.ctx,
            resumed=started.resumed,
        )
    except Exception:
        log.exception("could not send attempt_started")


def ended_run(
    started: StartedAttempt, outcome: AttemptOutcome, metadata: dict[str, Any], now: float
) -> Run:
    """The run as ``finish_attempt`` recorded ``outcome``, from what the worker holds."""
    status = outcome.run_status
    at = to_datetime(now)
    update: dict[str, Any] = {
        "status": status,
        "updated_at": at,
        "metadata": metadata,
        "attempt_count": started.attempt_number,
    }
    if outcome.output is not None:
        update["output"] = jsonvalue.loads(outcome.output)
    if outcome.error is not None:
        update["error"] = outcome.error
    elif status is RunStatus.COMPLETED:
        update["error"] = None
    if status.is_final:
        update["finished_at"] = at
    if outcome.retry_at is not None:
        update["retry_at"] = to_datetime(outcome.retry_at)
    if outcome.machine is not None:
        update["machine"] = outcome.machine
    return started.run.model_copy(update=update)


def ended_signal(status: RunStatus) -> RunlaneSignal:
    """The signal an attempt's end with this run status sends."""
    return _ENDED.get(status, run_failed)


_ENDED = {RunStatus.COMPLETED: run_succeeded, RunStatus.REATTEMPTING: run_retrying}


def send_attempt_ended(
    started: StartedAttempt, active: ActiveRun, outcome: AttemptOutcome, now: float
) -> None:
    """run_succeeded, run_retrying or run_failed for an attempt end the store recorded."""
    try:
        signal = ended_signal(outcome.run_status)
        run = ended_run(started, outcome, active.metadata.snapshot(), now)
        kwargs: dict[str, Any] = {"run": run, "attempt": started.attempt_number, "ctx": active.ctx}
        if signal is not run_succeeded:
            kwargs["error"] = outcome.error
        if signal is run_retrying:
            kwargs["retry_at"] = run.retry_at
        signal.send(run.task_identifier, **kwargs)
    except Exception:
        log.exception("could not send the end of run %s", started.run_id)


def send_runs(signal: RunlaneSignal, runs: Sequence[Run]) -> None:
    """``signal`` (run_canceled, run_expired, run_failed of a crash) for each run, its task
    id as sender."""
    try:
        for run in runs:
            signal.send(run.task_identifier, run=run)
    except Exception:
        log.exception("could not send %s", signal.name)
