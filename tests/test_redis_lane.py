"""The Redis store's transitions run on a connection of each thread's own (ScriptLane): they
survive a lost connection and a script Redis does not know, a forked child never shares its
parent's socket, and closing the store closes them."""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator

import pytest

from runlane.backends.redis.lane import ScriptLane
from runlane.backends.redis.store import RedisStore
from tests.adapters import delete_redis_prefix

redis = pytest.importorskip("redis")


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    prefix = f"rltest-{uuid.uuid4().hex[:12]}"
    s = RedisStore(redis_url, "dev", prefix=prefix)
    try:
        yield s
    finally:
        s.close()
        delete_redis_prefix(redis_url, prefix)


def _claim(store: RedisStore, owner: str) -> bool:
    return store.acquire_lease("lane", owner, ttl=30, now=time.time())


def _lane_client_id(store: RedisStore) -> int:
    conn = store._lane._connection()
    conn.send_command("CLIENT", "ID")
    return int(conn.read_response())


def test_each_thread_has_its_own_connection(store):
    assert _claim(store, "a")
    mine = _lane_client_id(store)
    theirs: list[int] = []
    thread = threading.Thread(target=lambda: theirs.append(_lane_client_id(store)))
    thread.start()
    thread.join()
    assert theirs and theirs[0] != mine
    assert _lane_client_id(store) == mine  # kept for the next call of this thread


def test_a_killed_connection_is_replaced_and_the_call_goes_through(store, redis_url):
    assert _claim(store, "a")
    admin = redis.Redis.from_url(redis_url)
    try:
        assert admin.client_kill_filter(_id=_lane_client_id(store)) == 1
    finally:
        admin.close()
    assert _claim(store, "a")  # the same owner renews: the transition ran once more
    assert not _claim(store, "b")


def test_a_script_redis_does_not_know_yet_is_loaded(redis_url):
    """As after a Redis restart or SCRIPT FLUSH (not done here: this Redis may be shared)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        script = client.register_script(f"-- {uuid.uuid4().hex}\nreturn ARGV[1] .. KEYS[1]")
        assert client.script_exists(script.sha) == [False]
        lane = ScriptLane(client, {}, script)
        assert lane("k", "v") == "vk"
        assert client.script_exists(script.sha) == [True] and lane("k", "w") == "wk"
        lane.close()
    finally:
        client.close()


def test_a_forked_child_opens_its_own_connection(store):
    assert _claim(store, "parent")
    parent_id = _lane_client_id(store)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: its calls must not go through the parent's socket
        code = 1
        try:
            ok = _claim(store, "parent") and _lane_client_id(store) != parent_id
            code = 0 if ok else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == bytes([0]) and os.waitstatus_to_exitcode(status) == 0
    os.close(read)
    assert _lane_client_id(store) == parent_id and _claim(store, "parent")


def test_closing_the_store_closes_the_connections(redis_url):
    prefix = f"rltest-{uuid.uuid4().hex[:12]}"
    s = RedisStore(redis_url, "dev", prefix=prefix)
    assert _claim(s, "a")
    conn = s._lane._connection()
    assert conn.is_connected
    s.close()
    assert not conn.is_connected
    delete_redis_prefix(redis_url, prefix)


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode", [True, False])
def test_replies_are_read_from_the_socket_in_both_protocols(redis_url, protocol, decode):
    """The lane parses the script's reply itself: strings, nil, integers, nested arrays, a
    reply larger than one read, and an error that leaves the connection usable."""
    client = redis.Redis.from_url(redis_url, decode_responses=decode, protocol=protocol)
    try:
        script = client.register_script(
            f"-- {uuid.uuid4().hex}\n"
            "if ARGV[1] == 'nil' then return nil end\n"
            "if ARGV[1] == 'int' then return 42 end\n"
            "if ARGV[1] == 'big' then return string.rep('x', 300000) .. KEYS[1] end\n"
            "if ARGV[1] == 'err' then return redis.error_reply('runlane: refused') end\n"
            "if ARGV[1] == 'boom' then return redis.call('INCR', KEYS[1] .. 'no', 'x') end\n"
            "return {ARGV[1], {'é', 7}, ''}"
        )
        lane = ScriptLane(client, {}, script)
        text = (lambda s: s) if decode else (lambda s: s.encode())
        assert lane("k", "list") == [text("list"), [text("é"), 7], text("")]
        assert lane("k", "nil") is None
        assert lane("k", "int") == 42
        assert lane("k", "big") == text("x" * 300000 + "k")
        with pytest.raises(redis.exceptions.ResponseError, match="runlane: refused"):
            lane("k", "err")
        with pytest.raises(redis.exceptions.ResponseError):
            lane("k", "boom")
        assert lane("k", "int") == 42  # the same connection, still in step
        lane.close()
    finally:
        client.close()


def test_an_interrupted_call_drops_its_connection(store, monkeypatch):
    """An exception raised mid-call (a cancel or a time limit interrupting the thread) may
    leave a reply unread: the connection is not used again."""
    assert _claim(store, "a")
    conn = store._lane._connection()
    reader = store._lane._local.reader

    class Interrupted(BaseException):
        pass

    def interrupted(self, sock):
        raise Interrupted

    monkeypatch.setattr(type(reader), "read", interrupted)
    with pytest.raises(Interrupted):
        _claim(store, "a")
    assert not conn.is_connected
    monkeypatch.undo()
    assert _claim(store, "a") and not _claim(store, "b")


def test_calls_differing_in_key_command_or_arguments_are_packed_apart(redis_url):
    """The fixed part of a call (script, key, command, argument count) is packed once and
    kept: each combination still reaches the server as its own call."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        script = client.register_script(
            f"-- {uuid.uuid4().hex}\nreturn table.concat(ARGV, '|') .. '@' .. KEYS[1]"
        )
        lane = ScriptLane(client, {}, script)
        assert lane("k1", "a", "x") == "a|x@k1"
        assert lane("k2", "a", "x") == "a|x@k2"
        assert lane("k1", "b", "é") == "b|é@k1"
        assert lane("k1", "a") == "a@k1"
        assert lane("k1", "a", b"y", "z") == "a|y|z@k1"
        # framed as one text when all are ASCII; else each as its own UTF-8 bytes
        assert lane("k1", "a", "", "1.5", "") == "a||1.5|@k1"
        assert lane("k1", "a", "x", "\u00e9\u20ac", "y") == "a|x|\u00e9\u20ac|y@k1"
        assert lane("k1", "a", "x", b"y") == "a|x|y@k1"  # text, then bytes
        assert lane("k1", "a", "x") == "a|x@k1"
        lane.close()
    finally:
        client.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel timeouts: Linux only")
def test_the_socket_timeout_is_kept_in_the_kernel_and_still_ends_a_call_that_waits(redis_url):
    """On Linux the lane's socket has no Python timeout (which polls before every send and
    receive) but the kernel's, set to the client's socket_timeout: a reply slower than that
    still fails the call (a lost connection, then redis-py's own path), and the lane works
    again afterwards."""
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.25)
    flag = f"rltest-{uuid.uuid4().hex[:12]}"
    try:
        # busy for 0.6 s the first time only (a flag key), then answers at once
        script = client.register_script(
            f"-- {uuid.uuid4().hex}\n"
            "if redis.call('SET', KEYS[1], '1', 'NX', 'PX', 60000) then\n"
            "  local t = redis.call('TIME')\n"
            "  local stop = tonumber(t[1]) * 1e6 + tonumber(t[2]) + 600000\n"
            "  repeat t = redis.call('TIME') until tonumber(t[1]) * 1e6 + tonumber(t[2]) > stop\n"
            "end\n"
            "return ARGV[1]"
        )
        lane = ScriptLane(client, {}, script)
        client.set(flag + ":warm", "1", px=60000)
        assert lane(flag + ":warm", "a") == "a"  # connected (its flag set: not busy)
        sock = lane._connection()._sock
        assert sock.gettimeout() is None
        tv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
        seconds, micros = struct.unpack("ll", tv)
        assert seconds == 0 and 240_000 <= micros <= 260_000  # (the kernel counts in ticks)
        started = time.monotonic()
        try:
            assert lane(flag, "b") == "b"  # answered on redis-py's path once Redis was free
        except (redis.exceptions.TimeoutError, redis.exceptions.ConnectionError):
            pass  # or given up there: either way the wait ended
        assert 0.2 < time.monotonic() - started < 20
        assert sock.fileno() == -1  # the kernel's timeout ended the receive: connection dropped
        assert lane(flag, "c") == "c"  # the flag is set: at once, on a new connection
    finally:
        client.delete(flag, flag + ":warm")
        client.close()
