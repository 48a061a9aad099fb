"""What every shape shares: the wire's constants (statuses, environment types) and the small
field helpers (ISO dates, optional fields, JSON objects with known fields)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from runlane.core.models import AttemptStatus, RunStatus
from runlane.errors import InvalidOptionError

T = TypeVar("T")

# runlane's statuses are Trigger.dev's public run statuses (the API's ``RunStatus``), one to one
RUN_STATUS: dict[RunStatus, str] = {status: status.value for status in RunStatus}
# the API's attempt statuses are PENDING, EXECUTING, PAUSED, COMPLETED, FAILED, CANCELED
ATTEMPT_STATUS: dict[AttemptStatus, str] = {
    AttemptStatus.EXECUTING: "EXECUTING",
    AttemptStatus.COMPLETED: "COMPLETED",
    AttemptStatus.FAILED: "FAILED",
    AttemptStatus.CANCELED: "CANCELED",
    AttemptStatus.CRASHED: "FAILED",
    AttemptStatus.TIMED_OUT: "FAILED",
    AttemptStatus.SUSPENDED: "PAUSED",
}
ENVIRONMENT_TYPE = {"dev": "DEVELOPMENT", "staging": "STAGING", "prod": "PRODUCTION"}
ENVIRONMENT_TYPE["preview"] = "PREVIEW"
JSON_TYPE = "application/json"


# ---------------------------------------------------------------------- small parts
def iso(value: datetime) -> str:
    """``2025-03-01T12:00:00.000Z``: UTC with milliseconds, as ``Date.toISOString()``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """An optional field: left out when there is no value."""
    if value is not None:
        out[key] = iso(value) if isinstance(value, datetime) else value


def _object(value: Any, option: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidOptionError(option, value, "must be a JSON object")
    return value


def _known(value: Mapping[str, Any], known: Iterable[str], option: str) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        where = f"{option}.{unknown[0]}" if option else unknown[0]
        raise InvalidOptionError(where, value[unknown[0]], f"unknown field; known: {sorted(known)}")


def _string(value: Any, option: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise InvalidOptionError(option, value, "must be a non-empty string")
    return value


def _path(option: str, name: str) -> str:
    return f"{option}.{name}" if option else name
