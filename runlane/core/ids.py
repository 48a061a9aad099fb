"""Identifiers that sort by creation: ``run_``, ``batch_``, ``attempt_`` … + 26 characters.

The body is a ULID (48-bit millisecond time + 80 random bits, Crockford base32, lower case),
made monotonic within a process: two ids created in the same millisecond still sort in creation
order, so ``ORDER BY id`` is creation order and a stable pagination cursor.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_RAND_MAX = (1 << 80) - 1


# base64.b32encode's alphabet (RFC 4648) → ours, both 5 bits a character: encoding is then C
_TO_OURS = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def _encode(value: int, length: int) -> str:
    """``value`` as ``length`` characters of base 32, the most significant first."""
    nbytes = (length * 5 + 7) // 8
    pad = nbytes * 8 - length * 5  # low bits after the value, to fill whole bytes
    raw = base64.b32encode((value << pad).to_bytes(nbytes, "big"))
    return raw[: length].translate(_TO_OURS).decode()


def ulid(now_ms: int | None = None) -> str:
    global _last_ms, _last_rand
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand > _RAND_MAX:  # 2**80 ids in one millisecond: move to the next one
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last_ms, _last_rand = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def run_id() -> str:
    return new_id("run")


def batch_id() -> str:
    return new_id("batch")


def attempt_id() -> str:
    return new_id("attempt")


def id_time_ms(value: str) -> int:
    """The creation time (ms since the epoch) encoded in an id."""
    body = value.rsplit("_", 1)[-1][:10]
    ms = 0
    for ch in body:
        ms = ms * 32 + _ALPHABET.index(ch)
    return ms
