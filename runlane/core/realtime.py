"""Realtime: subscriptions to runs (by id, tag, batch, or every run) that follow the store's
change feed.

The runtime's ``Hub`` (core/hub.py) follows the feed in a thread, reads the runs that changed
once, and hands them to the subscriptions that watch them (this module: the reader's side). A
subscription yields a run when what a subscriber sees of it changed (status, attempt, tags,
metadata, output, error, delay), first the current state of its runs, and ends when they are
final; with streams it also yields the chunks ``metadata.stream`` wrote, in order.

Positions: every feed entry has one (increasing); ``subscription.cursor`` is the position of
the last item yielded, and a subscription started with ``cursor=`` resumes after it: the
changes since are read back from the feed, or, when the feed no longer holds them all, the
current state of the runs (and every chunk after the cursor) is yielded instead, so a
subscriber never misses a final state or a chunk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from runlane.core.hub import FEED_PAGE, Item, hub_of, run_signature
from runlane.core.models import FINAL_STATUSES, Run
from runlane.core.types import Change, RunQuery, StreamChunk
from runlane.errors import InvalidOptionError, RunNotFoundError

if TYPE_CHECKING:
    from runlane.core.hub import Hub
    from runlane.core.runtime import Runtime

log = logging.getLogger("runlane.realtime")

MAILBOX = 1_000  # runs whose changes a subscription keeps with the run read by the hub; past
# that it keeps only which runs changed, and its reader reads them
MAX_TAGS = 10  # tags one subscription may watch

KINDS = ("run", "tag", "batch", "all")
SEEN_MAX = 10_000  # runs a never-ending subscription remembers; past that, final ones go


class RealtimePart(BaseModel):
    """An item of ``subscription.with_streams()``: ``type`` is "run" (``run`` changed) or the
    key of a stream (``chunk`` is what ``metadata.stream`` wrote; ``run`` its run as last
    seen). ``cursor``: resume after this part."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    type: str
    run: Run | None
    run_id: str
    chunk: Any = None
    cursor: int = 0


class Subscription:
    """Iterate it (``for`` or ``async for``) for the runs; ``with_streams()`` for parts.

    ``kind`` "run" (``target`` a run id), "tag" (a tuple of tags: runs with any of them) or
    "batch" (a batch id). ``cursor``: resume after this position. Closing it (``close()``,
    ``with``, or leaving the loop of ``for``) lets its runs go."""

    def __init__(
        self,
        rt: Runtime,
        kind: str,
        target: str | tuple[str, ...],
        *,
        cursor: int | None = None,
        streams: bool = False,
    ) -> None:
        if kind not in KINDS:
            raise InvalidOptionError("kind", kind, f"one of {', '.join(KINDS)}")
        self.rt = rt
        self.kind = kind
        self.target = target
        self.streams = streams
        self.cursor: int = cursor if cursor is not None else 0
        self._resume = cursor
        # the changes for the reader, one a run and kind (a run's later change replaces its
        # earlier one: the reader yields the run as it is then anyway), in order
        self._mailbox: dict[tuple[str, str], Item] = {}
        self._mail_lock = threading.Lock()
        self._resync_at: int | None = None  # the feed lost changes: re-read state
        self._reread = False  # the mailbox keeps changes without their runs: read them
        self.wake_sync = threading.Event()
        self.wake_async: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._seen: dict[str, tuple[Any, ...]] = {}  # run id -> signature last yielded
        self._chunk_after: dict[str, int] = {}  # run id -> position of its last chunk read
        self._runs: set[str] = set()  # the run (or batch's runs) watched; tags: by tag
        self._final: set[str] = set()
        self._latest: dict[str, Run] = {}
        self._started = False
        self._closed = False
        self._ended = False
        self._hub: Hub | None = None
        self._ready: deque[RealtimePart] = deque()
        self._processed = 0  # the position of the last change turned into items (or none)

    # ------------------------------------------------------------------ public surface
    def with_streams(self) -> Subscription:
        """The same subscription yielding ``RealtimePart`` s: the runs' changes and their
        streams' chunks."""
        if self._started:
            raise InvalidOptionError(
                "with_streams", True, "call it before the subscription is iterated"
            )
        self.streams = True
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._hub is not None:
            self._hub.detach(self)
        self._wake()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Subscription {self.kind} {self.target!r} cursor={self.cursor}>"

    def __iter__(self) -> Iterator[Any]:
        try:
            self._start()
            while True:
                while not self._ready:
                    if self._closed or self._ended:
                        return
                    self.wake_sync.clear()
                    if not self._collect():
                        self.wake_sync.wait(1.0)
                yield self._take()
        finally:
            self.close()

    async def _batches(self, idle: float | None = None) -> AsyncIterator[list[RealtimePart]]:
        """What is ready each time something is: a list of parts (an empty one when nothing
        came for ``idle`` seconds)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self.wake_async = (loop, event)
        try:
            await asyncio.to_thread(self._start)
            while True:
                waited = 0.0
                while not self._ready:
                    if self._closed or self._ended:
                        return
                    event.clear()
                    if self._needs_store():
                        got = await asyncio.to_thread(self._collect)
                    else:
                        got = self._collect()
                    if got:
                        continue
                    step = 1.0 if idle is None else min(1.0, idle - waited)
                    timer = loop.call_later(step, event.set)  # (no task, as wait_for makes)
                    started = loop.time()
                    await event.wait()
                    timer.cancel()
                    waited += loop.time() - started
                    if idle is not None and waited >= idle and not self._ready:
                        waited = 0.0
                        yield []  # nothing for ``idle`` seconds
                batch = []
                while self._ready:
                    batch.append(self._take_part())
                yield batch
        finally:
            self.close()

    async def _aiter(self) -> AsyncIterator[Any]:
        async for batch in self._batches():
            for part in batch:
                yield part if self.streams else part.run

    def batches(self, idle: float) -> AsyncIterator[list[RealtimePart]]:
        """``async for`` over what is ready each time: a list of ``RealtimePart`` s (with or
        without ``with_streams()``; an empty list each time nothing came for ``idle``
        seconds). A server writes each batch at once and a heartbeat when idle."""
        return self._batches(idle)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._aiter()

    # ------------------------------------------------------------------ the hub's side
    @property
    def watched(self) -> frozenset[str]:
        """The run ids this subscription watches (the run, the batch's runs; none for tags
        and kind "all", which the hub matches otherwise)."""
        return frozenset(self._runs)

    def offer(self, items: Sequence[Item]) -> bool:
        """Called by the hub's thread with the changes routed to it and their runs; True when
        it took some (the hub then wakes its reader)."""
        mine = [item for item in items if self._watches(item[0], item[1])]
        if not mine:
            return False
        with self._mail_lock:
            mailbox = self._mailbox
            behind = len(mailbox) >= MAILBOX
            for item in mine:
                key = (item[0].kind, item[0].run_id)
                mailbox.pop(key, None)
                mailbox[key] = (item[0], None, None) if behind else item
            if not behind and len(mailbox) >= MAILBOX:
                # a slow reader: its pending changes keep no run (the reader reads the runs
                # it is due when it comes), so what it holds stays small
                for key, (change, _, _) in mailbox.items():
                    mailbox[key] = (change, None, None)
                self._reread = True
        return True

    def lost_changes(self, head: int) -> None:
        """The feed no longer holds changes this subscription was due: re-read state."""
        with self._mail_lock:
            self._mailbox.clear()
            self._resync_at = head
        self._wake()

    def _watches(self, change: Change, run: Run | None) -> bool:
        if self.kind == "tag":
            return run is not None and any(t in run.tags for t in self.target)
        # a batch's runs are known when it starts (a batch never gains runs)
        return change.run_id in self._runs

    def _wake(self) -> None:
        self.wake_sync.set()
        if self.wake_async is not None:
            loop, event = self.wake_async
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed
                pass

    # ------------------------------------------------------------------ the reader's side
    def _start(self) -> None:
        """Attach to the hub, then yield what the subscriber has not seen yet: the current
        state (a new subscription), or the changes after its cursor."""
        if self._started:
            return
        self._started = True
        store = self.rt.store
        if self.kind == "run":
            run_id = str(self.target)
            self._runs = {run_id}
        elif self.kind == "batch":
            batch = store.get_batch(str(self.target))
            if batch is None:
                raise RunNotFoundError(f"no batch {self.target!r}")
            self._runs = set(batch.run_ids)
        self._hub = hub_of(self.rt)
        start = self._hub.attach(self)
        if self.kind == "run" and store.get_run(str(self.target), with_attempts=False) is None:
            self.close()
            raise RunNotFoundError(f"no run {self.target!r}")
        if self._resume is None:
            self._snapshot(start, chunks_after=0)
        else:
            self._catch_up(self._resume, start)
        self._check_end()

    def _snapshot(self, position: int, *, chunks_after: int | None) -> None:
        """Yield the current state of the runs watched (and their chunks after
        ``chunks_after``: None leaves the chunk positions as they are)."""
        self._processed = max(self._processed, position)
        for run in self._current():
            if self.streams:
                self._latest[run.id] = run
            if self.streams:  # the chunks first: the state's cursor is past them
                if chunks_after is not None:
                    self._chunk_after.setdefault(run.id, chunks_after)
                self._add_chunks(run.id)
            self._add_run(run, position)

    def _current(self) -> list[Run]:
        """The runs watched as they are now, oldest first (a tag's: its latest)."""
        return self._tagged() if self.kind == "tag" else self.rt.store.get_runs(sorted(self._runs))

    def _tagged(self) -> list[Run]:
        found: dict[str, Run] = {}
        for tag in self.target:
            runs, _ = self.rt.store.list_runs(RunQuery(tag=(tag,), limit=100))
            for run in runs:
                found.setdefault(run.id, run)
        return sorted(found.values(), key=lambda r: (r.created_at, r.id))

    def _catch_up(self, after: int, until: int) -> None:
        """The changes in (after, until] from the feed (the hub hands those after)."""
        store = self.rt.store
        self.cursor = self._processed = after
        if self.streams:
            for run_id in self._runs:
                self._chunk_after.setdefault(run_id, after)
        position = after
        first = True
        while position < until or first:  # (read once at least: the feed may have lost it)
            first = False
            read = store.read_feed(position, limit=FEED_PAGE)
            if read.gap:
                self._snapshot(until, chunks_after=after)
                return
            if not read.changes:
                break
            runs = {r.id: r for r in store.get_runs([c.run_id for c in read.changes])}
            for change in read.changes:
                if change.position > until:
                    break
                run = runs.get(change.run_id)
                if self._watches(change, run):
                    self._apply(change, run)
            position = read.head
        if self.kind != "tag":  # the runs' state, to know which are final
            for run in store.get_runs(sorted(self._runs)):
                if run.status in FINAL_STATUSES:
                    self._final.add(run.id)
                    self._seen.setdefault(run.id, run_signature(run))

    def _needs_store(self) -> bool:
        with self._mail_lock:
            return (
                self._resync_at is not None
                or self._reread
                or (self.streams and any(kind == "s" for kind, _ in self._mailbox))
            )

    def _collect(self) -> bool:
        """Turn the mailbox into items ready to yield; False when there was nothing."""
        with self._mail_lock:
            mail = list(self._mailbox.values())
            self._mailbox.clear()
            resync, self._resync_at = self._resync_at, None
            reread, self._reread = self._reread, False
        if resync is not None:
            self._snapshot(resync, chunks_after=None)
        if reread:  # the runs as they are now
            ids = [change.run_id for change, _, _ in mail if change.kind == "r"]
            runs = {run.id: run for run in self.rt.store.get_runs(ids)}
            mail = [(change, runs.get(change.run_id), None) for change, _, _ in mail]
        for change, run, signature in mail:
            self._apply(change, run, signature)
        self._check_end()
        return bool(self._ready) or self._ended

    def _apply(
        self, change: Change, run: Run | None, signature: tuple[Any, ...] | None = None
    ) -> None:
        self._processed = max(self._processed, change.position)
        if change.kind == "s":
            if self.streams:
                self._add_chunks(change.run_id)
            return
        if run is not None:
            self._add_run(run, change.position, signature)

    def _add_run(self, run: Run, position: int, signature: tuple[Any, ...] | None = None) -> None:
        if self.kind == "tag" and self._tags_left(run):
            return
        if signature is None:
            signature = run_signature(run)
        seen = self._seen.get(run.id)
        if seen == signature or (seen is not None and run.updated_at < seen[2]):
            return  # nothing new, or older than what was yielded (read before it, sent after)
        self._seen[run.id] = signature
        if self.streams:  # (what a chunk part carries)
            self._latest[run.id] = run
        if run.status in FINAL_STATUSES:
            self._final.add(run.id)
        # (built without validation: every field is runlane's own, made here)
        self._ready.append(
            RealtimePart.model_construct(type="run", run=run, run_id=run.id, cursor=position)
        )
        if len(self._seen) > SEEN_MAX and self.kind in ("tag", "all"):
            self._forget_final()

    def _forget_final(self) -> None:
        """A subscription that never ends forgets its final runs (what it holds stays
        bounded): a later change of one (metadata set on a finished run) is yielded again."""
        for run_id in self._final:
            self._seen.pop(run_id, None)
            self._latest.pop(run_id, None)
            self._chunk_after.pop(run_id, None)
        self._final.clear()

    def _tags_left(self, run: Run) -> bool:
        return not any(t in run.tags for t in self.target)

    def _add_chunks(self, run_id: str) -> None:
        after = self._chunk_after.get(run_id, 0)
        while True:
            chunks: list[StreamChunk] = self.rt.store.read_stream(run_id, after=after, limit=1000)
            for chunk in chunks:
                self._ready.append(
                    RealtimePart.model_construct(
                        type=chunk.key,
                        run=self._latest.get(run_id),
                        run_id=run_id,
                        chunk=json.loads(chunk.data),
                        cursor=chunk.position,
                    )
                )
                after = chunk.position
            self._chunk_after[run_id] = after
            if len(chunks) < 1000:
                return

    def _check_end(self) -> None:
        if self.kind == "tag" or self._ended:
            return
        if self._runs and self._runs <= self._final:
            # the feed's head: a final state read early (a run's state is read after its
            # change) leaves later entries of the run unread, which a resume skips
            self._processed = max(self._processed, self.rt.store.read_feed(-1, limit=1).head)
            if self.streams:
                for run_id in sorted(self._runs):
                    self._add_chunks(run_id)  # every chunk written before the end
            self._ended = True

    def _take(self) -> Any:
        part = self._take_part()
        return part if self.streams else part.run

    def _take_part(self) -> RealtimePart:
        part = self._ready.popleft()
        if not self._ready and self._processed > part.cursor:
            # every change read so far is delivered (those left out said nothing new): the
            # cursor moves past them, so a resume does not yield this state again
            part = part.model_copy(update={"cursor": self._processed})
        self.cursor = max(self.cursor, part.cursor)
        return part


class AllRunsSubscription(Subscription):
    """Kind "all": every run of the environment on each of its changes (``runlane runs tail``),
    first the latest ``query.limit`` runs (at most 100) as they are now; it watches no fixed
    set of runs, so it never ends by itself. Of the ``RunQuery`` only ``task_identifier`` and
    ``status`` narrow it (a change is yielded when the run's new status is one of ``status``)
    and ``limit`` sizes the first snapshot."""

    def __init__(
        self, rt: Runtime, query: RunQuery, *, cursor: int | None = None, streams: bool = False
    ) -> None:
        super().__init__(rt, "all", "", cursor=cursor, streams=streams)
        self.query = RunQuery(
            status=tuple(query.status),
            task_identifier=tuple(query.task_identifier),
            limit=max(1, min(query.limit, 100)),
        )

    def _watches(self, change: Change, run: Run | None) -> bool:
        if run is None:
            return False
        query = self.query
        return (not query.status or run.status in query.status) and (
            not query.task_identifier or run.task_identifier in query.task_identifier
        )

    def _current(self) -> list[Run]:
        runs, _ = self.rt.store.list_runs(self.query)
        return runs[::-1]  # (listed newest first)


def subscribe(
    rt: Runtime,
    kind: str,
    target: str | Sequence[str] | RunQuery,
    *,
    cursor: int | None = None,
    streams: bool = False,
) -> Subscription:
    """A subscription (not started until iterated); checks its arguments first. Kind "all"
    takes a ``RunQuery`` (or "") as its target: see ``AllRunsSubscription``."""
    if cursor is not None and (
        isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0
    ):
        raise InvalidOptionError("cursor", cursor, "a position from an earlier subscription")
    if kind == "all":
        if target == "":
            target = RunQuery(limit=100)
        if not isinstance(target, RunQuery):
            raise InvalidOptionError("all", target, 'a RunQuery (or "" for every run)')
        return AllRunsSubscription(rt, target, cursor=cursor, streams=streams)
    if isinstance(target, RunQuery):
        raise InvalidOptionError(kind, target, f"a {kind} id or tags, not a RunQuery")
    if kind == "tag":
        tags = (target,) if isinstance(target, str) else tuple(target)
        if not tags or len(tags) > MAX_TAGS or not all(isinstance(t, str) and t for t in tags):
            raise InvalidOptionError("tag", target, f"1 to {MAX_TAGS} non-empty tags")
        return Subscription(rt, kind, tags, cursor=cursor, streams=streams)
    if not isinstance(target, str) or not target:
        raise InvalidOptionError(kind, target, f"a {kind} id")
    return Subscription(rt, kind, target, cursor=cursor, streams=streams)
