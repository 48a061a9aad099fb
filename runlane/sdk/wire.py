"""What the native routes (``/api/runlane/v1``, used by remote mode) carry besides plain JSON.

Payloads, metadata and tags are JSON already (``jsonvalue``). A few trigger options may be
Python values JSON has no form for: a ``datetime`` or ``date`` delay, a ``timedelta`` ttl, an
``IdempotencyKey`` (hashed already: not to be hashed again), ``timeout.NONE``, a
``runlane.queue(...)``. Those travel tagged, ``{"$runlane": kind, "value": ...}``, and the
server turns them back into the same values before the engine parses them, so an option means
the same, and fails with the same error, in both modes. Only the options that take such values
are ever decoded: a user's dict elsewhere (metadata, a payload) is never read as a tag.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from runlane.core import jsonvalue
from runlane.core.idempotency import IdempotencyKey, make_idempotency_key
from runlane.core.options import TIMEOUT_NONE, QueueSpec, parse_queue
from runlane.errors import InvalidOptionError

BASE = "/api/runlane/v1"  # where the native routes are, under the API's root
TAG = "$runlane"
MAX_KEY = 256  # characters of a hashed idempotency key (a hash is 64)
# the options (and the reschedule's delay) whose values may be tagged
TYPED = frozenset(
    {"delay", "ttl", "idempotency_key", "idempotency_key_ttl", "max_duration", "queue"}
)


def _tagged(kind: str, value: Any = None) -> dict[str, Any]:
    return {TAG: kind, "value": value}


def encode_option(name: str, value: Any) -> Any:
    """One trigger option as JSON; ``PayloadError`` (naming ``name``) when it has no form."""
    if name in TYPED:
        if name == "idempotency_key" and value is not None:
            # hashed here, as a trigger in this process hashes it (a raw key takes the run scope)
            return _tagged("idempotency_key", str(make_idempotency_key(value)))
        if isinstance(value, datetime):
            return _tagged("datetime", value.isoformat())
        if isinstance(value, date):
            return _tagged("date", value.isoformat())
        if isinstance(value, timedelta):
            return _tagged("timedelta", value.total_seconds())
        if value is TIMEOUT_NONE:
            return _tagged("timeout_none")
        if isinstance(value, QueueSpec):
            return _tagged("queue", vars(value).copy())
    return jsonvalue.to_json_value(value, name)


def decode_option(value: Any) -> Any:
    """A value :func:`encode_option` tagged, as it was; anything else as it is."""
    if not (isinstance(value, dict) and set(value) == {TAG, "value"}):
        return value
    kind, raw = value[TAG], value["value"]
    try:
        if kind == "idempotency_key" and isinstance(raw, str) and 0 < len(raw) <= MAX_KEY:
            return IdempotencyKey(raw)
        if kind == "datetime" and isinstance(raw, str):
            return datetime.fromisoformat(raw)
        if kind == "date" and isinstance(raw, str):
            return date.fromisoformat(raw)
        if kind == "timedelta" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return timedelta(seconds=raw)
        if kind == "timeout_none":
            return TIMEOUT_NONE
        if kind == "queue" and isinstance(raw, dict):
            spec = parse_queue(raw)  # checked: a QueueSpec is taken as it is
            return spec
    except InvalidOptionError:
        raise
    except (TypeError, ValueError, OverflowError):
        pass
    raise InvalidOptionError(TAG, value, "not a value runlane encodes")


def decode_options(options: Any) -> Any:
    """Trigger options as the SDK sent them, with their tagged values decoded."""
    if not isinstance(options, dict):
        return options  # the engine says what is wrong with it
    return {k: decode_option(v) if k in TYPED else v for k, v in options.items()}


def plain_time(value: Any, name: str) -> Any:
    """A point in time or duration (``queues.pause(until=...)``) in the plain JSON a route
    that takes no tags parses the same way: an ISO date, or seconds."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return jsonvalue.to_json_value(value, name)
