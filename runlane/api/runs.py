"""``runlane.runs``: retrieve, poll, list, cancel, replay, reschedule, update_metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from runlane.api._common import batch_id_of, run_id_of
from runlane.core import polling, runtime
from runlane.core.aio import aio, run_sync
from runlane.core.clock import to_timestamp
from runlane.core.durations import parse_iso_datetime
from runlane.core.logs import LogEntry
from runlane.core.models import Run, RunHandle, RunStatus
from runlane.core.types import RunQuery
from runlane.errors import InvalidOptionError, RunNotFoundError

__all__ = [
    "RunPage",
    "aio_cancel",
    "aio_list",
    "aio_logs",
    "aio_poll",
    "aio_replay",
    "aio_reschedule",
    "aio_retrieve",
    "aio_update_metadata",
    "cancel",
    "list",
    "logs",
    "poll",
    "replay",
    "reschedule",
    "retrieve",
    "update_metadata",
]

_list = list
MAX_PAGE = 100


def retrieve(run: str | RunHandle | Run) -> Run:
    """The run with its attempts, payload, output and error."""
    return runtime.get().engine.retrieve(run_id_of(run))


def poll(
    run: str | RunHandle | Run, *, timeout: float | None = None, poll_interval_ms: int = 1000
) -> Run:
    """Block until the run is final and return it (``handle.wait()`` is the same). Raises
    ``RunTimeoutError`` (a ``TimeoutError``) after ``timeout`` seconds; the run goes on.
    Meant for scripts, tests and consoles: inside a task, ``trigger_and_wait`` frees the
    worker while it waits."""
    return polling.poll(run_id_of(run), timeout, poll_interval_ms)


async def aio_poll(
    run: str | RunHandle | Run, *, timeout: float | None = None, poll_interval_ms: int = 1000
) -> Run:
    """Awaitable twin of :func:`poll` (it holds no thread while it sleeps)."""
    return await polling.aio_poll(run_id_of(run), timeout, poll_interval_ms)


def cancel(run: str | RunHandle | Run) -> Run:
    """Cancel a run. A finished run is left as it is."""
    return runtime.get().engine.cancel(run_id_of(run))


def replay(run: str | RunHandle | Run) -> RunHandle:
    """A new run of the same task with the same payload (and tags, metadata, queue)."""
    return runtime.get().engine.replay(run_id_of(run))


def reschedule(run: str | RunHandle | Run, delay: Any) -> Run:
    """Move a DELAYED run to a new time (``delay`` as in trigger)."""
    return runtime.get().engine.reschedule(run_id_of(run), delay)


def update_metadata(run: str | RunHandle | Run, metadata: dict[str, Any]) -> dict[str, Any]:
    """Replace a run's metadata."""
    return runtime.get().engine.update_metadata(run_id_of(run), metadata)


def logs(run: str | RunHandle | Run, *, after: int = 0, limit: int = 1000) -> list[LogEntry]:
    """The run's log (logger calls, spans, captured prints) in order; ``after`` is the
    ``seq`` of the last entry already read."""
    rt = runtime.get()
    run_id = run_id_of(run)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidOptionError("limit", limit, "must be an integer from 1 to 10000")
    if rt.store.get_run(run_id, with_attempts=False) is None:
        raise RunNotFoundError(f"no run {run_id!r} in environment {rt.environment!r}")
    return rt.store.get_logs(run_id, after=after, limit=limit)


def _strings(value: Any, option: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (_list, tuple, set, frozenset)) or not all(
        isinstance(v, str) for v in items
    ):
        raise InvalidOptionError(option, value, "must be a string or a list of strings")
    return tuple(items)


def _time(value: Any, option: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_timestamp(value)
    if isinstance(value, date):
        return to_timestamp(datetime(value.year, value.month, value.day))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return to_timestamp(parse_iso_datetime(value, option))
    raise InvalidOptionError(option, value, "expected a datetime, an ISO date or a timestamp")


def _query(
    *,
    status: Any = None,
    task_identifier: Any = None,
    tag: Any = None,
    from_: Any = None,
    to: Any = None,
    batch: Any = None,
    schedule: Any = None,
    version: Any = None,
    queue: Any = None,
    is_test: bool | None = None,
    limit: int = 20,
) -> RunQuery:
    statuses = _strings(status, "status")
    valid = {s.value for s in RunStatus}
    for s in statuses:
        if s not in valid:
            raise InvalidOptionError("status", s, f"unknown status; one of {sorted(valid)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidOptionError("limit", limit, f"must be an integer from 1 to {MAX_PAGE}")
    return RunQuery(
        status=statuses,
        task_identifier=_strings(task_identifier, "task_identifier"),
        tag=_strings(tag, "tag"),
        created_from=_time(from_, "from_"),
        created_to=_time(to, "to"),
        batch=batch_id_of(batch) if batch is not None else None,
        schedule=schedule,
        version=_strings(version, "version"),
        queue=_strings(queue, "queue"),
        is_test=is_test,
        limit=limit,
    )


class RunPage:
    """One page of ``runs.list`` (newest first). Iterating it walks every following page."""

    def __init__(self, query: RunQuery, data: Sequence[Run], next_cursor: str | None) -> None:
        self.query = query
        self.data: _list[Run] = _list(data)
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"<RunPage {len(self.data)} runs, has_next_page={self.has_next_page()}>"

    def has_next_page(self) -> bool:
        return self.next_cursor is not None

    def get_next_page(self) -> RunPage:
        if self.next_cursor is None:
            return RunPage(self.query, [], None)
        return _fetch(RunQuery(**{**self.query.__dict__, "after": self.next_cursor}))

    async def aio_get_next_page(self) -> RunPage:
        return await run_sync(self.get_next_page)

    def __iter__(self) -> Iterator[Run]:
        page: RunPage = self
        while True:
            yield from page.data
            if not page.has_next_page():
                return
            page = page.get_next_page()

    async def __aiter__(self) -> AsyncIterator[Run]:
        page: RunPage = self
        while True:
            for run in page.data:
                yield run
            if not page.has_next_page():
                return
            page = await page.aio_get_next_page()


def _fetch(query: RunQuery) -> RunPage:
    data, cursor = runtime.get().store.list_runs(query)
    return RunPage(query, data, cursor)


def list(
    *,
    status: str | Sequence[str] | None = None,
    task_identifier: str | Sequence[str] | None = None,
    tag: str | Sequence[str] | None = None,
    from_: datetime | str | float | None = None,
    to: datetime | str | float | None = None,
    batch: str | None = None,
    schedule: str | None = None,
    version: str | Sequence[str] | None = None,
    queue: str | Sequence[str] | None = None,
    is_test: bool | None = None,
    limit: int = 20,
) -> RunPage:
    """The first page of runs matching every filter given, newest first."""
    return _fetch(
        _query(
            status=status,
            task_identifier=task_identifier,
            tag=tag,
            from_=from_,
            to=to,
            batch=batch,
            schedule=schedule,
            version=version,
            queue=queue,
            is_test=is_test,
            limit=limit,
        )
    )


aio_retrieve = aio(retrieve)
aio_cancel = aio(cancel)
aio_replay = aio(replay)
aio_reschedule = aio(reschedule)
aio_update_metadata = aio(update_metadata)
aio_list = aio(list)
aio_logs = aio(logs)
