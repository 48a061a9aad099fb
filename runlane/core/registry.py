"""The registry of the tasks defined in this process, and the queue a task runs on by default."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runlane.errors import DuplicateTaskError, TaskNotFoundError

if TYPE_CHECKING:
    from runlane.core.task import Task


def default_queue_name(task_id: str) -> str:
    return f"task/{task_id}"


class Registry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Task[Any]], None]] = []

    def add(self, task: Task[Any]) -> None:
        with self._lock:
            old = self._tasks.get(task.id)
            if old is not None and not _same_definition(old, task):
                raise DuplicateTaskError(
                    f"task id {task.id!r} is already used by {old.fn.__module__}."
                    f"{old.fn.__qualname__}; task ids must be unique"
                )
            self._tasks[task.id] = task
            listeners = list(self._listeners)
        for listener in listeners:
            listener(task)

    def get(self, task_id: str) -> Task[Any] | None:
        return self._tasks.get(task_id)

    def require(self, task_id: str) -> Task[Any]:
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"no task with id {task_id!r} is defined in this process")
        return task

    def ids(self) -> list[str]:
        return sorted(self._tasks)

    def all(self) -> list[Task[Any]]:
        return [self._tasks[k] for k in sorted(self._tasks)]

    def remove(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def on_add(self, listener: Callable[[Task[Any]], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def off_add(self, listener: Callable[[Task[Any]], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


def _same_definition(a: Task[Any], b: Task[Any]) -> bool:
    """A module imported twice (reloads, ``python -m``) redefines the same function."""
    fa, fb = a.fn, b.fn
    return (
        getattr(fa, "__module__", None) == getattr(fb, "__module__", None)
        and getattr(fa, "__qualname__", None) == getattr(fb, "__qualname__", None)
    ) or fa is fb


registry = Registry()
