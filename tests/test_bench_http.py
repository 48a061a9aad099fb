"""benchmarks/bench_http.py keeps working: a tiny run on each store (a real ``runlane serve``
subprocess, a key from ``runlane keys create``), whose own checks (every answer a 200, every
run QUEUED and counted, each list walk sees every run once) must pass, with the profile of the
server on SQLite. No timing is asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_http.py"


def run_bench(*args: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--runs",
            "20",
            "--clients",
            "2",
            "--batches",
            "1",
            "--list-pages",
            "4",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=SCRIPT.parent.parent,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _assert_measured(out: str, store: str) -> None:
    assert f"{store}: in-process vs HTTP" in out
    assert "HTTP ÷ in-process" in out
    assert "batch trigger of 500" in out
    assert "the issue's targets" in out
    queued = rf"{store} check: [\d,]+ runs triggered, [\d,]+ in the store, every one QUEUED"
    assert re.search(queued, out)
    # both walks stopped at --list-pages, each page full, every run seen once
    assert f"{store} check: in-process runs.list: 4 pages of 100, 400 distinct runs" in out
    assert f"{store} check: GET /api/v1/runs: 4 pages of 100, 400 distinct runs" in out


def test_bench_http_on_sqlite() -> None:
    out = run_bench("--store", "sqlite", "--profile", "--top", "3")
    _assert_measured(out, "sqlite")
    assert "where runlane serve's time goes" in out
    assert "inside api.handle" in out


def test_bench_http_on_redis(redis_url: str) -> None:
    import redis

    out = run_bench("--store", "redis", "--redis-url", redis_url)
    _assert_measured(out, "redis")
    found = re.search(r"keys of this run \(prefix (\S+):\) deleted", out)
    assert found, out[-2000:]
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=f"{found.group(1)}:*", count=1000))
    finally:
        client.close()
