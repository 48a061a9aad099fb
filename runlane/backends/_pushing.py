"""Where a framework broker keeps its messages, when that is a Redis server.

A Redis store on that same server writes the message of a run in the transition that admits
it (:class:`~runlane.core.types.Push`): a trigger is then one round trip instead of two,
with no client library in between. Shared by the Celery and Dramatiq adapters.
"""

from __future__ import annotations

from typing import Any

from runlane.core.types import RedisServer


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
