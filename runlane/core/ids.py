"""Identifiers that sort by creation: ``run_``, ``batch_``, ``attempt_`` … + 26 characters.

The body is a ULID (48-bit millisecond time + 80 random bits, Crockford base32, lower case),
made monotonic within a process: two ids created in the same millisecond still sort in creation
order, so ``ORDER BY id`` is creation order and a stable pagination cursor.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_RAND_MAX = (1 << 80) - 1


# 10 bits → their 2 characters (base64.b32encode is a Python loop over 5-byte groups here)
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int, length: int) -> str:
    """``value`` as ``length`` characters of base 32, the most significant first."""
    shift = 5 * length
    out = []
    if length % 2:  # an odd length: its first character alone, then pairs
        shift -= 5
        out.append(_ALPHABET[(value >> shift) & 31])
    while shift:
        shift -= 10
        out.append(_PAIRS[(value >> shift) & 1023])
    return "".join(out)


def encode(value: int, length: int) -> str:
    """``value`` as ``length`` characters of the ids' base 32 (for ids derived from other
    values, such as a schedule's tick's run)."""
    return _encode(value, length)


def _encode80(value: int) -> str:
    """An 80-bit ``value`` as 16 characters (``_encode(value, 16)`` unrolled, on two 40-bit
    halves: small integers instead of one big one)."""
    hi, lo = value >> 40, value & 0xFFFFFFFFFF
    p = _PAIRS
    return (
        p[hi >> 30] + p[(hi >> 20) & 1023] + p[(hi >> 10) & 1023] + p[hi & 1023]
        + p[lo >> 30] + p[(lo >> 20) & 1023] + p[(lo >> 10) & 1023] + p[lo & 1023]
    )  # fmt: skip


# random bytes from the OS, 4 KiB at a time: one system call per ~400 ids instead of one each
# (a call releases the GIL, and in a busy threaded worker getting it back is what costs)
_pool = b""
_pool_at = 0
_pid = os.getpid()  # the process the pool and the last id belong to


def _random80() -> int:
    """80 random bits from the OS (caller holds ``_lock``)."""
    global _pool, _pool_at
    if _pool_at + 10 > len(_pool):
        _pool, _pool_at = os.urandom(4096), 0
    value = int.from_bytes(_pool[_pool_at : _pool_at + 10], "big")
    _pool_at += 10
    return value


def _forget() -> None:
    """In a forked child: its own random bytes and sequence, never its parent's (the same
    millisecond would give both the same id)."""
    global _pool, _pool_at, _last_ms, _pid
    _pool, _pool_at, _last_ms, _pid = b"", 0, 0, os.getpid()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    _forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# the time part of the last id made (10 characters: ids of one millisecond share it)
_head_ms = -1
_head = ""


def ulid(now_ms: int | None = None) -> str:
    global _last_ms, _last_rand, _head_ms, _head
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if _pid != os.getpid():  # a fork that ran no fork hooks (uWSGI without them, say)
            _forget()
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand > _RAND_MAX:  # 2**80 ids in one millisecond: move to the next one
                ms += 1
                rand = _random80() >> 1
        else:
            rand = _random80() >> 1  # headroom for increments
        _last_ms, _last_rand = ms, rand
        if ms != _head_ms:
            _head_ms, _head = ms, _encode(ms, 10)
        head = _head
    return head + _encode80(rand)  # 10 characters of time, then 16 of randomness


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def run_id() -> str:
    return new_id("run")


def batch_id() -> str:
    return new_id("batch")


def attempt_id() -> str:
    return new_id("attempt")


def bound(prefix: str, ms: int, high: bool) -> str:
    """The smallest (or, ``high``, the largest) id of ``prefix`` created at millisecond ``ms``:
    a range of ids is a range of creation times."""
    return f"{prefix}_{_encode(ms, 10)}" + ("z" * 16 if high else "0" * 16)


def id_time_ms(value: str) -> int:
    """The creation time (ms since the epoch) encoded in an id."""
    body = value.rsplit("_", 1)[-1][:10]
    ms = 0
    for ch in body:
        ms = ms * 32 + _ALPHABET.index(ch)
    return ms
