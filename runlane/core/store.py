"""The Store protocol: runs and every state change of a run, as one guarded, atomic transition.

A Store is bound to one environment when built. Its verbs come in named parts (``Runs``,
``Transitions``, ``Waits``, ``Queues``, ``Records``, ``Leases``, ``Schedules``, ``Keys``),
each a protocol of its own; ``Store`` is all of them. Two stores implement it (``backends/sqlite``,
``backends/redis``), and ``tests/contract`` drives both through the same cases. Times are
epoch seconds passed in by the engine, so a fake clock drives everything.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol, runtime_checkable

from runlane.core.broker import Broker
from runlane.core.logs import LogEntry
from runlane.core.models import Batch, QueueInfo, Run, RunStatus, TaskRunError
from runlane.core.types import (
    AttemptOutcome,
    Created,
    Dispatch,
    FeedRead,
    KeyRow,
    NewRun,
    Push,
    RegisteredTask,
    RunQuery,
    ScheduleFire,
    ScheduleQuery,
    ScheduleRow,
    StartedAttempt,
    StreamChunk,
    Waitpoint,
    WaitSpec,
)


class Runs(Protocol):
    """Creating and reading runs, and deleting finished ones."""

    def create_runs(
        self,
        runs: Sequence[NewRun],
        *,
        now: float,
        batch_id: str | None = None,
        parent_id: str | None = None,
        wait: WaitSpec | None = None,
        ready: list[Dispatch] | None = None,
        push: Push | None = None,
        token: str | None = None,
        fires: Sequence[ScheduleFire] | None = None,
    ) -> list[Created]:
        """Create all runs (or none), honouring idempotency keys, in one transaction; with
        ``wait``, also the parent's waitpoint on them (trigger_and_wait). ``ready``: the
        caller sends what the transition admitted, which the store appends to this list
        instead of its outbox (``take_ready``); a store that pushes admitted runs onto its
        own broker adds nothing. ``finish_attempt``, ``suspend`` and ``release_canceled``
        take it too. ``push``: messages of the new runs that the store may write itself
        (prepared by its ``message_writer``). ``token``: names this call;
        the same call made again with the same token (after a ``StoreUnavailableError``,
        whether or not the first try was written) returns what the first did and creates
        nothing more. ``fires``: the runs are schedules' ticks, one ``ScheduleFire`` each, in
        order; a run is created only if its schedule is still active at ``fire.expect``, which
        then moves to ``fire.next_at`` in the same transaction; the others are skipped (left
        out of the reply)."""
        ...

    def message_writer(self, broker: Broker) -> Callable[[Sequence[Dispatch]], Push | None] | None:
        """When this store can write ``broker``'s messages itself, in the transition that
        admits their runs: a function that prepares the messages of QUEUED runs' dispatches
        (None: none of them can be written so); None when it cannot (the broker sends them).
        The Redis store writes the messages of Celery and Dramatiq on its own Redis server."""
        ...

    def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None: ...
    def get_runs(self, run_ids: Sequence[str]) -> list[Run]: ...
    def list_runs(self, query: RunQuery) -> tuple[list[Run], str | None]: ...
    def get_batch(self, batch_id: str) -> Batch | None: ...
    def seed_metadata(self, run_id: str) -> dict[str, Any] | None:
        """The metadata the run was triggered with (replays start from it)."""
        ...

    def count_runs(self, status: Collection[RunStatus] | None = None) -> dict[str, int]: ...

    # transitions
    def statuses(self, run_ids: Collection[str]) -> dict[str, tuple[RunStatus, int]]:
        """(status, attempt number) of each run (missing runs are left out)."""
        ...

    def purge(self, *, now: float, limit: int) -> int:
        """Delete finished runs past the retention (and their index entries); returns how
        many."""
        ...


class Transitions(Protocol):
    """A run's status changes: each one guarded by the status (and attempt) it expects, atomic,
    and admitting what it frees (``ready``: the caller sends what was admitted)."""

    def register_tasks(self, tasks: Sequence[RegisteredTask], *, now: float) -> None:
        """Record task ids (and their queues' limits) as deployed; their WAITING_FOR_DEPLOY
        runs → QUEUED."""
        ...

    def known_tasks(self, task_ids: Collection[str]) -> dict[str, RegisteredTask]: ...
    def transition(
        self,
        run_id: str,
        *,
        expect: Collection[RunStatus],
        to: RunStatus,
        now: float,
        changes: dict[str, Any] | None = None,
        error: TaskRunError | None = None,
    ) -> Run | None:
        """Move a run to ``to`` if its status is in ``expect``; None when the guard fails."""
        ...

    def promote_due(self, *, now: float, limit: int) -> int:
        """DELAYED runs whose time has come → QUEUED (or WAITING_FOR_DEPLOY); REATTEMPTING
        runs whose retry time has come → QUEUED; due time waits resolved; ended pauses lifted.
        Admitted runs go to the ready outbox (``take_ready``)."""
        ...

    def expire_runs(self, *, now: float, limit: int) -> list[str]:
        """Runs not started before their TTL → EXPIRED."""
        ...

    def start_attempt(
        self,
        run_id: str,
        *,
        worker_id: str,
        now: float,
        known_tasks: Collection[str],
        lease_until: float | None = None,
        default_max_attempts: int = 1,
    ) -> StartedAttempt | None:
        """An admitted QUEUED run → EXECUTING (a new attempt, or the suspended one resumed),
        leased until ``lease_until``; None when the run cannot start."""
        ...

    def finish_attempt(
        self,
        run_id: str,
        attempt_number: int,
        outcome: AttemptOutcome,
        *,
        now: float,
        ack: str | None = None,
        ready: list[Dispatch] | None = None,
        started: StartedAttempt | None = None,
    ) -> bool:
        """Record the attempt's end, guarded by (EXECUTING, attempt number); False when the
        run changed meanwhile (nothing recorded; if it was canceled while this attempt ran,
        the slots the attempt kept are freed, as by ``release_canceled``). ``ack``: a
        delivery's ``ack_ref`` the store removes from its broker in the same transition,
        recorded or not. ``started``: the attempt as this store's start returned it, if the
        caller has it (a store may then write the attempt's record without reading it)."""
        ...

    def cancel(self, run_id: str, *, now: float, error: TaskRunError) -> Run | None:
        """Cancel a non-final run and its non-final descendants at once."""
        ...

    def release_canceled(
        self, run_id: str, attempt: int, *, now: float, ready: list[Dispatch] | None = None
    ) -> None:
        """A run canceled while executing: its attempt has stopped, its slots are free."""
        ...

    def queued_run_ids(self, *, older_than: float, limit: int) -> list[Dispatch]:
        """QUEUED runs created before ``older_than`` (redelivery after a lost dispatch)."""
        ...

    def take_ready(self, *, limit: int) -> list[Dispatch]:
        """Runs the store made QUEUED itself (resumed waits) that must be sent."""
        ...


class Waits(Protocol):
    """Durable waits: an attempt's replay log of waitpoints, and suspending on one."""

    def create_waitpoint(self, wait: WaitSpec, *, now: float) -> Waitpoint: ...
    def waitpoints(self, run_id: str, attempt: int) -> list[Waitpoint]:
        """The attempt's replay log."""
        ...

    def waitpoint_resolved(self, run_id: str, attempt: int, index: int, *, now: float) -> bool: ...
    def suspend(
        self,
        run_id: str,
        attempt: int,
        index: int,
        *,
        now: float,
        metadata_ops: Sequence[dict[str, Any]] = (),
        attempt_ms: int | None = None,
        ack: str | None = None,
        ready: list[Dispatch] | None = None,
    ) -> RunStatus | None:
        """EXECUTING → FROZEN on a waitpoint (QUEUED at once if it is already resolved);
        None when the run changed meanwhile (slots freed as in ``finish_attempt``); ``ack`` as
        in ``finish_attempt``."""
        ...


class Queues(Protocol):
    """Queues and their concurrency: pausing, and what they hold."""

    def set_paused(
        self,
        queue: str,
        concurrency_key: str | None,
        *,
        paused: bool,
        until: float | None,
        now: float,
    ) -> bool:
        """Hold (or release) dispatch of a queue or one of its keys; False if no such queue."""
        ...

    def queues(self, names: Sequence[str] | None = None) -> list[QueueInfo]: ...


class Records(Protocol):
    """What a run accumulates as it executes: metadata, tags and logs."""

    def update_metadata(
        self, run_id: str, ops: Sequence[dict[str, Any]], *, now: float, limit: int
    ) -> dict[str, Any] | None: ...
    def add_tags(
        self, run_id: str, tags: Sequence[str], *, now: float, max_tags: int
    ) -> list[str]: ...
    def append_logs(self, run_id: str, entries: Sequence[dict[str, Any]]) -> None: ...
    def get_logs(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[LogEntry]: ...


class Leases(Protocol):
    """Liveness: executing attempts' leases (renewed, reaped) and the leader's lease."""

    def heartbeat(
        self, attempts: dict[str, int], *, worker_id: str, lease_until: float, now: float
    ) -> set[str]:
        """Renew the leases of executing attempts; returns the runs whose lease was lost."""
        ...

    def reap(self, *, now: float, limit: int, handed_back_by: str | None = None) -> list[str]:
        """Executing runs whose lease lapsed: crashed attempt, retried or CRASHED (and slots
        of runs canceled while executing whose worker never reported back). The attempts of
        worker ``handed_back_by`` (which ended their leases as it shut down) are recorded as
        handed back, the others as having stopped renewing their lease."""
        ...

    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool: ...
    def release_lease(self, name: str, owner: str) -> None: ...


class Schedules(Protocol):
    """Cron schedules: kept with their next tick; a tick is fired by ``create_runs(fires=)``."""

    def save_schedule(self, row: ScheduleRow, *, now: float) -> tuple[ScheduleRow, bool]:
        """Create or replace a schedule in one transaction; returns it as stored and whether
        this call wrote it. A row whose ``deduplication_key`` another schedule has replaces
        that schedule; a row whose id exists replaces it; either way the stored id,
        ``created_at`` and ``last_at`` are kept. A row with a ``generation`` (DECLARATIVE)
        replaces nothing a later generation wrote (nothing is written then), and keeps the
        stored ``next_at`` when task, cron and time zone are unchanged."""
        ...

    def delete_schedule(self, schedule_id: str, *, generation: str | None = None) -> bool:
        """Delete a schedule (with ``generation``: only one no later generation wrote); False
        when nothing was deleted."""
        ...

    def get_schedule(self, schedule_id: str) -> ScheduleRow | None: ...
    def list_schedules(self, query: ScheduleQuery) -> tuple[list[ScheduleRow], str | None]:
        """A page of schedules, newest first (``created_at``, then id), and the cursor of the
        next page (None on the last)."""
        ...

    def due_schedules(self, *, now: float, limit: int) -> list[ScheduleRow]:
        """Active schedules whose ``next_at`` is at or before ``now``, earliest first: read
        from an index by time, so an idle pass costs nothing per schedule."""
        ...


class Keys(Protocol):
    """The environment's secret keys for the HTTP API (digests only)."""

    def save_key(self, row: KeyRow) -> None: ...
    def get_key(self, key_id: str) -> KeyRow | None: ...
    def list_keys(self) -> list[KeyRow]:
        """Every key of the environment, revoked ones included, oldest first."""
        ...

    def revoke_key(self, key_id: str, *, now: float) -> bool:
        """Mark a key revoked (it authenticates nothing from then on); False if unknown."""
        ...

    def count_request(self, key_id: str, *, window_start: float, window: float) -> int:
        """Count one request of a key in the fixed window that starts at ``window_start``
        (``window`` seconds long) and return the window's count so far, this one included;
        counts of past windows are forgotten."""
        ...


@runtime_checkable
class Feed(Protocol):
    """The change feed that realtime subscriptions follow: every change of a run a subscriber
    sees (created; status, attempt, tags, metadata, output, error or delay changed) and every
    stream chunk, numbered in one increasing sequence of positions. The store keeps the latest
    entries (some thousands) and each run's stream chunks as long as the run."""

    def read_feed(self, after: int, *, limit: int, timeout: float = 0.0) -> FeedRead:
        """The changes after position ``after`` (at most ``limit``), waiting up to ``timeout``
        seconds for one when there are none yet. ``after`` -1: none, only the head."""
        ...

    def append_stream(
        self, run_id: str, key: str, chunks: Sequence[str], *, now: float, max_chunks: int
    ) -> int | None:
        """Append JSON chunks to the run's stream ``key`` (each a feed entry); returns the
        position of the last, or None for an unknown run. Raises ``LimitExceededError`` when
        the run's streams would pass ``max_chunks`` chunks (nothing is written)."""
        ...

    def read_stream(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[StreamChunk]:
        """The run's stream chunks (every key) after position ``after``, in order."""
        ...


class Store(Runs, Transitions, Waits, Queues, Records, Leases, Schedules, Keys, Feed, Protocol):
    environment: str
    concurrency_limit: int | None  # executing runs in the environment (None: no cap)
    retention: float | None  # seconds a finished run is kept (None: forever)
    # True while the store writes the runs it admits onto its broker itself, in the admitting
    # transition (the Redis store paired with the Redis broker): it keeps no outbox
    # (``take_ready``) and loses no dispatch, so the engine neither drains nor redelivers
    dispatches_itself: bool
    native_broker: str  # the broker configure() builds for this store by default ("local", ...)

    def close(self) -> None: ...
