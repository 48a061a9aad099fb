"""One attempt of one run: start it in the store, call the task, record the outcome."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import TYPE_CHECKING, Any

from runlane.core import context, jsonvalue
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
from runlane.core.metadata import MetadataState
from runlane.core.models import AttemptStatus, Run, RunStatus
from runlane.core.options import DEFAULT_MACHINE, MACHINES
from runlane.core.task import Task
from runlane.core.types import AttemptOutcome, Dispatch, StartedAttempt

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime

log = logging.getLogger("runlane.executor")


def build_context(rt: Runtime, task: Task[Any], started: StartedAttempt, worker_id: str) -> Context:
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
            max_attempts=run.max_attempts,
            max_duration=run.max_duration,
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


def call_task(task: Task[Any], payload: Any, ctx: Context) -> Any:
    args = (payload, ctx) if task.takes_ctx else (payload,)
    result = task.fn(*args)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


class ActiveRuns:
    """The attempts executing in this process, for the metadata flusher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, ActiveRun] = {}

    def add(self, active: ActiveRun) -> None:
        with self._lock:
            self._runs[active.run_id] = active

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def snapshot(self) -> list[ActiveRun]:
        with self._lock:
            return list(self._runs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)


def flush_metadata(rt: Runtime, active: ActiveRun) -> None:
    ops = active.metadata.take_pending()
    if not ops:
        return
    try:
        rt.store.update_metadata(
            active.run_id, ops, now=rt.now(), limit=rt.settings.limits.metadata_bytes
        )
    except Exception:
        active.metadata.restore_pending(ops)
        raise


class Executor:
    def __init__(self, rt: Runtime, worker_id: str, active: ActiveRuns | None = None) -> None:
        self.rt = rt
        self.worker_id = worker_id
        self.active = active if active is not None else ActiveRuns()

    def execute(self, dispatch: Dispatch) -> Run | None:
        rt = self.rt
        task = rt.registry.get(dispatch.task_identifier)
        if task is None:
            return None
        started = rt.store.start_attempt(
            dispatch.run_id, worker_id=self.worker_id, now=rt.now(), known_tasks={task.id}
        )
        if started is None:  # canceled, expired, or already taken: nothing to do
            return None
        ctx = build_context(rt, task, started, self.worker_id)
        active = ActiveRun(
            ctx=ctx,
            runtime=rt,
            metadata=MetadataState(started.run.metadata, rt.settings.limits.metadata_bytes),
            tags=list(started.run.tags),
        )
        self.active.add(active)
        token = context.activate(active)
        try:
            outcome = self._attempt(task, started, ctx)
        finally:
            context.deactivate(token)
            self.active.remove(active.run_id)
        ops = active.metadata.take_pending()
        outcome = AttemptOutcome(
            attempt_status=outcome.attempt_status,
            run_status=outcome.run_status,
            output=outcome.output,
            error=outcome.error,
            metadata_ops=ops,
        )
        run = rt.store.finish_attempt(started.run.id, started.attempt_number, outcome, now=rt.now())
        if run is None:
            log.info(
                "run %s changed while attempt %d ran; its result was not recorded",
                started.run.id,
                started.attempt_number,
            )
        return run

    def _attempt(self, task: Task[Any], started: StartedAttempt, ctx: Context) -> AttemptOutcome:
        try:
            result = call_task(task, started.run.payload, ctx)
            output = jsonvalue.encode(result, "output", self.rt.settings.limits.output_bytes)
        except Exception as exc:
            return AttemptOutcome(
                attempt_status=AttemptStatus.FAILED.value,
                run_status=RunStatus.FAILED,
                error=serialize_exception(exc),
            )
        return AttemptOutcome(
            attempt_status=AttemptStatus.COMPLETED.value,
            run_status=RunStatus.COMPLETED,
            output=output,
        )
