"""runlane: Trigger.dev v3's task model for Python, on the brokers you already run.

import runlane

@runlane.task(id="hello")
def hello(payload, ctx):
    return {"greeting": f"hello {payload['name']}"}

handle = hello.trigger({"name": "world"})
with runlane.Worker():
    ...
runlane.runs.retrieve(handle).status   # "COMPLETED"
"""

from __future__ import annotations

from runlane import config as _config  # installs the default runtime factory
from runlane.api import (
    auth,
    batch,
    idempotency_keys,
    queues,
    retry,
    runs,
    schedules,
    tags,
    tasks,
    timeout,
    usage,
    wait,
)
from runlane.api.logger import logger
from runlane.api.metadata import metadata
from runlane.config import configure
from runlane.core.clock import FakeClock
from runlane.core.context import Context
from runlane.core.handles import BatchHandle, RunHandle
from runlane.core.idempotency import IdempotencyKey
from runlane.core.models import (
    Attempt,
    AttemptStatus,
    Batch,
    BatchResult,
    QueueInfo,
    Run,
    RunStatus,
    TaskRunError,
    TaskRunResult,
)
from runlane.core.options import TIMEOUT_NONE, QueueSpec, queue
from runlane.core.schedules import Schedule, ScheduledPayload, ScheduleType
from runlane.core.schema import schema_task
from runlane.core.task import Task, task
from runlane.core.worker import Worker

del _config

__version__ = "0.1.0"

__all__ = [
    "TIMEOUT_NONE",
    "Attempt",
    "AttemptStatus",
    "Batch",
    "BatchHandle",
    "BatchResult",
    "Context",
    "FakeClock",
    "IdempotencyKey",
    "QueueInfo",
    "QueueSpec",
    "Run",
    "RunHandle",
    "RunStatus",
    "Schedule",
    "ScheduleType",
    "ScheduledPayload",
    "Task",
    "TaskRunError",
    "TaskRunResult",
    "Worker",
    "__version__",
    "auth",
    "batch",
    "configure",
    "idempotency_keys",
    "logger",
    "metadata",
    "queue",
    "queues",
    "retry",
    "runs",
    "schedules",
    "schema_task",
    "tags",
    "task",
    "tasks",
    "timeout",
    "usage",
    "wait",
]
