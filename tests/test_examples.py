"""The example projects, end to end, with the commands their README gives: Celery workers
(``celery -A examples.celery_project worker``) over RabbitMQ with the Redis store, Dramatiq
workers (``dramatiq examples.dramatiq_project``) over Redis with the SQLite store, and each
project's trigger script run as another process.

Every queue, exchange and key the examples use here carries a unique prefix (set through the
knobs the examples document) and is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.adapters import (
    REPO,
    FrameworkWorker,
    delete_amqp_queues,
    delete_redis_prefix,
    unique_prefix,
)

pytestmark = pytest.mark.timeout(300)

MACHINES = ["micro", "small-1x", "small-2x", "medium-1x", "medium-2x", "large-1x", "large-2x"]


def _run(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_celery_project(tmp_path: Path, amqp_url: str, redis_url: str) -> None:
    prefix = unique_prefix()
    (tmp_path / "example_celeryconfig.py").write_text(
        textwrap.dedent(
            f"""
            from examples.celery_project.celeryconfig import *  # noqa: F403

            broker_url = {amqp_url!r}
            result_backend = {redis_url!r}
            result_backend_transport_options = {{"global_keyprefix": "{prefix}:"}}
            task_default_queue = "{prefix}.celery"
            task_default_exchange = "{prefix}"
            control_exchange = "{prefix}"
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "PYTHONUNBUFFERED": "1",
        "CELERY_CONFIG_MODULE": "example_celeryconfig",
        "RUNLANE_CELERY_QUEUE": prefix,
        "RUNLANE_STORE_URL": f"{redis_url}?prefix={prefix}",
    }
    common = ["--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel=INFO"]
    celery = [sys.executable, "-m", "celery", "-A", "examples.celery_project", "worker"]
    # a prefork pool for everything but the large-1x runs, and a pool of their own for those
    main = FrameworkWorker(
        [*celery, "-c", "2", "-n", f"main-{prefix}@%h", "-X", f"{prefix}.large-1x", *common],
        env,
        tmp_path / "main.log",
    )
    large_pool = ["-P", "threads", "-c", "1", "-Q", f"{prefix}.large-1x"]
    large = FrameworkWorker(
        [*celery, *large_pool, "-n", f"large-{prefix}@%h", *common],
        env,
        tmp_path / "large.log",
    )
    try:
        done = _run("examples.celery_project.trigger", env, "--users", "3")
        logs = f"{main.output()[-3000:]}\n{large.output()[-3000:]}"
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs}"
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["legacy"] == {"sent_to": 99, "template": "legacy"}  # .delay() as before
        assert [r["status"] for r in report["runs"]] == ["COMPLETED"] * 3
        for i, run in enumerate(report["runs"]):
            out = run["output"]
            assert out["user_id"] == i and out["email"] == {"sent_to": i, "template": "welcome"}
            assert out["avatar"]["machine"] == "large-1x"
            assert out["avatar"]["pid"] == large.proc.pid  # the large-1x pool ran it
            assert out["pid"] != large.proc.pid
            assert run["metadata"] == {"step": "done"}
        # triggering again with the same idempotency keys returns the same runs
        again = _run("examples.celery_project.trigger", env, "--users", "3")
        assert again.returncode == 0, again.stderr
        assert [r["id"] for r in json.loads(again.stdout.strip().splitlines()[-1])["runs"]] == [
            r["id"] for r in report["runs"]
        ]
    finally:
        main.stop()
        large.stop()
        names = [prefix, *(f"{prefix}.{m}" for m in MACHINES), f"{prefix}.celery"]
        exchanges = (prefix, f"{prefix}.pidbox", f"reply.{prefix}.pidbox")
        delete_amqp_queues(amqp_url, names, exchanges)
        delete_redis_prefix(redis_url, prefix)


def test_dramatiq_project(tmp_path: Path, redis_url: str) -> None:
    prefix = unique_prefix()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "DRAMATIQ_BROKER_URL": redis_url,
        "DRAMATIQ_NAMESPACE": prefix,
        "RUNLANE_DRAMATIQ_QUEUE": prefix,
        "RUNLANE_STORE_URL": f"sqlite:///{tmp_path}/runlane.db",
    }
    dramatiq = [sys.executable, "-m", "dramatiq", "examples.dramatiq_project"]
    worker = FrameworkWorker(
        [*dramatiq, "--processes", "2", "--threads", "2"],
        env,
        tmp_path / "dramatiq.log",
    )
    try:
        done = _run("examples.dramatiq_project.trigger", env, "--corpora", "3")
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{worker.output()[-4000:]}"
        runs = json.loads(done.stdout.strip().splitlines()[-1])
        assert [r["status"] for r in runs] == ["COMPLETED"] * 3
        assert [(r["output"]["documents"], r["output"]["total"]) for r in runs] == [
            (1, 4),
            (2, 9),
            (3, 12),
        ]
    finally:
        worker.stop()
        delete_redis_prefix(redis_url, prefix)
