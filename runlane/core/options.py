"""Option parsing shared by every entry point (Python API, CLI, HTTP API).

Each parser takes what a user wrote and returns a normalized value, or raises
``InvalidOptionError`` naming the option and the value. Nothing here does I/O, so a trigger that
fails to parse has written nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from runlane.core.durations import (
    parse_duration,
    parse_point_in_time,
)
from runlane.core.idempotency import make_idempotency_key
from runlane.core.limits import Limits
from runlane.errors import InvalidOptionError, LimitExceededError

MACHINES: dict[str, tuple[float, float]] = {
    "micro": (0.25, 0.25),
    "small-1x": (0.5, 0.5),
    "small-2x": (1, 1),
    "medium-1x": (1, 2),
    "medium-2x": (2, 4),
    "large-1x": (4, 8),
    "large-2x": (8, 16),
}
DEFAULT_MACHINE = "small-1x"
MAX_DURATION_SECONDS = 2**31 - 1

_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
ENVIRONMENTS = ("dev", "staging", "prod", "preview")


class _Unset:
    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()
"""Marks an option that was not given (distinct from ``None``, which may mean "off")."""


def check_items(items: Any, option: str = "items") -> Sequence[Any]:
    """A batch's items must be a list (or tuple); anything else is a clear error."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise InvalidOptionError(option, items, "must be a list of items")
    return items


def validate_task_id(value: Any, option: str = "id") -> str:
    if not isinstance(value, str) or not _TASK_ID.fullmatch(value):
        raise InvalidOptionError(
            option,
            value,
            "task ids are 1-128 characters: letters, digits and - _ . : / "
            "(starting with a letter or digit)",
        )
    return value


def validate_queue_name(value: Any, option: str = "queue.name") -> str:
    if not isinstance(value, str) or not _QUEUE_NAME.fullmatch(value):
        raise InvalidOptionError(
            option,
            value,
            "queue names are 1-128 characters: letters, digits and - _ . : / "
            "(starting with a letter or digit)",
        )
    return value


def validate_concurrency_key(value: Any, option: str = "concurrency_key") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise InvalidOptionError(option, value, "must be a string of 1-256 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidOptionError(option, value, "must not contain control characters")
    return value


def validate_positive_int(value: Any, option: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidOptionError(option, value, f"must be an integer >= {minimum}")
    return value


def validate_machine(value: Any, option: str = "machine") -> str:
    if not isinstance(value, str) or value not in MACHINES:
        raise InvalidOptionError(option, value, f"unknown machine preset; one of {list(MACHINES)}")
    return value


def validate_max_duration(value: Any, option: str, limits: Limits) -> int | None:
    """Seconds (>= the minimum), or None for "no limit" (``timeout.NONE``)."""
    if value is None or value is TIMEOUT_NONE:
        return None
    seconds = parse_duration(value, option)
    if seconds > MAX_DURATION_SECONDS:
        raise InvalidOptionError(option, value, f"must be at most {MAX_DURATION_SECONDS} seconds")
    if seconds < limits.min_max_duration_seconds:
        raise InvalidOptionError(
            option, value, f"must be at least {limits.min_max_duration_seconds} seconds"
        )
    return int(seconds)


class _TimeoutNone:
    def __repr__(self) -> str:
        return "timeout.NONE"


TIMEOUT_NONE: Any = _TimeoutNone()


def normalize_tags(value: Any, limits: Limits, option: str = "tags") -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InvalidOptionError(option, value, "must be a string or a list of strings")
    out: list[str] = []
    for tag in items:
        if not isinstance(tag, str) or not 1 <= len(tag) <= limits.tag_length:
            raise InvalidOptionError(
                option, tag, f"each tag must be a string of 1-{limits.tag_length} characters"
            )
        if any(ord(c) < 32 for c in tag):
            raise InvalidOptionError(option, tag, "tags must not contain control characters")
        if tag not in out:
            out.append(tag)
    if len(out) > limits.tags_per_run:
        raise LimitExceededError(
            option, out, f"a run can have at most {limits.tags_per_run} tags, got {len(out)}"
        )
    return out


@dataclass(frozen=True)
class QueueSpec:
    """A queue as named in ``@task(queue=...)`` or at trigger time. Limit None = unbounded."""

    name: str | None = None
    concurrency_limit: int | None = None
    total_concurrency_limit: int | None = None


def queue(
    name: str, *, concurrency_limit: int | None = None, total_concurrency_limit: int | None = None
) -> QueueSpec:
    """A queue shared by tasks: ``llm = runlane.queue(name="llm", concurrency_limit=1)`` then
    ``@task(queue=llm)``. ``concurrency_limit`` applies to each concurrency key (and to runs
    without one); ``total_concurrency_limit`` caps all keys together."""
    spec = parse_queue(
        {
            "name": name,
            "concurrency_limit": concurrency_limit,
            "total_concurrency_limit": total_concurrency_limit,
        },
        option="queue",
    )
    return spec


def parse_queue(value: Any, option: str = "queue") -> QueueSpec:
    if isinstance(value, QueueSpec):
        return value
    if isinstance(value, str):
        return QueueSpec(name=validate_queue_name(value, option))
    if not isinstance(value, Mapping):
        raise InvalidOptionError(option, value, "must be a queue name, a dict or runlane.queue()")
    unknown = set(value) - {"name", "concurrency_limit", "total_concurrency_limit"}
    if unknown:
        raise InvalidOptionError(option, value, f"unknown queue option(s) {sorted(unknown)}")
    name = value.get("name")
    if name is not None:
        validate_queue_name(name, f"{option}.name")
    limit = value.get("concurrency_limit")
    if limit is not None:
        validate_positive_int(limit, f"{option}.concurrency_limit", minimum=0)
    total = value.get("total_concurrency_limit")
    if total is not None:
        validate_positive_int(total, f"{option}.total_concurrency_limit", minimum=0)
    return QueueSpec(name=name, concurrency_limit=limit, total_concurrency_limit=total)


@dataclass(frozen=True)
class RetryOptions:
    max_attempts: int = 3
    factor: float = 2.0
    min_timeout_in_ms: int = 1000
    max_timeout_in_ms: int = 10000
    randomize: bool = True
    out_of_memory_machine: str | None = None


_RETRY_KEYS = {
    "max_attempts",
    "factor",
    "min_timeout_in_ms",
    "max_timeout_in_ms",
    "randomize",
    "out_of_memory",
}


def parse_retry(
    value: Any, base: RetryOptions | None = None, option: str = "retry"
) -> RetryOptions:
    base = base or RetryOptions()
    if value is None:
        return base
    if isinstance(value, RetryOptions):
        return value
    if not isinstance(value, Mapping):
        raise InvalidOptionError(option, value, "must be a dict of retry options")
    unknown = set(value) - _RETRY_KEYS
    if unknown:
        raise InvalidOptionError(
            option,
            value,
            f"unknown retry option(s) {sorted(unknown)}; known: {sorted(_RETRY_KEYS)}",
        )
    kw: dict[str, Any] = {}
    if "max_attempts" in value:
        kw["max_attempts"] = validate_positive_int(value["max_attempts"], f"{option}.max_attempts")
    for key in ("min_timeout_in_ms", "max_timeout_in_ms"):
        if key in value:
            kw[key] = validate_positive_int(value[key], f"{option}.{key}", minimum=0)
    if "factor" in value:
        f = value["factor"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or f < 1:
            raise InvalidOptionError(f"{option}.factor", f, "must be a number >= 1")
        kw["factor"] = float(f)
    if "randomize" in value:
        if not isinstance(value["randomize"], bool):
            raise InvalidOptionError(f"{option}.randomize", value["randomize"], "must be a bool")
        kw["randomize"] = value["randomize"]
    if "out_of_memory" in value:
        oom = value["out_of_memory"]
        if not isinstance(oom, Mapping) or set(oom) - {"machine"}:
            raise InvalidOptionError(f"{option}.out_of_memory", oom, 'expected {"machine": ...}')
        kw["out_of_memory_machine"] = validate_machine(
            oom.get("machine"), f"{option}.out_of_memory.machine"
        )
    merged = {**base.__dict__, **kw}
    if merged["max_timeout_in_ms"] < merged["min_timeout_in_ms"]:
        raise InvalidOptionError(option, value, "max_timeout_in_ms must be >= min_timeout_in_ms")
    return RetryOptions(**merged)


@dataclass
class TriggerOptions:
    """Normalized trigger options. Times are epoch seconds; durations seconds."""

    delay_until: float | None = None
    ttl: float | None = None  # None = environment default; 0 = no TTL
    ttl_given: bool = False
    idempotency_key: str | None = None
    idempotency_key_ttl: float | None = None
    concurrency_key: str | None = None
    queue: QueueSpec | None = None
    max_attempts: int | None = None
    max_duration: int | None = None
    max_duration_given: bool = False
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    machine: str | None = None
    version: str | None = None
    is_test: bool = False


TRIGGER_OPTION_NAMES = frozenset(
    {
        "delay",
        "ttl",
        "idempotency_key",
        "idempotency_key_ttl",
        "concurrency_key",
        "queue",
        "max_attempts",
        "max_duration",
        "tags",
        "metadata",
        "machine",
        "version",
        "test",
    }
)


def parse_trigger_options(
    raw: Mapping[str, Any] | None, now: float, limits: Limits
) -> TriggerOptions:
    """Parse the options of one trigger. Unknown names are an error (typos do not pass)."""
    if raw is not None and not isinstance(raw, Mapping):
        raise InvalidOptionError("options", raw, "trigger options must be a dict")
    if not raw:  # most triggers give none
        return TriggerOptions()
    raw = dict(raw)
    unknown = set(raw) - TRIGGER_OPTION_NAMES
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidOptionError(
            name,
            raw[name],
            f"unknown trigger option; known options: {sorted(TRIGGER_OPTION_NAMES)}",
        )
    opts = TriggerOptions()
    if raw.get("delay") is not None:
        opts.delay_until = parse_point_in_time(raw["delay"], "delay", now)
    if "ttl" in raw and raw["ttl"] is not None:
        ttl = raw["ttl"]
        opts.ttl_given = True
        if ttl is False or ttl == 0:
            opts.ttl = 0.0
        else:
            if isinstance(ttl, (datetime, date)):
                raise InvalidOptionError(
                    "ttl", ttl, "ttl counts from enqueue, so it takes a duration, not a date"
                )
            opts.ttl = parse_duration(ttl, "ttl")
    if raw.get("idempotency_key") is not None:
        key = raw["idempotency_key"]
        opts.idempotency_key = make_idempotency_key(key)
    if raw.get("idempotency_key_ttl") is not None:
        opts.idempotency_key_ttl = parse_duration(raw["idempotency_key_ttl"], "idempotency_key_ttl")
    if raw.get("concurrency_key") is not None:
        opts.concurrency_key = validate_concurrency_key(raw["concurrency_key"])
    if raw.get("queue") is not None:
        opts.queue = parse_queue(raw["queue"])
        if opts.queue.name is None:
            raise InvalidOptionError("queue", raw["queue"], "a trigger-time queue needs a name")
    if raw.get("max_attempts") is not None:
        opts.max_attempts = validate_positive_int(raw["max_attempts"], "max_attempts")
    if "max_duration" in raw:
        opts.max_duration_given = True
        opts.max_duration = validate_max_duration(raw["max_duration"], "max_duration", limits)
    if raw.get("tags") is not None:
        opts.tags = normalize_tags(raw["tags"], limits)
    if raw.get("metadata") is not None:
        md = raw["metadata"]
        if not isinstance(md, Mapping):
            raise InvalidOptionError("metadata", md, "must be a dict")
        opts.metadata = dict(md)
    if raw.get("machine") is not None:
        opts.machine = validate_machine(raw["machine"])
    if raw.get("version") is not None:
        v = raw["version"]
        if not isinstance(v, str) or not 1 <= len(v) <= 64:
            raise InvalidOptionError("version", v, "must be a string of 1-64 characters")
        opts.version = v
    if raw.get("test") is not None:
        if not isinstance(raw["test"], bool):
            raise InvalidOptionError("test", raw["test"], "must be a bool")
        opts.is_test = raw["test"]
    return opts
