"""``runlane.runs``: retrieve, poll, list, cancel, replay, reschedule, update_metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from runlane.api._common import batch_id_of, run_id_of
from runlane.core import operations, polling, runtime
from runlane.core.aio import aio, run_sync
from runlane.core.handles import RunHandle
from runlane.core.logs import LogEntry
from runlane.core.models import Run
from runlane.core.realtime import RealtimePart, Subscription
from runlane.core.types import RunQuery
from runlane.errors import InvalidOptionError

__all__ = [
    "RealtimePart",
    "RunPage",
    "Subscription",
    "aio_bulk_cancel",
    "aio_bulk_replay",
    "aio_cancel",
    "aio_list",
    "aio_logs",
    "aio_poll",
    "aio_replay",
    "aio_reschedule",
    "aio_retrieve",
    "aio_update_metadata",
    "bulk_cancel",
    "bulk_replay",
    "cancel",
    "list",
    "logs",
    "poll",
    "replay",
    "reschedule",
    "retrieve",
    "subscribe_to_batch",
    "subscribe_to_run",
    "subscribe_to_runs_with_tag",
    "update_metadata",
]

_list = list


def retrieve(run: str | RunHandle | Run) -> Run:
    """The run with its attempts, payload, output and error."""
    return runtime.get().ops.retrieve_run(run_id_of(run))


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
    return runtime.get().ops.cancel_run(run_id_of(run))


def replay(run: str | RunHandle | Run) -> RunHandle:
    """A new run of the same task with the same payload (and tags, metadata, queue)."""
    return runtime.get().ops.replay_run(run_id_of(run))


def reschedule(run: str | RunHandle | Run, delay: Any) -> Run:
    """Move a DELAYED run to a new time (``delay`` as in trigger)."""
    return runtime.get().ops.reschedule_run(run_id_of(run), delay)


def update_metadata(run: str | RunHandle | Run, metadata: dict[str, Any]) -> dict[str, Any]:
    """Replace a run's metadata."""
    return runtime.get().ops.update_run_metadata(run_id_of(run), metadata)


def logs(run: str | RunHandle | Run, *, after: int = 0, limit: int = 1000) -> list[LogEntry]:
    """The run's log (logger calls, spans, captured prints) in order; ``after`` is the
    ``seq`` of the last entry already read."""
    return runtime.get().ops.run_logs(run_id_of(run), after=after, limit=limit)


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
        return _fetch(replace(self.query, after=self.next_cursor))

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
    page = runtime.get().ops.list_runs(query)
    return RunPage(query, page.data, page.next_cursor)


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
        operations.run_query(
            status=status,
            task_identifier=task_identifier,
            tag=tag,
            from_=from_,
            to=to,
            batch=batch_id_of(batch) if batch is not None else None,
            schedule=schedule,
            version=version,
            queue=queue,
            is_test=is_test,
            limit=limit,
        )
    )


def bulk_cancel(*, limit: int = 1000, **filters: Any) -> operations.BulkResult:
    """Cancel every run matching ``filters`` (those of :func:`list`; at most ``limit``);
    finished runs are left as they are. ``.ids``: the runs canceled."""
    return runtime.get().ops.bulk_cancel_runs(_query(filters), limit=limit)


def bulk_replay(*, limit: int = 1000, **filters: Any) -> operations.BulkResult:
    """Replay every run matching ``filters`` (at most ``limit``). ``.ids``: the new runs."""
    return runtime.get().ops.bulk_replay_runs(_query(filters), limit=limit)


def subscribe_to_run(run: str | RunHandle | Run, *, cursor: int | None = None) -> Subscription:
    """The run on every change of its status, attempt, tags, metadata or output, first as it is
    now; ends once it is final. ``for run in ...`` or ``async for``; ``.with_streams()`` yields
    ``RealtimePart`` s with its ``metadata.stream`` chunks too. ``cursor`` (a subscription's
    ``.cursor``): resume after it, missing nothing."""
    return runtime.get().ops.subscribe("run", run_id_of(run), cursor=cursor)


def subscribe_to_runs_with_tag(
    tag: str | Sequence[str], *, cursor: int | None = None
) -> Subscription:
    """Every run with the tag (any of the tags) on each of its changes: first the latest 100
    runs with it as they are now, then as they change and as new ones come. Never ends by
    itself: leave the loop or ``close()`` it."""
    return runtime.get().ops.subscribe("tag", tag, cursor=cursor)


def subscribe_to_batch(batch: Any, *, cursor: int | None = None) -> Subscription:
    """The batch's runs on each of their changes; ends once every one is final."""
    return runtime.get().ops.subscribe("batch", batch_id_of(batch), cursor=cursor)


_FILTERS = frozenset(
    {
        "status",
        "task_identifier",
        "tag",
        "from_",
        "to",
        "batch",
        "schedule",
        "version",
        "queue",
        "is_test",
    }
)


def _query(filters: dict[str, Any]) -> RunQuery:
    unknown = sorted(set(filters) - _FILTERS)
    if unknown:
        raise InvalidOptionError(
            unknown[0], filters[unknown[0]], f"not a filter; one of {sorted(_FILTERS)}"
        )
    given = {k: v for k, v in filters.items() if v is not None}
    if not given:  # nothing would match everything by accident
        raise InvalidOptionError(
            "filters", filters, "give at least one filter (status=..., tag=...)"
        )
    if "batch" in given:
        given["batch"] = batch_id_of(given["batch"])
    return operations.run_query(**given, limit=1)


aio_retrieve = aio(retrieve)
aio_cancel = aio(cancel)
aio_replay = aio(replay)
aio_reschedule = aio(reschedule)
aio_update_metadata = aio(update_metadata)
aio_list = aio(list)
aio_logs = aio(logs)
aio_bulk_cancel = aio(bulk_cancel)
aio_bulk_replay = aio(bulk_replay)
