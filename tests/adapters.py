"""Real Celery and Dramatiq workers for the contract suite, started in this process the way
their users test (``celery.contrib.testing.worker.start_worker``, ``dramatiq.Worker``).

Each test gets its own Celery app / Dramatiq broker whose queues carry a unique prefix, so a
test never sees another's messages, and everything it declared is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runlane.core.executor import ActiveRuns
from runlane.core.host import Host

WORKER_SHUTDOWN_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parent.parent


def unique_prefix() -> str:
    return f"rltest-{uuid.uuid4().hex[:12]}"


def pika_url(url: str) -> str:
    """Celery (kombu) writes the default vhost as ``amqp://host//``; pika needs ``/%2F``."""
    head, sep, vhost = url.partition("://")
    host, _, path = vhost.partition("/")
    return f"{head}{sep}{host}/%2F" if path in ("", "/") else url


class CeleryUnderTest:
    """A Celery app on ``broker_url`` (Redis or RabbitMQ) with runlane's CeleryBroker. Every
    queue, exchange and (on Redis) key it uses carries ``prefix``."""

    kind = "celery"

    def __init__(
        self,
        broker_url: str,
        *,
        prefix: str | None = None,
        machines: Any = None,
        visibility_timeout: float | None = None,
    ) -> None:
        import celery

        from runlane.backends.celery import CeleryBroker
        from runlane.backends.celery import worker as celery_worker

        self.prefix = prefix or unique_prefix()
        self.url = broker_url
        self.redis = broker_url.startswith("redis")
        self.app = celery.Celery(self.prefix, broker=broker_url, set_as_current=False)
        options: dict[str, Any] = {}
        if self.redis:  # every key of this app under the prefix; short polls for fast stops
            options = {"global_keyprefix": f"{self.prefix}:", "polling_interval": 0.2}
            if visibility_timeout is not None:  # a dead worker's message comes back after it
                options.update(
                    visibility_timeout=visibility_timeout,
                    unacked_restore_interval=1,
                    unacked_restore_throttle=1,
                )
        if not self.redis:  # the worker's event loop wakes every second (AMQP heartbeat
            # checks), so a stopping test worker notices at once rather than after ~10 s
            self.app.conf.update(broker_heartbeat=10, broker_heartbeat_checkrate=10)
        self.app.conf.update(
            broker_transport_options=options,
            task_default_queue=f"{self.prefix}.default",
            task_default_exchange=self.prefix,
            control_exchange=self.prefix,
            worker_hijack_root_logger=False,
            worker_enable_remote_control=False,
            worker_prefetch_multiplier=1,
            broker_connection_retry_on_startup=True,
        )
        self.broker = CeleryBroker(self.app, queue=self.prefix, machines=machines)
        self.process = celery_worker.process

    @contextlib.contextmanager
    def running(self, concurrency: int, pool: str = "threads") -> Iterator[Any]:
        from celery.contrib.testing.worker import start_worker

        with start_worker(
            self.app,
            pool=pool,
            concurrency=concurrency,
            perform_ping_check=False,
            shutdown_timeout=WORKER_SHUTDOWN_TIMEOUT,
            loglevel="WARNING",
        ) as w:
            yield w

    def close(self) -> None:
        if self.redis:
            delete_redis_prefix(self.url, self.prefix)
        else:
            with self.app.connection_for_write() as conn:
                for name in [*self.broker.queues, f"{self.prefix}.default"]:
                    with contextlib.suppress(*conn.channel_errors), conn.channel() as channel:
                        channel.queue_delete(name)
                for name in [self.prefix, *self.broker.queues]:  # Celery may name one per queue
                    with contextlib.suppress(*conn.channel_errors), conn.channel() as channel:
                        channel.exchange_delete(name)
        self.app.close()


def delete_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


class DramatiqUnderTest:
    """A Dramatiq broker (RabbitMQ or Redis) with runlane's DramatiqBroker; its queues (and,
    on Redis, keys) carry ``prefix``."""

    kind = "dramatiq"

    def __init__(
        self,
        broker_url: str,
        *,
        prefix: str | None = None,
        machines: Any = None,
        heartbeat_timeout_ms: int | None = None,
    ) -> None:
        from runlane.backends.dramatiq import DramatiqBroker, middleware

        self.prefix = prefix or unique_prefix()
        self.url = broker_url
        self.redis = broker_url.startswith("redis")
        if self.redis:
            from dramatiq.brokers.redis import RedisBroker

            options: dict[str, Any] = {}
            if heartbeat_timeout_ms is not None:  # a dead worker's messages come back soon
                options = {"heartbeat_timeout": heartbeat_timeout_ms, "maintenance_chance": 10**6}
            self.dramatiq_broker: Any = RedisBroker(
                url=broker_url, namespace=self.prefix, **options
            )
        else:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker

            self.dramatiq_broker = RabbitmqBroker(url=pika_url(broker_url))
        self.broker = DramatiqBroker(self.dramatiq_broker, queue=self.prefix, machines=machines)
        self.process = middleware.process

    @contextlib.contextmanager
    def running(self, concurrency: int) -> Iterator[Any]:
        import dramatiq

        worker = dramatiq.Worker(
            self.dramatiq_broker, worker_threads=concurrency, worker_timeout=100
        )
        worker.start()
        try:
            yield worker
        finally:
            worker.stop(timeout=int(WORKER_SHUTDOWN_TIMEOUT * 1000))

    def close(self) -> None:
        b = self.dramatiq_broker
        if self.redis:
            delete_redis_prefix(self.url, self.prefix)
        else:
            names = [f"{n}{suffix}" for n in self.broker.queues for suffix in ("", ".DQ", ".XQ")]
            delete_amqp_queues(self.url, names)
        b.close()


def delete_amqp_queues(url: str, names: list[str], exchanges: tuple[str, ...] = ()) -> None:
    """Delete these queues and exchanges (those that exist) on RabbitMQ."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(pika_url(url)))
    try:
        channel = connection.channel()
        for kind, name in [("queue", n) for n in names] + [("exchange", n) for n in exchanges]:
            if channel.is_closed:
                channel = connection.channel()
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                if kind == "queue":
                    channel.queue_delete(name)
                else:
                    channel.exchange_delete(name)
    finally:
        connection.close()


class AdapterWorker:
    """Stands in for ``runlane.Worker`` in the contract suite: the same constructor and the
    attributes the tests read (``active``, ``host``), backed by a real framework worker."""

    def __init__(
        self,
        harness: CeleryUnderTest | DramatiqUnderTest,
        concurrency: int = 4,
        *,
        name: str | None = None,
        queues: Any = None,
        runtime_: Any = None,
        fetch_timeout: float | None = None,
    ) -> None:
        if queues:
            raise AssertionError(
                "runlane.Worker(queues=...) filters runlane queues: mark the test native_only"
            )
        self.harness = harness
        self.concurrency = concurrency
        self._running: contextlib.ExitStack | None = None

    @property
    def host(self) -> Host:
        host = self.harness.process.host
        assert host is not None, "the worker's runlane host is not running"
        return host

    @property
    def active(self) -> ActiveRuns:
        host = self.harness.process.host
        return host.active if host is not None else ActiveRuns()

    @property
    def is_leader(self) -> bool:
        host = self.harness.process.host
        return host is not None and host.is_leader

    def start(self) -> AdapterWorker:
        if self._running is None:
            stack = contextlib.ExitStack()
            stack.enter_context(self.harness.running(self.concurrency))
            self._running = stack
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._running is not None:
            stack, self._running = self._running, None
            stack.close()

    def __enter__(self) -> AdapterWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FrameworkWorker:
    """One ``celery worker`` or ``dramatiq`` command in its own process group; its output goes
    to a file (a full pipe would block it)."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO if cwd is None else cwd,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 of the whole worker: the main process and its pool processes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(60)
        self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@contextlib.contextmanager
def private_redis_store(url: str, tasks: tuple[str, ...] = ("t",)) -> Iterator[Any]:
    """A RedisStore under a key prefix of its own, with ``tasks`` registered (queue
    ``task/<id>``); its keys are deleted afterwards."""
    from runlane.backends.redis.store import RedisStore
    from runlane.core.types import RegisteredTask

    prefix = f"rltest-{uuid.uuid4().hex[:12]}"
    store = RedisStore(url, "dev", prefix=prefix)
    store.register_tasks([RegisteredTask(t, f"task/{t}") for t in tasks], now=time.time())
    try:
        yield store
    finally:
        store.close()
        delete_redis_prefix(url, prefix)
