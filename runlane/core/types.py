"""The records that cross the seams (:mod:`runlane.core.store`, :mod:`runlane.core.broker`).

Times are epoch seconds (floats) passed in by the engine, so a fake clock drives everything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runlane.core.models import Run, RunStatus, TaskRunError

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


# The run fields a trigger sets that both stores write as ``NewRun`` gives them and read back
# onto ``Run`` under the same name (``str``, ``int`` or ``bool``; ``None`` is left unset, a
# ``bool`` is always written). Both stores take their lists from here: the SQLite insert and
# rows (backends/sqlite/rows.py), the Redis run hash (generated into create_runs.lua) and its
# rows. A new field of this kind takes four places, and tests/contract/test_run_fields.py
# fails when one is missed: this table, ``NewRun``, ``Run`` (core/models.py) and a column of
# the same name in backends/sqlite/schema.sql.
GIVEN_FIELDS: dict[str, type] = {
    "idempotency_key": str,
    "batch_id": str,
    "parent_id": str,
    "root_id": str,
    "depth": int,
    "schedule_id": str,
    "concurrency_key": str,
    "max_attempts": int,
    "machine": str,
    "version": str,
    "is_test": bool,
}


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


@dataclass
class Push:
    """Messages a store writes itself, in the transition that admits their runs, so that a
    trigger is one round trip instead of two (see ``Store.message_writer``): by run id, the
    message in the store's own terms, and its dispatch; ``target``: where the store writes
    them, in its own terms. The store lists the runs it delivered in ``done``; the others it
    admitted (a message it could not write included) come back in ``ready`` as usual, for
    the broker to send."""

    messages: dict[str, Any]
    dispatches: dict[str, Dispatch]
    target: Any = None
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


@dataclass
class ScheduleRow:
    """A schedule as a store keeps it. ``next_at``: its next nominal tick (kept while it is
    inactive too, but not due); ``last_at``: the tick it last fired; ``generation``: for a
    DECLARATIVE schedule, what wrote it (see ``Store.save_schedule``)."""

    id: str
    task: str
    cron: str
    timezone: str
    type: str  # "DECLARATIVE" | "IMPERATIVE"
    active: bool
    created_at: float
    updated_at: float
    next_at: float | None
    external_id: str | None = None
    deduplication_key: str | None = None
    last_at: float | None = None
    generation: str | None = None


# a schedule's stored fields, in this order: the SQLite columns and the Redis hash fields (the
# Lua of save_schedule and due_schedules gets the list from here: scripts.py)
SCHEDULE_FIELDS: tuple[str, ...] = (
    "id",
    "task",
    "cron",
    "timezone",
    "type",
    "active",
    "created_at",
    "updated_at",
    "next_at",
    "external_id",
    "deduplication_key",
    "last_at",
    "generation",
)


@dataclass(frozen=True)
class ScheduleFire:
    """A tick to fire with ``create_runs``: the schedule must still be active with
    ``next_at == expect``; it then records ``tick`` as fired and moves to ``next_at``."""

    schedule_id: str
    expect: float
    tick: float
    next_at: float


@dataclass(frozen=True)
class ScheduleQuery:
    task: Sequence[str] = ()
    limit: int = 20
    after: str | None = None  # cursor: the last id of the previous page (newest first)


@dataclass
class KeyRow:
    """A secret key as a store keeps it: never the key itself, only its SHA-256 ``digest``
    (hex); ``id`` is derived from the digest (``key_`` + 24 hex), so a key finds its row
    without a scan. ``hint``: its last four characters, to tell keys apart in a list."""

    id: str
    digest: str
    name: str
    created_at: float
    hint: str
    revoked_at: float | None = None
    rate_limit: int | None = None  # requests a minute it may make (None: no limit)


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: ``run_id`` changed (``kind`` "r") or got a stream chunk
    ("s") at ``position`` (positions increase across the store's environment)."""

    position: int
    run_id: str
    kind: str = "r"


@dataclass(frozen=True)
class FeedRead:
    """What ``Store.read_feed`` read: the changes after the position asked for, ``head`` the
    position they reach (the position asked for when none), and ``gap`` when the feed no
    longer holds every change after that position (trimmed: the reader has missed some)."""

    changes: list[Change]
    head: int
    gap: bool = False


@dataclass(frozen=True)
class StreamChunk:
    """A chunk of a run's stream (``metadata.stream``): ``data`` is its JSON text."""

    position: int
    key: str
    data: str
