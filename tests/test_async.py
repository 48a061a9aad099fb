"""The aio_ twins, from async def tests."""

from __future__ import annotations

import asyncio

import pytest

import runlane
from runlane.core import runtime
from runlane.errors import RunNotFoundError


async def _final(handle, timeout=30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        run = await runlane.runs.aio_retrieve(handle)
        if run.is_completed:
            return run
        assert loop.time() < deadline, f"run {handle} did not finish"
        await asyncio.sleep(0.05)


async def test_async_twins_end_to_end(worker):
    @runlane.task(id="aio-task")
    async def aio_task(payload, ctx):
        await asyncio.sleep(0)
        return {"got": payload}

    handle = await aio_task.aio_trigger({"a": 1}, tags=["aio"])
    run = await _final(handle)
    assert run.output == {"got": {"a": 1}}

    batch = await aio_task.aio_batch_trigger([{"payload": i} for i in range(3)])
    assert [(await _final(h)).output for h in batch.runs] == [{"got": i} for i in range(3)]
    assert (await runlane.batch.aio_retrieve(batch)).run_count == 3

    by_id = await runlane.tasks.aio_trigger("aio-task", 7)
    assert (await _final(by_id)).output == {"got": 7}
    multi = await runlane.batch.aio_trigger([{"id": "aio-task", "payload": 8}])
    assert (await _final(multi.runs[0])).output == {"got": 8}
    by_task = await runlane.batch.aio_trigger_by_task([(aio_task, 9)])
    assert (await _final(by_task.runs[0])).output == {"got": 9}
    polled = await runlane.tasks.aio_trigger_and_poll("aio-task", 10, poll_interval_ms=20)
    assert polled.output == {"got": 10}
    tb = await runlane.tasks.aio_batch_trigger("aio-task", [{"payload": 11}])
    assert (await _final(tb.runs[0])).output == {"got": 11}

    page = await runlane.runs.aio_list(tag="aio", limit=1)
    assert [r.id for r in page.data] == [handle.id]
    all_runs = [r async for r in await runlane.runs.aio_list(limit=2)]
    assert len(all_runs) == 9
    next_page = await (await runlane.runs.aio_list(limit=2)).aio_get_next_page()
    assert len(next_page.data) == 2

    replayed = await runlane.runs.aio_replay(handle)
    assert (await _final(replayed)).output == {"got": {"a": 1}}
    assert await runlane.runs.aio_update_metadata(handle, {"m": 1}) == {"m": 1}


async def test_async_cancel_and_reschedule(rt):
    @runlane.task(id="aio-later")
    def later(payload):
        return 1

    handle = await later.aio_trigger({}, delay="1h")
    run = await runlane.runs.aio_reschedule(handle, delay="2h")
    assert run.status == "DELAYED"
    run = await runlane.runs.aio_cancel(handle)
    assert run.status == "CANCELED"


async def test_async_task_body_uses_metadata_and_tags(worker):
    @runlane.task(id="aio-meta")
    async def aio_meta(payload):
        runlane.metadata.set("step", 1)
        await runlane.metadata.aio_flush()
        return await runlane.tags.aio_add("async_tag")

    run = await _final(await aio_meta.aio_trigger({}))
    assert run.output == ["async_tag"] and run.metadata == {"step": 1}


async def test_aio_errors_propagate(rt):
    with pytest.raises(RunNotFoundError):
        await runlane.runs.aio_retrieve("run_01aaaaaaaaaaaaaaaaaaaaaaaa")
    assert runtime.get() is rt
