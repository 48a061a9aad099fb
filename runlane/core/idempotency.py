"""Idempotency keys, hashed as the reference does.

``create(parts, scope)`` = hex SHA-256 of the parts joined with "-", plus the scope's suffix parts:
"run" appends the run id (the default inside a run), "attempt" the run id and attempt number,
"global" nothing. Outside a run every scope is global. The result is an ``IdempotencyKey`` (a
``str``) so a trigger knows not to hash it again; a raw string or list given as
``idempotency_key`` is hashed with the run scope.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from runlane.core import context
from runlane.errors import InvalidOptionError

SCOPES = ("run", "attempt", "global")


class IdempotencyKey(str):
    """A key already hashed by ``idempotency_keys.create``."""


def _parts(key: Any) -> list[str]:
    items = [key] if isinstance(key, str) else key
    if not isinstance(items, Sequence) or isinstance(items, (bytes, bytearray)) or not items:
        raise InvalidOptionError(
            "idempotency_key", key, "must be a non-empty string or list of strings"
        )
    for part in items:
        if not isinstance(part, str) or not 1 <= len(part) <= 2048:
            raise InvalidOptionError(
                "idempotency_key", key, "each part must be a string of 1-2048 characters"
            )
    return list(items)


def create(key: str | Sequence[str], scope: str = "run") -> IdempotencyKey:
    if scope not in SCOPES:
        raise InvalidOptionError("scope", scope, f"must be one of {SCOPES}")
    parts = _parts(key)
    active = context.current()
    if active is not None and scope == "run":
        parts.append(active.run_id)
    elif active is not None and scope == "attempt":
        parts += [active.run_id, str(active.attempt_number)]
    return IdempotencyKey(hashlib.sha256("-".join(parts).encode()).hexdigest())


def make_idempotency_key(key: Any) -> IdempotencyKey:
    if isinstance(key, IdempotencyKey):
        return key
    return create(key, scope="run")
