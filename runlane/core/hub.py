"""The hub: one thread a runtime follows the store's change feed for every realtime subscription
of the process (``Store.read_feed``: Redis blocks on its ``feed`` stream, SQLite is woken by
this process's commits and polls for other processes'), reads the runs that changed once, and
routes each change to the subscriptions that watch its run, one of its tags, or every run
(core/realtime.py: what a subscription does with them). ``Runtime.close`` stops it before the
store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runlane.core import jsonvalue
from runlane.core.models import Run
from runlane.core.types import Change
from runlane.errors import RunlaneError

if TYPE_CHECKING:
    from runlane.core.realtime import Subscription
    from runlane.core.runtime import Runtime

log = logging.getLogger("runlane.realtime")

FEED_PAGE = 1000  # feed entries read in one call
IDLE_STOP = 5.0  # seconds the hub's thread lives on with no subscription

# a change routed to a subscription: the change, its run as read then, the run's signature
Item = tuple[Change, "Run | None", "tuple[Any, ...] | None"]


def run_signature(run: Run) -> tuple[Any, ...]:
    """What a subscriber sees of a run: a change of any of it is yielded, nothing else."""
    return (
        run.status,
        run.attempt_count,
        run.updated_at,
        tuple(run.tags),
        jsonvalue.dumps(run.metadata),
        run.delayed_until,
        run.finished_at,
    )


class Hub:
    """Follows one runtime's change feed for every subscription of this process. Each change
    goes to the subscriptions that watch its run, one of its tags, or every run: found by
    index, so a thousand subscribers cost per change what the few that match it cost."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._by_run: dict[str, set[Subscription]] = {}
        self._by_tag: dict[str, set[Subscription]] = {}
        self._every: set[Subscription] = set()  # kind "all"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.position = 0

    def attach(self, sub: Subscription) -> int:
        """Watch for ``sub``; the position from which it is handed changes."""
        with self._lock:
            if self._stop.is_set():
                raise RunlaneError("the runtime is closed")
            if self._thread is None or not self._thread.is_alive():
                self.position = self.rt.store.read_feed(-1, limit=1).head
                self._thread = threading.Thread(
                    target=self._follow, name="runlane-realtime", daemon=True
                )
                self._thread.start()
            elif not self._subs:  # an idle hub reads nothing: it starts from the head again
                self.position = self.rt.store.read_feed(-1, limit=1).head
            self._subs.add(sub)
            for key, index in self._keys(sub):
                index.setdefault(key, set()).add(sub)
            if sub.kind == "all":
                self._every.add(sub)
            return self.position

    def detach(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            self._every.discard(sub)
            for key, index in self._keys(sub):
                watchers = index.get(key)
                if watchers is not None:
                    watchers.discard(sub)
                    if not watchers:
                        del index[key]

    def _keys(self, sub: Subscription) -> list[tuple[str, dict[str, set[Subscription]]]]:
        if sub.kind == "tag":
            return [(tag, self._by_tag) for tag in sub.target]
        return [(run_id, self._by_run) for run_id in sub.watched]

    def stop(self) -> None:
        """Stop following (the runtime closes): the thread ends before the store is closed."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close()

    def _follow(self) -> None:
        idle_since: float | None = None
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                idle = not self._subs
                if idle:
                    now = time.monotonic()
                    idle_since = idle_since if idle_since is not None else now
                    if now - idle_since >= IDLE_STOP:
                        self._thread = None
                        return
                else:
                    idle_since = None
                after = self.position
            if idle:  # (nobody to hand changes to: none is read)
                self._stop.wait(0.05)
                continue
            try:
                read = self.rt.store.read_feed(after, limit=FEED_PAGE, timeout=0.5)
                runs = self._runs(read.changes)
                failures = 0
            except RunlaneError as exc:  # the store is unavailable: try again, say so once
                failures += 1
                if failures == 1:
                    log.warning("realtime: reading the change feed failed: %s", exc)
                self._stop.wait(min(2.0, 0.1 * failures))
                continue
            with self._lock:
                self.position = read.head
                if read.gap:
                    lost = list(self._subs)
                else:
                    lost = []
                    mail = self._route(read.changes, runs)
            for sub in lost:
                sub.lost_changes(read.head)
            if not lost:
                woken = [sub for sub, items in mail.items() if sub.offer(items)]
                _wake_all(woken)

    def _route(
        self, changes: Sequence[Change], runs: dict[str, Run]
    ) -> dict[Subscription, list[Item]]:
        """Each change to the subscriptions that watch it (the lock held), with its run and
        the run's signature (worked out once for all of them)."""
        mail: dict[Subscription, list[Item]] = {}
        signatures: dict[str, tuple[Any, ...]] = {}
        for change in changes:
            run = runs.get(change.run_id)
            found = set(self._by_run.get(change.run_id, ()))
            if run is not None:
                for tag in run.tags:
                    found.update(self._by_tag.get(tag, ()))
            found.update(self._every)
            if not found:
                continue
            signature = None
            if run is not None:
                signature = signatures.get(run.id)
                if signature is None:
                    signature = signatures[run.id] = run_signature(run)
            for sub in found:
                mail.setdefault(sub, []).append((change, run, signature))
        return mail

    def _runs(self, changes: Sequence[Change]) -> dict[str, Run]:
        """Each changed run that a subscription may watch, once (a stream chunk's run too: a
        part carries it); all of them when one watches tags or every run."""
        with self._lock:
            every = bool(self._by_tag or self._every)
            wanted = [c.run_id for c in changes if every or c.run_id in self._by_run]
        if not wanted:
            return {}
        return {run.id: run for run in self.rt.store.get_runs(wanted)}


def _wake_all(subs: Sequence[Subscription]) -> None:
    """Wake these subscriptions' readers: a thread's at once, an event loop's with one call
    for all of its readers (each call from another thread writes to the loop's pipe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
    for sub in subs:
        sub.wake_sync.set()
        if sub.wake_async is not None:
            loop, event = sub.wake_async
            by_loop.setdefault(loop, []).append(event)
    for loop, events in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(_set_events, events)


def _set_events(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


def hub_of(rt: Runtime) -> Hub:
    """The runtime's hub (made on first use; ``Runtime.close`` stops it first)."""
    hub = rt.realtime_hub
    if hub is None:
        with _HUB_LOCK:
            hub = rt.realtime_hub
            if hub is None:
                hub = rt.realtime_hub = Hub(rt)
    return hub


_HUB_LOCK = threading.Lock()
