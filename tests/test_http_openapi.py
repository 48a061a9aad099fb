"""Property tests over the OpenAPI document (schemathesis): every route, with generated paths,
queries and bodies, through the real server, answers without a server error (no 5xx) and
with JSON errors in the documented shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
            response = case.call(base_url=server.url, headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["message"], str) and isinstance(error["code"], str)

        check()
    assert failures == []
