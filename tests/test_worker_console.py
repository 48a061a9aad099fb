"""What a new user sees of ``runlane worker`` ("The first hour"): a console line per run at
``--loglevel`` (also for library users, through logging), stdlib logging inside a run kept at
its level in the run log, a second Ctrl-C that hands runs back at once (recorded as handed
back, on both stores), a worker that waits for a store that is not up yet, and a warning when
the dev environment runs on a shared store. Real ``runlane worker`` processes, as a user has.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runlane
from runlane.core import runtime
from runlane.core.types import RegisteredTask
from tests.helpers import new_run, redis_binary, wait_final, wait_for, wait_status
from tests.test_cli import cleanup, start

TASKS = """
import logging
import time

import runlane

@runlane.task(id="con-ok")
def ok(payload):
    print("printed by the run")
    runlane.logger.info("logged by runlane.logger", n=1)
    logging.warning("stdlib warning %s", 7)
    try:
        {}["boom"]
    except KeyError:
        logging.getLogger("user.module").exception("stdlib error")
    return payload

@runlane.task(id="con-flaky", retry={"max_attempts": 2, "min_timeout_in_ms": 100,
                                     "max_timeout_in_ms": 100})
def flaky(payload, ctx):
    if ctx.attempt.number == 1:
        {}["x"]
    return "second time"

@runlane.task(id="con-fail")
def fail(payload):
    raise runlane.errors.AbortTaskRunError("no good")

@runlane.task(id="con-child")
def child(payload):
    return payload

@runlane.task(id="con-parent")
def parent(payload):
    runlane.wait.for_(seconds=3)  # past the in-place window: the run is frozen meanwhile
    return child.trigger_and_wait(payload).unwrap()

@runlane.task(id="con-long", max_duration=5)
def long(payload):
    for _ in range(1200):  # 2 minutes in short sleeps: an interrupt lands between them
        time.sleep(0.1)
"""


def _write_tasks(tmp_path: Path) -> None:
    (tmp_path / "con_tasks.py").write_text(TASKS)


def _text(log: Path) -> str:
    return " ".join(log.read_text(errors="replace").split())  # rich may wrap long lines


def _has(log: Path, *needles: str) -> bool:
    text = _text(log)
    return all(n in text for n in needles)


def _wait_lines(log: Path, *needles: str, timeout: float = 60) -> None:
    try:
        wait_for(lambda: _has(log, *needles), timeout=timeout, message="the worker's lines")
    except AssertionError:
        missing = [n for n in needles if n not in _text(log)]
        raise AssertionError(f"missing {missing} in:\n{log.read_text()}") from None


def _sigint_stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not stop on Ctrl-C:\n{log.read_text()}") from None


# ---------------------------------------------------------------------- 7, 10: lines per run
@pytest.mark.sqlite_only
def test_worker_prints_a_line_per_run_and_the_runs_logs(rt, db_url, tmp_path):
    _write_tasks(tmp_path)
    log = tmp_path / "worker.log"
    proc = start(["--store", db_url, "worker", "con_tasks", "--concurrency", "4"], tmp_path, log)
    try:
        # all at once (4 slots; the parent frees its slot while frozen): the time of the
        # longest, not of them all
        handles = [
            runlane.tasks.trigger("con-ok", {"a": 1}),
            runlane.tasks.trigger("con-flaky"),
            runlane.tasks.trigger("con-fail"),
            runlane.tasks.trigger("con-parent", 5),
            runlane.tasks.trigger("con-long"),
        ]
        ok, flaky, failed, parent, timed_out = (wait_final(h, timeout=90) for h in handles)
        canceled = runlane.tasks.trigger("con-long")
        wait_status(canceled, "EXECUTING", timeout=60)
        runlane.runs.cancel(canceled)
        statuses = [r.status for r in (ok, flaky, failed, parent, timed_out)]
        assert statuses == ["COMPLETED", "COMPLETED", "FAILED", "COMPLETED", "TIMED_OUT"]

        expected = [
            f"{ok.id} con-ok received",
            f"{ok.id} con-ok COMPLETED in",
            f"{flaky.id} con-flaky retrying in",
            "KeyError 'x'",
            f"{flaky.id} con-flaky received (attempt 2)",
            f"{failed.id} con-fail FAILED in",
            "AbortTaskRunError no good",
            f"{parent.id} con-parent FROZEN on a wait",
            f"{parent.id} con-parent received (resumed after a wait)",
            f"{timed_out.id} con-long TIMED_OUT in",
            f"{canceled.id} con-long CANCELED after",
            # what the run itself logs, on the console as its prints are
            "printed by the run",
            f"INFO/{ok.id}] logged by runlane.logger",
            f"WARNING/{ok.id}] stdlib warning 7",
        ]
        _wait_lines(log, *expected)
        assert _sigint_stop(proc, log) == 0, log.read_text()
        text = _text(log)
        assert "press Ctrl-C again" in text
        assert "Warning: the dev environment" not in text  # an embedded store is not shared
        assert text.count("Traceback") == 1  # the one the run logged with its error

        entries = {(e.level, e.kind, e.message.split("\n")[0]) for e in runlane.runs.logs(ok.id)}
        assert ("info", "stdout", "printed by the run") in entries
        assert ("info", "log", "logged by runlane.logger") in entries
        assert ("warn", "log", "stdlib warning 7") in entries  # not an ERROR line of stderr
        assert ("error", "log", "stdlib error") in entries
        logged = [e for e in runlane.runs.logs(ok.id) if e.message.startswith("stdlib")]
        assert len(logged) == 2, logged  # each record once, not once per line it printed
        assert "KeyError: 'boom'" in logged[1].message  # with its traceback
        assert logged[0].attributes == {"logger": "root"}
    finally:
        cleanup(proc)


@pytest.mark.sqlite_only
def test_loglevel_warning_hides_the_lines_of_runs_that_went_well(rt, db_url, tmp_path):
    _write_tasks(tmp_path)
    log = tmp_path / "worker.log"
    proc = start(["--store", db_url, "worker", "con_tasks", "-l", "warning"], tmp_path, log)
    try:
        ok = wait_final(runlane.tasks.trigger("con-ok", 1), timeout=60)
        failed = wait_final(runlane.tasks.trigger("con-fail"), timeout=60)
        _wait_lines(log, f"{failed.id} con-fail FAILED", f"WARNING/{ok.id}] stdlib warning")
        assert _sigint_stop(proc, log) == 0, log.read_text()
        text = _text(log)
        assert "received" not in text and "COMPLETED" not in text
        assert "logged by runlane.logger" not in text  # INFO
        assert "printed by the run" in text  # prints are not log records
    finally:
        cleanup(proc)


@pytest.mark.sqlite_only
def test_library_users_get_the_run_lines_through_logging(worker, caplog):
    @runlane.task(id="con-lib")
    def lib(payload):
        return payload

    with caplog.at_level(logging.INFO, logger="runlane.worker.runs"):
        run = wait_final(lib.trigger(3))
        wait_for(
            lambda: any("COMPLETED" in r.getMessage() for r in caplog.records),
            message="the COMPLETED line",
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "runlane.worker.runs"]
    assert lines[0] == f"{run.id} con-lib received"
    assert lines[1].startswith(f"{run.id} con-lib COMPLETED in ")


# ---------------------------------------------------------------------- 8: cold shutdown
@pytest.mark.sqlite_only
def test_a_second_ctrl_c_hands_runs_in_flight_back_at_once(rt, db_url, tmp_path):
    _write_tasks(tmp_path)
    log = tmp_path / "worker.log"
    proc = start(["--store", db_url, "worker", "con_tasks", "--grace", "600"], tmp_path, log)
    try:
        # max_duration=5 on the task: the trigger option lifts it for this run
        handle = runlane.tasks.trigger("con-long", max_duration=3600)
        wait_status(handle, "EXECUTING", timeout=60)
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: _has(log, "press Ctrl-C again"), timeout=60, message="the first stop")
        assert proc.poll() is None  # waiting (up to 600 s) for the run
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
        text = _text(log)
        assert "handed back 1 run(s) on a forced stop" in text
        assert f"{handle.id} con-long CRASHED after" in text
        run = runlane.runs.retrieve(handle)
        assert run.status in ("REATTEMPTING", "QUEUED", "CRASHED"), run.status
        assert [a.status for a in run.attempts] == ["CRASHED"]
        message = run.attempts[0].error.message
        assert "handed it back on shutdown" in message
        assert "renewing" not in message
    finally:
        cleanup(proc)


@pytest.fixture
def make_store(new_store: Callable[..., Any]) -> Callable[[str], Any]:
    def make(kind: str) -> Any:
        store = new_store(kind)
        store.register_tasks([RegisteredTask("t", "task/t")], now=time.time())
        return store

    return make


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_hand_back_is_recorded_as_such_not_as_a_lapsed_lease(kind, make_store):
    store = make_store(kind)
    now = time.time()
    handed, lapsed = new_run(), new_run()
    store.create_runs([handed, lapsed], now=now)
    for run, worker_id in ((handed, "leaving"), (lapsed, "dead")):
        started = store.start_attempt(
            run.id, worker_id=worker_id, now=now, known_tasks={"t"}, lease_until=now + 30
        )
        assert started is not None
    # the leaving worker ends its lease (Worker._hand_back); the dead one's lapsed long ago
    assert (
        store.heartbeat({handed.id: 1}, worker_id="leaving", lease_until=now - 1, now=now) == set()
    )
    store.heartbeat({lapsed.id: 1}, worker_id="dead", lease_until=now - 1, now=now)
    reaped = store.reap(now=time.time(), limit=10, handed_back_by="leaving")
    assert sorted(reaped) == sorted([handed.id, lapsed.id])
    messages = {}
    for run in (handed, lapsed):
        got = store.get_run(run.id)
        assert got is not None and [a.status for a in got.attempts] == ["CRASHED"]
        assert got.status == "CRASHED"  # one attempt allowed
        messages[run.id] = got.attempts[0].error.message
        assert got.error is not None and got.error.message == messages[run.id]
    assert (
        messages[handed.id] == "the worker executing attempt 1 (leaving) handed it back on shutdown"
    )
    assert messages[lapsed.id] == "the worker executing attempt 1 (dead) stopped renewing its lease"


# ---------------------------------------------------------------------- 9, 15: Redis not up yet
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_worker_waits_for_a_store_that_is_not_up_yet(tmp_path):
    binary = redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary")
    _write_tasks(tmp_path)
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = tmp_path / "worker.log"
    proc = start(["--store", url, "worker", "con_tasks"], tmp_path, log)
    server: subprocess.Popen[bytes] | None = None
    try:
        wait_for(
            lambda: _text(log).count("store unavailable") >= 2,
            timeout=60,
            message="two tries to reach the store",
        )
        assert proc.poll() is None, log.read_text()
        assert "retrying in" in _text(log)
        assert "Worker running" not in _text(log)
        # the dev environment on a shared store: a warning in the banner
        assert _has(log, "Warning: the dev environment", "RUNLANE_ENV=prod")

        server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _has(log, "Worker running"), timeout=90, message="the worker to start")
        runlane.configure(store=url, engine_interval=0.05)
        run = wait_final(runlane.tasks.trigger("con-child", {"v": 1}), timeout=60)
        assert run.status == "COMPLETED" and run.output == {"v": 1}, log.read_text()
        assert _sigint_stop(proc, log) == 0, log.read_text()
    finally:
        cleanup(proc)
        old = runtime.install(None)
        if old is not None:
            old.close()
        if server is not None:
            server.terminate()
            server.wait(30)
