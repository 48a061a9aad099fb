"""The store contract: every case here calls the Store verbs directly, with a fake clock and no
worker, and runs once on each store (SQLite in a tmp_path file, Redis under a key prefix of
its own). A behaviour one store has and the other lacks fails on that store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import runlane
from runlane.backends.redis.store import RedisStore
from runlane.backends.sqlite.store import SQLiteStore
from runlane.core.types import RegisteredTask
from tests.adapters import delete_redis_prefix

START = 1_750_000_000.0  # where every case's fake clock starts


@pytest.fixture
def clock() -> runlane.FakeClock:
    return runlane.FakeClock(start=START)


@pytest.fixture(params=["sqlite", "redis"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: runlane.FakeClock
) -> Iterator[Callable[..., Any]]:
    """Builds a fresh store of the parametrized kind (``concurrency_limit``: the
    environment's cap), with task ``t`` (queue ``task/t``, no limit) registered."""
    made: list[tuple[Any, tuple[str, str] | None]] = []

    def make(*, concurrency_limit: int | None = None) -> Any:
        store: Any
        if request.param == "sqlite":
            path = tmp_path / f"runlane-{len(made)}.db"
            store = SQLiteStore(path, "dev", concurrency_limit=concurrency_limit)
            made.append((store, None))
        else:
            url = request.getfixturevalue("redis_url")
            prefix = f"rlcontract-{uuid.uuid4().hex[:12]}"
            store = RedisStore(url, "dev", prefix=prefix, concurrency_limit=concurrency_limit)
            made.append((store, (url, prefix)))
        store.register_tasks([RegisteredTask("t", "task/t")], now=clock.now())
        return store

    yield make
    for store, redis_prefix in made:
        store.close()
        if redis_prefix is not None:
            delete_redis_prefix(*redis_prefix)


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
