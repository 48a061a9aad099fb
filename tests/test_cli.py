"""The ``runlane`` command: CliRunner for the commands, real processes for demo, worker and dev."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import runlane
from runlane.cli import main
from tests.helpers import wait_final, wait_for


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200", **(env or {})})


def first_line(result: Result) -> str:
    return result.output.strip().splitlines()[0]


def assert_clean_error(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.output, result.output


# ---------------------------------------------------------------------- trigger
def test_trigger_wait_prints_id_status_and_output(worker, db_url):
    @runlane.task(id="cli-echo")
    def echo(payload):
        return {"echo": payload}

    result = run_cli("--store", db_url, "trigger", "cli-echo", "--payload", '{"x": 1}', "--wait")
    assert result.exit_code == 0, result.output
    run_id = first_line(result)
    assert run_id.startswith("run_")
    assert "COMPLETED" in result.output
    assert '"echo"' in result.output
    assert runlane.runs.retrieve(run_id).output == {"echo": {"x": 1}}


def test_trigger_wait_exits_1_when_the_run_fails(worker, db_url):
    @runlane.task(id="cli-boom")
    def boom(payload):
        raise runlane.errors.AbortTaskRunError("no good")

    result = run_cli("--store", db_url, "trigger", "cli-boom", "--wait")
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    assert "no good" in result.output


def test_trigger_passes_every_option(rt, db_url):
    result = run_cli(
        "--store", db_url, "trigger", "cli-later", "--payload", '{"n": 2}',
        "--delay", "1h", "--ttl", "10m", "--tag", "user_1", "--tag", "plan_paid",
        "--idempotency-key", "k-1", "--idempotency-key-ttl", "5m",
        "--concurrency-key", "user_1", "--queue", "paid", "--max-attempts", "2",
        "--max-duration", "30", "--metadata", '{"source": "cli"}', "--machine", "large-1x",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = runlane.runs.retrieve(first_line(result))
    assert run.status == "DELAYED"
    assert run.payload == {"n": 2}
    assert run.tags == ["user_1", "plan_paid"]
    assert run.concurrency_key == "user_1"
    assert run.queue == "paid"
    assert run.max_attempts == 2
    assert run.max_duration == 30
    assert run.metadata == {"source": "cli"}
    assert run.machine == "large-1x"
    assert run.ttl == "10m"
    assert run.idempotency_key

    again = run_cli("--store", db_url, "trigger", "cli-later", "--idempotency-key", "k-1")
    assert again.exit_code == 0, again.output
    assert first_line(again) == run.id
    assert "cached" in again.output


def test_env_option_scopes_runs(rt, db_url):
    result = run_cli("--store", db_url, "--env", "staging", "trigger", "cli-scoped")
    assert result.exit_code == 0, result.output
    run_id = first_line(result)
    in_dev = run_cli("--store", db_url, "runs", "show", run_id)
    assert_clean_error(in_dev, 1, "no run")
    in_staging = run_cli("--store", db_url, "--env", "staging", "runs", "show", run_id, "--json")
    assert in_staging.exit_code == 0, in_staging.output
    assert json.loads(in_staging.output)["environment"] == "staging"


# ---------------------------------------------------------------------- runs
def test_runs_list_table_shows_queue_and_concurrency_key(rt, db_url):
    handle = runlane.tasks.trigger(
        "cli-listed", {"a": 1}, queue="imports", concurrency_key="acct_7", tags=["t1"]
    )
    result = run_cli("--store", db_url, "runs", "list")
    assert result.exit_code == 0, result.output
    for header in ("ID", "Task", "Status", "Queue", "Concurrency key", "Tags", "Created"):
        assert header in result.output
    assert handle.id in result.output
    assert "imports" in result.output
    assert "acct_7" in result.output
    assert "t1" in result.output


def test_runs_list_filters_and_json(rt, db_url):
    a = runlane.tasks.trigger("cli-a", tags=["blue"])
    b = runlane.tasks.trigger("cli-b", tags=["red"], delay="1h")
    runlane.tasks.trigger("cli-a", tags=["red"])

    def ids(*args: str) -> list[str]:
        result = run_cli("--store", db_url, "runs", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.output)]

    assert ids("--tag", "blue") == [a.id]
    assert ids("--status", "delayed") == [b.id]
    assert set(ids("--task", "cli-a", "--tag", "blue")) == {a.id}
    assert len(ids("--limit", "2")) == 2
    assert len(ids()) == 3
    none = run_cli("--store", db_url, "runs", "list", "--tag", "nothing")
    assert none.exit_code == 0
    assert "No runs" in none.output


def test_runs_list_limit_pages_past_one_page(rt, db_url):
    runlane.tasks.batch_trigger("cli-many", [{"payload": i} for i in range(120)])
    result = run_cli("--store", db_url, "runs", "list", "--json", "--limit", "110")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 110


def test_runs_show_cancel_replay_reschedule(rt, db_url):
    handle = runlane.tasks.trigger("cli-ops", {"p": 1}, delay="1h", tags=["ops"], metadata={"m": 1})
    shown = run_cli("--store", db_url, "runs", "show", handle.id)
    assert shown.exit_code == 0, shown.output
    for needle in (handle.id, "DELAYED", "cli-ops", "Payload", "Metadata", '"p": 1'):
        assert needle in shown.output
    as_json = json.loads(run_cli("--store", db_url, "runs", "show", handle.id, "--json").output)
    assert as_json["id"] == handle.id and as_json["payload"] == {"p": 1}

    before = runlane.runs.retrieve(handle).delayed_until
    moved = run_cli("--store", db_url, "runs", "reschedule", handle.id, "--delay", "2h")
    assert moved.exit_code == 0, moved.output
    assert "DELAYED" in moved.output
    assert runlane.runs.retrieve(handle).delayed_until > before

    replayed = run_cli("--store", db_url, "runs", "replay", handle.id)
    assert replayed.exit_code == 0, replayed.output
    new_id = first_line(replayed)
    assert new_id.startswith("run_") and new_id != handle.id
    replay_run = runlane.runs.retrieve(new_id)
    assert replay_run.payload == {"p": 1} and replay_run.tags == ["ops"]

    canceled = run_cli("--store", db_url, "runs", "cancel", handle.id)
    assert canceled.exit_code == 0, canceled.output
    assert "CANCELED" in canceled.output
    assert runlane.runs.retrieve(handle).status == "CANCELED"
    twice = run_cli("--store", db_url, "runs", "cancel", handle.id)
    assert twice.exit_code == 0 and "already" in twice.output


def test_show_completed_run_has_attempts_and_output(worker, db_url):
    @runlane.task(id="cli-shown")
    def shown(payload):
        runlane.metadata.set("step", "done")
        return {"ok": True}

    run = wait_final(shown.trigger({"q": 1}))
    result = run_cli("--store", db_url, "runs", "show", run.id)
    assert result.exit_code == 0, result.output
    for needle in ("COMPLETED", "Attempts", "Output", '"ok": true', '"step": "done"'):
        assert needle in result.output


def test_runs_logs_prints_the_run_log(worker, db_url):
    @runlane.task(id="cli-logged")
    def logged(payload):
        runlane.logger.info("hello from the task", n=1)
        return 1

    run = wait_final(logged.trigger(None))
    result = run_cli("--store", db_url, "runs", "logs", run.id)
    assert result.exit_code == 0, result.output
    assert "hello from the task" in result.output
    assert '"n": 1' in result.output
    as_json = run_cli("--store", db_url, "runs", "logs", run.id, "--json")
    assert [e["message"] for e in json.loads(as_json.output)] == ["hello from the task"]


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["trigger", "t", "--payload", "{bad"], 2, "not valid JSON"),
        (["trigger", "t", "--metadata", "[1, 2]"], 2, "JSON object"),
        (["trigger", "t", "--metadata", "{nope"], 2, "--metadata"),
        (["trigger", "t", "--delay", "abc"], 2, "--delay"),
        (["trigger", "t", "--ttl", "soon"], 2, "--ttl"),
        (["trigger", "t", "--idempotency-key-ttl", "forever"], 2, "--idempotency-key-ttl"),
        (["trigger", "t", "--max-duration", "2"], 2, "at least 5 seconds"),
        (["trigger", "t", "--max-attempts", "zero"], 2, "--max-attempts"),
        (["trigger", "t", "--machine", "huge"], 2, "--machine"),
        (["trigger", "t", "--queue", "bad queue"], 2, "--queue"),
        (["trigger", "bad task id!"], 2, "TASK_ID"),
        (["trigger", "t"] + [a for i in range(6) for a in ("--tag", f"t{i}")], 2, "at most 5"),
        (["runs", "show", "run_doesnotexist"], 1, "no run"),
        (["runs", "show", "not-a-run-id"], 2, "RUN_ID"),
        (["runs", "cancel", "run_doesnotexist"], 1, "no run"),
        (["runs", "replay", "run_doesnotexist"], 1, "no run"),
        (["runs", "logs", "run_doesnotexist"], 1, "no run"),
        (["runs", "list", "--status", "DONE"], 2, "unknown status"),
        (["runs", "list", "--limit", "0"], 2, "--limit"),
        (["runs", "list", "--batch", "nope"], 2, "--batch"),
        (["runs", "reschedule", "run_doesnotexist", "--delay", "soon"], 2, "--delay"),
        (["--env", "moon", "runs", "list"], 2, "--env"),
    ],
)
def test_bad_input_is_a_clear_error_without_traceback(rt, db_url, args, code, needle):
    assert_clean_error(run_cli("--store", db_url, *args), code, needle)


def test_reschedule_of_a_run_that_is_not_delayed_exits_1(rt, db_url):
    handle = runlane.tasks.trigger("cli-not-delayed")
    result = run_cli("--store", db_url, "runs", "reschedule", handle.id, "--delay", "1h")
    assert_clean_error(result, 1, "not delayed")


def test_bad_store_url_is_a_clear_error(rt):
    result = run_cli("--store", "postgres://x", "runs", "list")
    assert_clean_error(result, 1, "unknown store URL")


def test_worker_and_dev_reject_missing_modules(rt, db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert_clean_error(run_cli("--store", db_url, "worker"), 2, "MODULE")
    assert_clean_error(run_cli("--store", db_url, "worker", "no_such_mod_xyz"), 2, "no_such_mod")
    assert_clean_error(run_cli("--store", db_url, "worker", "missing.py"), 2, "no such file")
    assert_clean_error(run_cli("--store", db_url, "dev", "no_such_mod_xyz"), 2, "no_such_mod")
    assert_clean_error(run_cli("--store", db_url, "dev", "missing.py"), 2, "no such file")
    (tmp_path / "ok_mod.py").write_text("X = 1\n")
    result = run_cli("--store", db_url, "worker", "ok_mod.py", "--queues", " , ")
    assert_clean_error(result, 2, "--queues")


def test_worker_reports_an_error_raised_by_the_module(rt, db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "raising_mod.py").write_text("raise RuntimeError('boom at import')\n")
    result = run_cli("--store", db_url, "worker", "raising_mod.py")
    assert result.exit_code == 1
    assert "error while importing raising_mod.py" in result.output
    assert "raising_mod" not in sys.modules


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("dev", "worker", "trigger", "runs", "demo"):
        assert command in result.output
    for sub in ("list", "show", "cancel", "replay", "reschedule", "logs"):
        assert sub in CliRunner().invoke(main, ["runs", "--help"]).output


# ---------------------------------------------------------------------- real processes
def runlane_command() -> list[str]:
    script = Path(sys.executable).parent / "runlane"
    if script.exists():
        return [str(script)]
    found = shutil.which("runlane")
    return [found] if found else [sys.executable, "-m", "runlane.cli"]


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """The command in its own process group, so ``cleanup`` also reaches its children."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120")
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*runlane_command(), *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    """SIGTERM, then the exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the process did not stop on SIGTERM:\n{log.read_text()}") from None


def cleanup(proc: subprocess.Popen[bytes]) -> None:
    """Leave no process behind: unless it stopped cleanly, kill the command's process group."""
    if proc.poll() is None or proc.returncode != 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_demo_runs_to_completion(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
    env["COLUMNS"] = "120"
    proc = subprocess.run(
        [*runlane_command(), "demo", "--rows", "40"], cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    # 40 rows, 2 with an invalid email; 2 emails (1 canceled, 1 rescheduled); 1 summary
    assert re.search(r"COMPLETED\s+38\s+1\s+1\s+40", output), output
    assert re.search(r"FAILED\s+2\s+-\s+-\s+2", output), output
    assert re.search(r"CANCELED\s+-\s+-\s+1\s+1", output), output
    assert "10 cached handles" in output
    assert "Retries: 1 row failed" in output  # row 20 fails its first attempt, then completes
    assert list((tmp_path / ".runlane").glob("demo-*.db"))


WORKER_MODULE = """
import runlane

@runlane.task(id="cli-double")
def double(payload):
    runlane.metadata.set("seen", payload["n"])
    return payload["n"] * 2
"""


def test_worker_process_runs_what_this_process_triggers(rt, db_url, tmp_path):
    (tmp_path / "tests_module.py").write_text(WORKER_MODULE)
    log = tmp_path / "worker.log"
    proc = start(["--store", db_url, "worker", "tests_module", "--concurrency", "2"], tmp_path, log)
    try:
        first = runlane.tasks.trigger("cli-double", {"n": 21})
        batch = runlane.tasks.batch_trigger("cli-double", [{"payload": {"n": i}} for i in range(5)])
        run = wait_final(first, timeout=60)
        assert run.status == "COMPLETED", log.read_text()
        assert run.output == 42
        assert run.metadata == {"seen": 21}
        assert [wait_final(h, timeout=60).output for h in batch.runs] == [0, 2, 4, 6, 8]
        assert stop(proc, log) == 0, log.read_text()
        text = log.read_text()
        assert "cli-double" in text  # the banner lists the task
        assert "Traceback" not in text
    finally:
        cleanup(proc)


DEV_MODULE = """
import runlane

@runlane.task(id="cli-version")
def version(payload):
    return "{version}"
"""


def write_module(path: Path, version: str) -> None:
    """Replace the file at once (write then rename), as editors do."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(textwrap.dedent(DEV_MODULE).format(version=version))
    os.replace(tmp, path)


def test_dev_reloads_when_the_module_changes(rt, db_url, tmp_path):
    module = tmp_path / "dev_tasks.py"
    write_module(module, "v1")
    log = tmp_path / "dev.log"
    proc = start(["--store", db_url, "dev", "dev_tasks.py"], tmp_path, log)
    try:
        first = wait_final(runlane.tasks.trigger("cli-version"), timeout=60)
        assert first.output == "v1", log.read_text()

        write_module(module, "v2")

        def reloaded() -> bool:
            run = wait_final(runlane.tasks.trigger("cli-version"), timeout=60)
            return run.output == "v2"

        wait_for(reloaded, timeout=90, interval=0.2, message="the dev worker to reload")
        assert stop(proc, log) == 0, log.read_text()
        text = log.read_text()
        assert "reloading" in text
        assert "Traceback" not in text
    finally:
        cleanup(proc)
