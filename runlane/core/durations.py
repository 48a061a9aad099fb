"""Durations and points in time, parsed the way the reference does (and stricter).

- a duration: ``"1h52m18s"``, ``"88s"``, ``"2w"``, ``"1d12hr"`` (units w, d, hr, h, m, s in any
  order, at most 100 characters), a number of seconds, or a ``timedelta``;
- a point in time (``delay``, ``runs.reschedule``, ``queues.pause(until=)``): a duration from
  now, a ``datetime`` (naive means UTC), or an ISO-8601 string. A date in the past means "now".

Every duration option takes the one grammar: ``ttl``, ``delay``, ``idempotency_key_ttl`` (the
reference's ``^\\d+[smhd]$`` is a subset), ``max_duration``, ``retention``.

Trigger.dev silently ignores what it cannot parse; runlane raises ``InvalidOptionError``.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from runlane.errors import InvalidOptionError

_UNIT_SECONDS = {"w": 604800, "d": 86400, "hr": 3600, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)(hr|w|d|h|m|s)")
_WHOLE = re.compile(r"(?:\d+(?:hr|w|d|h|m|s))+")
MAX_DURATION_STRING = 100
MAX_SECONDS = 100 * 365 * 86400  # anything longer is a mistake, and overflows datetimes


def parse_duration(value: Any, option: str, *, allow_zero: bool = False) -> float:
    """Seconds in ``value`` (a duration string, number of seconds or timedelta)."""
    if isinstance(value, bool):
        raise InvalidOptionError(option, value, "expected a duration such as '10m' or seconds")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise InvalidOptionError(option, value, "must be a finite number of seconds")
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_DURATION_STRING:
            raise InvalidOptionError(option, value, "duration strings are at most 100 characters")
        if not _WHOLE.fullmatch(text):
            raise InvalidOptionError(
                option,
                value,
                "expected a duration such as '88s', '10m', '1h52m18s', '2d' or '1w' "
                "(units w, d, hr, h, m, s)",
            )
        seconds = float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text)))
    else:
        raise InvalidOptionError(
            option,
            value,
            f"expected a duration string, seconds or timedelta, not {type(value).__name__}",
        )
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidOptionError(option, value, "must be a positive duration")
    if seconds > MAX_SECONDS:
        raise InvalidOptionError(option, value, "must be at most 100 years")
    return seconds


def parse_iso_datetime(text: str, option: str) -> datetime:
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        try:
            d = date.fromisoformat(raw)
        except ValueError:
            raise InvalidOptionError(
                option,
                text,
                "expected a duration ('1h') or an ISO-8601 date ('2024-12-01T00:00:00Z')",
            ) from None
        dt = datetime(d.year, d.month, d.day)
    return dt


def parse_point_in_time(value: Any, option: str, now: float) -> float:
    """A timestamp for ``delay``-like options; past dates are clamped to ``now``."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and not _WHOLE.fullmatch(value.strip()):
        dt = parse_iso_datetime(value, option)
    else:
        return now + parse_duration(value, option, allow_zero=True)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ts = dt.timestamp()
    if ts > now + MAX_SECONDS:
        raise InvalidOptionError(option, value, "must be at most 100 years from now")
    return max(now, ts)


def format_duration(seconds: float) -> str:
    """``3723`` → ``'1h2m3s'`` (whole seconds)."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
