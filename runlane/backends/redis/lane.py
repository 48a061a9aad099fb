"""The store's Lua transitions on a connection of the calling thread's own.

Every state change is one EVALSHA. Sent through redis-py's client, each call also checks a
connection out of the pool and back in (checking the process id under a lock), filters its
arguments, records metrics and wraps itself in a retry: about 40 µs of CPU, a third of a
transition's cost on the client, paid three times per run. ``ScriptLane`` keeps one
connection per thread instead, made with the pool's settings but outside the pool, and made
anew after a fork so that a forked child never shares its parent's socket. Whatever goes
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

# forks seen by this process: a connection made before a fork is not used after it (counted
# at fork time, so a call does not pay a getpid() system call to find out)
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class ScriptLane:
    def __init__(self, client: redis.Redis, script: Script) -> None:
        self.client = client
        self.script = script
        self._local = threading.local()
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()  # to close with the store

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.forks != _forks:
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn, local.forks = conn, _forks  # a thread's end drops it (and its socket)
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
