"""Property tests over the OpenAPI document (schemathesis): every route, with generated paths,
queries and bodies, through the real server, answers without a server error (no 5xx) and
with JSON errors in the documented shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

import runlane
from runlane.core import operations, runtime
from runlane.core.registry import registry
from tests.http_support import Server, serving

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    previous = runtime.install(None)
    rt = runlane.configure(store="memory://")
    key, _ = operations.create_key(rt, "schemathesis")

    @runlane.task(id="openapi-echo")
    def echo(payload: Any) -> Any:
        return payload

    @runlane.schedules.task(id="openapi-tick")
    def tick(payload: Any) -> None:
        return None

    rt.engine.deploy([echo, tick])
    echo.trigger({"n": 1}, tags=["t"])
    try:
        with serving(rt, key) as s:
            yield s
    finally:
        runtime.install(previous)
        rt.close()
        for task in (echo, tick):  # (a module's fixture outlives the per-test registry reset)
            registry.remove(task.id)


def test_no_route_answers_with_a_server_error(server: Server) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json")
    schema.config.max_stream_events = 1
    headers = {"authorization": f"Bearer {server.key}"}
    failures: list[str] = []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(
            max_examples=5,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            # Server-Sent Events (every run's changes never end): the first event (the
            # fixture's run), or half a second
            timeout = 0.5 if case.operation.path.startswith("/realtime/") else None
            response = case.call(base_url=server.url, headers=headers, timeout=timeout)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["message"], str) and isinstance(error["code"], str)

        check()
    assert failures == []


def test_the_dashboard_is_no_part_of_the_document(server: Server) -> None:
    paths = httpx.get(server.url + "/api/openapi.json", timeout=30).json()["paths"]
    assert "/api/v1/runs" in paths and "/realtime/v1/runs" in paths
    assert [p for p in paths if p.startswith("/dashboard")] == []
