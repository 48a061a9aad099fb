"""``runlane.schedules``: cron tasks and their schedules, as in Trigger.dev.

``@schedules.task(id=..., cron="0 */2 * * *")`` defines a task that runs at every tick of its
schedules: the ``cron`` given here (DECLARATIVE, written when a worker starts) and any number
made with ``schedules.create`` (IMPERATIVE). The task receives a ``ScheduledPayload``. Ticks are
fired by the engine loop every worker runs (one leader at a time), one run per tick.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from runlane.core import cron as _cron
from runlane.core import runtime
from runlane.core import schedules as _ops
from runlane.core.aio import aio, run_sync
from runlane.core.options import UNSET
from runlane.core.schedules import Schedule, ScheduledPayload, ScheduleType
from runlane.core.schema import parser_for
from runlane.core.task import Task, define_task

__all__ = [
    "Schedule",
    "SchedulePage",
    "ScheduleType",
    "ScheduledPayload",
    "activate",
    "aio_activate",
    "aio_create",
    "aio_deactivate",
    "aio_delete",
    "aio_list",
    "aio_retrieve",
    "aio_timezones",
    "aio_update",
    "create",
    "deactivate",
    "delete",
    "list",
    "retrieve",
    "task",
    "timezones",
    "update",
]

R = TypeVar("R")
_list = list


def task(
    id: str | None = None, *, cron: str | Mapping[str, Any] | None = None, **options: Any
) -> Callable[[Callable[..., R]], Task[R]]:
    """Define a scheduled task: ``@schedules.task(id="daily-report", cron="0 5 * * *")`` or
    ``cron={"pattern": "0 5 * * *", "timezone": "Asia/Tokyo"}`` (UTC when not given); without
    ``cron`` it runs only on schedules made with :func:`create`. Other options are
    ``@task``'s. The function receives a :class:`ScheduledPayload`."""
    spec = _ops.parse_cron_option(cron) if cron is not None else None
    parse = parser_for(ScheduledPayload)

    def decorate(fn: Callable[..., R]) -> Task[R]:
        return define_task(fn, id, options, parse_payload=parse, scheduled=True, cron=spec)

    return decorate


def create(
    *,
    task: str | Task[Any],
    cron: str,
    timezone: str | None = None,
    external_id: str | None = None,
    deduplication_key: str | None = None,
) -> Schedule:
    """A new schedule of a scheduled task (UTC unless ``timezone``, an IANA name). With a
    ``deduplication_key`` another schedule has, that schedule is updated and returned."""
    return runtime.get().ops.create_schedule(
        task=_task_id(task),
        cron_expression=cron,
        timezone=timezone,
        external_id=external_id,
        deduplication_key=deduplication_key,
    )


def retrieve(schedule_id: str) -> Schedule:
    return runtime.get().ops.retrieve_schedule(schedule_id)


def update(
    schedule_id: str,
    *,
    task: str | Task[Any] | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    external_id: Any = UNSET,
    deduplication_key: Any = UNSET,
) -> Schedule:
    """Change an IMPERATIVE schedule; what is not given stays (``external_id=None`` clears
    it). A DECLARATIVE schedule changes with its task's code only."""
    return runtime.get().ops.update_schedule(
        schedule_id,
        task=_task_id(task) if task is not None else None,
        cron_expression=cron,
        timezone=timezone,
        external_id=external_id,
        deduplication_key=deduplication_key,
    )


def activate(schedule_id: str) -> Schedule:
    """Fire again from the next tick on."""
    return runtime.get().ops.set_schedule_active(schedule_id, True)


def deactivate(schedule_id: str) -> Schedule:
    """Stop firing (the schedule is kept)."""
    return runtime.get().ops.set_schedule_active(schedule_id, False)


def delete(schedule_id: str) -> Schedule:
    """Delete an IMPERATIVE schedule; returns it as it was. Its runs stay."""
    return runtime.get().ops.delete_schedule(schedule_id)


def timezones() -> _list[str]:
    """Every IANA time zone a schedule may use."""
    return _cron.timezones()


class SchedulePage:
    """One page of ``schedules.list`` (newest first). Iterating it walks every page."""

    def __init__(
        self, task: Sequence[str] | None, limit: int, data: Sequence[Schedule], cursor: str | None
    ) -> None:
        self.task = task
        self.limit = limit
        self.data: _list[Schedule] = _list(data)
        self.next_cursor = cursor

    def __repr__(self) -> str:
        return f"<SchedulePage {len(self.data)} schedules, has_next_page={self.has_next_page()}>"

    def has_next_page(self) -> bool:
        return self.next_cursor is not None

    def get_next_page(self) -> SchedulePage:
        if self.next_cursor is None:
            return SchedulePage(self.task, self.limit, [], None)
        return _fetch(self.task, self.limit, self.next_cursor)

    async def aio_get_next_page(self) -> SchedulePage:
        return await run_sync(self.get_next_page)

    def __iter__(self) -> Iterator[Schedule]:
        page: SchedulePage = self
        while True:
            yield from page.data
            if not page.has_next_page():
                return
            page = page.get_next_page()

    async def __aiter__(self) -> AsyncIterator[Schedule]:
        page: SchedulePage = self
        while True:
            for schedule in page.data:
                yield schedule
            if not page.has_next_page():
                return
            page = await page.aio_get_next_page()


def _fetch(task: Sequence[str] | None, limit: int, after: str | None) -> SchedulePage:
    found = runtime.get().ops.list_schedules(task=task, limit=limit, after=after)
    return SchedulePage(task, limit, found.data, found.next_cursor)


def list(*, task: str | Task[Any] | Sequence[str] | None = None, limit: int = 20) -> SchedulePage:
    """The first page of schedules (of ``task``, one id or several), newest first."""
    tasks: Sequence[str] | None = None
    if task is not None:
        tasks = [_task_id(task)] if isinstance(task, (str, Task)) else _list(task)
    return _fetch(tasks, limit, None)


def _task_id(task: str | Task[Any]) -> str:
    return task.id if isinstance(task, Task) else task


aio_create = aio(create)
aio_retrieve = aio(retrieve)
aio_update = aio(update)
aio_activate = aio(activate)
aio_deactivate = aio(deactivate)
aio_delete = aio(delete)
aio_timezones = aio(timezones)
aio_list = aio(list)
