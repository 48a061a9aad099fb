"""``runlane schedules ...`` (CliRunner, on both stores) and ``runlane engine`` (a real process on
a SQLite store: it fires a due schedule and executes nothing)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

import runlane
from runlane.cli import main
from runlane.core import cron, runtime
from runlane.core.types import RegisteredTask
from runlane.errors import ScheduleNotFoundError
from tests.helpers import wait_for
from tests.test_cli import assert_clean_error, cleanup, run_cli, start


def cli(db_url: str, *args: str) -> str:
    """Run ``runlane --store db_url schedules ARGS``; its output (it must succeed)."""
    result = run_cli("--store", db_url, "schedules", *args)
    assert result.exit_code == 0, result.output
    return result.output


def cli_json(db_url: str, *args: str) -> object:
    result = run_cli("--store", db_url, "schedules", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def scheduled_task(task_id: str) -> None:
    @runlane.schedules.task(id=task_id)
    def fn(payload: runlane.schedules.ScheduledPayload) -> None:
        return None


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------------- every command
def test_create_show_update_activate_delete(rt, db_url):
    scheduled_task("cs-report")
    out = cli(
        db_url, "create", "--task", "cs-report", "--cron", "30 2 * * *",
        "--timezone", "Europe/Paris", "--external-id", "user_1",
    )  # fmt: skip
    sid = out.splitlines()[0]
    assert sid.startswith("sched_")
    assert "At 02:30 AM" in out and "Europe/Paris" in out
    made = runlane.schedules.retrieve(sid)
    assert (made.task, made.cron, made.timezone, made.external_id, made.active) == (
        "cs-report", "30 2 * * *", "Europe/Paris", "user_1", True,
    )  # fmt: skip
    assert made.next_run is not None
    local = made.next_run.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (2, 30)

    created = cli_json(db_url, "create", "--task", "cs-report", "--cron", "0 8 * * *")
    assert isinstance(created, dict)
    assert created["type"] == "IMPERATIVE" and created["timezone"] == "UTC"
    assert created["description"] == "At 08:00 AM"

    # show: every field, and the next 5 ticks in its time zone and in UTC
    shown = cli(db_url, "show", sid)
    for needle in (sid, "cs-report", "IMPERATIVE", "30 2 * * *", "At 02:30 AM", "user_1"):
        assert needle in shown
    assert "Next 5 ticks" in shown and "Europe/Paris" in shown and "UTC" in shown
    data = cli_json(db_url, "show", sid)
    assert isinstance(data, dict)
    assert data["id"] == sid and data["external_id"] == "user_1"
    ticks = data["next_ticks"]
    assert len(ticks) == 5
    assert utc(ticks[0]["utc"]) == made.next_run
    for tick in ticks:
        at = datetime.fromisoformat(tick["local"])
        assert at == utc(tick["utc"])
        in_paris = at.astimezone(ZoneInfo("Europe/Paris"))
        assert (in_paris.hour, in_paris.minute) == (2, 30)
        assert in_paris.strftime("%a %Y-%m-%d %H:%M %Z") in shown
        assert utc(tick["utc"]).strftime("%a %Y-%m-%d %H:%M UTC") in shown
    days = [utc(t["utc"]) for t in ticks]
    assert all(23 <= (b - a).total_seconds() / 3600 <= 25 for a, b in itertools.pairwise(days))

    # update: what is given changes, an empty --external-id clears it
    out = cli(db_url, "update", sid, "--cron", "0 9 * * MON", "--external-id", "")
    assert f"{sid} updated" in out and "0 9 * * MON" in out
    changed = runlane.schedules.retrieve(sid)
    assert changed.cron == "0 9 * * MON" and changed.external_id is None
    assert changed.timezone == "Europe/Paris" and changed.task == "cs-report"
    assert changed.next_run is not None
    monday = changed.next_run.astimezone(ZoneInfo("Europe/Paris"))
    assert (monday.strftime("%a"), monday.hour, monday.minute) == ("Mon", 9, 0)
    as_json = cli_json(
        db_url, "update", sid, "--timezone", "Asia/Tokyo", "--deduplication-key", "k"
    )
    assert isinstance(as_json, dict)
    assert as_json["timezone"] == "Asia/Tokyo" and as_json["deduplication_key"] == "k"
    cli(db_url, "update", sid, "--deduplication-key", "")
    assert runlane.schedules.retrieve(sid).deduplication_key is None

    # deactivate / activate, twice each
    assert f"{sid} inactive" in cli(db_url, "deactivate", sid)
    assert runlane.schedules.retrieve(sid).active is False
    assert "was already inactive" in cli(db_url, "deactivate", sid)
    inactive = cli(db_url, "show", sid)
    assert "Next 5 ticks (if activated)" in inactive
    assert cli_json(db_url, "show", sid)["next_run"] is None  # type: ignore[index]
    assert f"{sid} active: next run" in cli(db_url, "activate", sid)
    assert runlane.schedules.retrieve(sid).active is True
    assert "was already active" in cli(db_url, "activate", sid)
    assert cli_json(db_url, "deactivate", sid)["active"] is False  # type: ignore[index]

    # delete: prints what was deleted; the schedule is gone
    out = cli(db_url, "delete", sid)
    assert f"deleted {sid}" in out and "cs-report" in out and "0 9 * * MON" in out
    with pytest.raises(ScheduleNotFoundError):
        runlane.schedules.retrieve(sid)
    assert_clean_error(run_cli("--store", db_url, "schedules", "show", sid), 1, "no schedule")
    gone = cli_json(db_url, "delete", created["id"])
    assert isinstance(gone, dict) and gone["id"] == created["id"]


def test_create_for_a_task_only_the_store_knows_and_deduplication(rt, db_url):
    # a worker elsewhere registered the task: its code is not in this process
    rt.store.register_tasks([RegisteredTask("cs-remote", "task/cs-remote")], now=time.time())
    first = run_cli(
        "--store", db_url, "schedules", "create", "--task", "cs-remote", "--cron", "*/5 * * * *",
        "--deduplication-key", "tenant-1",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    sid = first.stdout.strip()
    assert sid.startswith("sched_") and "updated" not in first.output
    again = run_cli(
        "--store", db_url, "schedules", "create", "--task", "cs-remote", "--cron", "0 * * * *",
        "--deduplication-key", "tenant-1",
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == sid
    assert "deduplication key matched" in again.output
    assert runlane.schedules.retrieve(sid).cron == "0 * * * *"
    assert [s.id for s in runlane.schedules.list(task="cs-remote")] == [sid]


def test_list_table_pages_filters_and_json(rt, db_url):
    scheduled_task("cs-many")
    scheduled_task("cs-few")
    few = [
        runlane.schedules.create(task="cs-few", cron=f"{i} 4 * * *", timezone="Asia/Tokyo").id
        for i in range(3)
    ]
    for i in range(105):
        runlane.schedules.create(task="cs-many", cron=f"{i % 60} * * * *")

    def ids(*args: str) -> list[str]:
        found = cli_json(db_url, "list", *args)
        assert isinstance(found, list)
        return [s["id"] for s in found]

    assert ids("--task", "cs-few") == few[::-1]  # newest first
    assert len(ids()) == 20
    assert len(ids("--limit", "104")) == 104  # past the first page of 100
    every = ids("--all")
    assert len(every) == 108 and len(set(every)) == 108
    assert set(ids("--task", "cs-few", "--task", "cs-many", "--all")) == set(every)
    detail = cli_json(db_url, "list", "--task", "cs-few")
    assert isinstance(detail, list)
    assert {s["task"] for s in detail} == {"cs-few"} and detail[0]["timezone"] == "Asia/Tokyo"

    table = cli(db_url, "list", "--task", "cs-few")
    for header in ("ID", "Task", "Cron", "Description", "Timezone", "Next run", "Last run"):
        assert header in table
    for needle in ("Active", "Type", "IMPERATIVE", "Asia/Tokyo", "2 4 * * *", "At 04:02 AM"):
        assert needle in table
    assert all(sid in table for sid in few)
    assert "3 schedules" in table and "more exist" not in table
    paged = cli(db_url, "list", "--limit", "5")
    assert "5 schedules (more exist" in paged
    assert "108 schedules" in cli(db_url, "list", "--all")

    narrow = run_cli(
        "--store", db_url, "schedules", "list", "--task", "cs-few", env={"COLUMNS": "30"}
    )
    assert narrow.exit_code == 0, narrow.output
    assert all(sid in narrow.output for sid in few)  # the ids stay whole

    assert "No schedules match." in cli(db_url, "list", "--task", "cs-none")
    empty = run_cli("--store", db_url, "--env", "staging", "schedules", "list")
    assert empty.exit_code == 0, empty.output
    assert "No schedules yet" in empty.output and "schedules create" in empty.output
    assert cli_json(db_url, "list", "--task", "cs-none") == []


def test_errors_are_one_line_with_an_exit_code(rt, db_url):
    scheduled_task("cs-err")

    @runlane.task(id="cs-plain")
    def plain(payload: object) -> None:
        return None

    @runlane.schedules.task(id="cs-declared", cron="0 5 * * *")
    def declared(payload: runlane.schedules.ScheduledPayload) -> None:
        return None

    rt.engine.deploy([declared])  # as a worker that defines it does
    (found,) = runlane.schedules.list(task="cs-declared")
    assert found.type == "DECLARATIVE"
    create = ("schedules", "create", "--task", "cs-err", "--cron")
    cases: list[tuple[tuple[str, ...], int, tuple[str, ...]]] = [
        ((*create, "61 * * * *"), 2, ("--cron", "minute field '61'", "0-59")),
        ((*create, "0 8 * * FUNDAY"), 2, ("--cron", "day-of-week field")),
        ((*create, "0 0 8 * * *"), 2, ("--cron", "seconds are not allowed")),
        ((*create, "0 8 * *"), 2, ("--cron", "has 4 field(s)")),
        ((*create, "0 8 * * *", "--timezone", "Mars/Olympus"), 2, ("--timezone", "IANA")),
        ((*create, "0 8 * * *", "--external-id", "x" * 200), 2, ("--external-id",)),
        (("schedules", "create", "--task", "cs-nope", "--cron", "0 8 * * *"), 2,
         ("--task", "no such task")),
        (("schedules", "create", "--task", "cs-plain", "--cron", "0 8 * * *"), 2,
         ("--task", "not a scheduled task")),
        (("schedules", "create", "--cron", "0 8 * * *"), 2, ("--task",)),
        (("schedules", "show", "sched_nope"), 1, ("no schedule 'sched_nope'",)),
        (("schedules", "show", ""), 2, ("SCHEDULE_ID",)),
        (("schedules", "update", "sched_nope", "--cron", "0 8 * * *"), 1, ("no schedule",)),
        (("schedules", "update", "sched_nope"), 2, ("nothing to change",)),
        (("schedules", "activate", "sched_nope"), 1, ("no schedule",)),
        (("schedules", "deactivate", "sched_nope"), 1, ("no schedule",)),
        (("schedules", "delete", "sched_nope"), 1, ("no schedule",)),
        (("schedules", "list", "--limit", "0"), 2, ("--limit",)),
        (("schedules", "list", "--task", "bad task!"), 2, ("--task",)),
        (("schedules", "update", found.id, "--cron", "0 6 * * *"), 1, ("DECLARATIVE",)),
        (("schedules", "deactivate", found.id), 1, ("cannot deactivate", "DECLARATIVE")),
        (("schedules", "activate", found.id), 1, ("DECLARATIVE",)),
        (("schedules", "delete", found.id), 1, ("cannot delete", "DECLARATIVE")),
    ]  # fmt: skip
    for args, code, needles in cases:
        assert_clean_error(run_cli("--store", db_url, *args), code, *needles)
    sid = runlane.schedules.create(task="cs-err", cron="0 8 * * *").id
    bad_update = run_cli("--store", db_url, "schedules", "update", sid, "--cron", "0 25 * * *")
    assert_clean_error(bad_update, 2, "--cron", "hour field")
    assert runlane.schedules.retrieve(sid).cron == "0 8 * * *"
    assert runlane.schedules.retrieve(found.id).active  # the declarative one is untouched


def test_a_missing_store_is_an_error_not_a_new_file(tmp_path):
    path = tmp_path / "typo.db"
    for args in (("list",), ("show", "sched_x"), ("create", "--task", "t", "--cron", "* * * * *")):
        result = run_cli("--store", f"sqlite:///{path}", "schedules", *args)
        assert_clean_error(result, 1, "no SQLite store")
    assert not path.exists()


def test_timezones_one_per_line_or_json():
    plain = CliRunner().invoke(main, ["schedules", "timezones"])
    assert plain.exit_code == 0, plain.output
    lines = plain.output.splitlines()
    assert lines == sorted(lines) and "Europe/Paris" in lines and "UTC" in lines
    as_json = CliRunner().invoke(main, ["schedules", "timezones", "--json"])
    assert json.loads(as_json.output) == lines == cron.timezones()


def test_help_lists_the_schedules_commands_and_engine():
    top = CliRunner().invoke(main, ["--help"]).output
    assert "schedules" in top and "engine" in top
    sub = CliRunner().invoke(main, ["schedules", "--help"]).output
    for name in ("list", "show", "create", "update", "activate", "deactivate", "delete"):
        assert name in sub
    assert "timezones" in sub


# ---------------------------------------------------------------------- runlane engine
ENGINE_MODULE = """
from runlane import schedules

@schedules.task(id="eng-declared", cron="0 5 * * *")
def declared(payload):
    return "executed"

@schedules.task(id="eng-tick")
def tick(payload):
    return "executed"
"""


@pytest.mark.sqlite_only
def test_engine_fires_a_due_schedule_and_executes_nothing(rt, db_url, tmp_path: Path):
    (tmp_path / "eng_tasks.py").write_text(ENGINE_MODULE)
    log = tmp_path / "engine.log"
    proc = start(["--store", db_url, "engine", "eng_tasks.py", "-l", "info"], tmp_path, log)
    try:
        # it imports the module (the declarative schedule is written, the tasks registered),
        # then leads: the only process of this store that runs the engine loops
        wait_for(
            lambda: "leading" in log.read_text(),
            timeout=60,
            interval=0.1,
            message=f"the engine to lead:\n{log.read_text()}",
        )
        assert [s.type for s in runlane.schedules.list(task="eng-declared")] == ["DECLARATIVE"]
        # the task is known to the store only: created through the CLI, which lacks its code
        created = run_cli(
            "--store", db_url, "schedules", "create", "--task", "eng-tick", "--cron", "0 5 * * *"
        )
        assert created.exit_code == 0, created.output
        sid = created.stdout.strip()
        store = runtime.get().store
        row = store.get_schedule(sid)
        assert row is not None
        store.save_schedule(dataclasses.replace(row, next_at=time.time() - 1), now=time.time())

        run = wait_for(
            lambda: next(iter(runlane.runs.list(schedule=sid)), None),
            timeout=60,
            interval=0.1,
            message=f"the engine to fire {sid}:\n{log.read_text()}",
        )
        assert run.task_identifier == "eng-tick" and run.schedule_id == sid
        assert run.payload["schedule_id"] == sid
        fired = runlane.schedules.retrieve(sid)
        assert fired.last_run is not None and fired.next_run is not None
        assert fired.next_run > datetime.now(timezone.utc)

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the engine did not stop:\n{log.read_text()}") from None
        text = log.read_text()
        assert code == 0, text
        assert "runlane engine" in text and "eng-tick" in text  # the banner
        assert "Engine stopped." in text
        assert "Traceback" not in text and "received" not in text
        after = runlane.runs.retrieve(run.id)
        assert after.status == "QUEUED" and after.attempts == []  # nothing executed it
    finally:
        cleanup(proc)
