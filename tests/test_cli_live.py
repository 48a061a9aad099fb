"""``runlane runs tail`` and ``runlane runs watch``: real ``runlane`` processes follow runs that a
worker thread of this process executes on the same store (changes seen as they happen, line by
line, and Ctrl-C); CliRunner for what a finished run shows (the table, the progress bar, exit
codes)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runlane
from runlane.cli.live import progress_of
from tests.helpers import wait_final
from tests.remote_support import remote_client, remote_server
from tests.test_cli import assert_clean_error, run_cli, runlane_command

GATE = threading.Event()  # the gated tasks wait for it: the test opens it when it is ready


@runlane.task(id="live-gated")
def gated(payload: Any) -> str:
    assert GATE.wait(20), "the test never opened the gate"
    return "done"


@runlane.task(id="live-plain")
def plain(payload: Any) -> int:
    return 1


@runlane.task(id="live-streaming")
def streaming(payload: Any) -> str:
    if payload.get("gated"):
        assert GATE.wait(20), "the test never opened the gate"
    for done in range(1, 4):
        runlane.metadata.set("current", done).set("total", 3)
        runlane.metadata.flush()
    for _ in runlane.metadata.stream("llm", ["Hel", "lo ", "world\nsecond", " line"]):
        pass
    list(runlane.metadata.stream("events", [{"step": 1}, {"step": 2}]))
    if payload.get("fail"):
        raise runlane.errors.AbortTaskRunError("the model refused")
    return "ok"


class Process:
    """``runlane ARGS`` in its own process group; its stdout read line by line (with a
    deadline, so a missing line fails the test instead of hanging it)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
        env.update(PYTHONUNBUFFERED="1", COLUMNS="120")
        self.proc = subprocess.Popen(
            [*runlane_command(), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def json_lines(self, timeout: float = 15.0) -> Iterator[dict[str, Any]]:
        """Its JSON lines as they come, until it exits."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line from `runlane` in {timeout}s") from None
            if line is None:
                return
            yield json.loads(line)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: its exit code and stderr."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self) -> tuple[int, str]:
        """Its exit code and stderr."""
        code = self.proc.wait(timeout=15)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def finish(self) -> tuple[int, str]:
        """Its exit code and everything it printed (stdout, then stderr)."""
        code, stderr = self.wait()
        self._reader.join(timeout=5)
        lines = []
        while (line := self._lines.get_nowait()) is not None:
            lines.append(line)
        return code, "".join(lines) + stderr

    def cleanup(self) -> None:
        """Leave no process behind (killed unless it exited) and no pipe open."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._reader.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@contextlib.contextmanager
def cli_process(args: list[str], cwd: Path) -> Iterator[Process]:
    process = Process(args, cwd)
    try:
        yield process
    finally:
        process.cleanup()


def statuses(lines: list[dict[str, Any]], run_id: str) -> list[str]:
    """The statuses ``run_id`` went through in ``lines``, each once in a row."""
    seen: list[str] = []
    for line in lines:
        if line["id"] == run_id and (not seen or seen[-1] != line["status"]):
            seen.append(line["status"])
    return seen


# ---------------------------------------------------------------------- tail
def test_tail_json_follows_runs_as_they_change(rt, db_url, tmp_path):
    """Two tails at once: every run's changes (the subscription kind "all"), and a tag's."""
    GATE.clear()
    first = gated.trigger(None, tags=["vip"])
    other = plain.trigger(None, tags=["plain"])
    worker = runlane.Worker(concurrency=2, fetch_timeout=0.2)
    tail = ["--store", db_url, "runs", "tail", "--json"]
    with (
        cli_process(tail, tmp_path) as every,
        cli_process([*tail, "--tag", "vip"], tmp_path) as tagged,
    ):
        seen: dict[str, list[dict[str, Any]]] = {"every": [], "tagged": []}
        lines = {"every": every.json_lines(), "tagged": tagged.json_lines()}

        def until(status: str) -> None:
            """Read each tail's lines until it shows the first run ``status``."""
            for name, proc_lines in lines.items():
                for line in proc_lines:
                    seen[name].append(line)
                    if (line["id"], line["status"]) == (first.id, status):
                        break

        try:
            until("QUEUED")
            worker.start()  # the runs start once both tails have shown them queued
            until("EXECUTING")
            wait_final(other)  # its changes come before the gated run's end
            GATE.set()
            until("COMPLETED")
            ended = [every.interrupt(), tagged.interrupt()]
        finally:
            GATE.set()
            worker.stop()
    for code, stderr in ended:
        assert code == 0, stderr
        assert "Traceback" not in stderr
    for name in seen:
        assert statuses(seen[name], first.id) == ["QUEUED", "EXECUTING", "COMPLETED"]
    assert statuses(seen["every"], other.id)[0] == "QUEUED"
    assert {line["id"] for line in seen["tagged"]} == {first.id}


@pytest.mark.sqlite_only  # what the command prints: the store's part is tested above
def test_tail_filters_and_table(worker, db_url):
    done = [wait_final(plain.trigger(None, tags=tags)) for tags in (["vip"], ["other"], ["vip"])]
    failed = wait_final(streaming.trigger({"fail": True}, tags=["vip"]))
    vip = {done[0].id, done[2].id, failed.id}

    tagged = run_cli("--store", db_url, "runs", "tail", "--json", "--tag", "vip", "--until-idle")
    assert tagged.exit_code == 0, tagged.output
    assert {json.loads(line)["id"] for line in tagged.output.splitlines()} == vip

    completed = run_cli(
        "--store", db_url, "runs", "tail", "--json", "--status", "completed",
        "--task", "live-plain", "--until-idle",
    )  # fmt: skip
    assert completed.exit_code == 0, completed.output
    lines = [json.loads(line) for line in completed.output.splitlines()]
    assert {line["id"] for line in lines} == {run.id for run in done}
    assert {line["status"] for line in lines} == {"COMPLETED"}

    table = run_cli("--store", db_url, "runs", "tail", "--tag", "vip", "--until-idle")
    assert table.exit_code == 0, table.output
    assert "3 runs" in table.output and "COMPLETED 2" in table.output
    assert "FAILED 1" in table.output
    assert all(run_id in table.output for run_id in vip)
    assert done[1].id not in table.output
    newest_first = [table.output.index(run_id) for run_id in (failed.id, done[2].id, done[0].id)]
    assert newest_first == sorted(newest_first)

    assert_clean_error(
        run_cli("--store", db_url, "runs", "tail", "--status", "DONE"), 2, "unknown status"
    )


# ---------------------------------------------------------------------- watch
def test_watch_json_follows_a_run_live(worker, db_url, tmp_path):
    GATE.clear()
    handle = streaming.trigger({"gated": True})
    with cli_process(["--store", db_url, "runs", "watch", handle.id, "--json"], tmp_path) as proc:
        parts: list[dict[str, Any]] = []
        try:
            for part in proc.json_lines():
                parts.append(part)
                GATE.set()  # the watch is following: let the run go on
            code, stderr = proc.wait()
        finally:
            GATE.set()
    assert code == 0, stderr
    runs = [p["run"] for p in parts if p["type"] == "run"]
    assert runs[0]["status"] in ("QUEUED", "EXECUTING")
    assert runs[-1]["status"] == "COMPLETED"
    assert runs[-1]["metadata"] == {"current": 3, "total": 3}
    assert "".join(p["chunk"] for p in parts if p["type"] == "llm") == "Hello world\nsecond line"
    assert [p["chunk"] for p in parts if p["type"] == "events"] == [{"step": 1}, {"step": 2}]


@pytest.mark.sqlite_only  # what the command prints: the store's part is tested above
def test_watch_shows_progress_streams_and_exit_code(worker, db_url, tmp_path):
    ok = wait_final(streaming.trigger({}))
    bad = wait_final(streaming.trigger({"fail": True}))
    procs = {  # at once: each a process of its own (a subscription outlives no runtime here)
        name: Process(["--store", db_url, "runs", "watch", run_id], tmp_path)
        for name, run_id in (("ok", ok.id), ("bad", bad.id), ("unknown", "run_doesnotexist"))
    }
    try:
        done = {name: proc.finish() for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.cleanup()

    code, output = done["ok"]
    assert code == 0, output
    for needle in (
        "llm Hello world\n",  # text chunks inline, a line as it ends
        "llm second line\n",
        'events {"step":1}\n',  # JSON chunks one a line, after the stream's key
        "COMPLETED",
        "attempt 1",
        "3/3 (100%)",  # the progress bar's label
        '"total": 3',  # the metadata
    ):
        assert needle in output, output
    code, output = done["bad"]
    assert code == 1, output
    assert "FAILED" in output and "the model refused" in output
    code, output = done["unknown"]
    assert code == 2, output
    assert "no run 'run_doesnotexist'" in output and "Traceback" not in output
    assert_clean_error(run_cli("--store", db_url, "runs", "watch", "nope"), 2, "RUN_ID")


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"progress": 0.25}, (0.25, "25%")),
        ({"progress": 40}, (0.4, "40%")),
        ({"progress": 1}, (1.0, "100%")),
        ({"current": 2, "total": 8}, (0.25, "2/8 (25%)")),
        ({"progress": True}, None),
        ({"current": 2, "total": 0}, None),
        ({"step": "x"}, None),
    ],
)
def test_progress_convention(metadata, expected):
    assert progress_of(metadata) == expected


def test_remote_mode_through_the_servers_sse_routes(tmp_path):
    with remote_server(tmp_path) as server, remote_client(server):
        handle = streaming.trigger({})
        tagged = plain.trigger(None, tags=["vip"])
        env: Any = {  # remote mode: no store (None unsets the tests' RUNLANE_STORE_URL)
            "RUNLANE_API_URL": server.url,
            "RUNLANE_SECRET_KEY": server.key,
            "RUNLANE_STORE_URL": None,
        }
        watched = run_cli("runs", "watch", handle.id, "--json", env=env)
        assert watched.exit_code == 0, watched.output
        # (the in-process worker's log lines may land in the captured output too)
        parts = [json.loads(line) for line in watched.output.splitlines() if line.startswith("{")]
        assert parts[-1]["type"] == "run" and parts[-1]["run"]["status"] == "COMPLETED"
        assert (
            "".join(p["chunk"] for p in parts if p["type"] == "llm") == "Hello world\nsecond line"
        )

        wait_final(tagged)
        tail = run_cli("runs", "tail", "--tag", "vip", "--json", "--until-idle", env=env)
        assert tail.exit_code == 0, tail.output
        lines = [json.loads(line) for line in tail.output.splitlines() if line.startswith("{")]
        assert [line["id"] for line in lines] == [tagged.id]
        # every run: the server's feed of every run
        every = run_cli("runs", "tail", "--json", "--until-idle", env=env)
        assert every.exit_code == 0, every.output
        seen = {json.loads(line)["id"] for line in every.output.splitlines() if line[:1] == "{"}
        assert seen == {handle.id, tagged.id}
