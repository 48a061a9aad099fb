"""The store's Lua transitions on a connection of the calling thread's own.

Every state change is one EVALSHA. Sent through redis-py's client, each call also checks a
connection out of the pool and back in (checking the process id under a lock), filters its
arguments, records metrics and wraps itself in a retry: about 40 µs of CPU, a third of a
transition's cost on the client, paid three times per run. ``ScriptLane`` keeps one
connection per thread instead, made with the pool's settings but outside the pool, and checked
against the process id so that a forked child never shares its parent's socket. Whatever goes
wrong (a lost connection, the script missing after a restart or ``SCRIPT FLUSH``) is retried
through redis-py's own path, with its reconnects and retries, exactly as before.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import redis
from redis.commands.core import Script


class ScriptLane:
    def __init__(self, client: redis.Redis, script: Script) -> None:
        self.client = client
        self.script = script
        self._local = threading.local()
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()  # to close with the store

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        pid = os.getpid()
        if conn is None or local.pid != pid:
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn, local.pid = conn, pid  # a thread's end drops it (and its socket)
            self._open.add(conn)
        return conn

    def __call__(self, key: str, *args: str) -> Any:
        """EVALSHA of the script with one key and ``args``; its reply."""
        conn = self._connection()
        try:
            conn.send_command("EVALSHA", self.script.sha, 1, key, *args)
            return conn.read_response()
        except redis.exceptions.NoScriptError:
            pass  # loaded again below
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            conn.disconnect()  # redis-py retries as it would have: a lost reply is sent again
        return self.script(keys=[key], args=list(args))

    def close(self) -> None:
        for conn in list(self._open):
            conn.disconnect()
