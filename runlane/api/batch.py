"""``runlane.batch``: batches over several tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runlane.api._common import batch_id_of
from runlane.core import runtime
from runlane.core.aio import aio
from runlane.core.handles import BatchHandle
from runlane.core.models import Batch, BatchResult, TaskRunResult
from runlane.core.options import check_items
from runlane.core.task import Task
from runlane.errors import InvalidOptionError

__all__ = [
    "aio_retrieve",
    "aio_trigger",
    "aio_trigger_and_wait",
    "aio_trigger_by_task",
    "aio_trigger_by_task_and_wait",
    "retrieve",
    "trigger",
    "trigger_and_wait",
    "trigger_by_task",
    "trigger_by_task_and_wait",
]


def _by_id_items(items: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any], None]]:
    out = []
    for i, item in enumerate(check_items(items)):
        if not isinstance(item, Mapping) or "id" not in item:
            raise InvalidOptionError(
                f"items[{i}]",
                item,
                'each item is {"id": task id, "payload": ..., "options": {...}}',
            )
        out.append((item["id"], {k: v for k, v in item.items() if k != "id"}, None))
    return out


def _by_task_items(items: Sequence[Any]) -> list[tuple[str, Mapping[str, Any], Task[Any]]]:
    out = []
    for i, item in enumerate(check_items(items)):
        if isinstance(item, Mapping) and isinstance(item.get("task"), Task):
            task = item["task"]
            body = {k: v for k, v in item.items() if k != "task"}
        elif isinstance(item, (tuple, list)) and 2 <= len(item) <= 3 and isinstance(item[0], Task):
            task = item[0]
            body = {"payload": item[1], "options": item[2] if len(item) == 3 else None}
        else:
            raise InvalidOptionError(
                f"items[{i}]",
                item,
                'each item is (task, payload[, options]) or {"task": task, "payload": ...}',
            )
        out.append((task.id, body, task))
    return out


def trigger(items: Sequence[Mapping[str, Any]]) -> BatchHandle:
    """Trigger runs of several tasks by id: ``[{"id": "a", "payload": ..., "options": ...}]``."""
    return runtime.get().engine.batch_trigger(_by_id_items(items))


def trigger_by_task(items: Sequence[Any]) -> BatchHandle:
    """Trigger runs of several task objects: ``[(task_a, payload), (task_b, payload, opts)]``."""
    return runtime.get().engine.batch_trigger(_by_task_items(items))


def trigger_and_wait(items: Sequence[Mapping[str, Any]]) -> BatchResult:
    """Inside a task: trigger runs of several tasks by id and wait for all of them."""
    return _wait(_by_id_items(items), "batch.trigger_and_wait()")


def trigger_by_task_and_wait(items: Sequence[Any]) -> BatchResult:
    """Inside a task: trigger runs of several task objects and wait for all of them."""
    return _wait(_by_task_items(items), "batch.trigger_by_task_and_wait()")


def _wait(items: list[tuple[str, Mapping[str, Any], Task[Any] | None]], what: str) -> BatchResult:
    batch_id, runs = runtime.get().engine.trigger_and_wait(items, kind="batch", what=what)
    assert batch_id is not None
    return BatchResult(id=batch_id, runs=[TaskRunResult.of(r) for r in runs])


def retrieve(batch: str | BatchHandle) -> Batch:
    return runtime.get().ops.retrieve_batch(batch_id_of(batch))


aio_trigger = aio(trigger)
aio_trigger_by_task = aio(trigger_by_task)
aio_retrieve = aio(retrieve)
aio_trigger_and_wait = aio(trigger_and_wait)
aio_trigger_by_task_and_wait = aio(trigger_by_task_and_wait)
