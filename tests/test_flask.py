"""The Flask integration (runlane.frameworks.flask, runlane.cli.flask): the extension and its
config keys, the blueprint mounting the API (Flask's test client), ``flask runlane ...``, and
the example app as users start it: gunicorn serving it and ``flask runlane worker`` executing
its runs, on Redis."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest

import runlane
from runlane.core import runtime as runtime_mod
from runlane.errors import ConfigurationError
from runlane.frameworks.flask import Runlane, RunlaneState
from runlane.frameworks.http.api import Response as ApiResponse
from runlane.frameworks.http.api import Route
from runlane.testing import run_until_idle
from tests.adapters import REPO, delete_redis_prefix, unique_prefix
from tests.helpers import wait_for
from tests.http_support import free_port

pytestmark = pytest.mark.timeout(120)

KEY = "rl_dev_" + "k" * 40
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., flask.Flask]]:
    """``make_app(**config)``: a Flask app with runlane on a SQLite file of its own (unless
    the config says otherwise); every state closed afterwards."""
    apps: list[flask.Flask] = []

    def make(name: str = "shop", *, init: bool = True, **config: Any) -> flask.Flask:
        app = flask.Flask(name)
        app.config.update(
            RUNLANE_STORE_URL=f"sqlite:///{tmp_path}/{name}.db", RUNLANE_SECRET_KEY=KEY
        )
        app.config.update(config)
        apps.append(app)
        if init:
            Runlane(app)
        return app

    yield make
    for app in apps:
        state = app.extensions.get("runlane")
        if state is not None and not state.runtime.closed:
            state.close()
    old = runtime_mod.install(None)
    if old is not None:
        old.close()


def _greet_task() -> Any:
    @runlane.task(id="greet")
    def greet(payload: dict) -> dict:
        app = flask.current_app
        return {"hello": payload["name"], "app": app.name, "greeting": app.config["GREETING"]}

    return greet


# ---------------------------------------------------------------------- the blueprint
def test_trigger_through_the_mounted_api_and_read_the_run_back(make_app) -> None:
    app = make_app(GREETING="Welcome")
    _greet_task()
    client = app.test_client()
    made = client.post(
        "/runlane/api/v1/tasks/greet/trigger",
        json={"payload": {"name": "Ada"}, "options": {"tags": ["web"]}},
        headers=AUTH,
    )
    assert made.status_code == 200, made.get_data(as_text=True)
    run_id = made.json["id"]
    run_until_idle(timeout=10)  # outside any app context: the middleware pushes the app's
    assert not flask.has_app_context()
    read = client.get(f"/runlane/api/v3/runs/{run_id}", headers=AUTH)
    assert read.status_code == 200
    assert read.json["status"] == "COMPLETED"
    assert read.json["output"] == {"hello": "Ada", "app": "shop", "greeting": "Welcome"}
    assert read.json["tags"] == ["web"]
    assert runlane.runs.retrieve(run_id).output["app"] == "shop"  # one runtime, the app's
    state = app.extensions["runlane"]
    assert isinstance(state, RunlaneState) and state.runtime is runtime_mod.peek()
    assert state.url_prefix == "/runlane" and app.config["RUNLANE_URL_PREFIX"] == "/runlane"


def test_errors_are_json(make_app) -> None:
    client = make_app().test_client()
    _greet_task()
    cases = [
        (client.get("/runlane/api/v3/runs/run_nope"), 401, "unauthorized"),
        (client.get("/runlane/api/v3/runs/run_nope", headers=AUTH), 404, "not_found"),
        (client.get("/runlane/nothing/here", headers=AUTH), 404, "no_route"),
        (client.get("/runlane", headers=AUTH), 404, "no_route"),
        (client.delete("/runlane/api/v1/tasks/greet/trigger", headers=AUTH), 405, None),
        (client.options("/runlane/healthz"), 405, "method_not_allowed"),
        (
            client.post("/runlane/api/v1/tasks/greet/trigger", data=b"{", headers=AUTH),
            400,
            "malformed_json",
        ),
        (
            client.post(
                "/runlane/api/v1/tasks/greet/trigger",
                json={"payload": {}, "options": {"delay": "soon"}},
                headers=AUTH,
            ),
            422,
            "invalid_option",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.mimetype == "application/json"
        if code is not None:
            assert response.json["error"]["code"] == code
    assert client.get("/runlane/healthz").json == {"ok": True}
    assert client.head("/runlane/healthz").status_code == 200
    assert client.get("/runlane/api/openapi.json").json["openapi"].startswith("3.")


def test_the_size_limit(make_app) -> None:
    client = make_app().test_client()
    _greet_task()
    big = b'{"payload": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    url = "/runlane/api/v1/tasks/greet/trigger"
    declared = client.post(url, data=big, headers=AUTH, content_type="application/json")
    assert declared.status_code == 413
    assert declared.json["error"]["code"] == "too_large"
    # chunked (no Content-Length): read up to the limit, then refused
    chunked = client.post(
        url,
        input_stream=io.BytesIO(big),
        headers={**AUTH, "content-type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413 and chunked.json["error"]["code"] == "too_large"
    small = client.post(url, json={"payload": {"name": "x" * 1000}}, headers=AUTH)
    assert small.status_code == 200


def test_flask_max_content_length_answers_json(make_app) -> None:
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    response = client.post(
        "/runlane/api/v1/tasks/greet/trigger", json={"payload": "x" * 2000}, headers=AUTH
    )
    assert response.status_code == 413 and response.json["error"]["code"] == "too_large"


def test_a_custom_prefix_and_raw_paths(make_app) -> None:
    app = make_app(RUNLANE_URL_PREFIX="/ops/jobs/")
    client = app.test_client()
    assert app.extensions["runlane"].url_prefix == "/ops/jobs"
    assert client.get("/ops/jobs/healthz").json == {"ok": True}
    assert client.get("/runlane/healthz").status_code == 404  # not there any more
    _greet_task().trigger({"name": "x"}, queue={"name": "emails/eu"})
    runlane.queues.pause("emails/eu")
    # %2F stays inside one path parameter
    queue = client.get("/ops/jobs/api/v1/queues/emails%2Feu", headers=AUTH)
    assert queue.status_code == 200, queue.get_data(as_text=True)
    assert queue.json["name"] == "emails/eu" and queue.json["paused"] is True


def test_the_app_keeps_its_routes_and_the_api_can_be_left_out(make_app) -> None:
    app = make_app("quiet", RUNLANE_API=False)

    @app.get("/runlane/mine")
    def mine() -> str:
        return "mine"

    client = app.test_client()
    assert client.get("/runlane/mine").get_data(as_text=True) == "mine"
    assert client.get("/runlane/healthz").status_code == 404
    assert app.extensions["runlane"].api is None
    assert "runlane" not in app.blueprints


def test_a_streamed_response_is_sent_chunk_by_chunk(make_app) -> None:
    app = make_app()
    api = app.extensions["runlane"].api
    produced_second = threading.Event()
    go_on = threading.Event()

    def stream() -> Iterator[bytes]:
        yield b"data: one\n\n"
        go_on.wait(10)
        produced_second.set()
        yield b"data: two\n\n"

    api.router.add(
        Route(
            "GET",
            "/stream",
            lambda request: ApiResponse(200, stream(), [("content-type", "text/event-stream")]),
            "stream",
            auth="none",
        )
    )
    response = app.test_client().get("/runlane/stream", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    assert next(chunks) == b"data: one\n\n"
    assert not produced_second.is_set()  # the first chunk came before the rest was made
    go_on.set()
    assert b"".join(chunks) == b"data: two\n\n"
    response.close()


# ---------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"RUNLANE_STORE": "memory://"}, "RUNLANE_STORE"),  # a typo of RUNLANE_STORE_URL
        ({"RUNLANE_CONCURRENCY_LIMIT": "many"}, "RUNLANE_CONCURRENCY_LIMIT"),
        ({"RUNLANE_CONCURRENCY_LIMIT": 0}, "RUNLANE_CONCURRENCY_LIMIT"),
        ({"RUNLANE_ENV": "production"}, "RUNLANE_ENV"),
        ({"RUNLANE_STORE_URL": "mysql://db/x"}, "RUNLANE_STORE_URL"),
        ({"RUNLANE_BROKER": "rabbit"}, "RUNLANE_BROKER"),
        ({"RUNLANE_URL_PREFIX": "runlane x"}, "RUNLANE_URL_PREFIX"),
        ({"RUNLANE_API": "sometimes"}, "RUNLANE_API"),
        ({"RUNLANE_LEASE_TIMEOUT": 0.1}, "RUNLANE_LEASE_TIMEOUT"),
        ({"RUNLANE_RETRIES": {"default": {"max_attempts": -1}}}, "RUNLANE_RETRIES"),
        ({"RUNLANE_MACHINE": "huge"}, "RUNLANE_MACHINE"),
    ],
)
def test_a_bad_setting_names_its_key(make_app, config: dict, named: str) -> None:
    app = make_app("bad", init=False, **config)
    with pytest.raises(ConfigurationError, match=named):
        Runlane(app)
    assert "runlane" not in app.extensions


def test_settings_reach_runlane(make_app, tmp_path: Path) -> None:
    app = make_app(
        "tuned",
        RUNLANE_ENV="prod",
        RUNLANE_CONCURRENCY_LIMIT="7",  # a string of digits, as from the environment
        RUNLANE_LEASE_TIMEOUT=12,
        RUNLANE_RETENTION="3d",
        RUNLANE_APP_CONTEXT="false",
    )
    rt = app.extensions["runlane"].runtime
    assert rt.environment == "prod"
    assert rt.settings.concurrency_limit == 7
    assert rt.settings.lease_timeout == 12
    assert rt.settings.retention == 3 * 86400
    assert rt.settings.store_url == f"sqlite:///{tmp_path}/tuned.db"
    assert "middleware" not in rt.settings.hooks  # RUNLANE_APP_CONTEXT = False


def test_one_runtime_a_process(make_app) -> None:
    first = make_app("first", GREETING="first")
    twin = flask.Flask("twin")
    twin.config.update(first.config)
    Runlane(twin)  # the same settings: the runtime is shared
    assert twin.extensions["runlane"].shared
    assert twin.extensions["runlane"].runtime is first.extensions["runlane"].runtime
    other = make_app("other", init=False)  # another store
    with pytest.raises(ConfigurationError, match="RUNLANE_STORE_URL") as info:
        Runlane(other)
    assert "'first'" in str(info.value)
    with pytest.raises(RuntimeError, match="already initialised"):
        Runlane(first)
    first.extensions["runlane"].close()  # closed: the next app configures runlane afresh
    assert runtime_mod.peek() is None
    Runlane(other)
    assert runtime_mod.peek() is other.extensions["runlane"].runtime


def test_remote_mode_mounts_no_api(make_app) -> None:
    remote = {"RUNLANE_API_URL": "http://127.0.0.1:9", "RUNLANE_SECRET_KEY": "rl_prod_" + "k" * 40}
    app = make_app("client", RUNLANE_STORE_URL=None, **remote)
    state = app.extensions["runlane"]
    assert state.api is None and "runlane" not in app.blueprints
    assert state.runtime.settings.api_url == "http://127.0.0.1:9"
    state.close()
    served = make_app("served", init=False, RUNLANE_STORE_URL=None, RUNLANE_API=True, **remote)
    with pytest.raises(ConfigurationError, match="RUNLANE_API"):
        Runlane(served)
    assert runtime_mod.peek() is None  # refused before anything was configured


def test_a_global_middleware_is_refused_while_the_app_context_is_pushed(make_app) -> None:
    app = make_app("mw", init=False)
    with pytest.raises(ConfigurationError, match="RUNLANE_APP_CONTEXT"):
        Runlane(app, middleware=lambda payload, ctx, call_next: call_next())
    seen: list[str] = []
    app.config["RUNLANE_APP_CONTEXT"] = False
    Runlane(app, on_success=lambda payload, output: seen.append(output["hello"]))

    @runlane.task(id="plain")
    def plain(payload: dict) -> dict:
        return {"hello": payload, "has_app": flask.has_app_context()}

    handle = plain.trigger("x")
    run_until_idle(timeout=10)
    assert runlane.runs.retrieve(handle).output == {"hello": "x", "has_app": False}
    assert seen == ["x"]


def test_async_tasks_see_the_app_context_too(make_app) -> None:
    make_app("async", GREETING="hi")

    @runlane.task(id="async-greet")
    async def greet(payload: dict) -> dict:
        return {"greeting": flask.current_app.config["GREETING"]}

    handle = greet.trigger({})
    run_until_idle(timeout=10)
    assert runlane.runs.retrieve(handle).output == {"greeting": "hi"}


# ---------------------------------------------------------------------- flask runlane ...
def test_flask_runlane_commands_use_the_apps_settings(make_app) -> None:
    from runlane.cli.flask import cli

    app = make_app("cli", GREETING="from the CLI")
    _greet_task()
    runner = app.test_cli_runner()
    made = runner.invoke(cli, ["trigger", "greet", "--payload", '{"name": "Bo"}'])
    assert made.exit_code == 0, made.output
    run_id = made.output.strip().splitlines()[-1]
    assert run_id.startswith("run_")
    run_until_idle(timeout=10)
    shown = runner.invoke(cli, ["runs", "show", run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"greeting": "from the CLI"' in shown.output
    listed = runner.invoke(cli, ["runs", "list"], env={"COLUMNS": "200"})
    assert run_id in listed.output
    refused = runner.invoke(cli, ["runs", "list", "--store", "sqlite:///elsewhere.db"])
    assert refused.exit_code == 2 and "--store" in refused.output
    unknown = runner.invoke(cli, ["runs", "show", "run_nope"])
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output
    without = flask.Flask("plain").test_cli_runner().invoke(cli, ["runs", "list"])
    assert without.exit_code == 2 and "does not use runlane" in without.output


def test_the_entry_point_is_installed() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="flask.commands")}
    assert found.get("runlane") == "runlane.cli.flask:cli"


# ---------------------------------------------------------------------- real processes
def _gunicorn() -> list[str]:
    here = Path(sys.executable).parent / "gunicorn"
    found = str(here) if here.exists() else shutil.which("gunicorn")
    return [found] if found else [sys.executable, "-m", "gunicorn"]


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _standard_webhook(body: bytes, msg_id: str) -> dict[str, str]:
    """A Standard Webhooks delivery signed with the example's secret."""
    secret = "whsec_ZXhhbXBsZSBzZWNyZXQsIGNoYW5nZSBtZQ=="  # examples/flask_app/app.py
    key = base64.b64decode(secret.removeprefix("whsec_"))
    t = str(int(time.time()))
    mac = hmac.new(key, f"{msg_id}.{t}.".encode() + body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": t,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def test_the_example_on_gunicorn_with_a_flask_runlane_worker(redis_url: str, tmp_path) -> None:
    prefix = unique_prefix()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNLANE_", "FLASK_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        RUNLANE_STORE_URL=f"{redis_url}?prefix={prefix}",
        RUNLANE_ENV="prod",
        RUNLANE_SECRET_KEY="rl_prod_" + "k" * 40,
        FLASK_REPORT_STEPS="3",
        FLASK_REPORT_STEP_SECONDS="0.1",
        FLASK_REPORT_TITLE='"Test report"',
    )
    base = f"http://127.0.0.1:{port}"
    web_log, worker_log = tmp_path / "gunicorn.log", tmp_path / "worker.log"
    web_args = [*_gunicorn(), "examples.flask_app.app:app", "--bind", f"127.0.0.1:{port}"]
    worker_args = [sys.executable, "-m", "flask", "--app", "examples.flask_app.app"]
    worker_args += ["runlane", "worker", "--concurrency", "2"]
    try:
        with (
            _process(web_args, env, web_log) as web,
            _process(worker_args, env, worker_log) as worker,
            httpx.Client(base_url=base, timeout=10) as client,
        ):

            def answers() -> bool:
                assert web.poll() is None, web_log.read_text()
                try:
                    return client.get("/runlane/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(answers, timeout=30, message="gunicorn")
            # the page: a form that triggers, then a page polling the run's progress
            assert "Build a report" in client.get("/").text
            made = client.post("/reports", data={"subject": "sales"})
            assert made.status_code == 303, made.text
            page = made.headers["location"]
            run_id = page.rsplit("/", 1)[-1]
            assert run_id in client.get(page).text

            seen: list[float] = []

            def final() -> dict | None:
                assert worker.poll() is None, worker_log.read_text()
                state = client.get(f"/reports/{run_id}/progress").json()
                seen.append(state["progress"])
                return state if state["final"] else None

            done = wait_for(final, timeout=30, interval=0.05, message="the run")
            assert done["status"] == "COMPLETED", (done, worker_log.read_text())
            # the task read the app's config through current_app: an app context
            assert done["output"] == {
                "title": "Test report: sales",
                "sections": 3,
                "app": "examples.flask_app.app",
            }
            assert seen == sorted(seen) and seen[-1] == 1.0

            # the management API through the blueprint, on gunicorn
            headers = {"authorization": "Bearer rl_prod_" + "k" * 40}
            api = client.post(
                "/runlane/api/v1/tasks/build-report/trigger",
                json={"payload": {"subject": "api"}},
                headers=headers,
            )
            assert api.status_code == 200, api.text
            api_id = api.json()["id"]

            def completed() -> dict | None:
                run = client.get(f"/runlane/api/v3/runs/{api_id}", headers=headers).json()
                return run if run["status"] == "COMPLETED" else None

            run = wait_for(completed, timeout=30, message="the API's run")
            assert run["output"]["title"] == "Test report: api"
            queue = client.get("/runlane/api/v1/queues/task%2Fbuild-report", headers=headers)
            assert queue.status_code == 200 and queue.json()["name"] == "task/build-report"
            assert client.get("/runlane/api/v3/runs/run_x").status_code == 401

            # the webhook endpoint: a signed delivery triggers, a redelivery answers the same
            # run, a forged one nothing
            body = json.dumps({"type": "invoice.paid", "data": {"id": "in_1"}}).encode()
            signed = _standard_webhook(body, "msg_flask_1")
            first = client.post("/webhooks/billing", content=body, headers=signed)
            assert first.status_code == 200, first.text
            again = client.post("/webhooks/billing", content=body, headers=signed).json()
            assert again == {"id": first.json()["id"], "isCached": True}
            forged = {**signed, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
            assert client.post("/webhooks/billing", content=body, headers=forged).status_code == 401
            hook_id = first.json()["id"]

            def handled() -> dict | None:
                run = client.get(f"/runlane/api/v3/runs/{hook_id}", headers=headers).json()
                return run if run["status"] == "COMPLETED" else None

            run = wait_for(handled, timeout=30, message="the webhook's run")
            assert run["output"] == {"handled": "invoice.paid", "shop": "Test report"}
    finally:
        delete_redis_prefix(redis_url, prefix)
