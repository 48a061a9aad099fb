"""The FastAPI integration: the router (Trigger.dev's routes mounted under a prefix, through
FastAPI's TestClient), the lifespan's in-process worker, the ``runlane_client`` dependency,
and the example app served by uvicorn as users start it, on Redis."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

import runlane
from runlane.config import build_runtime
from runlane.core import runtime as runtime_mod
from runlane.errors import InvalidOptionError
from runlane.frameworks.fastapi import (
    RunlaneClient,
    RunlaneDep,
    build_router,
    lifespan,
    lifespan_with_worker,
    router,
    runlane_client,
)
from runlane.frameworks.http.api import MAX_BODY
from tests.adapters import REPO, delete_redis_prefix, unique_prefix
from tests.helpers import wait_for
from tests.http_support import free_port

with warnings.catch_warnings():  # starlette asks for httpx2 when its test client uses httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.timeout(120)


@runlane.task(id="fastapi-double")
def double(payload: dict) -> dict:
    return {"twice": payload["n"] * 2}


@pytest.fixture
def key(tmp_path: Path) -> Iterator[str]:
    """A runtime on a SQLite file and a secret key made in its store."""
    runlane.configure(store=f"sqlite:///{tmp_path}/fastapi.db")
    made, _ = runlane.auth.create_key("fastapi tests")
    yield made
    old = runtime_mod.install(None)
    if old is not None:
        old.close()


def make_app(**kw: Any) -> FastAPI:
    app = FastAPI(**kw)
    app.include_router(router, prefix="/runlane")

    @app.post("/double/{n}")
    async def trigger_double(n: int, rl: RunlaneDep) -> dict:
        handle = await rl.tasks.aio_trigger("fastapi-double", {"n": n}, tags=["web"])
        run = await rl.runs.aio_retrieve(handle)
        return {"id": handle.id, "status": run.status}

    @app.get("/runs/{run_id}")
    def read(run_id: str, rl: RunlaneClient = Depends(runlane_client)) -> dict:
        run = rl.runs.retrieve(run_id)
        return {"status": run.status, "output": run.output}

    return app


def _completed(client: Any, path: str, **kw: Any) -> dict:
    def done() -> dict | None:
        run = client.get(path, **kw).json()
        return run if run["status"] == "COMPLETED" else None

    return wait_for(done, timeout=30, interval=0.05, message=f"{path} to complete")


def test_trigger_through_the_mounted_routes_with_the_lifespan_worker(key: str) -> None:
    auth = {"authorization": f"Bearer {key}"}
    with TestClient(make_app(lifespan=lifespan)) as client:
        made = client.post(
            "/runlane/api/v1/tasks/fastapi-double/trigger",
            json={"payload": {"n": 21}, "options": {"tags": ["api"]}},
            headers=auth,
        )
        assert made.status_code == 200, made.text
        run_id = made.json()["id"]
        run = _completed(client, f"/runlane/api/v3/runs/{run_id}", headers=auth)
        assert run["output"] == {"twice": 42} and run["tags"] == ["api"]
        # runlane's own routes and the OpenAPI document, below the same prefix
        assert client.get("/runlane/api/openapi.json").json()["openapi"] == "3.1.0"
        assert client.get("/runlane/healthz").json() == {"ok": True}
        # a path parameter with an encoded "/" stays one segment
        queue = client.get("/runlane/api/v1/queues/task%2Ffastapi-double", headers=auth)
        assert queue.status_code == 200 and queue.json()["name"] == "task/fastapi-double"
        listed = client.get("/runlane/api/v1/runs", params={"filter[tag]": "api"}, headers=auth)
        assert [r["id"] for r in listed.json()["data"]] == [run_id]
        # the dependency, in an async and in a sync endpoint
        mine = client.post("/double/4").json()
        assert mine["status"] in ("QUEUED", "EXECUTING", "COMPLETED")
        done = _completed(client, f"/runs/{mine['id']}")
        assert done["output"] == {"twice": 8}
    assert runlane.runs.retrieve(run_id).status == "COMPLETED"  # the runtime stays configured


def test_json_errors(key: str) -> None:
    client = TestClient(make_app())
    auth = {"authorization": f"Bearer {key}"}
    missing = client.get("/runlane/api/v1/queues")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.get("/runlane/api/v1/queues", headers={"authorization": "Bearer rl_dev_x"})
    assert wrong.status_code == 401
    no_route = client.get("/runlane/api/v9/nothing", headers=auth)
    assert (no_route.status_code, no_route.json()["error"]["code"]) == (404, "no_route")
    method = client.delete("/runlane/healthz")
    assert method.status_code == 405 and method.headers["allow"] == "GET"
    malformed = client.post(
        "/runlane/api/v1/tasks/fastapi-double/trigger", content=b"{not json", headers=auth
    )
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "malformed_json")
    not_found = client.get("/runlane/api/v3/runs/run_doesnotexist", headers=auth)
    assert not_found.status_code == 404 and not_found.json()["error"]["code"] == "not_found"
    assert client.get("/elsewhere").status_code == 404  # the app's own 404, not the API's


def test_size_limit(key: str) -> None:
    client = TestClient(make_app())
    auth = {"authorization": f"Bearer {key}"}
    path = "/runlane/api/v1/tasks/fastapi-double/trigger"
    big = client.post(path, content=b"x" * (MAX_BODY + 1), headers=auth)
    assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
    # a declared length over the limit is refused before the body is read
    read: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(4):
            read.append(1)
            yield b"x" * (2 * 1024 * 1024)

    declared = client.post(
        path, content=body(), headers={**auth, "content-length": str(MAX_BODY + 1)}
    )
    assert declared.status_code == 413
    # without a length (chunked), the body is refused once it passes the limit
    read.clear()
    chunked = client.post(path, content=body(), headers=auth)
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "too_large"
    ok = client.post(path, json={"payload": {"n": 1}}, headers=auth)
    assert ok.status_code == 200


def test_the_api_follows_configure(key: str, tmp_path: Path) -> None:
    """Built on first use over the configured runtime, rebuilt when configure() replaces it."""
    client = TestClient(make_app())
    auth = {"authorization": f"Bearer {key}"}
    assert client.get("/runlane/api/v1/queues", headers=auth).status_code == 200
    runlane.configure(store=f"sqlite:///{tmp_path}/other.db")
    assert client.get("/runlane/api/v1/queues", headers=auth).status_code == 401  # not its key
    other, _ = runlane.auth.create_key("other")
    made = client.post(
        "/runlane/api/v1/tasks/fastapi-double/trigger",
        json={"payload": {"n": 1}},
        headers={"authorization": f"Bearer {other}"},
    )
    assert made.status_code == 200
    assert runlane.runs.retrieve(made.json()["id"]).payload == {"n": 1}


def test_a_router_over_its_own_runtime_and_key(tmp_path: Path, key: str) -> None:
    rt = build_runtime(store=f"sqlite:///{tmp_path}/own.db")
    try:
        own_key, _ = rt.ops.create_key("own")
        app = FastAPI()
        app.include_router(build_router(rt), prefix="/jobs")
        client = TestClient(app)
        made = client.post(
            "/jobs/api/v1/tasks/fastapi-double/trigger",
            json={"payload": {"n": 2}},
            headers={"authorization": f"Bearer {own_key}"},
        )
        assert made.status_code == 200, made.text
        assert rt.ops.retrieve_run(made.json()["id"]).payload == {"n": 2}
        refused = client.get("/jobs/api/v1/queues", headers={"authorization": f"Bearer {key}"})
        assert refused.status_code == 401  # the configured runtime's key is not this store's
    finally:
        rt.close()


def test_remote_mode_is_refused_clearly(key: str) -> None:
    runlane.configure(api_url="http://127.0.0.1:9", secret_key=key)
    client = TestClient(make_app())
    answer = client.get("/runlane/api/v1/queues", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "remote_mode"
    assert "RUNLANE_API_URL" in answer.json()["error"]["message"]


def test_the_lifespan_composes_and_configures_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNLANE_STORE_URL", f"sqlite:///{tmp_path}/env.db")
    old = runtime_mod.install(None)
    if old is not None:
        old.close()
    events: list[str] = []
    runlane_lifespan = lifespan_with_worker(2, queues=["task/fastapi-double"])

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("app up")
        async with runlane_lifespan(app):
            events.append("runlane up")
            yield
        events.append("runlane down")

    app = make_app(lifespan=app_lifespan)
    with TestClient(app) as client:
        rt = runtime_mod.peek()
        assert rt is not None and rt.settings.store_url == f"sqlite:///{tmp_path}/env.db"
        run_id = client.post("/double/5").json()["id"]
        assert _completed(client, f"/runs/{run_id}")["output"] == {"twice": 10}
    assert events == ["app up", "runlane up", "runlane down"]
    assert runtime_mod.peek() is None and rt.closed  # what the lifespan configured, it closed
    with pytest.raises(InvalidOptionError):
        lifespan_with_worker(0)


def test_the_dependency_can_be_overridden(key: str) -> None:
    app = make_app()

    def fake() -> Any:
        run = SimpleNamespace(status="COMPLETED", output="fake")
        return SimpleNamespace(runs=SimpleNamespace(retrieve=lambda run_id: run))

    app.dependency_overrides[runlane_client] = fake
    assert TestClient(app).get("/runs/run_x").json() == {"status": "COMPLETED", "output": "fake"}


def test_streamed_responses_are_streamed_and_closed() -> None:
    from runlane.frameworks import fastapi as integration
    from runlane.frameworks.http.api import Response

    closed: list[bool] = []

    def events() -> Iterator[bytes]:
        try:
            yield b"data: 1\n\n"
            yield b"data: 2\n\n"
        finally:
            closed.append(True)

    app = FastAPI()

    @app.get("/stream")
    async def stream() -> Any:
        response = Response(200, events(), [("content-type", "text/event-stream")])
        return integration._starlette_response(response)

    answer = TestClient(app).get("/stream")
    assert answer.text == "data: 1\n\ndata: 2\n\n"
    assert answer.headers["content-type"] == "text/event-stream"
    assert closed == [True]


# ---------------------------------------------------------------------- a real server
def test_the_example_app_on_uvicorn_with_redis(redis_url: str, tmp_path: Path) -> None:
    """``uvicorn examples.fastapi_app.main:app`` as users start it: the lifespan's worker
    executes a report triggered from the page, and a run triggered through /runlane."""
    prefix = unique_prefix()
    store = f"{redis_url}?prefix={prefix}"
    rt = build_runtime(store=store)
    try:
        key, _ = rt.ops.create_key("example")
    finally:
        rt.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}
    env.update(
        RUNLANE_STORE_URL=store,
        RUNLANE_SECRET_KEY=key,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(REPO),
        GITHUB_WEBHOOK_SECRET="github secret",
    )
    port = free_port()
    log = tmp_path / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app.main:app", "--port",
             str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:

            def up() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return client.get("/").status_code == 200
                return False

            wait_for(up, timeout=60, interval=0.1, message=f"uvicorn\n{log.read_text()}")
            assert "Build a report" in client.get("/").text
            made = client.post("/reports", data={"title": "Q3 <numbers>"})
            assert made.status_code == 303, made.text
            page_path = made.headers["location"]
            assert page_path.startswith("/reports/run_")
            first = client.get(page_path).text
            assert "Q3 &lt;numbers&gt;" in first and 'http-equiv="refresh"' in first

            def finished() -> str | None:
                text = client.get(page_path).text
                return text if "COMPLETED" in text else None

            final = wait_for(finished, timeout=30, interval=0.2, message="the report")
            assert "Done: 5 pages." in final and "100%" in final
            assert 'http-equiv="refresh"' not in final
            assert client.get("/reports/run_nonesuch").status_code == 404
            # the management API under /runlane, with the key
            auth = {"authorization": f"Bearer {key}"}
            run_id = page_path.rsplit("/", 1)[1]
            run = client.get(f"/runlane/api/v3/runs/{run_id}", headers=auth).json()
            assert run["output"] == {"title": "Q3 <numbers>", "pages": 5}
            assert run["metadata"]["progress"] == 1.0
            api = client.post(
                "/runlane/api/v1/tasks/build-report/trigger",
                json={"payload": {"title": "via API", "steps": 1, "step_seconds": 0}},
                headers=auth,
            )
            assert api.status_code == 200, api.text
            # the webhook endpoint: signed as GitHub signs, a redelivery answers the same run
            body = json.dumps({"action": "opened", "repository": {"name": "runlane"}}).encode()
            mac = hmac.new(b"github secret", body, hashlib.sha256).hexdigest()
            hook = {
                "x-hub-signature-256": f"sha256={mac}",
                "x-github-delivery": "delivery-1",
                "x-github-event": "issues",
                "content-type": "application/json",
            }
            first_hook = client.post("/webhooks/github", content=body, headers=hook)
            again = client.post("/webhooks/github", content=body, headers=hook)
            assert first_hook.status_code == 200, first_hook.text
            assert again.json() == {**first_hook.json(), "isCached": True}
            forged = client.post(
                "/webhooks/github",
                content=body,
                headers={**hook, "x-hub-signature-256": "sha256=00"},
            )
            assert forged.status_code == 401
            hook_run = first_hook.json()["id"]

            def hook_done() -> dict | None:
                seen = client.get(f"/runlane/api/v3/runs/{hook_run}", headers=auth).json()
                return seen if seen["status"] == "COMPLETED" else None

            handled = wait_for(hook_done, timeout=30, interval=0.2, message="the webhook's run")
            assert handled["output"] == {"event": "issues", "repository": "runlane"}
            _completed(client, f"/runlane/api/v3/runs/{api.json()['id']}", headers=auth)
            assert client.get("/runlane/api/v1/queues").status_code == 401
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        text = log.read_text()
        assert "Application shutdown complete" in text, text
        assert "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        delete_redis_prefix(redis_url, prefix)
