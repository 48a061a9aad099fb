"""Brokers whose messages a Redis store writes itself, and where they keep them.

A Redis store on the same server as a framework broker's messages (Celery's or Dramatiq's on
Redis) writes the message of a run in the transition that admits it
(:class:`~runlane.core.types.Push`): a trigger is then one round trip instead of two, with no
client library in between. The adapters implement :class:`PushingBroker`; the Redis store
pairs with them in :func:`message_writer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from runlane.core.broker import Broker
from runlane.core.types import Dispatch, Push

log = logging.getLogger("runlane.engine")


@dataclass(frozen=True)
class RedisServer:
    """A Redis server and database, as a client connects to it: where a broker keeps its
    messages. A Redis store on the same server and credentials can write a run's message in
    the transition that admits the run (:class:`~runlane.core.types.Push`)."""

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


def message_writer(
    broker: Broker, own: RedisServer | None
) -> Callable[[Sequence[Dispatch]], Push | None] | None:
    """For a store on Redis server ``own``: the function that prepares ``broker``'s messages
    for the store to write, when the broker keeps them on that same server (with the same
    credentials; any database); None otherwise."""
    if own is None or not isinstance(broker, PushingBroker):
        return None
    server = broker.redis_server()
    if server is None or not own.same_server(server):
        return None

    def prepare(dispatches: Sequence[Dispatch]) -> Push | None:
        try:
            commands = broker.push_commands(dispatches)
        except Exception:  # the messages are sent the usual way instead
            log.exception("preparing %d message(s) failed", len(dispatches))
            return None
        found = {d.run_id: c for d, c in zip(dispatches, commands, strict=True) if c is not None}
        if not found:
            return None
        return Push(found, {d.run_id: d for d in dispatches if d.run_id in found}, server.db)

    return prepare


def server_of_client(client: Any) -> RedisServer | None:
    """The server a redis-py client connects to (None: a cluster, Sentinel, a pool or connection
    class of your own, or not a redis-py client)."""
    import redis

    pool = getattr(client, "connection_pool", None)
    kw = getattr(pool, "connection_kwargs", None)
    # redis-py's own pools and connections only: a Sentinel pool (or one of your own) finds
    # its server elsewhere than in these settings
    if (
        not isinstance(kw, dict)
        or type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool)
        or pool.connection_class
        not in (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)
        or not ("host" in kw or "path" in kw)
    ):
        return None
    path = kw.get("path")
    return RedisServer(
        host=None if path else kw.get("host", "localhost"),
        port=None if path else int(kw.get("port") or 6379),
        path=path,
        db=int(kw.get("db") or 0),
        username=kw.get("username"),
        password=kw.get("password"),
        ssl=pool.connection_class is redis.SSLConnection,
    )


def server_of_kombu(conn: Any) -> RedisServer | None:
    """The server of a kombu connection on its Redis transport (``redis://``, ``rediss://``);
    None for any other transport, a Unix socket, Sentinel, or failover URLs."""
    if conn.transport_cls not in ("redis", "rediss") or len(conn.alt) > 1:
        return None
    host = conn.hostname or "localhost"
    if "://" in host:  # redis+socket://
        return None
    vhost = str(conn.virtual_host or "").lstrip("/")
    try:
        db = int(vhost) if vhost else 0
    except ValueError:
        return None
    return RedisServer(
        host=host,
        port=int(conn.port or 6379),
        path=None,
        db=db,
        username=conn.userid or None,
        password=conn.password or None,
        ssl=bool(conn.ssl) or conn.transport_cls == "rediss",
    )
