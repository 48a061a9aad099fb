"""The store's Lua transitions on a connection of the calling thread's own.

Every state change is one EVALSHA. Sent through redis-py's client, each call also checks a
connection out of the pool and back in (checking the process id under a lock), filters its
arguments, records metrics and wraps itself in a retry: about 40 µs of CPU, a third of a
transition's cost on the client, paid three times per run. ``ScriptLane`` keeps one
connection per thread instead, made with the pool's settings but outside the pool, and made
anew after a fork so that a forked child never shares its parent's socket. Whatever goes
wrong (a lost connection, the script missing after a restart or ``SCRIPT FLUSH``) is retried
through redis-py's own path, with its reconnects and retries, exactly as before.

On that connection a call writes the EVALSHA and reads its reply straight from the socket
(``_RespReader``: the few reply types a script returns, RESP2 and RESP3), without redis-py's
per-command machinery: about a third of the client's CPU a call. The connection is made and
authenticated by redis-py (TLS, AUTH, SELECT, HELLO as configured), and redis-py's own
``send_command``/``read_response`` still work on it between calls.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import weakref
from typing import Any

import redis
from redis.commands.core import Script

from runlane.backends.redis.scripts import Library

# forks seen by this process: a connection made before a fork is not used after it (counted
# at fork time, so a call does not pay a getpid() system call to find out)
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class _Incomplete(Exception):
    """The buffer does not hold a whole reply yet."""


class _RespReader:
    """Reads one reply at a time from a connection's socket. Replies are parsed only once
    complete (a script's reply is small: usually one ``recv``); nothing past a reply is ever
    read, since the server sends nothing unasked on this connection."""

    __slots__ = ("decode", "parse_error")

    def __init__(self, conn: Any, decode: bool | None = None) -> None:
        if decode is None:
            decode = bool(getattr(getattr(conn, "encoder", None), "decode_responses", False))
        self.decode = decode
        parser = getattr(conn, "_parser", None)
        self.parse_error = getattr(parser, "parse_error", None) or redis.exceptions.ResponseError

    def read(self, sock: socket.socket) -> Any:
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise redis.exceptions.ConnectionError("Redis closed the connection")
            buf += chunk
            try:
                value, end = self._parse(buf, 0)
            except _Incomplete:
                continue
            if end != len(buf):  # a reply we did not ask for: the stream is out of step
                raise redis.exceptions.ConnectionError("unexpected data after a reply")
            if isinstance(value, redis.exceptions.RedisError):
                raise value  # an error reply (LOADING, READONLY, a script's own, ...)
            return value

    def _parse(self, buf: bytes, pos: int) -> tuple[Any, int]:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        kind, line, pos = buf[pos], buf[pos + 1 : end], end + 2
        if kind in (36, 61):  # $ bulk string, = verbatim string (RESP3)
            n = int(line)
            if n < 0:
                return None, pos
            if len(buf) < pos + n + 2:
                raise _Incomplete
            data = buf[pos : pos + n]
            if kind == 61:
                data = data[4:]  # "txt:" / "mkd:"
            return (data.decode() if self.decode else data), pos + n + 2
        if kind in (42, 126, 62):  # * array, ~ set, > push (RESP3)
            n = int(line)
            if n < 0:
                return None, pos
            out: list[Any] = []
            append, find, decode = out.append, buf.find, self.decode
            for _ in range(n):
                if buf[pos : pos + 1] == b"$":  # a bulk string (most elements): inline
                    end = find(b"\r\n", pos)
                    if end < 0:
                        raise _Incomplete
                    size = int(buf[pos + 1 : end])
                    if size >= 0:
                        start, pos = end + 2, end + 4 + size
                        if len(buf) < pos:
                            raise _Incomplete
                        data = buf[start : pos - 2]
                        append(data.decode() if decode else data)
                        continue
                    pos = end + 2
                    append(None)
                    continue
                value, pos = self._parse(buf, pos)
                append(value)
            return out, pos
        if kind == 58:  # : integer
            return int(line), pos
        if kind == 43:  # + simple string
            return (line.decode() if self.decode else line), pos
        if kind in (45, 33):  # - error, ! bulk error (RESP3: length, then the text)
            if kind == 33:
                n = int(line)
                if len(buf) < pos + n + 2:
                    raise _Incomplete
                line, pos = buf[pos : pos + n], pos + n + 2
            return self.parse_error(line.decode(errors="replace")), pos
        if kind == 95:  # _ null (RESP3)
            return None, pos
        if kind == 35:  # # boolean (RESP3)
            return line == b"t", pos
        if kind == 44:  # , double (RESP3)
            return float(line), pos
        if kind == 37:  # % map (RESP3)
            n = int(line)
            out_map = {}
            for _ in range(n):
                key, pos = self._parse(buf, pos)
                out_map[key], pos = self._parse(buf, pos)
            return out_map, pos
        raise redis.exceptions.ConnectionError(f"unknown Redis reply type {chr(kind)!r}")


def _recode(value: Any, decode: bool) -> Any:
    """A reply read by redis-py, its strings made ``str`` (decode) or ``bytes``."""
    if isinstance(value, list):
        return [_recode(v, decode) for v in value]
    if decode and isinstance(value, bytes):
        return value.decode()
    if not decode and isinstance(value, str):
        return value.encode()
    return value


def _missing_function(exc: redis.exceptions.ResponseError) -> bool:
    return "function not found" in str(exc).lower()


def _no_functions(exc: redis.exceptions.ResponseError) -> bool:
    """FCALL/FUNCTION unknown (before Redis 7) or refused to this user (ACL) — not an error
    from inside the library, which the caller gets as it is."""
    text = str(exc).lower()
    if "unknown command" in text:
        return True
    refused = isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith("noperm")
    return refused and ("'fcall'" in text or "'function" in text)


def _bulk(arg: str | bytes) -> bytes:
    data = arg if isinstance(arg, bytes) else arg.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _pack(args: tuple[str | bytes, ...]) -> bytes:
    """``args`` as RESP bulk strings. When all are ASCII text (a hot command's arguments:
    ids, numbers, runlane's own words), their lengths in characters are their lengths in bytes:
    framed as one text and encoded once (about half the CPU of framing each one). Bytes or
    other text: one by one (a JSON argument arrives as bytes: no exception raised for it)."""
    try:
        ascii_only = type(args[0]) is not bytes and "".join(args).isascii()
    except (IndexError, TypeError):  # no arguments (framed below as nothing), or mixed
        ascii_only = False
    if ascii_only:
        return "".join([f"${len(arg)}\r\n{arg}\r\n" for arg in args]).encode()
    return b"".join([_bulk(arg) for arg in args])


def _head(call: tuple[str, ...], count: int) -> bytes:
    """The start of a command of ``count`` arguments whose first ones are ``call``."""
    return b"*%d\r\n" % count + _pack(call)


_TIMEVAL = struct.Struct("ll")  # struct timeval on Linux: seconds, microseconds (longs)


def _timeout_in_kernel(sock: Any) -> None:
    """Move a plain TCP socket's timeout into the kernel (SO_RCVTIMEO, SO_SNDTIMEO; Linux).

    A Python socket with a timeout polls before every send and every receive: four system
    calls a round trip instead of two, 5-12 µs of CPU more on each of a run's three store
    calls. A blocking socket whose kernel timeouts are set fails the same way, only later in
    the call: a receive that waits longer raises ``OSError`` (EAGAIN), which the lane treats
    as a lost connection, as it does Python's timeout. Other sockets (TLS, Unix, no timeout,
    other systems) are left as they are."""
    timeout = sock.gettimeout()
    if not timeout or type(sock) is not socket.socket or not sys.platform.startswith("linux"):
        return  # (0: a non-blocking socket, which a kernel timeout of 0 would make blocking)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    seconds, fraction = divmod(timeout, 1)
    micros = int(fraction * 1_000_000) or (0 if seconds else 1)  # 0 would mean "never"
    tv = _TIMEVAL.pack(int(seconds), micros)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
    except OSError:  # the timeout stays Python's
        return
    sock.settimeout(None)


class ScriptLane:
    """Calls of the store's scripts: ``lane(key, command, *args)`` runs the script of
    ``command`` (``scripts``; the ``program`` for a command it does not name)."""

    def __init__(
        self,
        client: redis.Redis,
        scripts: dict[str, Script],
        program: Script,
        *,
        decode: bool | None = None,
        library: Library | None = None,
        not_resent: frozenset[str] = frozenset(),
    ) -> None:
        """``decode``: strings in replies as ``str`` (True) or ``bytes`` (False) whatever the
        client does; None: as the client does. ``library``: the same commands as a Redis
        function library, used instead of the scripts where the server has functions (Redis
        7 and later) and this client may load them. ``not_resent``: commands that are not
        sent again when the connection is lost after they were sent (Redis may have run
        them, and running them twice is not the same as once): the error is raised."""
        self.client = client
        self.not_resent = not_resent
        self.scripts = scripts
        self.program = program
        self.decode = decode
        self.library = library
        # FCALL the library (True), EVALSHA the scripts (False), or not known yet (None: the
        # first call finds out)
        self.functions: bool | None = None if library is not None else False
        self._local = threading.local()
        self._heads: dict[tuple[bool, str, str, int], bytes] = {}
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()  # to close with the store

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.forks != _forks:
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn, local.forks = conn, _forks  # a thread's end drops it (and its socket)
            local.reader = _RespReader(conn, self.decode)
            self._open.add(conn)
        return conn

    def __call__(self, key: str, command: str, *args: str | bytes) -> Any:
        """FCALL of the library's function, or EVALSHA of the script of ``command``, with one
        key and ``command, *args``."""
        functions = self.functions
        # the command's fixed part (FCALL/EVALSHA, function or script, key, command), packed
        # once: what varies is the arguments (one JSON document, or a hot command's strings)
        head_key = (functions is not False, key, command, len(args))
        head = self._heads.get(head_key)
        if head is None:
            if functions is not False:  # None: the first call finds out whether FCALL works
                assert self.library is not None
                fixed = ("FCALL", self.library.function, "1", key, command)
            else:
                fixed = ("EVALSHA", self.scripts.get(command, self.program).sha, "1", key, command)
            if len(self._heads) >= 1024:  # keys are few (one per environment); bounded anyway
                self._heads.clear()
            head = self._heads[head_key] = _head(fixed, len(fixed) + len(args))
        packed = head + _pack(args)
        conn = self._connection()
        sent = False
        try:
            sock = getattr(conn, "_sock", None)
            if sock is None:
                conn.connect()  # redis-py's handshake: TLS, AUTH, SELECT, HELLO
                sock = conn._sock
                _timeout_in_kernel(sock)
            sock.sendall(packed)
            sent = True
            reply = self._local.reader.read(sock)
            if functions is None:
                self.functions = True
            return reply
        except redis.exceptions.NoScriptError:
            pass  # loaded again below
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            conn.disconnect()  # sent again below, through redis-py (a stale connection after
            if sent and command in self.not_resent:  # a restart, or a lost reply)
                raise
        except redis.exceptions.ResponseError as exc:
            if functions is not False and _no_functions(exc):
                self.functions = False  # Redis 6, or FCALL refused to this user: scripts
                return self(key, command, *args)
            if functions is False or not _missing_function(exc):
                if functions is None:
                    self.functions = True  # the library answered (with its own error)
                raise  # the script's own error: the connection is in step
            # the library is not (or no longer) there: a restart without persistence,
            # FUNCTION FLUSH, or the first call of this version; loaded below
        except BaseException:
            conn.disconnect()  # interrupted mid-call (a cancel, a time limit): out of step
            raise
        return self._slow(self.scripts.get(command, self.program), key, (command, *args))

    def _slow(self, script: Script, key: str, args: tuple[str, ...]) -> Any:
        """The call through redis-py, with its reconnects and retries; the library (or the
        script) is loaded when the server does not have it."""
        if self.functions is not False:
            assert self.library is not None
            try:
                reply = self.client.fcall(self.library.function, 1, key, *args)
            except redis.exceptions.ResponseError as exc:
                if _no_functions(exc):
                    self.functions = False
                    return self._slow(script, key, args)
                if not _missing_function(exc):
                    raise
                if not self._load():
                    return self._slow(script, key, args)  # scripts from now on
                reply = self.client.fcall(self.library.function, 1, key, *args)  # once
            self.functions = True
        else:
            reply = script(keys=[key], args=list(args))
        return reply if self.decode is None else _recode(reply, self.decode)

    def _load(self) -> bool:
        """Load the library; False (and the scripts serve every call from now on) where the
        server has no functions or this client may not load them."""
        assert self.library is not None
        try:
            self.client.function_load(self.library.text)
        except redis.exceptions.ResponseError as exc:
            if "already exists" in str(exc):
                return True  # another process loaded it: the name is the code's digest
            if _no_functions(exc):
                self.functions = False  # EVALSHA from now on
                return False
            raise  # a library the server refuses is a bug, not a reason to fall back
        return True

    def close(self) -> None:
        for conn in list(self._open):
            conn.disconnect()
