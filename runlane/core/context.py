"""The current run, reached through a ContextVar behind module functions.

``current()`` returns the executing attempt's state or None; ``require(what)`` raises
``NotInRunError`` with a message that names the call, outside a run.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from runlane.core.metadata import RemoteOps
from runlane.errors import NotInRunError

if TYPE_CHECKING:
    from runlane.core.interrupt import AttemptControl
    from runlane.core.logs import LogBuffer
    from runlane.core.metadata import MetadataState
    from runlane.core.runtime import Runtime
    from runlane.core.waits import WaitState


class TaskInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    file_path: str | None = None
    export_name: str | None = None


class AttemptInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    number: int
    started_at: datetime
    worker_id: str | None = None
    status: str = "EXECUTING"


class RunInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    tags: list[str]
    is_test: bool
    created_at: datetime
    started_at: datetime
    idempotency_key: str | None = None
    max_attempts: int | None = None
    max_duration: int | None = None
    duration_ms: int = 0
    version: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    depth: int = 0
    batch_id: str | None = None
    concurrency_key: str | None = None


class QueueInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    name: str


class EnvironmentInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    slug: str
    type: str


class BatchInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str


class MachineInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    cpu: float
    memory: float


class Context(BaseModel):
    """What a task knows about its run (``ctx``). Fixed when the attempt starts."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    task: TaskInfo
    attempt: AttemptInfo
    run: RunInfo
    queue: QueueInfo
    environment: EnvironmentInfo
    batch: BatchInfo | None = None
    machine: MachineInfo | None = None
    init: Any = None


ENVIRONMENT_TYPES = {
    "dev": "DEVELOPMENT",
    "staging": "STAGING",
    "prod": "PRODUCTION",
    "preview": "PREVIEW",
}


class ActiveRun:
    """Per-attempt mutable state behind the ContextVar.

    ``ctx`` is the attempt's :class:`Context`, given as is or built on first use by
    ``make_ctx`` (with ``run_id`` and ``attempt_number`` given apart): most attempts of a
    plain task never read it, and building it is an eighth of an attempt's own CPU."""

    def __init__(
        self,
        ctx: Context | None = None,
        runtime: Runtime | None = None,
        metadata: MetadataState | None = None,
        tags: list[str] | None = None,
        logs: LogBuffer | None = None,
        control: AttemptControl | None = None,
        waits: WaitState | None = None,
        busy: Callable[[], bool] | None = None,  # True when no executor slot here is free
        remote_metadata: RemoteOps | None = None,
        *,
        make_ctx: Callable[[], Context] | None = None,
        run_id: str | None = None,
        attempt_number: int | None = None,
    ) -> None:
        if ctx is None:
            if make_ctx is None or run_id is None or attempt_number is None:
                raise TypeError("ActiveRun needs ctx, or make_ctx with run_id and attempt_number")
            self._ctx: Context | None = None
            self.run_id, self.attempt_number = run_id, attempt_number
        else:
            self._ctx = ctx
            self.run_id, self.attempt_number = ctx.run.id, ctx.attempt.number
        self._make_ctx = make_ctx
        self._ctx_lock = threading.Lock()
        self.runtime = runtime  # type: ignore[assignment]  # None only in unit tests
        self.metadata = metadata  # type: ignore[assignment]
        self.tags = tags if tags is not None else []
        self.logs = logs
        self.control = control
        self.waits = waits
        self.busy = busy
        # when the store's lease on this attempt lapses, as far as this process knows (set at
        # its start and by each renewal: time.time() seconds)
        self.lease_until = float("inf")
        self.remote_metadata = remote_metadata if remote_metadata is not None else RemoteOps()
        # held while pending updates are written, so a background flush never lands after the
        # attempt's final write (an older ``set`` overwriting the final value)
        self.flush_lock = threading.Lock()

    runtime: Runtime
    metadata: MetadataState

    @property
    def ctx(self) -> Context:
        ctx = self._ctx
        if ctx is None:  # built once, even when the supervisor asks at the same moment
            with self._ctx_lock:
                ctx = self._ctx
                if ctx is None:
                    assert self._make_ctx is not None
                    ctx = self._ctx = self._make_ctx()
        return ctx

    @ctx.setter
    def ctx(self, value: Context) -> None:
        self._ctx = value

    @property
    def replaying(self) -> bool:
        """Re-running code that already ran before the attempt was suspended."""
        return self.waits is not None and self.waits.replaying

    def __repr__(self) -> str:
        return f"<ActiveRun {self.run_id} attempt {self.attempt_number}>"


_current: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "runlane_current_run", default=None
)


def current() -> ActiveRun | None:
    return _current.get()


def require(what: str) -> ActiveRun:
    active = _current.get()
    if active is None:
        raise NotInRunError(f"{what} can only be used inside a running task")
    return active


def activate(active: ActiveRun | None) -> contextvars.Token[ActiveRun | None]:
    return _current.set(active)


def deactivate(token: contextvars.Token[ActiveRun | None]) -> None:
    _current.reset(token)
