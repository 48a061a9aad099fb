"""Executing one delivered run: start the attempt in the store, run it, record the outcome."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from runlane.core import context, signals, tracing
from runlane.core.attempt import AttemptEnd, AttemptSpec, run_attempt
from runlane.core.clock import to_datetime
from runlane.core.context import (
    ENVIRONMENT_TYPES,
    ActiveRun,
    AttemptInfo,
    BatchInfo,
    Context,
    EnvironmentInfo,
    MachineInfo,
    QueueInfo,
    RunInfo,
    TaskInfo,
)
from runlane.core.errors_ser import serialize_exception
from runlane.core.interrupt import CANCEL, TIMEOUT, AttemptControl, AttemptInterrupted
from runlane.core.logs import (
    LogBuffer,
    capture_prints,
    flush_partial_line,
    log_ended,
    log_received,
)
from runlane.core.metadata import MetadataState
from runlane.core.models import AttemptStatus, Run, RunStatus, TaskRunError
from runlane.core.options import DEFAULT_MACHINE, MACHINES, UNSET, RetryOptions, parse_retry
from runlane.core.storecalls import retrying
from runlane.core.task import Task
from runlane.core.types import AttemptOutcome, Delivery, Dispatch, StartedAttempt, StartRequest
from runlane.core.waits import Suspend, WaitState
from runlane.errors import LimitExceededError, StoreUnavailableError

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime

log = logging.getLogger("runlane.executor")

T = TypeVar("T")

# the attempt statuses an outcome records, as text (an enum member's .value is a property
# lookup, on every attempt)
_COMPLETED = AttemptStatus.COMPLETED.value
_FAILED = AttemptStatus.FAILED.value
_TIMED_OUT = AttemptStatus.TIMED_OUT.value


def task_retry(rt: Runtime, task: Task[Any]) -> RetryOptions:
    """The task's retry options resolved against ``configure(retries=...)``'s default (kept
    on the task, read on every attempt: used while the task's options and the default are
    the same objects)."""
    base = rt.settings.retry_default
    hit = task.resolved_retry
    if hit is not None and hit[0] is task.retry_options and hit[1] is base:
        return hit[2]
    options = parse_retry(task.retry_options, base)
    task.resolved_retry = (task.retry_options, base, options)
    return options


def _no_retries(rt: Runtime) -> bool:
    """Retries are off in the dev environment unless ``configure()`` enables them."""
    settings = rt.settings
    return settings.environment == "dev" and not settings.retries_enabled_in_dev


def effective_retry(
    rt: Runtime, task: Task[Any], max_attempts: int | None, options: RetryOptions | None = None
) -> RetryOptions:
    """The task's retry options (``options``: already resolved by ``task_retry``) with the
    run's own ``max_attempts`` (a trigger option)."""
    if options is None:
        options = task_retry(rt, task)
    if max_attempts is not None:
        options = RetryOptions(**{**options.__dict__, "max_attempts": max(1, max_attempts)})
    if _no_retries(rt):
        options = RetryOptions(**{**options.__dict__, "max_attempts": 1})
    return options


def default_max_attempts(rt: Runtime, task: Task[Any], options: RetryOptions | None = None) -> int:
    """The attempts the reaper allows a run of this task if its worker dies mid-attempt
    (``options``: the task's, already resolved by ``task_retry``)."""
    if _no_retries(rt):
        return 1
    return (options or task_retry(rt, task)).max_attempts


def effective_max_duration(rt: Runtime, task: Task[Any], stored: int | None) -> int | None:
    """Trigger option > task > configure(); 0 stored means "no limit" (timeout.NONE)."""
    if stored is not None:
        return stored or None
    if task.max_duration is not UNSET:
        return task.max_duration
    return rt.settings.max_duration


def build_context(
    rt: Runtime,
    task: Task[Any],
    started: StartedAttempt,
    worker_id: str,
    max_attempts: int,
    max_duration: int | None,
) -> Context:
    run: Run = started.run
    machine = run.machine or task.machine or rt.settings.machine or DEFAULT_MACHINE
    cpu, memory = MACHINES[machine]
    env = rt.environment
    return Context(
        task=TaskInfo(id=task.id, file_path=task.file_path, export_name=task.__name__),
        attempt=AttemptInfo(
            id=started.attempt_id,
            number=started.attempt_number,
            started_at=to_datetime(started.started_at),
            worker_id=worker_id,
        ),
        run=RunInfo(
            id=run.id,
            tags=list(run.tags),
            is_test=run.is_test,
            created_at=run.created_at,
            started_at=run.started_at or to_datetime(started.started_at),
            idempotency_key=run.idempotency_key,
            max_attempts=max_attempts,
            max_duration=max_duration,
            duration_ms=run.duration_ms,
            version=run.version,
            parent_id=run.parent_id,
            root_id=run.root_id,
            depth=run.depth,
            batch_id=run.batch_id,
            concurrency_key=run.concurrency_key,
        ),
        queue=QueueInfo(id=run.queue, name=run.queue),
        environment=EnvironmentInfo(id=env, slug=env, type=ENVIRONMENT_TYPES.get(env, env.upper())),
        batch=BatchInfo(id=run.batch_id) if run.batch_id else None,
        machine=MachineInfo(name=machine, cpu=cpu, memory=memory),
    )


class ActiveRuns:
    """The attempts executing in this process (for the supervisor and the flusher)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, ActiveRun] = {}
        # runs whose attempts this process handed back on shutdown (they end CRASHED, not
        # CANCELED, although they are interrupted as a cancel is)
        self.handed_back: set[str] = set()

    def add(self, active: ActiveRun) -> None:
        with self._lock:
            self._runs[active.run_id] = active

    def remove(self, active: ActiveRun) -> None:
        """Forget this attempt, unless the run already has a newer one here (an attempt fenced
        off while blocked may return after the run's next attempt started on this worker)."""
        with self._lock:
            if self._runs.get(active.run_id) is active:
                del self._runs[active.run_id]

    def snapshot(self) -> list[ActiveRun]:
        with self._lock:
            return list(self._runs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)


def flush_active(rt: Runtime, active: ActiveRun) -> None:
    """Write the attempt's pending metadata operations and log entries to the store."""
    with active.flush_lock:
        _flush(rt, active)


def _flush(rt: Runtime, active: ActiveRun) -> None:
    ops = active.metadata.take_pending()
    if ops:
        try:
            rt.store.update_metadata(
                active.run_id, ops, now=rt.now(), limit=rt.settings.limits.metadata_bytes
            )
        except Exception:
            active.metadata.restore_pending(ops)
            raise
    flush_remote_metadata(rt, active)
    if active.logs is not None:
        entries = active.logs.take()
        if entries:
            try:
                rt.store.append_logs(active.run_id, entries)
            except Exception:
                active.logs.restore(entries)
                raise


def flush_remote_metadata(rt: Runtime, active: ActiveRun) -> None:
    """Apply buffered ``metadata.parent`` / ``metadata.root`` updates to those runs."""
    taken = active.remote_metadata.take()
    for position, (run_id, ops) in enumerate(taken.items()):
        try:
            rt.store.update_metadata(
                run_id, ops, now=rt.now(), limit=rt.settings.limits.metadata_bytes
            )
        except LimitExceededError:
            log.error(
                "metadata update of run %s from run %s rejected: over the limit",
                run_id,
                active.run_id,
            )
        except Exception:
            active.remote_metadata.restore(dict(list(taken.items())[position:]))
            raise


def timed_out_error(seconds: int | None) -> TaskRunError:
    return TaskRunError(
        name="MaxDurationExceededError",
        code="MAX_DURATION_EXCEEDED",
        message=f"Run exceeded maxDuration of {seconds} seconds",
    )


class Executor:
    def __init__(
        self,
        rt: Runtime,
        worker_id: str,
        active: ActiveRuns | None = None,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.rt = rt
        self.worker_id = worker_id
        self.active = active if active is not None else ActiveRuns()
        self.busy = busy

    def start_request(self) -> StartRequest:
        """What a broker needs to start attempts as it delivers them (``fetch(start=)``)."""
        rt = self.rt
        return StartRequest(
            worker_id=self.worker_id,
            lease_timeout=rt.settings.lease_timeout,
            default_max_attempts={t.id: default_max_attempts(rt, t) for t in rt.registry.all()},
            now=rt.now,
        )

    def execute(self, dispatch: Dispatch, delivery: Delivery | None = None) -> None:
        """Run one delivered run: start its attempt (unless the broker did: ``delivery.started``),
        execute it, record the outcome. A run that cannot start (canceled, expired, already
        taken) is skipped. With a delivery that has an ``ack_ref``, the store removes the
        delivery as it records the outcome and ``delivery.settled`` is set."""
        rt = self.rt
        task = rt.registry.get(dispatch.task_identifier)
        if task is None:
            return
        options = task_retry(rt, task)
        started = delivery.started if delivery is not None else None
        if started is None:
            # tried again while the store is unavailable: a start whose reply was lost is not
            # started twice (the second finds the run EXECUTING; the reaper recovers it)
            started = retrying(
                lambda: rt.store.start_attempt(
                    dispatch.run_id,
                    worker_id=self.worker_id,
                    now=rt.now(),
                    known_tasks={task.id},
                    lease_until=time.time() + rt.settings.lease_timeout,  # leases: real time
                    default_max_attempts=default_max_attempts(rt, task, options),
                ),
                f"starting run {dispatch.run_id}",
                rt.settings.store_retry_timeout,
            )
        if started is None:  # canceled, expired, or already taken: nothing to do
            return
        if delivery is not None:
            delivery.started = started  # this delivery's attempt: never executed again here
        brief = started.brief
        log_received(brief.id, task.id, started.attempt_number, started.resumed)
        retry = effective_retry(rt, task, brief.max_attempts, options)
        max_duration = effective_max_duration(rt, task, started.max_duration)
        control = AttemptControl(max_duration, used=started.used_ms / 1000)
        replay_log = (
            rt.store.waitpoints(brief.id, started.attempt_number) if started.resumed else []
        )
        active = ActiveRun(
            make_ctx=lambda: build_context(
                rt, task, started, self.worker_id, retry.max_attempts, max_duration
            ),
            run_id=brief.id,
            attempt_number=started.attempt_number,
            runtime=rt,
            metadata=MetadataState(brief.metadata, rt.settings.limits.metadata_bytes),
            tags=list(brief.tags),
            logs=LogBuffer(brief.id, started.attempt_number),
            control=control,
            waits=WaitState(replay_log),
            busy=self.busy,
        )
        active.lease_until = time.time() + rt.settings.lease_timeout  # as the start set it
        spec = AttemptSpec(
            task=task,
            payload=brief.payload,
            active=active,
            control=control,
            global_hooks=rt.settings.hooks,
            retry=retry,
            output_limit=rt.settings.limits.output_bytes,
            now=rt.now,
        )
        if signals.attempt_started.receivers:
            signals.send_attempt_started(task.id, started, active)
        capture_prints()
        self.active.add(active)
        token = context.activate(active)
        attributes = {
            "runlane.run_id": brief.id,
            "runlane.task": task.id,
            "runlane.attempt": started.attempt_number,
        }
        suspended: int | None = None
        end: AttemptEnd | None = None
        try:
            try:
                with tracing.get().attempt_span(
                    f"{task.id} attempt {started.attempt_number}",
                    attributes,
                    started.trace_context,
                ) as span:
                    end = run_attempt(spec)
                    if end.error is not None:
                        tracing.get().set_error(span, end.error)
            except Suspend as wait:
                suspended = wait.index
            except AttemptInterrupted:
                end = None
            except Exception as exc:  # a runlane bug or a broken hook contract
                end = AttemptEnd(error=serialize_exception(exc))
            finally:
                flush_partial_line(active)
        finally:
            control.finish()
            context.deactivate(token)
        # the attempt stays among this process's active ones until its end is recorded: its
        # lease is renewed meanwhile, however long the store takes to answer again
        try:
            if active.waits is not None and active.waits.suspended_index is not None:
                suspended = active.waits.suspended_index  # even if user code swallowed Suspend
            with active.flush_lock:  # (a flush in progress ends first; none has work after)
                ops = active.metadata.take_pending()
            if suspended is not None and control.reason is None:
                self._through_outage(
                    active, lambda: self._suspend_once(started, active, suspended, ops, delivery)
                )
                log_ended(brief.id, task.id, None, control.elapsed(), 0.0, frozen=True)
                return
            outcome = self._outcome(end, control, max_duration)
            if self._through_outage(
                active, lambda: self._record_once(started, active, outcome, ops, delivery)
            ):
                handed_back = outcome is None and brief.id in self.active.handed_back
                log_ended(
                    brief.id,
                    task.id,
                    outcome,
                    control.elapsed(),
                    rt.now(),
                    handed_back=handed_back,
                )
        finally:
            self.active.remove(active)

    def _through_outage(self, active: ActiveRun, record: Callable[[], T]) -> T:
        """``record()`` the attempt's end (and return what it returns), tried again while the
        store is unavailable (the result is kept meanwhile, for up to ``result_retry_timeout``
        seconds). Each try is guarded by the attempt in the store, so one that was written
        before its reply was lost is not written twice. Says once if the lease lapses before
        the store answers."""
        rt = self.rt
        warned = False

        def failed(exc: StoreUnavailableError, failures: int) -> None:
            nonlocal warned
            if not warned and time.time() > active.lease_until:
                warned = True
                log.warning(
                    "run %s: attempt %d ended but the store has been unavailable past its "
                    "lease; its result is kept and recorded when the store answers, unless "
                    "the run was given to another worker meanwhile",
                    active.run_id,
                    active.attempt_number,
                )

        return retrying(
            record,
            f"recording run {active.run_id}",
            rt.settings.result_retry_timeout,
            on_failure=failed,
        )

    def _suspend_once(
        self,
        started: StartedAttempt,
        active: ActiveRun,
        index: int,
        ops: list[dict[str, Any]],
        delivery: Delivery | None,
    ) -> None:
        """Freeze the run on its waitpoint: this worker is free until the wait resolves."""
        rt = self.rt
        self._flush_side(active)
        ack = delivery.ack_ref if delivery is not None else None
        with rt.engine.sending() as ready:  # resolved meanwhile: resume at once; a lent slot
            rt.store.suspend(
                started.run_id,
                started.attempt_number,
                index,
                now=rt.now(),
                metadata_ops=ops,
                attempt_ms=int(active.control.elapsed() * 1000) if active.control else None,
                ack=ack,
                ready=ready,
            )
        if delivery is not None and ack is not None:
            delivery.settled = True

    def _flush_side(self, active: ActiveRun) -> None:
        """Logs and parent/root metadata of an attempt that is ending or suspending. While
        the store is unavailable they are kept (and ``StoreUnavailableError`` raised, for the
        caller to try again); other failures are logged and the rest goes on."""
        rt = self.rt
        entries = active.logs.take() if active.logs is not None else []
        if entries:
            try:
                rt.store.append_logs(active.run_id, entries)
            except StoreUnavailableError:
                assert active.logs is not None
                active.logs.restore(entries)
                raise
            except Exception:
                log.exception("could not write the logs of run %s", active.run_id)
        try:
            flush_remote_metadata(rt, active)
        except StoreUnavailableError:
            raise
        except Exception:
            log.exception("could not apply the parent/root metadata of run %s", active.run_id)

    def _outcome(
        self, end: AttemptEnd | None, control: AttemptControl, max_duration: int | None
    ) -> dict[str, Any] | None:
        """The fields of the attempt's ``AttemptOutcome`` (None: canceled, nothing to record)."""
        if control.reason == CANCEL:
            return None  # the store already holds the run as CANCELED
        if control.reason == TIMEOUT or end is None:
            return {
                "attempt_status": _TIMED_OUT,
                "run_status": RunStatus.TIMED_OUT,
                "error": timed_out_error(max_duration),
            }
        if end.error is None:
            return {
                "attempt_status": _COMPLETED,
                "run_status": RunStatus.COMPLETED,
                "output": end.output,
            }
        if end.retry_at is not None:
            return {
                "attempt_status": _FAILED,
                "run_status": RunStatus.REATTEMPTING,
                "error": end.error,
                "retry_at": end.retry_at,
                "machine": end.machine,
            }
        return {
            "attempt_status": _FAILED,
            "run_status": RunStatus.FAILED,
            "error": end.error,
        }

    def _record_once(
        self,
        started: StartedAttempt,
        active: ActiveRun,
        fields: dict[str, Any] | None,
        ops: list[dict[str, Any]],
        delivery: Delivery | None,
    ) -> bool:
        """Record the attempt's end; False when the run changed meanwhile (not recorded)."""
        rt = self.rt
        self._flush_side(active)
        if fields is None:
            if ops:  # the run was canceled: keep what it reported until then
                rt.store.update_metadata(
                    started.run_id, ops, now=rt.now(), limit=rt.settings.limits.metadata_bytes
                )
                ops.clear()  # written: not again if the release below is tried again
            # the attempt has stopped: the slots it kept while stopping are free now
            with rt.engine.sending() as ready:
                rt.store.release_canceled(
                    started.run_id, started.attempt_number, now=rt.now(), ready=ready
                )
            return True
        attempt_ms = int(active.control.elapsed() * 1000) if active.control else None
        outcome = AttemptOutcome(**fields, metadata_ops=ops, attempt_ms=attempt_ms)
        ack = delivery.ack_ref if delivery is not None else None
        now = rt.now()
        with rt.engine.sending() as ready:  # the freed slot may admit a run; a parent resume
            recorded = rt.store.finish_attempt(
                started.run_id,
                started.attempt_number,
                outcome,
                now=now,
                ack=ack,
                ready=ready,
                started=started,
            )
        if delivery is not None and ack is not None:
            delivery.settled = True
        if not recorded:
            log.info(
                "run %s changed while attempt %d ran; its result was not recorded",
                started.run_id,
                started.attempt_number,
            )
        elif signals.ended_signal(outcome.run_status).receivers:
            signals.send_attempt_ended(started, active, outcome, now)
        return recorded
