"""Public data: statuses, runs, attempts, errors, handles. Pydantic v2, frozen where values."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runlane.errors import SubtaskUnwrapError


class RunStatus(str, enum.Enum):
    WAITING_FOR_DEPLOY = "WAITING_FOR_DEPLOY"
    DELAYED = "DELAYED"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    REATTEMPTING = "REATTEMPTING"
    FROZEN = "FROZEN"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    INTERRUPTED = "INTERRUPTED"
    SYSTEM_FAILURE = "SYSTEM_FAILURE"
    EXPIRED = "EXPIRED"
    TIMED_OUT = "TIMED_OUT"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.CANCELED,
        RunStatus.FAILED,
        RunStatus.CRASHED,
        RunStatus.INTERRUPTED,
        RunStatus.SYSTEM_FAILURE,
        RunStatus.EXPIRED,
        RunStatus.TIMED_OUT,
    }
)
QUEUED_STATUSES = frozenset({RunStatus.WAITING_FOR_DEPLOY, RunStatus.DELAYED, RunStatus.QUEUED})
EXECUTING_STATUSES = frozenset({RunStatus.EXECUTING, RunStatus.REATTEMPTING, RunStatus.FROZEN})
FAILED_STATUSES = FINAL_STATUSES - {RunStatus.COMPLETED, RunStatus.CANCELED}


class AttemptStatus(str, enum.Enum):
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    CRASHED = "CRASHED"
    TIMED_OUT = "TIMED_OUT"
    SUSPENDED = "SUSPENDED"

    def __str__(self) -> str:
        return self.value


class TaskRunError(BaseModel):
    """A serialized error, as stored on runs and attempts."""

    model_config = ConfigDict(frozen=True)

    name: str
    message: str
    stack_trace: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


class Attempt(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    number: int
    status: AttemptStatus
    started_at: datetime
    finished_at: datetime | None = None
    error: TaskRunError | None = None
    worker_id: str | None = None
    machine: str | None = None


class Run(BaseModel):
    """A run as stored (``runs.retrieve``). ``status`` compares equal to its string."""

    model_config = ConfigDict(frozen=True)

    id: str
    task_identifier: str
    status: RunStatus
    environment: str
    payload: Any = None
    output: Any = None
    error: TaskRunError | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    attempt_count: int = 0
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    ttl: str | None = None
    delayed_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expired_at: datetime | None = None
    duration_ms: int = 0
    batch_id: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    depth: int = 0
    schedule_id: str | None = None
    queue: str
    concurrency_key: str | None = None
    max_attempts: int | None = None
    max_duration: int | None = None
    retry_at: datetime | None = None  # when a REATTEMPTING run is queued again
    machine: str | None = None
    version: str | None = None
    number: int = 0
    is_test: bool = False

    @property
    def is_queued(self) -> bool:
        return self.status in QUEUED_STATUSES

    @property
    def is_executing(self) -> bool:
        return self.status in EXECUTING_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_success(self) -> bool:
        return self.status is RunStatus.COMPLETED

    @property
    def is_failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def is_canceled(self) -> bool:
        return self.status is RunStatus.CANCELED


class TaskRunResult(BaseModel):
    """The result of a child run waited on: ``output`` when ok, else ``error``."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    id: str
    task_identifier: str
    output: Any = None
    error: TaskRunError | None = None

    def unwrap(self) -> Any:
        """The output, or raise ``SubtaskUnwrapError(run_id, task_id, cause)``."""
        if self.ok:
            return self.output
        raise SubtaskUnwrapError(self.id, self.task_identifier, self.error)

    @classmethod
    def of(cls, run: Run) -> TaskRunResult:
        if run.status is RunStatus.COMPLETED:
            return cls(ok=True, id=run.id, task_identifier=run.task_identifier, output=run.output)
        error = run.error or TaskRunError(
            name="Error", message=f"Run ended with status {run.status.value}"
        )
        return cls(ok=False, id=run.id, task_identifier=run.task_identifier, error=error)


class BatchResult(BaseModel):
    """``batch_trigger_and_wait``: the batch id and one result per item, in item order."""

    model_config = ConfigDict(frozen=True)

    id: str
    runs: list[TaskRunResult]

    def __iter__(self) -> Iterator[TaskRunResult]:  # type: ignore[override]
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> TaskRunResult:
        return self.runs[i]

    def unwrap(self) -> list[Any]:
        """Every output in item order; raises on the first failed run."""
        return [r.unwrap() for r in self.runs]


class PausedKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    concurrency_key: str
    paused_until: datetime | None = None


class QueueInfo(BaseModel):
    """A queue's limits and load (``queues.list()`` / ``queues.retrieve(name)``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    concurrency_limit: int | None = None
    total_concurrency_limit: int | None = None
    running: int = 0
    queued: int = 0
    paused: bool = False
    paused_until: datetime | None = None
    paused_keys: list[PausedKey] = Field(default_factory=list)


class Batch(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    environment: str
    run_ids: list[str]
    created_at: datetime
    parent_id: str | None = None

    @property
    def run_count(self) -> int:
        return len(self.run_ids)
