"""What a new user meets in the first hour with the ``runlane`` command: tables that keep run ids
whole, global options after the command, read commands that never create a store, texts."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from click.testing import CliRunner, Result

import runlane
from runlane.cli import main
from runlane.cli._common import duration_text, plural
from runlane.core.errors_ser import serialize_exception
from tests.helpers import wait_final
from tests.test_cli import runlane_command

RUN_ID = re.compile(r"run_[0-9a-z]{26}")


def cli(*args: str, columns: int = 200, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns), **(env or {})})


def long_runs() -> list[str]:
    """Runs whose task, queue, tags and concurrency key are all long."""
    ids = []
    for n in range(3):
        handle = runlane.tasks.trigger(
            f"an-uncommonly-long-task-identifier-{n}",
            delay="1h",
            queue="an-uncommonly-long-queue-name",
            concurrency_key=f"customer-account-number-{n}",
            tags=["plan_paid", "region_eu_west", "import_2024_q3", f"batch_{n}", "priority_hi"],
        )
        ids.append(handle.id)
    return ids


# ---------------------------------------------------------------------- item 2: runs list
@pytest.mark.parametrize("columns", [24, 40, 60, 80, 100, 120, 160])
def test_runs_list_keeps_ids_whole_and_one_line_per_run(rt, db_url, columns):
    ids = long_runs()
    result = cli("--store", db_url, "runs", "list", columns=columns)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table = columns >= 40  # narrower: no table, a line of id and status per run
    if table:
        assert all(len(line.rstrip()) <= columns for line in lines), result.output
    run_lines = [line for line in lines if RUN_ID.search(line)]
    assert [RUN_ID.search(line).group() for line in run_lines] == list(reversed(ids))
    assert all("DELAYED" in line for line in run_lines), result.output  # statuses whole too
    # one line per run: no column wraps (the header, its rule, the runs and the count)
    extra = 2 if table else 0
    assert len(lines) == len(ids) + 1 + extra, result.output
    assert lines[-1] == "3 runs"


def test_runs_list_drops_lesser_columns_first(rt, db_url):
    long_runs()
    headers = {}
    for columns in (80, 100, 300):
        result = cli("--store", db_url, "runs", "list", columns=columns)
        headers[columns] = result.output.splitlines()[0].split()
    assert headers[80][:3] == ["ID", "Task", "Status"]
    assert "Concurrency" not in headers[80] and "Tags" not in headers[80]
    assert headers[300] == [
        "ID", "Task", "Status", "Queue", "Concurrency", "key", "Tags", "Created", "Duration"
    ]  # fmt: skip
    assert len(headers[80]) <= len(headers[100]) < len(headers[300])


def test_every_listing_command_has_json(worker, db_url):
    @runlane.task(id="fh-json")
    def logged(payload):
        runlane.logger.info("one entry")
        return payload

    run = wait_final(logged.trigger({"n": 1}))
    listed = cli("--store", db_url, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output  # stdout: the JSON alone (warnings: stderr)
    assert json.loads(listed.stdout) == [r.model_dump(mode="json") for r in runlane.runs.list()]
    assert json.loads(listed.stdout)[0]["id"] == run.id
    logs = json.loads(cli("--store", db_url, "runs", "logs", run.id, "--json").stdout)
    assert [e["message"] for e in logs] == ["one entry"]
    nothing = cli("--store", db_url, "runs", "list", "--tag", "none", "--json")
    assert json.loads(nothing.stdout) == []
    listing = {"list", "logs", "show"}
    runs_group = main.commands["runs"]
    assert listing <= set(runs_group.commands)  # type: ignore[attr-defined]
    for name in listing:
        options = {o for p in runs_group.commands[name].params for o in p.opts}  # type: ignore[attr-defined]
        assert "--json" in options, name


# ---------------------------------------------------------------------- item 3: global options
def test_global_options_work_after_the_command(rt, db_url):
    made = cli("trigger", "fh-scoped", "--store", db_url, "--env", "staging")
    assert made.exit_code == 0, made.output
    run_id = made.stdout.strip()
    listed = cli("runs", "list", "--json", "--store", db_url, "--env", "staging")
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    assert json.loads(listed.stdout)[0]["environment"] == "staging"
    assert json.loads(cli("runs", "list", "--json", "--store", db_url).stdout) == []  # dev
    # before the command still works; after it wins
    shown = cli("--store", db_url, "--env", "dev", "runs", "show", run_id, "--env", "staging")
    assert shown.exit_code == 0, shown.output
    assert run_id in shown.output
    logs = cli("runs", "logs", run_id, "--store", db_url, "--env", "staging")
    assert logs.exit_code == 0, logs.output
    assert "No log entries" in logs.output
    for command in (["worker"], ["dev"], ["demo"], ["runs", "cancel"], ["trigger"]):
        help_text = cli(*command, "--help").output
        assert "--store" in help_text and "--env" in help_text, command


def test_bad_runlane_env_names_the_variable(rt, db_url):
    result = cli("--store", db_url, "runs", "list", env={"RUNLANE_ENV": "moon"})
    assert result.exit_code == 2, result.output
    assert "RUNLANE_ENV" in result.output and "'moon'" in result.output
    assert "--env" not in result.output
    overridden = cli("runs", "list", "--store", db_url, "--env", "dev", env={"RUNLANE_ENV": "moon"})
    assert overridden.exit_code == 0, overridden.output
    good = cli("--store", db_url, "runs", "list", "--json", env={"RUNLANE_ENV": "staging"})
    assert good.exit_code == 0 and json.loads(good.stdout) == []
    bad_option = cli("--store", db_url, "runs", "list", "--env", "moon")
    assert bad_option.exit_code == 2 and "--env" in bad_option.output


# ---------------------------------------------------------------------- item 4: no store
READ_COMMANDS = [
    ["runs", "list"],
    ["runs", "list", "--json"],
    ["runs", "show", "run_01m98n7phjdrccnq07t6y0abcd"],
    ["runs", "logs", "run_01m98n7phjdrccnq07t6y0abcd"],
    ["runs", "cancel", "run_01m98n7phjdrccnq07t6y0abcd"],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_never_create_the_default_store(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = cli(*args, env={"RUNLANE_STORE_URL": None})
    assert result.exit_code == 1, result.output
    assert "does not exist" in result.output and ".runlane/runlane.db" in result.output
    assert "runlane demo" in result.output  # there is no demo store here: how to start
    assert not (tmp_path / ".runlane").exists()


def test_missing_default_store_points_to_the_newest_demo_store(rt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    older, newer = ".runlane/demo-20240101-000000.db", ".runlane/demo-20240102-000000.db"
    for path, task in ((older, "fh-old"), (newer, "fh-new")):
        runlane.configure(store=f"sqlite:///{path}")
        runlane.tasks.trigger(task)
    os.utime(tmp_path / older, (1, 1))
    result = cli("runs", "list", env={"RUNLANE_STORE_URL": None})
    assert result.exit_code == 1, result.output
    assert not (tmp_path / ".runlane" / "runlane.db").exists()
    suggested = re.search(r"runlane (--store sqlite:///\S+) runs list", result.output)
    assert suggested, result.output
    assert suggested.group(1) == f"--store sqlite:///{newer}"
    listed = cli(*suggested.group(1).split(" "), "runs", "list", "--json")
    assert [r["task_identifier"] for r in json.loads(listed.stdout)] == ["fh-new"]


def test_a_given_sqlite_store_that_does_not_exist_is_not_created(tmp_path):
    missing = tmp_path / "typo.db"
    result = cli("runs", "list", "--store", f"sqlite:///{missing}")
    assert result.exit_code == 1, result.output
    assert "no SQLite store" in result.output and "typo.db" in result.output
    assert not missing.exists()


def test_after_the_demo_runs_list_points_to_its_store(tmp_path):
    """The first hour as a new user lives it: the demo, then a plain ``runlane runs list``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
    env["COLUMNS"] = "80"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*runlane_command(), *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip

    demo = run("demo", "--rows", "10")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    plain = run("runs", "list")
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert not (tmp_path / ".runlane" / "runlane.db").exists()
    (demo_db,) = (tmp_path / ".runlane").glob("demo-*.db")
    hint = f"--store sqlite:///.runlane/{demo_db.name}"
    assert hint in plain.stderr, plain.stderr
    listed = run("runs", "list", *hint.split(" "), "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    ids = RUN_ID.findall(listed.stdout)
    assert len(ids) == 13  # 10 rows, 2 emails, 1 summary; each id whole at 80 columns
    assert all(len(line) <= 80 for line in listed.stdout.splitlines()), listed.stdout


# ---------------------------------------------------------------------- item 5: texts
def test_cancel_texts(rt, db_url):
    help_text = " ".join(cli("runs", "cancel", "--help").output.split())
    assert "has not started" not in help_text
    assert "an executing run is stopped" in help_text
    handle = runlane.tasks.trigger("fh-cancel", delay="1h")
    first = cli("--store", db_url, "runs", "cancel", handle.id)
    assert first.output.strip() == f"{handle.id} CANCELED"
    again = cli("--store", db_url, "runs", "cancel", handle.id)
    assert again.output.strip() == f"{handle.id} was already CANCELED: nothing to cancel"


def test_counts_are_pluralized(rt, db_url):
    runlane.tasks.trigger("fh-count")
    one = cli("--store", db_url, "runs", "list")
    assert one.output.splitlines()[-1] == "1 run"
    runlane.tasks.trigger("fh-count")
    assert cli("--store", db_url, "runs", "list").output.splitlines()[-1] == "2 runs"
    assert [plural(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]
    assert plural(1, "batch", "batches") == "1 batch"


def test_durations_under_a_millisecond(worker, db_url):
    @runlane.task(id="fh-quick")
    def quick(payload):
        return None

    done = wait_final(quick.trigger(None))
    waiting = runlane.runs.retrieve(runlane.tasks.trigger("fh-later", delay="1h"))
    assert duration_text(waiting) == "-"  # never ran: no duration
    assert duration_text(done.model_copy(update={"duration_ms": 0})) == "<1 ms"
    assert duration_text(done.model_copy(update={"duration_ms": 7})) == "7 ms"
    assert duration_text(done.model_copy(update={"duration_ms": 1500})) == "1.5 s"
    shown = cli("--store", db_url, "runs", "show", done.id)
    assert re.search(r"Duration\s+(<1 ms|\d+ ms)", shown.output), shown.output


def helper_that_fails(n: int) -> None:
    raise ValueError(f"bad row {n}")


def test_runs_show_attempts_once_and_the_users_frames(worker, db_url):
    @runlane.task(id="fh-fails")
    def fails(payload):
        helper_that_fails(payload)

    run = wait_final(fails.trigger(3))
    assert run.status == "FAILED"
    shown = cli("--store", db_url, "runs", "show", run.id, columns=160)
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("Attempts") == 1, shown.output
    assert re.search(r"Attempts: 3\b", shown.output), shown.output  # retried by default
    files = re.findall(r'File "([^"]+)"', shown.output)
    assert files and all(f.endswith("test_cli_first_hour.py") for f in files), shown.output
    assert "in fails" in shown.output and "in helper_that_fails" in shown.output
    assert "ValueError: bad row 3" in shown.output
    stack = runlane.runs.retrieve(run.id).error.stack_trace
    assert stack.splitlines()[1].strip().startswith('File "') and "runlane/core" not in stack


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_runs_show_gives_each_attempt_one_line(worker, db_url, columns):
    @runlane.task(id="fh-fails-long", retry={"max_attempts": 2, "min_timeout_in_ms": 10})
    def fails_long(payload):
        raise ValueError("a message long enough to need cutting at eighty columns " * 3)

    run = wait_final(fails_long.trigger(1))
    worker.stop()  # (the command configures runlane again in this process)
    shown = cli("--store", db_url, "runs", "show", run.id, columns=columns)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    table = [ln for ln in lines if re.match(r"\W*[12]\s+FAILED\s", ln)]
    assert len(table) == 2, shown.output  # one line each, in order
    assert all("ValueError" in ln for ln in table), shown.output
    panel = [ln for ln in lines if ln.startswith(("│", "╭", "╰"))]
    assert panel and all(len(ln) <= columns for ln in panel), shown.output
    assert ("Worker" in shown.output) == (columns >= 120), shown.output


def test_a_stack_with_no_user_frame_is_kept_whole():
    def runlane_only() -> BaseException:
        try:
            runlane.configure(environment="moon")
        except runlane.errors.RunlaneError as exc:
            exc.__traceback__ = exc.__traceback__.tb_next  # start inside runlane
            return exc
        raise AssertionError("configure accepted a bad environment")

    stack = serialize_exception(runlane_only()).stack_trace
    assert "runlane/config.py" in stack and "test_cli_first_hour" not in stack


# ---------------------------------------------------------------------- item 6: unknown task
def test_trigger_of_an_unknown_task_warns_on_stderr(rt, db_url):
    result = cli("--store", db_url, "trigger", "some-typo")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    assert RUN_ID.fullmatch(run_id)
    assert runlane.runs.retrieve(run_id).status == "WAITING_FOR_DEPLOY"
    warning = " ".join(result.stderr.split())
    assert "warning: no worker has registered a task with id 'some-typo'" in warning
    assert "waits in WAITING_FOR_DEPLOY until a worker that has this task starts" in warning

    @runlane.task(id="fh-known")
    def known(payload):
        return None

    quiet = cli("--store", db_url, "trigger", "fh-known")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
