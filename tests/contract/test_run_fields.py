"""A run's fields, declared once: every field of ``NewRun`` reaches ``Run`` through both stores.

The fields a trigger sets and the stores keep as given are listed once, in
``runlane.core.types.GIVEN_FIELDS``; both stores take their column and hash lists from it. A
new run field touches that table, ``NewRun``, ``Run`` and SQLite's schema.sql: these cases fail
when one of them is missed (or when a NewRun field is added that nothing here accounts for).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import runlane
from runlane.core.models import Run, RunStatus
from runlane.core.types import GIVEN_FIELDS, NewRun, RunQuery
from tests.contract.support import create, make

# NewRun's fields that are not copied as given, each with how a Run shows it (the run was
# created by ``create`` below at the clock's start, DELAYED until DELAY_UNTIL)
DELAY_UNTIL = 1_750_000_600.0
SPECIAL: dict[str, Callable[[Run, NewRun], bool]] = {
    "id": lambda run, new: run.id == new.id,
    "task_identifier": lambda run, new: run.task_identifier == new.task_identifier,
    "status": lambda run, new: run.status is RunStatus.DELAYED,
    "payload": lambda run, new: run.payload == {"n": 1},
    "created_at": lambda run, new: run.created_at.timestamp() == new.created_at,
    "queue": lambda run, new: run.queue == new.queue,
    "metadata": lambda run, new: run.metadata == {"m": 1},
    "tags": lambda run, new: run.tags == new.tags,
    "ttl": lambda run, new: run.ttl == "1h",
    "delay_until": lambda run, new: (
        run.delayed_until == datetime.fromtimestamp(DELAY_UNTIL, timezone.utc)
    ),
    "max_duration": lambda run, new: run.max_duration == new.max_duration,
    # kept for the store's own use, not shown on Run
    "idempotency_key_expires_at": lambda run, new: True,
    "trace_context": lambda run, new: True,
    "queue_given": lambda run, new: True,
    "queue_defined": lambda run, new: True,
    "queue_limit": lambda run, new: True,
    "queue_total_limit": lambda run, new: True,
}
# Run's fields that no trigger sets: the stores compute them
COMPUTED = {
    "environment",
    "output",
    "error",
    "attempts",
    "attempt_count",
    "updated_at",
    "queued_at",
    "started_at",
    "finished_at",
    "expired_at",
    "duration_ms",
    "retry_at",
    "number",
    "delayed_until",
    "ttl",
}
SAMPLE = {str: "given-{name}", int: 7, bool: True}


def every_field_set(clock: runlane.FakeClock) -> NewRun:
    """A DELAYED run with every NewRun field set to a value that is not its default."""
    given: dict[str, Any] = {
        name: SAMPLE[kind].format(name=name) if kind is str else SAMPLE[kind]
        for name, kind in GIVEN_FIELDS.items()
    }
    new = make(
        clock,
        status=RunStatus.DELAYED,
        payload='{"n": 1}',
        metadata='{"m": 1}',
        tags=["a", "b"],
        ttl=3600.0,
        delay_until=DELAY_UNTIL,
        max_duration=90,
        idempotency_key_expires_at=clock.now() + 86400,
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        **given,
    )
    return new


def test_the_declaration_covers_new_run_and_run() -> None:
    new_fields = {f.name for f in dataclasses.fields(NewRun)}
    for name, kind in GIVEN_FIELDS.items():
        assert name in new_fields, f"GIVEN_FIELDS[{name!r}] is not a field of NewRun"
        assert name in Run.model_fields, f"GIVEN_FIELDS[{name!r}] is not a field of Run"
        assert kind in (str, int, bool), f"GIVEN_FIELDS[{name!r}]: str, int or bool"
    unaccounted = new_fields - set(GIVEN_FIELDS) - set(SPECIAL)
    assert not unaccounted, (
        f"NewRun fields {sorted(unaccounted)}: add each to GIVEN_FIELDS (kept as given and "
        "shown on Run), or to SPECIAL here with how a Run shows it"
    )
    run_fields = set(Run.model_fields)
    shown = (
        set(GIVEN_FIELDS)
        | set(COMPUTED)
        | {
            "id",
            "task_identifier",
            "status",
            "payload",
            "created_at",
            "queue",
            "metadata",
            "tags",
            "max_duration",
        }
    )
    assert run_fields - shown == set(), f"Run fields no store fills: {sorted(run_fields - shown)}"


def test_the_sqlite_schema_has_a_column_per_given_field(tmp_path: Any) -> None:
    from runlane.backends.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "fields.db", "dev")
    try:
        conn = sqlite3.connect(tmp_path / "fields.db")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(rl_runs)")}
        conn.close()
    finally:
        store.close()
    missing = set(GIVEN_FIELDS) - columns
    assert not missing, f"backends/sqlite/schema.sql: add rl_runs columns {sorted(missing)}"


def test_every_field_given_at_creation_is_read_back(store: Any, clock: runlane.FakeClock) -> None:
    new = every_field_set(clock)
    create(store, clock, new)
    run = store.get_run(new.id)
    assert run is not None
    for name in GIVEN_FIELDS:
        assert getattr(run, name) == getattr(new, name), (name, getattr(run, name))
    for name, shows in SPECIAL.items():
        assert shows(run, new), (name, run)
    # and in a list, which reads runs another way on each store
    (listed,) = store.list_runs(RunQuery(limit=5))[0]
    assert {name: getattr(listed, name) for name in GIVEN_FIELDS} == {
        name: getattr(new, name) for name in GIVEN_FIELDS
    }


def test_given_fields_left_unset_read_as_their_defaults(
    store: Any, clock: runlane.FakeClock
) -> None:
    new = make(clock)
    create(store, clock, new)
    run = store.get_run(new.id)
    assert run is not None
    for name in GIVEN_FIELDS:
        assert getattr(run, name) == getattr(new, name), name
