"""benchmarks/bench_realtime.py keeps working: its ``--quick`` form on Redis (SQLite with
``-m slow``; a real
``runlane serve``, ``runlane worker``, client and trigger processes), whose results must have
every field and no lost event. No timing is asserted; the full form is ``-m slow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_realtime.py"

LATENCY = {"runs", "updates_written", "updates_seen", "coalesced", "p50_ms", "p99_ms", "max_ms"}
SUBSCRIBERS = {
    "runs",
    "expected",
    "seen",
    "lost",
    "duplicates",
    "events",
    "trigger_rate",
    "delivered_runs_per_s",
    "span_s",
    "p50_ms",
    "p99_ms",
    "kib_per_subscriber",
    "server_cpu_s",
    "cpu_ms_per_subscriber",
    "cpu_us_per_event",
    "event_loop_cpu_s",
}


def run_bench(*args: str, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=SCRIPT.parent.parent,
        env={k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _assert_measured(result: dict[str, Any], store: str) -> None:
    assert result["store"] == store
    latency, subscribers = result["latency"], result["subscribers"]
    assert latency.keys() >= LATENCY
    assert latency["updates_seen"] > 0
    assert subscribers.keys() >= SUBSCRIBERS
    assert subscribers["expected"] > 0
    assert subscribers["lost"] == 0
    assert subscribers["seen"] == subscribers["expected"]
    assert subscribers["unexpected"] == 0
    assert subscribers["store_other_final"] == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_quick_on_sqlite(request: pytest.FixtureRequest) -> None:
    """The same on SQLite (the Redis form runs by default: the script's path is the same but
    for the store; about 12 s, so with ``-m slow``)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the Redis form covers the script: run it with -m slow")
    (result,) = run_bench("--quick", "--store", "sqlite", timeout=50)["results"]
    _assert_measured(result, "sqlite")


@pytest.mark.timeout(60)
def test_quick_on_redis(redis_url: str) -> None:
    import redis

    out = run_bench("--quick", "--store", "redis", "--redis-url", redis_url, timeout=50)
    (result,) = out["results"]
    _assert_measured(result, "redis")
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=f"{result['prefix']}:*", count=1000))
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_thousand_subscribers_lose_nothing(request: pytest.FixtureRequest) -> None:
    """1,000 subscribers on each store at 10 runs/s, a rate one server process sustains on 2
    cores (at 500/s it falls behind: see benchmarks/README.md); about 80 s, so only with
    ``-m slow``."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("about 80 s: run it with -m slow")
    out = run_bench("--store", "both", "--rate", "10", "--changes", "1000", timeout=580)
    for result in out["results"]:
        assert result["subscribers"]["lost"] == 0
