"""``runlane.wait``: durable waits inside a task (``wait.for_``, ``wait.until``).

A wait longer than the in-place window (``configure(wait_in_place=...)``, 2 s by default)
suspends the run: it becomes FROZEN, its worker is freed, and it resumes (on any worker) when
the time comes, even after a restart.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone

from runlane.core import runtime
from runlane.core.aio import aio
from runlane.core.durations import parse_iso_datetime
from runlane.errors import InvalidOptionError, RunlaneError

__all__ = ["aio_for", "aio_until", "for_", "until"]


def _add_months(dt: datetime, months: int) -> datetime:
    """Calendar months: Jan 31 + 1 month = Feb 28/29 (the day is clamped)."""
    total = dt.month - 1 + months
    year, month = dt.year + total // 12, total % 12 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return dt.replace(year=year, month=month, day=day)


def for_(
    *,
    seconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    days: float = 0,
    weeks: float = 0,
    months: int = 0,
    years: int = 0,
) -> None:
    """Wait for a duration: ``wait.for_(seconds=5)``, ``wait.for_(months=1)``."""
    parts = {
        "seconds": seconds,
        "minutes": minutes,
        "hours": hours,
        "days": days,
        "weeks": weeks,
        "months": months,
        "years": years,
    }
    for name, value in parts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InvalidOptionError(name, value, "must be a non-negative number")
    for name in ("months", "years"):
        if not isinstance(parts[name], int):
            raise InvalidOptionError(name, parts[name], "must be a whole number")
    rt = runtime.get()
    start = datetime.fromtimestamp(rt.now(), tz=timezone.utc)
    try:
        end = _add_months(start, months + 12 * years) + timedelta(
            seconds=seconds, minutes=minutes, hours=hours, days=days, weeks=weeks
        )
    except (OverflowError, ValueError) as exc:
        raise InvalidOptionError("wait.for_", parts, "the date is out of range") from exc
    rt.engine.wait_until(end.timestamp(), "wait.for_()")


def until(when: datetime | date | str, *, throw_if_in_the_past: bool = False) -> None:
    """Wait until a date (naive datetimes are UTC). A date in the past returns at once, or
    raises when ``throw_if_in_the_past``."""
    if isinstance(when, str):
        when = parse_iso_datetime(when, "date")
    elif isinstance(when, date) and not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    if not isinstance(when, datetime):
        raise InvalidOptionError("date", when, "expected a datetime, a date or an ISO string")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    rt = runtime.get()
    if when.timestamp() <= rt.now() and throw_if_in_the_past:
        raise RunlaneError(f"wait.until({when.isoformat()}): the date is in the past")
    rt.engine.wait_until(when.timestamp(), "wait.until()")


aio_for = aio(for_)
aio_until = aio(until)
