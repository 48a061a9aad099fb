"""Shared fixtures: a fresh embedded runtime per test, a worker, and polling helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import runlane
from runlane.core import runtime as runtime_mod
from runlane.core.task import registry


@pytest.fixture(autouse=True, scope="session")
def _default_store_out_of_the_tree(tmp_path_factory) -> Iterator[None]:
    """A runtime built from defaults (no fixture) writes under a temp dir, never the repo."""
    import os

    path = tmp_path_factory.mktemp("default-store") / "runlane.db"
    old = os.environ.get("RUNLANE_STORE_URL")
    os.environ["RUNLANE_STORE_URL"] = f"sqlite:///{path}"
    yield
    if old is None:
        os.environ.pop("RUNLANE_STORE_URL", None)
    else:
        os.environ["RUNLANE_STORE_URL"] = old


@pytest.fixture(autouse=True)
def _isolated_registry() -> Iterator[None]:
    """Tasks defined in a test are forgotten after it."""
    before = dict(registry._tasks)
    yield
    registry._tasks.clear()
    registry._tasks.update(before)


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/runlane.db"


@pytest.fixture
def rt(db_url: str) -> Iterator[runtime_mod.Runtime]:
    """A fresh embedded runtime (SQLite file in tmp_path + local broker)."""
    r = runlane.configure(store=db_url, engine_interval=0.05, metadata_flush_interval=0.2)
    yield r
    old = runtime_mod.install(None)
    if old is not None:
        old.close()


@pytest.fixture
def clock(db_url: str) -> Iterator[runlane.FakeClock]:
    """A runtime driven by a fake clock (for delays and TTLs without sleeping)."""
    fake = runlane.FakeClock()
    runlane.configure(store=db_url, engine_interval=0.05, clock=fake)
    yield fake
    old = runtime_mod.install(None)
    if old is not None:
        old.close()


@pytest.fixture
def worker(rt: runtime_mod.Runtime) -> Iterator[runlane.Worker]:
    w = runlane.Worker(concurrency=4, fetch_timeout=0.2)
    w.start()
    yield w
    w.stop()
