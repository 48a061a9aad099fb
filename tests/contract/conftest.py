"""The store contract: every case here calls the Store verbs directly, with a fake clock and no
worker, and runs once on each store (SQLite in a tmp_path file, Redis under a key prefix of
its own). A behaviour one store has and the other lacks fails on that store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import runlane
from runlane.core.types import RegisteredTask

START = 1_750_000_000.0  # where every case's fake clock starts


@pytest.fixture
def clock() -> runlane.FakeClock:
    return runlane.FakeClock(start=START)


@pytest.fixture(params=["sqlite", "redis"])
def make_store(
    request: pytest.FixtureRequest, new_store: Callable[..., Any], clock: runlane.FakeClock
) -> Callable[..., Any]:
    """Builds a fresh store of the parametrized kind (``concurrency_limit``: the
    environment's cap), with task ``t`` (queue ``task/t``, no limit) registered."""

    def make(*, concurrency_limit: int | None = None) -> Any:
        store = new_store(request.param, concurrency_limit=concurrency_limit)
        store.register_tasks([RegisteredTask("t", "task/t")], now=clock.now())
        return store

    return make


@pytest.fixture
def store(make_store: Callable[..., Any]) -> Any:
    return make_store()


@pytest.fixture
def differs_on(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``differs_on(kind, reason)``: a known difference of that store from the contract, to
    fix in the store (the case is then an xfail there, strict: it fails once fixed)."""

    def mark(kind: str, reason: str) -> None:
        if request.node.callspec.params["make_store"] == kind:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

    return mark
