"""The official Trigger.dev SDK (``@trigger.dev/sdk`` 3.3.17, from npm) as a client of runlane,
as a user sets it up: ``runlane keys create``, ``runlane serve --with-worker`` over a SQLite
store with a tasks module, then a Node script (tests/node/sdk_client.mjs) that configures the
SDK with ``{baseURL, secretKey}`` and drives the Python runs through the SDK's public functions
only: trigger and batch trigger, runs retrieve / list (filters, auto-pagination) / cancel /
replay / reschedule, idempotency keys, delays, tags, schedules CRUD with deduplication, time
zones, public tokens (runlane's, and those the SDK signs itself: checked against the server's
RUNLANE_SECRET_KEY only), and wrong keys refused with a 401. The script checks each answer as
it goes and prints one JSON line; this test checks that line, the server's log, and the runs in
the store.

Node or tests/node/node_modules (``npm ci --prefix tests/node``) missing: skipped locally,
failed in CI (``CI=true``)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import runlane
from runlane.core import runtime
from tests.http_support import free_port
from tests.test_cli import cleanup, runlane_command, stop

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "sdk_client.mjs"

TASKS = """
import time

import runlane
from runlane import schedules


@runlane.task(id="sdk-double")
def double(payload):
    return {"doubled": payload["n"] * 2, "word": payload.get("word", "").upper()}


@runlane.task(id="sdk-slow")
def slow(payload):
    for _ in range(600):  # a minute in short sleeps: a cancel lands between them
        time.sleep(0.1)
    return "too late"


@schedules.task(id="sdk-tick", cron="0 5 * * *")
def tick(payload):
    return {"schedule": payload.schedule_id}
"""


def node_binary() -> str:
    binary = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "@trigger.dev" / "sdk").is_dir()
    if binary and installed:
        return binary
    why = "node is not installed" if not binary else "run `npm ci --prefix tests/node`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the Trigger.dev SDK test needs Node and the SDK: {why}")
    pytest.skip(f"the Trigger.dev SDK test needs Node and the SDK: {why}")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
    return subprocess.run(
        [*runlane_command(), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _serve(args: list[str], cwd: Path, log: Path, secret_key: str) -> subprocess.Popen[bytes]:
    """``runlane <args>`` as ``tests.test_cli.start`` starts it, with RUNLANE_SECRET_KEY set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120", RUNLANE_SECRET_KEY=secret_key)
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*runlane_command(), *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"runlane serve exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"runlane serve did not answer /healthz:\n{log.read_text()}")


def test_the_official_sdk_drives_python_runs(tmp_path: Path) -> None:
    node = node_binary()
    (tmp_path / "sdk_tasks.py").write_text(TASKS)
    db_url = f"sqlite:///{tmp_path / 'db'}"
    made = _cli("keys", "create", "--name", "sdk test", "--store", db_url, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    key = made.stdout.strip()
    assert key.startswith("rl_dev_"), made.stdout

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    args = ["serve", "--with-worker", "4", "sdk_tasks", "--store", db_url, "--port", str(port)]
    # the server also holds a key whole (RUNLANE_SECRET_KEY): tokens the SDK signs itself
    # verify against that one only
    env_key = "rl_dev_" + "".join(secrets.choice(string.ascii_letters) for _ in range(40))
    proc = _serve(args, tmp_path, log, env_key)
    try:
        _wait_healthy(url, proc, log)
        env = {**os.environ, "RUNLANE_URL": url, "RUNLANE_KEY": key, "RUNLANE_ENV_KEY": env_key}
        done = subprocess.run(
            [node, str(SCRIPT)], cwd=NODE_DIR, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        lines = done.stdout.strip().splitlines()
        detail = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nserver:\n{log.read_text()}"
        assert lines, detail
        result = json.loads(lines[-1])
        assert done.returncode == 0 and result["ok"] is True, detail
        assert stop(proc, log) == 0, log.read_text()
    finally:
        cleanup(proc)

    # what the script saw
    assert result["keyPrefix"] == "rl_dev_"  # the SDK takes runlane's keys as they are
    assert result["trigger"]["output"] == {"doubled": 42, "word": "HI"}
    idem = result["idempotency"]
    assert idem["cachedIds"] == [idem["id"]] * 3
    assert result["replay"]["id"] != result["replay"]["from"]
    assert result["list"]["pages"] == [10, 10, 5]
    assert result["list"]["statuses"] == {"COMPLETED": 30, "CANCELED": 2}
    assert result["schedules"]["id"].startswith("sched_")
    assert {k: v["status"] for k, v in result["wrongKey"].items()} == {"rl": 401, "tr": 401}
    refused = sorted(e.split(" ")[0] for e in result["refusedAsExpected"])
    assert refused == ["401"] * 5 + ["404"] * 2 + ["422"] * 3, result["refusedAsExpected"]
    tokens = result["sdkSignedTokens"]  # a store key's digest cannot check the SDK's own tokens
    assert tokens == {"storeKey": tokens["storeKey"], "envKey": "accepted"}
    assert tokens["storeKey"].startswith("401 ")

    # the server: the runs executed in its worker, nothing failed inside it
    text = log.read_text()
    assert "Traceback" not in text and "internal server error" not in text, text
    assert "sdk-double COMPLETED" in text and "sdk-slow CANCELED" in text, text

    # the same runs, read from the store with runlane's Python API
    runlane.configure(store=db_url)
    try:
        first = runlane.runs.retrieve(result["trigger"]["id"])
        assert first.status == "COMPLETED"
        assert first.output == {"doubled": 42, "word": "HI"}
        assert first.payload == {"n": 21, "word": "hi"}
        assert first.metadata == {"from": "node"}
        assert "first" in first.tags
        assert runlane.runs.retrieve(result["cancel"]["executing"]).status == "CANCELED"
        assert runlane.runs.retrieve(result["delay"]["id"]).status == "CANCELED"
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()
