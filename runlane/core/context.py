"""The current run, reached through a ContextVar behind module functions.

``current()`` returns the executing attempt's state or None; ``require(what)`` raises
``NotInRunError`` with a message that names the call, outside a run.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass
class ActiveRun:
    """Per-attempt mutable state behind the ContextVar."""

    ctx: Context
    runtime: Runtime
    metadata: MetadataState
    tags: list[str] = field(default_factory=list)
    logs: LogBuffer | None = None
    control: AttemptControl | None = None
    waits: WaitState | None = None
    busy: Callable[[], bool] | None = None  # True when no executor slot here is free
    remote_metadata: RemoteOps = field(default_factory=RemoteOps)
    # held while pending updates are written, so a background flush never lands after the
    # attempt's final write (an older ``set`` overwriting the final value)
    flush_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def run_id(self) -> str:
        return self.ctx.run.id

    @property
    def replaying(self) -> bool:
        """Re-running code that already ran before the attempt was suspended."""
        return self.waits is not None and self.waits.replaying


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
