"""Realtime over HTTP: the SSE routes on a real server (SQLite and Redis): states in order,
tags, batches, every run, streams, resume with Last-Event-ID, heartbeats and scope checks;
Server-Sent Events streamed by every server (uvicorn, a WSGI server, Flask, FastAPI, Django
ASGI) without buffering and closed when the client goes away; remote mode's subscriptions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

import runlane
from runlane.api import auth
from runlane.core import operations
from runlane.frameworks.http import routes
from runlane.frameworks.http.api import Request, Response, Router
from runlane.frameworks.http.app import build_api
from runlane.frameworks.http.servers import AsgiApp, WsgiApp
from runlane.frameworks.http.sse import HEADERS, EventStream
from runlane.sdk import sse
from tests.http_support import Server, free_port, serving
from tests.remote_support import serving_app

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------- helpers
def read_events(
    response: httpx.Response, *, until: str = sse.END, timeout: float = 20
) -> tuple[list[sse.Event], int]:
    """The events of an SSE response up to (with) the first ``until``, and the heartbeats."""
    decoder, events, pings = sse.Decoder(), [], 0
    deadline = time.monotonic() + timeout
    for line in response.iter_lines():
        if line.startswith(":"):
            pings += 1
        event = decoder.feed(line)
        if event is not None:
            events.append(event)
            if event.event == until:
                break
        assert time.monotonic() < deadline, f"no {until!r} event in {timeout} s: {events}"
    return events, pings


class Probe:
    """A test-only SSE route: ``/probe/sse?n=N`` sends N events 20 ms apart (a heartbeat
    every 5 ms), ``n=0`` never ends; ``closed`` is set when a stream is closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.router = Router()
        self.router.route("GET", "/probe/sse", name="probeSse", auth="none")(self.handle)

    def handle(self, request: Request) -> Response:
        count = int(request.arg("n") or "3")

        async def events() -> AsyncIterator[bytes]:
            i = 0
            while count == 0 or i < count:
                await asyncio.sleep(0.02)
                i += 1
                yield sse.encode(sse.RUN, {"i": i}, id=i)

        body = EventStream(events(), heartbeat=0.005, on_close=self.closed.set)
        return Response(200, body, list(HEADERS))


def check_probe(base: str, probe: Probe) -> None:
    """Events arrive one by one (not buffered) with heartbeats; a dropped client closes it."""
    with httpx.Client(base_url=base, timeout=20) as client:
        with client.stream("GET", "/probe/sse?n=3") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            events, pings = read_events(response)
        assert [e.event for e in events] == ["run", "run", "run", "end"]
        assert [e.json() for e in events[:3]] == [{"i": 1}, {"i": 2}, {"i": 3}]
        assert events[2].id == "3" and pings > 0
        probe.closed.clear()
        with client.stream("GET", "/probe/sse?n=0") as response:  # endless: the client leaves
            read_events(response, until=sse.RUN)
        assert probe.closed.wait(10), "the stream was not closed when the client went away"


# ---------------------------------------------------------------------- every server
@pytest.mark.sqlite_only
def test_sse_through_the_asgi_app(rt: runlane.Runtime) -> None:
    probe = Probe()
    with serving_app(AsgiApp(build_api(rt, routers=[probe.router]))) as url:
        check_probe(url, probe)


@contextmanager
def wsgi_serving(app: Any) -> Iterator[str]:
    """werkzeug's threaded server in a thread on a free port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.sqlite_only
def test_sse_through_the_wsgi_app(rt: runlane.Runtime) -> None:
    probe = Probe()
    with wsgi_serving(WsgiApp(build_api(rt, routers=[probe.router]))) as url:
        check_probe(url, probe)


@pytest.mark.sqlite_only
def test_sse_through_flask(rt: runlane.Runtime, tmp_path, monkeypatch) -> None:
    import flask

    from runlane.frameworks.flask import Runlane

    probe = Probe()
    monkeypatch.setattr(routes, "ROUTERS", [probe.router])
    app = flask.Flask("sse")
    app.config.update(RUNLANE_STORE_URL=rt.settings.store_url)
    Runlane(app)
    with wsgi_serving(app) as url:
        check_probe(url + "/runlane", probe)


@pytest.mark.sqlite_only
def test_sse_through_fastapi(rt: runlane.Runtime, monkeypatch) -> None:
    from fastapi import FastAPI

    from runlane.frameworks.fastapi import build_router

    probe = Probe()
    monkeypatch.setattr(routes, "ROUTERS", [probe.router])
    app = FastAPI()
    app.include_router(build_router(rt), prefix="/runlane")
    with serving_app(app) as url:
        check_probe(url + "/runlane", probe)


def test_the_decoder_follows_the_standard() -> None:
    decoder = sse.Decoder()
    lines = ["retry: 500", ": ping", "id: 7", "event: run", 'data: {"a":', "data: 1}", ""]
    lines += ["data: x", "", "", "event: end", "data: {}", ""]
    events = list(decoder.events(lines))
    assert events == [
        sse.Event("run", '{"a":\n1}', "7"),
        sse.Event("message", "x", "7"),
        sse.Event("end", "{}", "7"),
    ]
    assert decoder.retry == 500 and decoder.last_id == "7"
    assert (
        sse.encode("chunk", {"k": "a\nb"}, id=3) == b'id: 3\nevent: chunk\ndata: {"k":"a\\nb"}\n\n'
    )


# ---------------------------------------------------------------------- the routes
class Events:
    """An SSE response read event by event (heartbeats counted)."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        self.response = response
        self.pings = 0
        self.decoder = sse.Decoder()
        self._lines = response.iter_lines()

    def next(self, timeout: float = 20) -> sse.Event:
        deadline = time.monotonic() + timeout
        for line in self._lines:
            if line.startswith(":"):
                self.pings += 1
            event = self.decoder.feed(line)
            if event is not None:
                return event
            assert time.monotonic() < deadline, "no event in time"
        raise AssertionError("the stream ended without an event")

    def until(self, done: Any, timeout: float = 20) -> list[sse.Event]:
        """Events up to the first for which ``done(event)`` is true (with it)."""
        seen: list[sse.Event] = []
        deadline = time.monotonic() + timeout
        while not seen or not done(seen[-1]):
            seen.append(self.next(max(0.1, deadline - time.monotonic())))
        return seen


def statuses(events: list[sse.Event]) -> list[str]:
    return [e.json()["status"] for e in events if e.event == sse.RUN]


@pytest.fixture
def served(rt: runlane.Runtime) -> Iterator[Server]:
    key, _ = operations.create_key(rt, "realtime tests")
    with serving(rt, key) as server:
        yield server


@pytest.fixture
def start_worker(rt: runlane.Runtime) -> Iterator[Any]:
    workers: list[runlane.Worker] = []

    def start() -> runlane.Worker:
        worker = runlane.Worker(concurrency=4, fetch_timeout=0.1)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def gated_task(task_id: str = "sse-gated") -> tuple[Any, threading.Event]:
    gate = threading.Event()

    @runlane.task(id=task_id)
    def gated(payload: dict) -> dict:
        assert gate.wait(20)
        return {"ok": True}

    return gated, gate


def test_a_run_streams_its_states_in_order_and_resumes(served: Server, start_worker) -> None:
    gated, gate = gated_task()
    handle = gated.trigger({"secret": 1})
    url = f"/realtime/v1/runs/{handle.id}"
    with served.client() as client:
        with client.stream("GET", url) as response:
            events = Events(response)
            first = events.next()
            assert first.event == "run" and first.json()["status"] == "QUEUED"
            assert first.json()["payload"] == {"secret": 1}  # a secret key reads it all
            start_worker()
            seen = events.until(lambda e: e.json()["status"] == "EXECUTING")
            cursor = seen[-1].id
        # dropped mid-run; the run completes meanwhile; resuming misses nothing
        gate.set()
        runlane.runs.poll(handle.id, timeout=20, poll_interval_ms=20)
        headers = {"last-event-id": str(cursor)}
        with client.stream("GET", url, headers=headers) as response:
            resumed = Events(response).until(lambda e: e.event == sse.END)
    assert statuses(resumed)[-1] == "COMPLETED" and "QUEUED" not in statuses(resumed)
    assert "EXECUTING" not in statuses(resumed)[:-1] or statuses(resumed)[0] == "EXECUTING"
    assert [int(e.id) for e in resumed[:-1]] == sorted(int(e.id) for e in resumed[:-1])
    assert all(int(e.id) > int(cursor) for e in resumed if e.event == sse.RUN)
    assert resumed[-1].event == sse.END and resumed[-1].json() == {}


def test_tags_batches_and_heartbeats(served: Server, start_worker, monkeypatch) -> None:
    monkeypatch.setenv("RUNLANE_SSE_HEARTBEAT", "0.05")

    @runlane.task(id="sse-quick")
    def quick(payload: dict) -> dict:
        return payload

    a = quick.trigger({"n": 1}, tags=["user-a"])
    b = quick.trigger({"n": 2}, tags=["user-a", "other"])
    quick.trigger({"n": 3}, tags=["user-b"])
    batch = quick.batch_trigger([{"payload": {"n": 4}}, {"payload": {"n": 5}}])
    with served.client() as client:
        with (
            client.stream("GET", "/realtime/v1/runs?tags=user-a,nobody") as tagged,
            client.stream("GET", f"/realtime/v1/batches/{batch.batch_id}") as batched,
        ):
            tag_events, batch_events = Events(tagged), Events(batched)
            tag_events.until(lambda e: True)
            start_worker()
            done: set[str] = set()

            def both_done(event: sse.Event) -> bool:
                if event.json()["status"] == "COMPLETED":
                    done.add(event.json()["id"])
                return done == {a.id, b.id}

            tag_seen = tag_events.until(both_done)
            batch_seen = batch_events.until(lambda e: e.event == sse.END)
        assert {e.json()["id"] for e in tag_seen} == {a.id, b.id}  # not user-b's run
        finals = {e.json()["id"] for e in batch_seen if e.event == "run"}
        assert finals == {r.id for r in batch.runs}
        last = {e.json()["id"]: e.json()["status"] for e in batch_seen if e.event == "run"}
        assert set(last.values()) == {"COMPLETED"}
        # heartbeats: nothing happens on a tag nobody uses, and comments still come
        with client.stream("GET", "/realtime/v1/runs?tags=nobody") as idle:
            lines = idle.iter_lines()
            pings = [line for line, _ in zip(lines, range(6), strict=False) if line == ": ping"]
            assert len(pings) >= 2


def test_scopes_of_public_tokens(served: Server, start_worker) -> None:
    @runlane.task(id="sse-scoped")
    def scoped(payload: dict) -> dict:
        return payload

    run_a = scoped.trigger({"secret": "a"}, tags=["x"])
    run_b = scoped.trigger({"secret": "b"}, tags=["y"])
    batch = scoped.batch_trigger([{"payload": {}}])

    def token(scopes: dict[str, Any]) -> str:
        return auth.create_public_token(scopes={"read": scopes}, secret_key=served.key)

    def status(path: str, key: str | None, headers: dict[str, str] | None = None) -> int:
        with served.client(key) as client, client.stream("GET", path, headers=headers) as response:
            if response.status_code == 200:
                Events(response).next()
            return response.status_code

    for_a = token({"runs": [run_a.id]})
    for_x = token({"tags": ["x"]})
    for_batch = token({"batch": batch.batch_id})
    assert status(f"/realtime/v1/runs/{run_a.id}", for_a) == 200
    assert status(f"/realtime/v1/runs/{run_b.id}", for_a) == 403
    assert status("/realtime/v1/runs/run_doesnotexist", for_a) == 403  # no existence leak
    assert status("/realtime/v1/runs?tags=x", for_a) == 403
    assert status(f"/realtime/v1/streams/{run_b.id}/llm", for_a) == 403
    assert status("/realtime/v1/runs?tags=x", for_x) == 200
    assert status(f"/realtime/v1/runs/{run_a.id}", for_x) == 200  # run A has tag x
    assert status("/realtime/v1/runs?tags=y", for_x) == 403
    assert status("/realtime/v1/runs?tags=x,y", for_x) == 403
    assert status(f"/realtime/v1/batches/{batch.batch_id}", for_batch) == 200
    assert status(f"/realtime/v1/batches/{batch.batch_id}", for_x) == 403
    assert status(f"/realtime/v1/runs/{run_a.id}", for_batch) == 403
    assert status(f"/realtime/v1/runs/{run_a.id}", "") == 401
    assert status("/realtime/v1/runs/run_doesnotexist", None) == 404
    assert status("/realtime/v1/batches/batch_doesnotexist", None) == 404
    assert status("/realtime/v1/runs?tags=" + ",".join(f"t{i}" for i in range(11)), None) == 422
    assert status("/realtime/v1/runs?tags=" + "t" * 65, None) == 422
    assert status("/realtime/v1/runs?tags=", None) == 422
    assert status(f"/realtime/v1/runs/{run_a.id}", None, {"last-event-id": "x"}) == 422
    # a token never reads a payload, over SSE as over the retrieve route
    with (
        served.client(for_a) as client,
        client.stream("GET", f"/realtime/v1/runs/{run_a.id}") as response,
    ):
        event = Events(response).next()
    assert event.json()["id"] == run_a.id and event.json()["payload"] is None


def test_every_run_its_filters_and_who_may_read_it(served: Server, start_worker) -> None:
    @runlane.task(id="sse-every-a")
    def task_a(payload: dict) -> dict:
        return payload

    @runlane.task(id="sse-every-b")
    def task_b(payload: dict) -> dict:
        return payload

    runs = [task_a.trigger({"n": 1}, tags=["x"]), task_b.trigger({"n": 2}, tags=["y"])]
    runs.append(task_a.trigger({"n": 3}))
    done: set[str] = set()

    def all_done(event: sse.Event) -> bool:
        if event.json()["status"] == "COMPLETED":
            done.add(event.json()["id"])
        return done == {r.id for r in runs}

    with (
        served.client() as client,
        client.stream("GET", "/realtime/v1/runs") as every,
        client.stream("GET", "/realtime/v1/runs?task=sse-every-b&status=COMPLETED") as only,
    ):
        every_events, only_events = Events(every), Events(only)
        every_events.next()  # streaming: the latest runs come first
        start_worker()
        seen = every_events.until(all_done)  # runs of every tag, and of none
        b_seen = only_events.until(lambda e: e.json()["status"] == "COMPLETED")
    assert all(e.json()["payload"] is not None for e in seen)
    assert {(e.json()["id"], e.json()["status"]) for e in b_seen} == {(runs[1].id, "COMPLETED")}

    def token(scopes: dict[str, Any]) -> str:
        return auth.create_public_token(scopes={"read": scopes}, secret_key=served.key)

    def status(path: str, key: str | None) -> int:
        with served.client(key) as client, client.stream("GET", path) as response:
            if response.status_code == 200:
                assert Events(response).next().json()["payload"] is None  # a token: never
            return response.status_code

    for_b = token({"tasks": ["sse-every-b"]})
    assert status("/realtime/v1/runs", token({"tags": ["x", "y"]})) == 403
    assert status("/realtime/v1/runs", token({"runs": [r.id for r in runs]})) == 403
    assert status("/realtime/v1/runs", for_b) == 403
    assert status("/realtime/v1/runs?task=sse-every-b,sse-every-a", for_b) == 403
    assert status("/realtime/v1/runs?task_identifier=sse-every-b", for_b) == 200
    assert status("/realtime/v1/runs", token({"runs": True})) == 200  # read:runs: every run
    assert status("/realtime/v1/runs?status=NOPE", None) == 422
    assert status("/realtime/v1/runs?task=" + ",".join(f"t{i}" for i in range(11)), None) == 422
    assert status("/realtime/v1/runs?task=not%20a%20task", None) == 422
    assert status("/realtime/v1/runs?tags=x&task=sse-every-a", None) == 422


def test_streams_over_sse(served: Server, start_worker) -> None:
    @runlane.task(id="sse-llm")
    def llm(payload: dict) -> str:
        return "".join(runlane.metadata.stream("llm", ["hel", "lo", "!"]))

    handle = llm.trigger({})
    start_worker()
    with served.client() as client:
        with client.stream("GET", f"/realtime/v1/runs/{handle.id}?streams=true") as response:
            events = Events(response).until(lambda e: e.event == sse.END)
        with client.stream("GET", f"/realtime/v1/streams/{handle.id}/llm") as response:
            only = Events(response).until(lambda e: e.event == sse.END)
    chunks = [e.json() for e in events if e.event == sse.CHUNK]
    assert chunks == [{"key": "llm", "chunk": c, "run_id": handle.id} for c in ["hel", "lo", "!"]]
    assert statuses(events)[-1] == "COMPLETED"
    assert [e.event for e in only] == ["chunk", "chunk", "chunk", "end"]
    assert [e.json()["chunk"] for e in only[:3]] == ["hel", "lo", "!"]
    # resuming after the first chunk gives the rest only
    with served.client() as client:
        headers = {"last-event-id": only[0].id}
        with client.stream("GET", f"/realtime/v1/streams/{handle.id}/llm", headers=headers) as r:
            rest = Events(r).until(lambda e: e.event == sse.END)
    assert [e.json()["chunk"] for e in rest[:-1]] == ["lo", "!"]


# ---------------------------------------------------------------------- each framework
def canceled_over_sse(base: str, key: str, task_id: str) -> None:
    """One short case: a QUEUED run's SSE, then it is canceled: CANCELED and the end."""

    @runlane.task(id=task_id)
    def never(payload: dict) -> None:
        return None

    handle = never.trigger({})
    auth_header = {"authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=base, headers=auth_header, timeout=20) as client,
        client.stream("GET", f"/realtime/v1/runs/{handle.id}") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events(response)
        assert events.next().json()["status"] == "QUEUED"
        runlane.runs.cancel(handle.id)
        rest = events.until(lambda e: e.event == sse.END)
    assert statuses(rest) == ["CANCELED"]


KEY = "rl_dev_" + "s" * 40


@pytest.mark.sqlite_only
def test_flask_serves_the_realtime_routes(tmp_path) -> None:
    import flask

    from runlane.frameworks.flask import Runlane

    app = flask.Flask("sse")
    app.config.update(RUNLANE_STORE_URL=f"sqlite:///{tmp_path}/f.db", RUNLANE_SECRET_KEY=KEY)
    Runlane(app)
    try:
        with wsgi_serving(app) as url:
            canceled_over_sse(url + "/runlane", KEY, "sse-flask")
    finally:
        app.extensions["runlane"].close()


@pytest.mark.sqlite_only
def test_fastapi_serves_the_realtime_routes(rt: runlane.Runtime) -> None:
    from fastapi import FastAPI

    from runlane.frameworks.fastapi import build_router

    app = FastAPI()
    app.include_router(build_router(rt, secret_key=KEY), prefix="/runlane")
    with serving_app(app) as url:
        canceled_over_sse(url + "/runlane", KEY, "sse-fastapi")


DJANGO_SETTINGS = """
SECRET_KEY = "sse-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "sse_urls"
INSTALLED_APPS = ["runlane.frameworks.django"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
RUNLANE = {{"STORE_URL": {store!r}, "SECRET_KEY": {key!r}}}
USE_TZ = True
"""
DJANGO_URLS = """
from django.urls import include, path
urlpatterns = [path("runlane/", include("runlane.frameworks.django.urls"))]
"""
DJANGO_ASGI = """
from django.core.asgi import get_asgi_application
application = get_asgi_application()
"""


@pytest.mark.sqlite_only
def test_django_asgi_serves_the_realtime_routes(rt: runlane.Runtime, tmp_path) -> None:
    pytest.importorskip("django")
    import os
    import subprocess
    import sys

    (tmp_path / "sse_settings.py").write_text(
        DJANGO_SETTINGS.format(db=str(tmp_path / "dj.db"), store=rt.settings.store_url, key=KEY)
    )
    (tmp_path / "sse_urls.py").write_text(DJANGO_URLS)
    (tmp_path / "sse_asgi.py").write_text(DJANGO_ASGI)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sse_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()]),
    }
    env.pop("RUNLANE_STORE_URL", None)
    command = [sys.executable, "-m", "uvicorn", "sse_asgi:application", "--port", str(port)]
    log = tmp_path / "uvicorn.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*command, "--log-level", "warning"], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}/runlane"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        canceled_over_sse(url, KEY, "sse-django")
    finally:
        server.terminate()
        server.wait(10)


# ---------------------------------------------------------------------- remote mode
class CutOnce:
    """In front of a server: the first realtime response is cut after its first run event
    (the client sees the stream end without ``event: end``); the Last-Event-ID of each
    realtime request is kept."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cut = False
        self.last_event_ids: list[str | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/realtime/"):
            await self.inner(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"last-event-id")
        self.last_event_ids.append(given.decode() if given else None)
        if self.cut:
            await self.inner(scope, receive, send)
            return
        self.cut = True

        async def cutting(message: Any) -> None:
            await send(message)
            if b"event: run" in message.get("body", b""):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                raise _Cut

        try:
            await self.inner(scope, receive, cutting)
        except _Cut:
            pass


class _Cut(Exception):
    pass


@pytest.mark.sqlite_only
def test_remote_mode_subscribes_over_sse_and_reconnects(tmp_path) -> None:
    from runlane.cli.serve import asgi_app
    from runlane.core.realtime import RealtimePart, Subscription
    from runlane.sdk.realtime import RemoteSubscription
    from tests.remote_support import remote_client, remote_server

    gated, gate = gated_task("sse-remote-gated")

    @runlane.task(id="sse-remote-llm")
    def llm(payload: dict) -> str:
        return "".join(runlane.metadata.stream("llm", ["a", "b"]))

    fast = {"retry": {"min_timeout_in_ms": 20, "max_timeout_in_ms": 100, "randomize": False}}
    with remote_server(tmp_path) as server:
        proxy = CutOnce(asgi_app(server.rt))
        with serving_app(proxy) as url, remote_client(server, url=url, request_options=fast):
            handle = gated.trigger({})
            sub = runlane.runs.subscribe_to_run(handle.id)
            assert isinstance(sub, RemoteSubscription) and isinstance(sub, Subscription)
            seen = []
            for run in sub:
                seen.append(run.status.value)
                gate.set()
            assert seen[-1] == "COMPLETED" and seen[0] in ("QUEUED", "EXECUTING")
            assert len(proxy.last_event_ids) == 2 and proxy.last_event_ids[0] is None
            assert proxy.last_event_ids[1] is not None  # resumed after the cut
            assert sub.cursor > 0

            async def parts() -> list[RealtimePart]:
                handle = llm.trigger({})
                got = []
                async for part in runlane.runs.subscribe_to_run(handle.id).with_streams():
                    got.append(part)
                return got

            got = asyncio.run(parts())
            assert [p.chunk for p in got if p.type == "llm"] == ["a", "b"]
            runs = [p.run for p in got if p.type == "run" and p.run is not None]
            assert runs[-1].status.value == "COMPLETED"
            with pytest.raises(runlane.errors.RunNotFoundError):
                list(runlane.runs.subscribe_to_run("run_doesnotexist"))
