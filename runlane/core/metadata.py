"""Run metadata: the operations (pure), and the per-attempt buffer that flushes them.

Operations are JSON objects ``{"op": ..., "key": ..., "value": ...}`` so that every store
applies the same list atomically (SQLite in a transaction, Redis in a script) and concurrent
writers (a run and its children, later) never lose an increment.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from runlane.core import jsonvalue
from runlane.errors import InvalidOptionError, LimitExceededError

OPS = ("set", "delete", "replace", "append", "remove", "increment")
_FORBIDDEN_KEYS = ("__proto__", "constructor", "prototype")


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidOptionError("metadata key", key, "must be a non-empty string")
    if key in _FORBIDDEN_KEYS:
        raise InvalidOptionError("metadata key", key, "this key name is not allowed")
    return key


def _check_tree(value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in _FORBIDDEN_KEYS:
                raise InvalidOptionError("metadata key", k, "this key name is not allowed")
            _check_tree(v)
    elif isinstance(value, list):
        for v in value:
            _check_tree(v)


def json_equal(a: Any, b: Any) -> bool:
    """Deep equality of JSON values: booleans are not numbers (``True != 1``), ``1 == 1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return bool(a == b)


def make_op(op: str, key: str | None = None, value: Any = None) -> dict[str, Any]:
    """Validate and build one operation (values converted to JSON data)."""
    if op not in OPS:
        raise InvalidOptionError("metadata op", op, f"must be one of {OPS}")
    out: dict[str, Any] = {"op": op}
    if op == "replace":
        if not isinstance(value, Mapping):
            raise InvalidOptionError("metadata", value, "replace takes a dict")
        data = jsonvalue.to_json_value(dict(value), "metadata")
        _check_tree(data)
        out["value"] = data
        return out
    out["key"] = check_key(key)
    if op == "delete":
        return out
    if op == "increment":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise InvalidOptionError("metadata increment", value, "must be a finite number")
        out["value"] = value
        return out
    data = jsonvalue.to_json_value(value, "metadata")
    _check_tree(data)
    out["value"] = data
    return out


def apply_ops(metadata: Mapping[str, Any], ops: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Return a new dict: ``metadata`` with ``ops`` applied in order (reference semantics)."""
    md: dict[str, Any] = copy.deepcopy(dict(metadata))
    for op in ops:
        kind = op["op"]
        if kind == "replace":
            md = copy.deepcopy(op["value"])
            continue
        key = op["key"]
        if kind == "set":
            md[key] = copy.deepcopy(op["value"])
        elif kind == "delete":
            md.pop(key, None)
        elif kind == "append":
            cur = md.get(key)
            if key not in md:
                md[key] = [op["value"]]
            elif isinstance(cur, list):
                cur.append(op["value"])
            else:
                md[key] = [cur, op["value"]]
        elif kind == "remove":
            cur = md.get(key)
            if isinstance(cur, list):
                md[key] = [v for v in cur if not json_equal(v, op["value"])]
        elif kind == "increment":
            cur = md.get(key)
            base = cur if isinstance(cur, (int, float)) and not isinstance(cur, bool) else 0
            md[key] = base + op["value"]
    return md


def collapse(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive sets (last wins) and increments (summed) of the same key."""
    out: list[dict[str, Any]] = []
    for op in ops:
        prev = out[-1] if out else None
        if prev and prev["op"] == op["op"] and prev.get("key") == op.get("key"):
            if op["op"] == "set":
                out[-1] = op
                continue
            if op["op"] == "increment":
                out[-1] = {**prev, "value": prev["value"] + op["value"]}
                continue
        if op["op"] == "replace":
            out = [op]
            continue
        out.append(op)
    return out


def encoded_size(metadata: Mapping[str, Any]) -> int:
    return len(jsonvalue.dumps(metadata).encode("utf-8"))


def check_size(metadata: Mapping[str, Any], limit: int) -> None:
    size = encoded_size(metadata)
    if size > limit:
        raise LimitExceededError(
            "metadata", f"<{size} bytes>", f"is {size} bytes of JSON, over the limit of {limit}"
        )


class MetadataState:
    """One attempt's view of its run's metadata plus the operations not yet flushed."""

    def __init__(self, initial: Mapping[str, Any], limit: int) -> None:
        self._lock = threading.Lock()
        self._value = dict(initial)
        self._pending: list[dict[str, Any]] = []
        self._limit = limit

    def apply(self, op: dict[str, Any]) -> None:
        with self._lock:
            new = apply_ops(self._value, [op])
            check_size(new, self._limit)
            self._value = new
            self._pending.append(op)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._value)

    def get(self, key: str) -> Any:
        with self._lock:
            return copy.deepcopy(self._value.get(key))

    def take_pending(self) -> list[dict[str, Any]]:
        if not self._pending:  # no update pending (an apply after this: the next take)
            return []
        with self._lock:
            ops, self._pending = self._pending, []
        return collapse(ops)

    def restore_pending(self, ops: list[dict[str, Any]]) -> None:
        """Put back operations whose flush failed, ahead of newer ones."""
        with self._lock:
            self._pending = ops + self._pending

    @property
    def dirty(self) -> bool:
        with self._lock:
            return bool(self._pending)


class RemoteOps:
    """Operations on other runs' metadata (``metadata.parent`` / ``metadata.root``), buffered
    per target run and applied by the store atomically, so concurrent children never lose an
    update."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def add(self, run_id: str, op: dict[str, Any]) -> None:
        with self._lock:
            self._pending.setdefault(run_id, []).append(op)

    def take(self) -> dict[str, list[dict[str, Any]]]:
        if not self._pending:  # most attempts touch no other run (an add after this: next take)
            return {}
        with self._lock:
            out, self._pending = self._pending, {}
        return {run_id: collapse(ops) for run_id, ops in out.items()}

    def restore(self, taken: dict[str, list[dict[str, Any]]]) -> None:
        with self._lock:
            for run_id, ops in taken.items():
                self._pending[run_id] = ops + self._pending.get(run_id, [])
