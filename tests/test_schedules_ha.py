"""Schedules under failover: three scheduler processes on one Redis store, a shared fake clock
stepped minute by minute across both daylight-saving changes of America/New_York, and the
leader killed with SIGKILL again and again: exactly one run per tick, none missing, none extra
(tests/schedules_ha_support.py).

The full form (``-m slow`` or RUNLANE_SLOW_TESTS=1) steps through the whole spring-forward day
(2026-03-08, 1,380 minutely ticks) and the whole fall-back day (2026-11-01, 1,500) with ten
leader kills; the default suite runs a window around each change (90 and 150 minutes) with
three. The schedules (New York): every minute, 02:30 and 01:30 daily (declarative), and 02:00
daily (imperative, made with runlane.schedules.create). Between the two days the clock jumps by
months: every schedule fires once, for its latest missed tick. The expected ticks are
cronsim's; nothing asserts on timing (every wait polls with a generous deadline).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.adapters import delete_redis_prefix
from tests.schedules_ha_support import (
    IMPERATIVE,
    MINUTELY,
    PATTERNS,
    SCHEDULES,
    HAConfig,
    HAReport,
    local_day,
    new_prefix,
    run_ha,
    ticks_between,
)


def _slow_selected(config: pytest.Config) -> bool:
    """The full form runs only when asked for: ``-m slow`` or RUNLANE_SLOW_TESTS=1."""
    expr = config.getoption("markexpr", "") or ""
    return ("slow" in expr and "not slow" not in expr) or os.environ.get(
        "RUNLANE_SLOW_TESTS"
    ) == "1"


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc).timestamp()


SPRING = local_day(2026, 3, 8)  # 02:00 EST -> 03:00 EDT at 07:00Z
FALL = local_day(2026, 11, 1)  # 02:00 EDT -> 01:00 EST at 06:00Z
SPRING_0230 = _at(2026, 3, 8, 7, 0)  # 02:30 does not exist: 03:00 EDT
FALL_0230 = _at(2026, 11, 1, 7, 30)  # 02:30 EST
SPRING_0130 = _at(2026, 3, 8, 6, 30)  # 01:30 EST
FALL_0130 = _at(2026, 11, 1, 5, 30)  # the first 01:30 (EDT), not the second (06:30Z, EST)
FALL_0200 = _at(2026, 11, 1, 7, 0)  # 02:00 EST (02:00 EDT never comes: 01:00 EST does)
# leader kills at the steps where the DST changes matter
KILL_AT_DST = [SPRING_0230, FALL_0130, _at(2026, 11, 1, 6, 0)]


@pytest.fixture
def ha(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.node.get_closest_marker("slow") and not _slow_selected(request.config):
        pytest.skip("full form: run with -m slow (or RUNLANE_SLOW_TESTS=1)")
    url = request.getfixturevalue("redis_url")  # skips locally without Redis, fails in CI
    prefix = new_prefix()

    def run(cfg: HAConfig) -> HAReport:
        report = run_ha(cfg, url, prefix, tmp_path)
        print("\n" + report.text())
        return report

    try:
        yield run
    finally:
        delete_redis_prefix(url, prefix)


def _in(ticks: list[float], span: tuple[float, float]) -> list[float]:
    return [t for t in ticks if span[0] <= t < span[1]]


def _check(report: HAReport, cfg: HAConfig) -> None:
    assert not report.errors, report.text()
    assert not report.payload_defects, report.text()
    assert len(report.kills) == cfg.kills, report.text()
    for task_id in PATTERNS:
        expected, fired = report.expected[task_id], report.fired[task_id]
        assert len(fired) == len(set(fired)), f"{task_id}: a tick fired twice"
        missing = sorted(set(expected) - set(fired))
        extra = sorted(set(fired) - set(expected))
        assert not missing and not extra, (task_id, missing[:10], extra[:10])
        assert report.run_ids[task_id] == report.expected_ids[task_id], task_id
        assert len(report.catch_up[task_id]) == len(cfg.windows) - 1, task_id
    assert report.total_runs == sum(len(t) for t in report.expected.values())
    # the daily schedules fired once on each DST day, at the right instant
    assert _in(report.fired["ha-daily-0230"], SPRING) == [SPRING_0230]
    assert _in(report.fired["ha-daily-0230"], FALL) == [FALL_0230]
    assert _in(report.fired["ha-daily-0130"], SPRING) == [SPRING_0130]
    assert _in(report.fired["ha-daily-0130"], FALL) == [FALL_0130]
    assert _in(report.fired[IMPERATIVE], SPRING) == [SPRING_0230]  # 02:00 -> 03:00 EDT too
    assert _in(report.fired[IMPERATIVE], FALL) == [FALL_0200]


@pytest.mark.timeout(300)
def test_one_run_per_tick_around_dst_changes_with_leader_kills(ha: Any) -> None:
    """A window around each change (01:15-03:45 local in spring, 90 ticks; 01:15 EDT-02:45 EST
    in the fall, 150 ticks), three leader kills at the DST steps."""
    spring = (_at(2026, 3, 8, 6, 15), _at(2026, 3, 8, 7, 44))  # 01:15 EST .. 03:44 EDT
    fall = (_at(2026, 11, 1, 5, 15), _at(2026, 11, 1, 7, 44))  # 01:15 EDT .. 02:44 EST
    cfg = HAConfig(windows=[spring, fall], kills=3, kill_at=KILL_AT_DST)
    report = ha(cfg)
    _check(report, cfg)
    minutely = report.fired[MINUTELY]
    assert len(_in(minutely, (spring[0], spring[1] + 60))) == 90
    assert len(_in(minutely, (fall[0], fall[1] + 60))) == 150
    # the catch-up after the jump: the minute before the fall window, and the day before's
    # 02:30, 01:30 and 02:00 (EDT)
    assert report.catch_up == {
        MINUTELY: [fall[0] - 60],
        "ha-daily-0230": [_at(2026, 10, 31, 6, 30)],
        "ha-daily-0130": [_at(2026, 10, 31, 5, 30)],
        IMPERATIVE: [_at(2026, 10, 31, 6, 0)],
    }


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_one_run_per_tick_through_both_dst_days_with_ten_leader_kills(ha: Any) -> None:
    """The spring-forward and fall-back days, minute by minute (2,880 steps), ten leader kills:
    1,380 and 1,500 minutely runs, the 02:30 and 01:30 schedules once a day."""
    days = [(SPRING[0], SPRING[1] - 60), (FALL[0], FALL[1] - 60)]
    steps = [t for lo, hi in days for t in ticks_between(SCHEDULES[MINUTELY], lo - 1, hi)]
    spread = [steps[(2 * i + 1) * len(steps) // 14] for i in range(7)]
    kill_at = sorted(set(KILL_AT_DST) | set(spread))
    assert len(kill_at) == 10
    cfg = HAConfig(windows=days, kills=10, kill_at=kill_at)
    report = ha(cfg)
    _check(report, cfg)
    minutely = report.fired[MINUTELY]
    assert len(_in(minutely, SPRING)) == 1380
    assert len(_in(minutely, FALL)) == 1500
    assert report.catch_up == {  # the jump: the latest tick missed, once each
        MINUTELY: [FALL[0] - 60],
        "ha-daily-0230": [_at(2026, 10, 31, 6, 30)],
        "ha-daily-0130": [_at(2026, 10, 31, 5, 30)],
        IMPERATIVE: [_at(2026, 10, 31, 6, 0)],
    }
