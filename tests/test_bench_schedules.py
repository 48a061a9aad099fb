"""benchmarks/bench_schedules.py keeps working: a small run on each store (200 schedules), whose
own checks (one run per due tick, none on a second pass, the idle pass fires nothing) must
pass. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_schedules.py"


def run_bench(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--schedules", "200", "--idle-repeats", "3", *args],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=SCRIPT.parent.parent,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _assert_checked(out: str, store: str) -> None:
    assert "ticks due / fired" in out
    assert "passed" in out
    # the busy minute, the next one and the N/100 store's minute, each checked
    assert out.count(f"{store} check:") == 3
    assert "a second fire_due created 0" in out
    assert "where the busy minute's time goes" in out


def test_bench_schedules_on_sqlite() -> None:
    _assert_checked(run_bench("--store", "sqlite", "--top", "3"), "sqlite")


def test_bench_schedules_on_redis(redis_url: str) -> None:
    _assert_checked(
        run_bench("--store", "redis", "--redis-url", redis_url, "--no-profile"), "redis"
    )
