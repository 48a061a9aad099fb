"""An attempt's Context is built only when something reads it: a task that takes no ``ctx``
(and no hook or runlane call that needs it) runs without one; one that takes it gets it
complete, built once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import runlane
from runlane.core import executor, runtime
from tests.helpers import wait_final


@pytest.fixture
def builds(tmp_path, monkeypatch) -> Iterator[list[str]]:
    runlane.configure(store=f"sqlite:///{tmp_path}/runlane.db")
    made: list[str] = []
    real = executor.build_context

    def counting(rt, task, started, *args):
        made.append(started.run.id)
        return real(rt, task, started, *args)

    monkeypatch.setattr(executor, "build_context", counting)
    yield made
    old = runtime.install(None)
    if old is not None:
        old.close()


def test_a_task_without_ctx_never_builds_it(builds):
    @runlane.task(id="no-ctx")
    def plain(payload):
        runlane.metadata.set("seen", payload)  # runlane calls that do not need the context
        return payload * 2

    with runlane.Worker(concurrency=1):
        run = wait_final(plain.trigger(21))
    assert run.output == 42 and run.metadata == {"seen": 21}
    assert builds == []


def test_a_task_with_ctx_gets_it_whole_and_built_once(builds):
    seen = {}

    @runlane.task(id="with-ctx", retry={"max_attempts": 2, "min_timeout_in_ms": 0})
    def with_ctx(payload, ctx):
        seen[ctx.attempt.number] = (ctx.run.id, ctx.task.id, ctx.run.tags, ctx.queue.name)
        if ctx.attempt.number == 1:
            raise ValueError("again")
        return "ok"

    with runlane.Worker(concurrency=1):
        handle = with_ctx.trigger(None, tags=["t1"])
        run = wait_final(handle)
    assert run.status == "COMPLETED" and run.output == "ok"
    assert seen == {n: (handle.id, "with-ctx", ["t1"], "task/with-ctx") for n in (1, 2)}
    assert builds == [handle.id, handle.id]  # once an attempt


def test_hooks_that_take_ctx_build_it_for_the_task_too(builds):
    starts = []

    @runlane.task(id="hooked", on_start=lambda payload, ctx: starts.append(ctx.attempt.number))
    def hooked(payload):
        return payload

    with runlane.Worker(concurrency=1):
        run = wait_final(hooked.trigger(5))
    assert run.output == 5 and starts == [1] and len(builds) == 1
