"""Triggers inside ``transaction.atomic()``: their runs are created when the transaction
commits (``transaction.on_commit``), never if it rolls back, so a worker never looks for a row
that is not committed yet.

The trigger validates at once and returns at once: its handle carries the id the run will be
created with, but the run exists only after the commit (``runs.retrieve`` before then raises
``RunNotFoundError``). ``trigger(..., on_commit=False)`` (per trigger) or
``RUNLANE["ON_COMMIT"] = False`` (for the process) creates it at once. An ``idempotency_key``
decides at trigger time which run the handle is on, so inside a transaction it needs
``on_commit=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.db import connections, transaction

from runlane.core.types import NewRun
from runlane.errors import InvalidOptionError


def atomic_alias() -> str | None:
    """The database whose transaction this thread is in (the first one, if several)."""
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            return str(conn.alias)
    return None


def defer_on_commit(runs: Sequence[NewRun], create: Callable[[], object]) -> bool:
    """The ``runlane.core.deferral`` deferrer the app installs."""
    from runlane.frameworks.django import conf

    if not conf.state["ON_COMMIT"]:
        return False
    alias = atomic_alias()
    if alias is None:
        return False
    keyed = next((r for r in runs if r.idempotency_key is not None), None)
    if keyed is not None:
        raise InvalidOptionError(
            "idempotency_key",
            keyed.idempotency_key,
            "inside transaction.atomic() a run is created on commit, but an idempotency key "
            "decides now which run you get: pass on_commit=False, or trigger after the block",
        )
    transaction.on_commit(create, using=alias)
    return True
