"""Durations and points in time, one grammar for every option (pure, no store).

Reference: SEMANTICS.md "Durations, delay, TTL": one or more ``<digits><unit>`` with units
w, d, hr, h, m, s in any order, at most 100 characters; numbers are seconds; a delay also takes
a datetime or an ISO date, and a past date means "now". runlane rejects what Trigger.dev would
silently ignore, with an InvalidOptionError (a ValueError) that names the option and the value.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pytest

from runlane.core.durations import (
    MAX_DURATION_STRING,
    format_duration,
    parse_duration,
    parse_point_in_time,
)
from runlane.core.limits import DEFAULT_LIMITS
from runlane.core.options import parse_trigger_options
from runlane.errors import InvalidOptionError, RunlaneError

NOW = 1_750_000_000.0  # a fixed "now" (2025-06-15T15:06:40Z)


def assert_option_error(exc: BaseException, option: str, value: object = None) -> None:
    assert isinstance(exc, InvalidOptionError)
    assert isinstance(exc, ValueError)
    assert isinstance(exc, RunlaneError)
    assert exc.option == option
    assert option in str(exc)
    if value is not None:
        assert exc.value == value or exc.value is value
        assert repr(value)[:40] in str(exc)


# ---------------------------------------------------------------- parse_duration: valid


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("88s", 88),
        ("1m", 60),
        ("10m", 600),
        ("1h", 3600),
        ("1hr", 3600),
        ("2hr", 7200),
        ("2d", 172_800),
        ("1w", 604_800),
        ("2w", 1_209_600),
        ("1h52m18s", 3600 + 52 * 60 + 18),
        ("18s52m1h", 3600 + 52 * 60 + 18),  # any order
        ("52m1h18s", 3600 + 52 * 60 + 18),
        ("1d12hr", 86_400 + 12 * 3600),
        ("12hr1d", 86_400 + 12 * 3600),
        ("1w2d3h4m5s", 604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5),
        ("5s4m3hr2d1w", 604_800 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5),
        ("90m", 5400),
        ("0001m", 60),
        ("  10m  ", 600),  # surrounding whitespace is tolerated
    ],
)
def test_parse_duration_strings(text: str, seconds: int) -> None:
    got = parse_duration(text, "ttl")
    assert got == seconds
    assert isinstance(got, float)


def test_parse_duration_hr_is_not_h_followed_by_garbage() -> None:
    # "hr" is a unit of its own; "1h1r" is not a duration
    assert parse_duration("3hr", "delay") == parse_duration("3h", "delay")
    with pytest.raises(InvalidOptionError):
        parse_duration("1h1r", "delay")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(1, 1.0), (5, 5.0), (2.5, 2.5), (0.001, 0.001), (86_400, 86_400.0), (10**9, 1e9)],
)
def test_parse_duration_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value, "ttl") == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (timedelta(seconds=1), 1),
        (timedelta(minutes=2), 120),
        (timedelta(hours=1, minutes=52, seconds=18), 6738),
        (timedelta(days=2), 172_800),
        (timedelta(milliseconds=1500), 1.5),
    ],
)
def test_parse_duration_timedelta(value: timedelta, seconds: float) -> None:
    assert parse_duration(value, "ttl") == seconds


def test_parse_duration_exactly_100_chars_is_accepted() -> None:
    text = "1s" * 50
    assert len(text) == MAX_DURATION_STRING == 100
    assert parse_duration(text, "ttl") == 50


def test_parse_duration_zero_only_when_allowed() -> None:
    assert parse_duration(0, "delay", allow_zero=True) == 0
    assert parse_duration("0s", "delay", allow_zero=True) == 0
    assert parse_duration(timedelta(0), "delay", allow_zero=True) == 0


# ---------------------------------------------------------------- parse_duration: invalid


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "abc",
        "10",  # a bare number string is not a duration
        "1x",
        "1y",
        "1ms",
        "h",
        "1.5h",
        "1,5h",
        "1 h",
        "1h 2m",
        "-5s",
        "+5s",
        "5s-",
        "1h1r",
        "1hrs",
        "1min",
        "10 minutes",
        "ten minutes",
        "1h52m18",
        "PT1H",  # ISO-8601 durations are not the reference grammar
        "1s\x00",
    ],
)
def test_parse_duration_bad_strings(value: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_duration(value, "ttl")
    assert_option_error(info.value, "ttl", value)


def test_parse_duration_string_over_100_chars() -> None:
    text = "1s" * 51  # 102 characters, otherwise well formed
    with pytest.raises(InvalidOptionError) as info:
        parse_duration(text, "delay")
    assert_option_error(info.value, "delay")
    assert "100" in str(info.value)


@pytest.mark.parametrize("value", [-1, -0.5, -86_400, timedelta(seconds=-1)])
def test_parse_duration_negative(value: object) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_duration(value, "ttl")
    assert_option_error(info.value, "ttl")
    with pytest.raises(InvalidOptionError):
        parse_duration(value, "delay", allow_zero=True)


@pytest.mark.parametrize("value", [0, 0.0, "0s", "0m0s", timedelta(0)])
def test_parse_duration_zero_is_rejected_by_default(value: object) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_duration(value, "ttl")
    assert_option_error(info.value, "ttl")


@pytest.mark.parametrize(
    "value",
    [True, False, None, [], ["1h"], {"h": 1}, b"1h", object(), date(2030, 1, 1)],
)
def test_parse_duration_wrong_types(value: object) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_duration(value, "max_duration")
    assert_option_error(info.value, "max_duration")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_parse_duration_non_finite(value: float) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_duration(value, "ttl")
    assert_option_error(info.value, "ttl")


def test_parse_duration_huge_int_is_an_option_error_not_overflow() -> None:
    # float(10**400) raises OverflowError; the contract is a ValueError/RunlaneError that
    # names the option.
    with pytest.raises(InvalidOptionError) as info:
        parse_duration(10**400, "delay")
    assert_option_error(info.value, "delay")


def test_parse_duration_error_names_the_given_option() -> None:
    for option in ("delay", "ttl", "max_duration", "retry.something"):
        with pytest.raises(InvalidOptionError) as info:
            parse_duration("nope", option)
        assert info.value.option == option
        assert f"invalid {option}=" in str(info.value)
        assert "'nope'" in str(info.value)


# ---------------------------------------------------------------- parse_point_in_time


def ts(dt: datetime) -> float:
    return dt.timestamp()


def test_point_in_time_durations_are_from_now() -> None:
    assert parse_point_in_time("1h", "delay", NOW) == NOW + 3600
    assert parse_point_in_time("1h52m18s", "delay", NOW) == NOW + 6738
    assert parse_point_in_time("  2d ", "delay", NOW) == NOW + 172_800
    assert parse_point_in_time(90, "delay", NOW) == NOW + 90
    assert parse_point_in_time(1.5, "delay", NOW) == NOW + 1.5
    assert parse_point_in_time(timedelta(minutes=5), "delay", NOW) == NOW + 300


def test_point_in_time_zero_is_now() -> None:
    assert parse_point_in_time(0, "delay", NOW) == NOW
    assert parse_point_in_time("0s", "delay", NOW) == NOW


def test_point_in_time_aware_datetime() -> None:
    target = datetime.fromtimestamp(NOW, tz=timezone.utc) + timedelta(hours=3)
    assert parse_point_in_time(target, "delay", NOW) == pytest.approx(NOW + 3 * 3600)
    tokyo = target.astimezone(timezone(timedelta(hours=9)))
    assert parse_point_in_time(tokyo, "delay", NOW) == pytest.approx(NOW + 3 * 3600)


def test_point_in_time_naive_datetime_is_utc() -> None:
    naive = datetime(2030, 1, 2, 3, 4, 5)
    expected = ts(datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert parse_point_in_time(naive, "delay", NOW) == expected


def test_point_in_time_date_object_is_midnight_utc() -> None:
    expected = ts(datetime(2030, 6, 1, tzinfo=timezone.utc))
    assert parse_point_in_time(date(2030, 6, 1), "delay", NOW) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=timezone.utc)),
        ("2030-01-01T00:00:00z", datetime(2030, 1, 1, tzinfo=timezone.utc)),
        ("2030-01-01T00:00:00.000Z", datetime(2030, 1, 1, tzinfo=timezone.utc)),  # JS toISOString
        ("2030-01-01T12:30:00+02:00", datetime(2030, 1, 1, 10, 30, tzinfo=timezone.utc)),
        ("2030-01-01T12:30:00-05:30", datetime(2030, 1, 1, 18, 0, tzinfo=timezone.utc)),
        ("2030-01-01T12:30:00+00:00", datetime(2030, 1, 1, 12, 30, tzinfo=timezone.utc)),
        ("2030-01-01T12:30:00", datetime(2030, 1, 1, 12, 30, tzinfo=timezone.utc)),  # naive: UTC
        ("2030-01-01 12:30:00", datetime(2030, 1, 1, 12, 30, tzinfo=timezone.utc)),
        ("2030-01-01", datetime(2030, 1, 1, tzinfo=timezone.utc)),  # date only: midnight UTC
    ],
)
def test_point_in_time_iso_strings(text: str, expected: datetime) -> None:
    assert parse_point_in_time(text, "delay", NOW) == ts(expected)


@pytest.mark.parametrize(
    "value",
    [
        "2020-01-01T00:00:00Z",
        "2020-01-01",
        datetime(2000, 1, 1, tzinfo=timezone.utc),
        datetime(2000, 1, 1),
        date(1999, 12, 31),
        datetime.fromtimestamp(NOW - 1, tz=timezone.utc),
    ],
)
def test_point_in_time_past_dates_clamp_to_now(value: object) -> None:
    assert parse_point_in_time(value, "delay", NOW) == NOW


@pytest.mark.parametrize(
    "value",
    [
        "",
        "tomorrow",
        "now",
        "2030-13-01",
        "2030-02-30",
        "2030-01-01T25:00:00Z",
        "01/02/2030",
        "1x",
        "-1h",
        "10",
        -5,
        True,
        None,
        [],
        object(),
        math.nan,
        "1s" * 51,
    ],
)
def test_point_in_time_invalid(value: object) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_point_in_time(value, "delay", NOW)
    assert_option_error(info.value, "delay")


def test_point_in_time_beyond_any_representable_date_is_rejected() -> None:
    # A delay no datetime can hold is invalid input: accepting it stores a run whose
    # delayed_until cannot be read back (datetime.fromtimestamp overflows).
    for value in ("99999999999w", 1e300):
        with pytest.raises(InvalidOptionError) as info:
            parse_point_in_time(value, "delay", NOW)
        assert_option_error(info.value, "delay")


# ---------------------------------------------------------------- idempotency_key_ttl
# One grammar for every duration option: idempotency_key_ttl takes what ttl and delay take
# (the reference's ^\d+[smhd]$ is a subset).


def _key_ttl(value: object) -> float | None:
    return parse_trigger_options(
        {"idempotency_key": "k", "idempotency_key_ttl": value}, NOW, DEFAULT_LIMITS
    ).idempotency_key_ttl


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("60s", 60),
        ("1s", 1),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86_400),
        ("30d", 30 * 86_400),
        ("0090s", 90),
        (" 5m ", 300),
        ("1w", 604_800),
        ("1hr", 3600),
        ("1h30m", 5400),
        ("2d12hr", 2 * 86_400 + 12 * 3600),
        (300, 300),
        (1.5, 1.5),
        (timedelta(hours=1), 3600),
    ],
)
def test_idempotency_key_ttl_valid(value: object, seconds: float) -> None:
    assert _key_ttl(value) == seconds


@pytest.mark.parametrize("value", ["1w", "1hr", "1h30m", "90s", 45, timedelta(days=2)])
def test_idempotency_key_ttl_takes_what_ttl_and_delay_take(value: object) -> None:
    seconds = parse_duration(value, "ttl")
    assert _key_ttl(value) == seconds
    opts = parse_trigger_options({"ttl": value, "delay": value}, NOW, DEFAULT_LIMITS)
    assert opts.ttl == seconds and opts.delay_until == NOW + seconds


@pytest.mark.parametrize(
    "value",
    [
        "5",
        "m",
        "5 m",
        "5M",
        "-5m",
        "1.5h",
        "",
        "abc",
        -1,
        0,
        "0s",
        True,
        [],
        datetime(2030, 1, 1, tzinfo=timezone.utc),
    ],
)
def test_idempotency_key_ttl_invalid(value: object) -> None:
    with pytest.raises(InvalidOptionError) as info:
        _key_ttl(value)
    assert_option_error(info.value, "idempotency_key_ttl")


# ---------------------------------------------------------------- format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (0.4, "0s"),
        (1, "1s"),
        (59, "59s"),
        (59.6, "1m"),
        (60, "1m"),
        (61, "1m1s"),
        (600, "10m"),
        (3600, "1h"),
        (3723, "1h2m3s"),
        (6738, "1h52m18s"),
        (86_400, "1d"),
        (90_061, "1d1h1m1s"),
        (86_400 + 5, "1d5s"),
        (7 * 86_400, "7d"),
        (30 * 86_400, "30d"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 3723, 6738, 86_399, 90_061, 10**7])
def test_format_duration_round_trips_through_parse(seconds: int) -> None:
    assert parse_duration(format_duration(seconds), "ttl") == seconds
