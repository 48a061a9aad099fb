"""``runlane serve`` and ``runlane dev`` serve the management API, as users start them: real
processes, a key made with ``runlane keys``, runs triggered and read over HTTP."""

from __future__ import annotations

import subprocess
import textwrap
import threading
from pathlib import Path

import httpx

from tests.helpers import wait_for
from tests.http_support import free_port
from tests.test_cli import cleanup, runlane_command, start, stop

TASKS = textwrap.dedent(
    """
    import runlane

    @runlane.task(id="double")
    def double(payload):
        return {"twice": payload["n"] * 2}
    """
)


def _key(store: str, cwd: Path) -> str:
    made = subprocess.run(
        [*runlane_command(), "--store", store, "keys", "create", "--name", "tests"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = made.stdout.strip()
    assert key.startswith("rl_dev_") and len(key) == 47, made.stdout
    listed = subprocess.run(
        [*runlane_command(), "--store", store, "keys", "list", "--json"],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert key not in listed.stdout and key[-4:] in listed.stdout  # a hint, never the key
    return key


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _completes(url: str, key: str) -> None:
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        made = client.post("/api/v1/tasks/double/trigger", json={"payload": {"n": 21}})
        assert made.status_code == 200, made.text
        run_id = made.json()["id"]

        def done() -> dict | None:
            run = client.get(f"/api/v3/runs/{run_id}").json()
            return run if run["status"] == "COMPLETED" else None

        run = wait_for(done, timeout=60, interval=0.1, message="the run to complete")
        assert run["output"] == {"twice": 42}
        assert (
            client.get("/api/v1/queues", headers={"authorization": "Bearer x"}).status_code == 401
        )


class _Follower:
    """A client following every run's changes over SSE, in a thread, until the server ends
    the stream: what it read."""

    def __init__(self, url: str, key: str) -> None:
        self.lines: list[str] = []
        self.opened = threading.Event()
        headers = {"authorization": f"Bearer {key}", "accept": "text/event-stream"}
        self._thread = threading.Thread(target=self._follow, args=(url, headers), daemon=True)
        self._thread.start()
        assert self.opened.wait(30), "the stream did not open"

    def _follow(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url + "/realtime/v1/runs", headers=headers, timeout=None) as r:
            for line in r.iter_lines():
                self.lines.append(line)
                self.opened.set()

    def ended(self) -> list[str]:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the server did not end the stream"
        return self.lines


def _stops_with_an_open_stream(
    proc: subprocess.Popen[bytes], log: Path, follower: _Follower
) -> None:
    """Stopped (Ctrl-C) while a client follows a stream: the server ends it at once, without
    ``event: end`` (the client reconnects elsewhere), rather than waiting for it."""
    assert stop(proc, log) == 0, log.read_text()
    lines = follower.ended()
    assert lines[0].startswith("retry:") and "event: end" not in lines, lines
    assert "graceful shutdown exceeded" not in log.read_text(), log.read_text()


def test_runlane_serve_with_a_worker(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    store = f"sqlite:///{tmp_path}/serve.db"
    key = _key(store, tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(
        ["--store", store, "serve", "tasks.py", "--port", str(port), "--with-worker", "2"],
        tmp_path,
        log,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), timeout=60, message=f"runlane serve\n{log.read_text()}")
        follower = _Follower(url, key)
        _completes(url, key)
        _stops_with_an_open_stream(proc, log, follower)
    finally:
        cleanup(proc)
    assert "Traceback" not in log.read_text()


def test_runlane_dev_serves_the_api(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    store = f"sqlite:///{tmp_path}/dev.db"
    key = _key(store, tmp_path)
    port = free_port()
    log = tmp_path / "dev.log"
    proc = start(["--store", store, "dev", "tasks.py", "--port", str(port)], tmp_path, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), timeout=60, message=f"runlane dev\n{log.read_text()}")
        follower = _Follower(url, key)
        _completes(url, key)
        assert f"http://127.0.0.1:{port}" in log.read_text()
        _stops_with_an_open_stream(proc, log, follower)
    finally:
        cleanup(proc)


def test_runlane_serve_with_several_processes(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    store = f"sqlite:///{tmp_path}/multi.db"
    key = _key(store, tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(
        ["--store", store, "serve", "tasks.py", "--port", str(port), "--workers", "2",
         "--with-worker", "1"],
        tmp_path,
        log,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), timeout=90, message=f"runlane serve\n{log.read_text()}")
        _completes(url, key)
    finally:
        stop(proc, log)
        cleanup(proc)
    assert "Traceback" not in log.read_text()
