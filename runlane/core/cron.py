"""Cron expressions and time zones for schedules: validation, the next ticks, a description.

Five fields (minute, hour, day of month, month, day of week) with names, ranges, steps and
lists, ``L`` (the last day) in the day of month and ``nL`` (the last weekday n of the month) in
the day of week, evaluated in an IANA time zone and correct across daylight-saving changes: a
02:30 job fires once on the spring-forward day (at 03:00, when 02:30 does not exist), and a
01:30 job once on the fall-back day (at the first 01:30, when 01:00-01:59 happens twice).
Parsing and iteration are cronsim's; descriptions are cron-descriptor's; zones are zoneinfo's,
with the tzdata package as their database.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import get_description
from cronsim import CronSim, CronSimError

from runlane.errors import InvalidOptionError

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
RANGES = ("0-59", "0-23", "1-31 or L", "1-12 or JAN-DEC", "0-7 or SUN-SAT, nL for the last")
MAX_LENGTH = 256  # characters of a cron expression
DEFAULT_TIMEZONE = "UTC"
_REFERENCE = datetime(2000, 1, 1, tzinfo=timezone.utc)


def parse_cron(expression: object, option: str = "cron") -> str:
    """The expression with its fields separated by single spaces, or ``InvalidOptionError``
    naming the field that is wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidOptionError(
            option, expression, "must be a cron expression such as '0 8 * * *'"
        )
    if len(expression) > MAX_LENGTH:
        raise InvalidOptionError(option, expression, f"is longer than {MAX_LENGTH} characters")
    fields = expression.split()
    if len(fields) == 6:
        raise InvalidOptionError(
            option, expression, "CRON expressions with seconds are not allowed"
        )
    if len(fields) != 5:
        raise InvalidOptionError(
            option,
            expression,
            f"has {len(fields)} field(s); a cron expression has five: "
            "minute hour day-of-month month day-of-week",
        )
    normalized = " ".join(fields)
    try:
        _compiled(normalized)
    except CronSimError as exc:
        field = _field_of(str(exc))
        if field is None:
            raise InvalidOptionError(option, expression, str(exc)) from None
        index = FIELDS.index(field)
        raise InvalidOptionError(
            option,
            expression,
            f"the {field} field {fields[index]!r} is not valid ({RANGES[index]})",
        ) from None
    return normalized


def _field_of(message: str) -> str | None:
    """The field a cronsim error names ("Bad day-of-week")."""
    lowered = message.lower()
    for field in FIELDS:
        if field in lowered:
            return field
    return None


@functools.lru_cache(maxsize=4096)
def _compiled(expression: str) -> CronSim:
    # a CronSim parses its expression when built; the parsed fields are reused from a copy
    return CronSim(expression, _REFERENCE)


def parse_timezone(name: object, option: str = "timezone") -> str:
    """An IANA time zone name (``"UTC"`` when None), or ``InvalidOptionError``."""
    if name is None:
        return DEFAULT_TIMEZONE
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InvalidOptionError(option, name, "must be an IANA time zone such as 'Europe/Paris'")
    if name not in _zones():
        raise InvalidOptionError(
            option, name, "is not a known IANA time zone (see schedules.timezones())"
        )
    return name


@functools.lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {DEFAULT_TIMEZONE}


def timezones() -> list[str]:
    """Every IANA time zone a schedule may use, sorted (from the tzdata database)."""
    return sorted(_zones())


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # checked by parse_timezone first
        raise InvalidOptionError("timezone", name, "is not a known IANA time zone") from exc


def iter_ticks(expression: str, tz: str, after: float) -> Iterator[float]:
    """The schedule's ticks strictly after ``after`` (epoch seconds), in order."""
    start = datetime.fromtimestamp(after, _zone(tz))
    for tick in CronSim(expression, start):
        yield tick.timestamp()


def next_tick(expression: str, tz: str, after: float) -> float:
    return next(iter_ticks(expression, tz, after))


def next_ticks(expression: str, tz: str, after: float, count: int) -> list[float]:
    ticks = iter_ticks(expression, tz, after)
    return [next(ticks) for _ in range(count)]


def last_tick_at_or_before(expression: str, tz: str, at: float) -> float:
    """The latest tick at or before ``at``: the one tick a schedule that was not fired for a
    while catches up on."""
    # ticks fall on whole minutes: the first tick before a point just after ``at``
    start = datetime.fromtimestamp(at + 0.5, _zone(tz))
    return next(iter(CronSim(expression, start, reverse=True))).timestamp()


@functools.lru_cache(maxsize=4096)
def describe(expression: str) -> str:
    """A sentence for people: "At 08:00 AM, only on Monday"."""
    try:
        return str(get_description(expression))
    except Exception:  # a description is a nicety: never a reason to fail
        return expression
