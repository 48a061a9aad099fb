"""The seams: the Store and Broker protocols and the records that cross them.

A Store holds runs and performs every state change as one guarded, atomic transition. A Broker
carries only "execute run X now" (``Dispatch``). Both are bound to one environment when built.
Times are epoch seconds (floats) passed in by the engine, so a fake clock drives everything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from runlane.core.logs import LogEntry
from runlane.core.models import Batch, QueueInfo, Run, RunStatus, TaskRunError

JSON = Any


@dataclass
class NewRun:
    """A run to create. ``payload``/``metadata`` are encoded JSON text."""

    id: str
    task_identifier: str
    status: RunStatus  # QUEUED, DELAYED or WAITING_FOR_DEPLOY
    payload: str
    created_at: float
    queue: str
    metadata: str = "{}"
    tags: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    idempotency_key_expires_at: float | None = None
    ttl: float | None = None
    delay_until: float | None = None
    concurrency_key: str | None = None
    max_attempts: int | None = None
    max_duration: int | None = None
    machine: str | None = None
    version: str | None = None
    is_test: bool = False
    batch_id: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    depth: int = 0
    schedule_id: str | None = None
    trace_context: dict[str, str] | None = None  # W3C headers of the triggering span
    queue_given: bool = False  # the trigger named the queue (a later deploy keeps it)
    queue_defined: bool = False  # set the queue's limits (trigger-time queue options)
    queue_limit: int | None = None
    queue_total_limit: int | None = None


@dataclass(frozen=True)
class WaitSpec:
    """A waitpoint to record: the ``index``-th wait of attempt ``attempt`` of run ``run_id``."""

    run_id: str
    attempt: int
    index: int
    kind: str  # "run" | "batch" | "time" (waits) | "trigger" | "batch-trigger" (recorded only)
    fingerprint: str
    resume_at: float | None = None  # time waits
    batch_id: str | None = None


@dataclass(frozen=True)
class Waitpoint:
    index: int
    kind: str
    fingerprint: str
    run_ids: list[str]
    batch_id: str | None
    resume_at: float | None
    resolved: bool


@dataclass(frozen=True)
class Created:
    """The outcome of one NewRun: the run id to hand back, and whether it already existed."""

    run_id: str
    cached: bool
    status: RunStatus
    queue: str
    task_identifier: str


TAKE_LIMIT = 1000  # dispatches taken from a store's outbox at once


@dataclass(frozen=True)
class Dispatch:
    """The only thing a broker carries: execute this run now."""

    run_id: str
    task_identifier: str
    queue: str
    machine: str | None = None


@dataclass(frozen=True)
class RedisServer:
    """A Redis server and database, as a client connects to it: where a broker keeps its
    messages. A Redis store on the same server and credentials can write a run's message in
    the transition that admits the run (see :class:`Push`)."""

    host: str | None  # None for a Unix socket
    port: int | None
    path: str | None  # the Unix socket
    db: int
    username: str | None
    password: str | None
    ssl: bool

    def same_server(self, other: RedisServer) -> bool:
        """Same server, credentials and transport (the database may differ)."""

        def where(s: RedisServer) -> tuple[Any, ...]:
            host = s.host.lower() if s.host else None
            if host in ("localhost", "127.0.0.1"):
                host = "127.0.0.1"
            return (host, s.port, s.path, s.username or None, s.password or None, s.ssl)

        return where(self) == where(other)


@dataclass
class Push:
    """Messages a store may write itself, in the transition that admits their runs: by run id,
    the Redis commands that deliver it (``[["LPUSH", key, message]]``), into database
    ``db``, and its dispatch. The store lists the runs it delivered in ``done``; the others it
    admitted (a message it could not write included) come back in ``ready`` as usual, for
    the broker to send."""

    commands: dict[str, list[list[str]]]
    db: int
    dispatches: dict[str, Dispatch]
    done: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunBrief:
    """What executing an attempt needs of its run, without the whole :class:`Run`."""

    id: str
    payload: Any
    tags: list[str]
    metadata: dict[str, Any]
    max_attempts: int | None

    @classmethod
    def of(cls, run: Run) -> RunBrief:
        return cls(run.id, run.payload, list(run.tags), run.metadata, run.max_attempts)


@dataclass(frozen=True)
class StartedAttempt:
    """An attempt a store started: ``brief`` holds what execution reads of the run, and
    ``run`` (status EXECUTING, with payload) is built by ``make_run`` on first use, so an
    attempt whose context nobody asks for never builds the whole model."""

    brief: RunBrief
    make_run: Callable[[], Run]
    attempt_id: str
    attempt_number: int
    started_at: float
    trace_context: dict[str, str] | None = None
    max_duration: int | None = None  # as stored: 0 = no limit, None = task/config decide
    resumed: bool = False  # continuing an attempt that was suspended on a wait
    used_ms: int = 0  # execution time this attempt already used before it was suspended
    # what the attempt's record says, for a store that writes the final record from it (see
    # Store.finish_attempt's ``started``); None where the store does not fill them in
    worker_id: str | None = None
    machine: str | None = None

    @functools.cached_property
    def run(self) -> Run:
        return self.make_run()

    @property
    def run_id(self) -> str:
        return self.brief.id


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended and what that does to the run."""

    attempt_status: str  # an AttemptStatus value
    run_status: RunStatus
    output: str | None = None  # encoded JSON
    error: TaskRunError | None = None
    metadata_ops: list[dict[str, Any]] = field(default_factory=list)
    retry_at: float | None = None  # for REATTEMPTING
    machine: str | None = None  # the machine of the next attempt (out of memory)
    attempt_ms: int | None = None  # the attempt's execution time so far (waits excluded)


@dataclass(frozen=True)
class RegisteredTask:
    id: str
    queue: str
    concurrency_limit: int | None = None
    total_limit: int | None = None


@dataclass(frozen=True)
class RunQuery:
    status: Sequence[str] = ()
    task_identifier: Sequence[str] = ()
    tag: Sequence[str] = ()
    created_from: float | None = None
    created_to: float | None = None
    batch: str | None = None
    schedule: str | None = None
    version: Sequence[str] = ()
    parent: str | None = None
    queue: Sequence[str] = ()
    is_test: bool | None = None
    limit: int = 20
    after: str | None = None  # cursor: the last id of the previous page (newest first)


@runtime_checkable
class Store(Protocol):
    environment: str
    concurrency_limit: int | None  # executing runs in the environment (None: no cap)
    retention: float | None  # seconds a finished run is kept (None: forever)
    # True while the store writes the runs it admits onto its broker itself, in the admitting
    # transition (the Redis store paired with the Redis broker): it keeps no outbox
    # (``take_ready``) and loses no dispatch, so the engine neither drains nor redelivers
    dispatches_itself: bool
    native_broker: str  # the broker configure() builds for this store by default ("local", ...)

    # creation
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
    ) -> list[Created]:
        """Create all runs (or none), honouring idempotency keys, in one transaction; with
        ``wait``, also the parent's waitpoint on them (trigger_and_wait). ``ready``: the
        caller sends what the transition admitted, which the store appends to this list
        instead of its outbox (``take_ready``); a store that pushes admitted runs onto its
        own broker adds nothing. ``finish_attempt``, ``suspend`` and ``release_canceled``
        take it too. ``push``: messages of the new runs that the store may write itself
        (only a store for which ``delivers_to`` is true does). ``token``: names this call;
        the same call made again with the same token (after a ``StoreUnavailableError``,
        whether or not the first try was written) returns what the first did and creates
        nothing more."""
        ...

    def delivers_to(self, server: RedisServer) -> bool:
        """Whether this store can write a broker's messages on ``server`` (``Push``)."""
        ...

    # reads
    def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None: ...
    def list_runs(self, query: RunQuery) -> tuple[list[Run], str | None]: ...
    def get_batch(self, batch_id: str) -> Batch | None: ...
    def seed_metadata(self, run_id: str) -> dict[str, Any] | None:
        """The metadata the run was triggered with (replays start from it)."""
        ...

    def count_runs(self, status: Collection[RunStatus] | None = None) -> dict[str, int]: ...

    # transitions
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

    def statuses(self, run_ids: Collection[str]) -> dict[str, tuple[RunStatus, int]]:
        """(status, attempt number) of each run (missing runs are left out)."""
        ...

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

    def purge(self, *, now: float, limit: int) -> int:
        """Delete finished runs past the retention (and their index entries); returns how
        many."""
        ...

    def release_canceled(
        self, run_id: str, attempt: int, *, now: float, ready: list[Dispatch] | None = None
    ) -> None:
        """A run canceled while executing: its attempt has stopped, its slots are free."""
        ...

    def expire_runs(self, *, now: float, limit: int) -> list[str]:
        """Runs not started before their TTL → EXPIRED."""
        ...

    def register_tasks(self, tasks: Sequence[RegisteredTask], *, now: float) -> None:
        """Record task ids (and their queues' limits) as deployed; their WAITING_FOR_DEPLOY
        runs → QUEUED."""
        ...

    def known_tasks(self, task_ids: Collection[str]) -> dict[str, RegisteredTask]: ...

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

    def queued_run_ids(self, *, older_than: float, limit: int) -> list[Dispatch]:
        """QUEUED runs created before ``older_than`` (redelivery after a lost dispatch)."""
        ...

    def cancel(self, run_id: str, *, now: float, error: TaskRunError) -> Run | None:
        """Cancel a non-final run and its non-final descendants at once."""
        ...

    def get_runs(self, run_ids: Sequence[str]) -> list[Run]: ...

    # durable waits
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

    def take_ready(self, *, limit: int) -> list[Dispatch]:
        """Runs the store made QUEUED itself (resumed waits) that must be sent."""
        ...

    # queues
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

    # metadata and tags
    def update_metadata(
        self, run_id: str, ops: Sequence[dict[str, Any]], *, now: float, limit: int
    ) -> dict[str, Any] | None: ...
    def add_tags(
        self, run_id: str, tags: Sequence[str], *, now: float, max_tags: int
    ) -> list[str]: ...

    # logs
    def append_logs(self, run_id: str, entries: Sequence[dict[str, Any]]) -> None: ...
    def get_logs(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[LogEntry]: ...

    # leader election
    def acquire_lease(self, name: str, owner: str, *, ttl: float, now: float) -> bool: ...
    def release_lease(self, name: str, owner: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Broker(Protocol):
    def send(self, dispatches: Sequence[Dispatch]) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class PushingBroker(Broker, Protocol):
    """A broker whose messages a Redis store on the same server may write itself, in the
    transition that admits a run: one round trip for a trigger instead of two, and no
    client library in between (Celery and Dramatiq on Redis)."""

    def redis_server(self) -> RedisServer | None:
        """The Redis server of the broker's messages (None: not on Redis, or settings that
        need the framework's own publishing, such as publish signals)."""
        ...

    def push_commands(self, dispatches: Sequence[Dispatch]) -> list[list[list[str]] | None]:
        """For each dispatch, the Redis commands that deliver its message (None: send it).
        Only while nothing of the framework expects to see each message sent (publish
        signals, enqueue hooks): a pushed message is written by the store alone."""
        ...


@dataclass
class Delivery:
    dispatch: Dispatch
    tag: Any  # broker-specific receipt, passed back to ack
    # set when the broker started the attempt as it delivered the run (one call, not two)
    started: StartedAttempt | None = None
    # the reference a store removes the delivery by when it records the attempt's result in
    # the same transition (the Redis store and broker); ``settled`` is set once it did
    ack_ref: str | None = None
    settled: bool = False


@dataclass(frozen=True)
class StartRequest:
    """What a broker needs to start the attempts of the runs it delivers (``fetch(start=)``)."""

    worker_id: str
    lease_timeout: float  # seconds; leases use real time
    default_max_attempts: Mapping[str, int]  # by task id: what the reaper allows if we die
    now: Callable[[], float]  # the runtime's clock (a FakeClock in tests)


class Consumer(Protocol):
    def fetch(
        self, max_count: int, timeout: float, start: StartRequest | None = None
    ) -> list[Delivery]:
        """Up to ``max_count`` deliveries, waiting up to ``timeout`` seconds for the first.
        With ``start``, a broker that can start attempts as it delivers (Redis) returns only
        runs it started (``delivery.started``); others ignore it."""
        ...

    def ack(self, delivery: Delivery) -> None: ...
    def heartbeat(self) -> None:
        """Tell the broker this worker is alive (its worker's housekeeping loop calls this),
        for a broker that gives a silent worker's deliveries to others."""
        ...

    def nack(self, delivery: Delivery) -> None:
        """Give a delivery back at once (its run could not be started here just now)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class NativeBroker(Broker, Protocol):
    """A broker whose messages runlane's own Worker consumes (local, redis)."""

    def consumer(
        self, worker_id: str, task_ids: Collection[str], queues: Collection[str] | None = None
    ) -> Consumer:
        """Deliveries of these tasks (and, when given, only these runlane queues)."""
        ...
