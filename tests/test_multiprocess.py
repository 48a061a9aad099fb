"""Two processes sharing one SQLite file: runs triggered here execute in a worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import runlane
from tests.helpers import wait_final, wait_for

TASKS = textwrap.dedent(
    """
    import os
    import runlane

    @runlane.task(id="where")
    def where(payload):
        return {"pid": os.getpid(), "payload": payload}
    """
)

WORKER = textwrap.dedent(
    """
    import signal, sys, threading
    sys.path.insert(0, sys.argv[2])
    import runlane
    import mp_tasks  # noqa: F401

    runlane.configure(store=sys.argv[1], engine_interval=0.05)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    with runlane.Worker(concurrency=2, fetch_timeout=0.2):
        print("ready", flush=True)
        stop.wait(120)
    """
)


def _start_worker(tmp_path, url):
    (tmp_path / "mp_tasks.py").write_text(TASKS)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"worker did not start: {err}")
    return proc


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_runs_triggered_here_execute_in_another_process(tmp_path, rt, db_url):
    # this process has no task code: the run waits for a deploy until the worker registers it
    early = runlane.tasks.trigger("where", {"n": 0})
    assert runlane.runs.retrieve(early).status == "WAITING_FOR_DEPLOY"
    proc = _start_worker(tmp_path, db_url)
    try:
        run = wait_final(early, timeout=60)
        assert run.status == "COMPLETED" and run.output["pid"] == proc.pid
        handles = runlane.tasks.batch_trigger("where", [{"payload": i} for i in range(20)])
        outputs = [wait_final(h, timeout=60).output for h in handles.runs]
        assert [o["payload"] for o in outputs] == list(range(20))
        assert {o["pid"] for o in outputs} == {proc.pid}
        assert os.getpid() != proc.pid
    finally:
        _stop(proc)


def test_idempotency_and_delays_across_processes(tmp_path, rt, db_url):
    proc = _start_worker(tmp_path, db_url)
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                import sys, runlane
                runlane.configure(store=sys.argv[1])
                h = runlane.tasks.trigger("where", {"from": "child"}, idempotency_key="x-proc")
                print(h.id)
                """
                ),
                db_url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        other_id = child.stdout.strip()
        mine = runlane.tasks.trigger("where", {"from": "parent"}, idempotency_key="x-proc")
        assert mine.id == other_id and mine.is_cached
        delayed = runlane.tasks.trigger("where", {"d": 1}, delay="1s")
        assert runlane.runs.retrieve(delayed).status == "DELAYED"
        # the worker process's engine promotes it; its executor runs it
        assert wait_final(delayed, timeout=60).output["pid"] == proc.pid
        assert wait_final(mine, timeout=60).output["payload"] == {"from": "child"}
        wait_for(lambda: rt.broker.pending() == 0, message="the queue to drain")
    finally:
        _stop(proc)
