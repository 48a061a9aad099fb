"""Remote mode (``runlane.sdk``) against a real server: the test process is configured with
``api_url`` and shares no store with the server, whose own runtime (a SQLite file) has a worker
(tests/remote_support.py). The cases marked ``mode`` run twice, once on a local runtime and once
in remote mode, with the same assertions: the public API behaves the same in both. The rest are
remote mode's own: authentication, retries, what it refuses, public tokens, configuration."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pydantic
import pytest

import runlane
from runlane import config
from runlane.cli.serve import asgi_app
from runlane.core import operations, runtime
from runlane.core import schedules as schedule_ops
from runlane.core.metadata import make_op
from runlane.core.operations import LocalOperations, QueueNotFoundError
from runlane.core.runtime import Runtime
from runlane.errors import (
    AbortTaskRunError,
    AuthenticationError,
    ConfigurationError,
    InvalidOptionError,
    InvalidRunStateError,
    InvalidScheduleStateError,
    LimitExceededError,
    PayloadError,
    RunlaneError,
    RunNotFoundError,
    ScheduleNotFoundError,
    StoreUnavailableError,
    TaskPayloadParsedError,
)
from runlane.sdk import RemoteOperations, RemoteRuntime
from runlane.testing import memory_runtime, run_until_idle
from tests.helpers import wait_for
from tests.http_support import free_port
from tests.remote_support import RemoteServer, remote_client, remote_server, serving_app

pytestmark = pytest.mark.timeout(120)

LOCAL_KEY = "rl_dev_" + "L" * 40  # the local runtime signs handle tokens with it, as remote does
FAST_RETRY = {"retry": {"min_timeout_in_ms": 10, "max_timeout_in_ms": 20}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteServer]:
    with remote_server(tmp_path_factory.mktemp("remote")) as s:
        yield s


@pytest.fixture
def remote(server: RemoteServer) -> Iterator[Runtime]:
    with remote_client(server) as rt:
        yield rt


@dataclass
class Mode:
    name: str
    rt: Runtime  # the runtime the test process has installed


@pytest.fixture(params=["local", "remote"])
def mode(request: pytest.FixtureRequest) -> Iterator[Mode]:
    """The public API on a local runtime (memory://, a worker in this process) or in remote
    mode (the module's server executes the runs)."""
    if request.param == "local":
        with memory_runtime(secret_key=LOCAL_KEY) as rt:
            worker = runlane.Worker(concurrency=4, runtime_=rt, fetch_timeout=0.1).start()
            try:
                yield Mode("local", rt)
            finally:
                worker.stop(timeout=5)
    else:
        with remote_client(request.getfixturevalue("server")) as rt:
            assert isinstance(rt, RemoteRuntime)
            yield Mode("remote", rt)


@pytest.fixture
def uid() -> str:
    """A suffix that keeps this test's tasks, tags and queues apart on the shared server."""
    return uuid.uuid4().hex[:10]


# ================================================================ the same in both modes
def test_trigger_and_wait_for_the_output(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"add-{uid}")
    def add(payload: dict[str, int]) -> int:
        runlane.logger.info("adding", a=payload["a"])
        return payload["a"] + payload["b"]

    handle = add.trigger({"a": 1, "b": 2}, tags=[uid], metadata={"m": 1})
    assert handle.id.startswith("run_") and handle.task_identifier == f"add-{uid}"
    assert not handle.is_cached and handle.public_access_token  # signed with the key
    run = handle.wait(timeout=30)
    assert (run.status, run.output, run.is_success) == ("COMPLETED", 3, True)
    assert (run.payload, run.tags, run.metadata) == ({"a": 1, "b": 2}, [uid], {"m": 1})
    assert run.queue == f"task/add-{uid}" and run.attempt_count == 1
    assert runlane.runs.retrieve(handle) == run == runlane.runs.poll(handle.id, timeout=5)
    entries = runlane.runs.logs(handle)
    assert [(e.message, e.attributes) for e in entries] == [("adding", {"a": 1})]
    assert runlane.runs.logs(handle, after=entries[-1].seq) == []
    with pytest.raises(InvalidOptionError) as info:
        runlane.runs.logs(handle, limit=0)
    assert info.value.option == "limit"
    with pytest.raises(RunNotFoundError):
        runlane.runs.retrieve("run_doesnotexist")
    with pytest.raises(RunNotFoundError):
        runlane.runs.logs("run_doesnotexist")


def test_trigger_by_id_and_idempotency_keys(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"echo-{uid}")
    def echo(payload: Any) -> Any:
        return payload

    first = runlane.tasks.trigger(f"echo-{uid}", {"n": 1}, idempotency_key=f"k-{uid}")
    again = runlane.tasks.trigger(f"echo-{uid}", {"n": 2}, idempotency_key=f"k-{uid}")
    assert again.id == first.id and again.is_cached and not first.is_cached
    key = runlane.idempotency_keys.create([uid, "order"])
    hashed = echo.trigger(3, idempotency_key=key)
    assert echo.trigger(4, idempotency_key=key).id == hashed.id
    assert runlane.runs.retrieve(hashed).idempotency_key == key
    run = runlane.tasks.trigger_and_poll(f"echo-{uid}", [5], poll_interval_ms=50, timeout=30)
    assert run.output == [5]


def test_batches(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"double-{uid}")
    def double(payload: int) -> int:
        return payload * 2

    @runlane.task(id=f"neg-{uid}")
    def neg(payload: int) -> int:
        return -payload

    by_id = runlane.batch.trigger(
        [{"id": f"double-{uid}", "payload": 1}, {"id": f"neg-{uid}", "payload": 2}]
    )
    by_task = runlane.batch.trigger_by_task([(double, 3), (neg, 4, {"tags": [uid]})])
    one_task = runlane.tasks.batch_trigger(f"double-{uid}", [{"payload": 5}, {"payload": 6}])
    own = double.batch_trigger([{"payload": 7, "options": {"tags": [uid]}}])
    for handle, outputs in ((by_id, [2, -2]), (by_task, [6, -4]), (one_task, [10, 12])):
        assert handle.batch_id.startswith("batch_") and len(handle) == len(outputs)
        assert [h.wait(timeout=30).output for h in handle] == outputs
        assert runlane.batch.retrieve(handle).run_ids == [h.id for h in handle]
    assert runlane.runs.retrieve(own[0]).batch_id == own.batch_id
    assert runlane.runs.retrieve(by_task[1]).tags == [uid]
    with pytest.raises(RunNotFoundError):
        runlane.batch.retrieve("batch_doesnotexist")
    with pytest.raises(InvalidOptionError) as info:
        runlane.batch.trigger([{"id": f"double-{uid}", "payload": 1, "options": {"delay": "x"}}])
    assert info.value.option == "items[0].delay"
    with pytest.raises(InvalidOptionError, match="at least one item"):
        runlane.batch.trigger([])


def test_list_with_filters_over_several_pages(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"later-{uid}")
    def later(payload: int) -> int:
        return payload

    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    ids = [later.trigger(i, tags=[uid], delay="1h").id for i in range(5)]
    later.trigger(99, tags=[f"other-{uid}"], delay="1h")
    page = runlane.runs.list(tag=uid, limit=2)
    assert [r.id for r in page.data] == ids[::-1][:2] and page.has_next_page()
    assert [r.id for r in page.get_next_page().data] == ids[::-1][2:4]
    assert [r.id for r in page] == ids[::-1]  # auto-pagination over three pages
    found = runlane.runs.list(
        status=["DELAYED"], task_identifier=f"later-{uid}", tag=uid, from_=since, limit=100
    )
    assert [r.id for r in found] == ids[::-1]
    assert list(runlane.runs.list(tag=uid, status="COMPLETED")) == []
    assert list(runlane.runs.list(tag=uid, to=since)) == []
    assert len(list(runlane.runs.list(task_identifier=f"later-{uid}", limit=3))) == 6
    with pytest.raises(InvalidOptionError, match="unknown status"):
        runlane.runs.list(status="NOPE")


def test_cancel_and_replay(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"slow-{uid}")
    def slow(payload: Any) -> Any:
        return payload

    delayed = slow.trigger({"x": 1}, delay="1h", tags=[uid], metadata={"m": 1}, concurrency_key="k")
    canceled = runlane.runs.cancel(delayed)
    assert canceled.status == "CANCELED" and canceled.is_completed
    assert runlane.runs.cancel(delayed.id).status == "CANCELED"  # final: left as it is
    again = runlane.runs.replay(delayed)
    assert again.id != delayed.id and again.public_access_token
    run = again.wait(timeout=30)
    assert (run.payload, run.tags, run.metadata, run.concurrency_key, run.output) == (
        {"x": 1},
        [uid],
        {"m": 1},
        "k",
        {"x": 1},
    )
    for verb in (runlane.runs.cancel, runlane.runs.replay):
        with pytest.raises(RunNotFoundError):
            verb("run_doesnotexist")


def test_reschedule(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"resched-{uid}")
    def resched(payload: Any) -> str:
        return "done"

    handle = resched.trigger(1, delay="1h")
    later = runlane.runs.reschedule(handle, "2h")
    assert later.status == "DELAYED" and later.delayed_until is not None
    assert later.delayed_until.timestamp() == pytest.approx(time.time() + 7200, abs=30)
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    assert runlane.runs.reschedule(handle, at).delayed_until == at
    assert runlane.runs.reschedule(handle, 0).status in ("QUEUED", "EXECUTING", "COMPLETED")
    assert handle.wait(timeout=30).output == "done"
    with pytest.raises(InvalidRunStateError, match="not delayed"):
        runlane.runs.reschedule(handle, "1h")
    with pytest.raises(RunNotFoundError):
        runlane.runs.reschedule("run_doesnotexist", "1h")
    with pytest.raises(InvalidOptionError) as info:
        runlane.runs.reschedule(handle, object())
    assert info.value.option == "delay"


def test_metadata(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"md-{uid}")
    def md(payload: Any) -> Any:
        return payload

    handle = md.trigger(1, delay="1h", metadata={"a": 1})
    assert runlane.runs.update_metadata(handle, {"k": [1, 2]}) == {"k": [1, 2]}
    assert runlane.runs.retrieve(handle).metadata == {"k": [1, 2]}
    with pytest.raises(RunNotFoundError):
        runlane.runs.update_metadata("run_doesnotexist", {})
    with pytest.raises(PayloadError):
        runlane.runs.update_metadata(handle, {"bad": object()})
    # outside a run, runlane.metadata reads nothing and changes nothing, in both modes
    assert runlane.metadata.set("x", 1).get("x") is None and runlane.metadata.current() is None
    with pytest.raises(RunlaneError):
        runlane.tags.add("outside")


def test_the_verbs_behind_the_api(mode: Mode, uid: str) -> None:
    """``Runtime.ops``, which the public API (and a task's ``tags.add`` / metadata flush)
    calls: the same verbs and answers through either runtime."""

    @runlane.task(id=f"verbs-{uid}")
    def verbs(payload: Any) -> Any:
        return payload

    ops = mode.rt.ops
    parent = verbs.trigger(1, delay="1h", tags=["a"])
    assert ops.add_run_tags(parent.id, ["b", "a"]) == ["a", "b"]
    too_many = [f"t{i}" for i in range(5)]
    assert ops.add_run_tags(parent.id, too_many) == ["a", "b"]  # past the limit: none added
    with pytest.raises(InvalidOptionError):
        ops.add_run_tags(parent.id, [""])
    with pytest.raises(RunNotFoundError):
        ops.add_run_tags("run_doesnotexist", ["a"])
    updates = [
        make_op("set", "progress", 0.5),
        make_op("append", "log", "step 1"),
        make_op("increment", "done", 2),
    ]
    assert ops.apply_run_metadata(parent.id, updates) == {
        "progress": 0.5,
        "log": ["step 1"],
        "done": 2,
    }
    other = verbs.trigger(2, delay="1h")
    found = ops.retrieve_runs([other.id, "run_doesnotexist", parent.id])
    assert [r.id for r in found] == [other.id, parent.id]
    assert ops.registered_tasks([f"verbs-{uid}", f"elsewhere-{uid}"]) == [f"verbs-{uid}"]
    assert ops.retrieve_run(parent.id).tags == ["a", "b"]


def test_bulk_cancel_and_replay(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"bulk-{uid}")
    def bulk(payload: Any) -> Any:
        return payload

    kept = bulk.trigger({"keep": True}, tags=[f"other-{uid}"], delay="1h")
    ids = [bulk.trigger(i, tags=[uid], delay="1h").id for i in range(5)]
    runlane.runs.cancel(ids[0])
    done = runlane.runs.bulk_cancel(tag=uid)
    assert sorted(done.ids) == sorted(ids[1:]) and done.skipped == 1
    assert {runlane.runs.retrieve(i).status for i in ids} == {"CANCELED"}
    again = runlane.runs.bulk_replay(tag=uid, status="CANCELED", limit=2)
    assert len(again.ids) == 2 and not set(again.ids) & set(ids)
    assert [runlane.runs.retrieve(i).payload for i in again.ids] == [4, 3]  # newest first
    with pytest.raises(InvalidOptionError, match="at least one filter"):
        runlane.runs.bulk_cancel()
    with pytest.raises(InvalidOptionError, match="not a filter"):
        runlane.runs.bulk_cancel(colour="red")
    with pytest.raises(InvalidOptionError, match="limit"):
        runlane.runs.bulk_cancel(tag=uid, limit=0)
    assert runlane.runs.retrieve(kept).status == "DELAYED"


def test_queues_pause_and_resume(mode: Mode, uid: str) -> None:
    name = f"q-{uid}"

    @runlane.task(id=f"queued-{uid}", queue={"name": name, "concurrency_limit": 2})
    def queued(payload: Any) -> Any:
        return payload

    queued.trigger(0).wait(timeout=30)  # the queue exists once used
    info = runlane.queues.retrieve(name)
    assert info.concurrency_limit == 2 and name in [q.name for q in runlane.queues.list()]
    assert runlane.queues.pause(name).paused
    held = queued.trigger(1)
    time.sleep(0.5)
    assert runlane.runs.retrieve(held).status == "QUEUED"  # held while paused
    assert runlane.queues.retrieve(name).queued == 1
    assert not runlane.queues.resume(name).paused
    assert held.wait(timeout=30).output == 1
    until = runlane.queues.pause(name, until=timedelta(hours=1))
    assert until.paused_until is not None
    keyed = runlane.queues.pause(name, "user-1", until=datetime.now(timezone.utc) + timedelta(1))
    assert keyed.paused_keys[0].concurrency_key == "user-1"
    runlane.queues.resume(name, "user-1")
    runlane.queues.resume(name)
    for verb in (runlane.queues.retrieve, runlane.queues.pause, runlane.queues.resume):
        with pytest.raises(QueueNotFoundError):
            verb(f"no-such-queue-{uid}")
    with pytest.raises(InvalidOptionError) as info_:
        runlane.queues.retrieve("")
    assert info_.value.option == "name"


def test_schedules(mode: Mode, uid: str) -> None:
    @runlane.schedules.task(id=f"report-{uid}")
    def report(payload: runlane.ScheduledPayload) -> None:
        return None

    @runlane.schedules.task(id=f"daily-{uid}", cron="0 5 * * *")
    def daily(payload: runlane.ScheduledPayload) -> None:
        return None

    made = runlane.schedules.create(
        task=report, cron="0 8 * * *", timezone="Europe/Paris", deduplication_key=f"d-{uid}"
    )
    assert (made.task, made.cron, made.timezone, made.active) == (
        f"report-{uid}",
        "0 8 * * *",
        "Europe/Paris",
        True,
    )
    same = runlane.schedules.create(
        task=f"report-{uid}", cron="0 9 * * *", deduplication_key=f"d-{uid}"
    )
    assert same.id == made.id and same.cron == "0 9 * * *"  # deduplicated: updated
    assert runlane.schedules.retrieve(made.id) == same
    other = runlane.schedules.create(task=report, cron="*/5 * * * *", external_id="user-1")
    listed = runlane.schedules.list(task=report, limit=1)
    assert len(listed.data) == 1 and listed.has_next_page()
    assert [s.id for s in listed] == [other.id, made.id]
    changed = runlane.schedules.update(other.id, timezone="Asia/Tokyo", external_id=None)
    assert changed.timezone == "Asia/Tokyo" and changed.external_id is None
    assert not runlane.schedules.deactivate(other.id).active
    assert runlane.schedules.deactivate(other.id).next_run is None
    assert runlane.schedules.activate(other.id).next_run is not None
    assert runlane.schedules.delete(other.id).id == other.id
    with pytest.raises(ScheduleNotFoundError):
        runlane.schedules.retrieve(other.id)
    declarative = wait_for(lambda: list(runlane.schedules.list(task=daily)), timeout=10)
    assert declarative[0].type == "DECLARATIVE"
    for verb in (runlane.schedules.delete, runlane.schedules.deactivate):
        with pytest.raises(InvalidScheduleStateError, match="DECLARATIVE"):
            verb(declarative[0].id)
    with pytest.raises(InvalidOptionError) as info:
        runlane.schedules.create(task=report, cron="not a cron")
    assert info.value.option == "cron"

    @runlane.task(id=f"plain-{uid}")
    def plain(payload: Any) -> None:
        return None

    with pytest.raises(InvalidOptionError, match="not a scheduled task"):
        runlane.schedules.create(task=plain, cron="0 8 * * *")
    assert "Europe/Paris" in runlane.schedules.timezones()


def test_invalid_options_raise_the_same_errors(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"opts-{uid}")
    def opts(payload: Any) -> Any:
        return payload

    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"delay": "zzz"}, InvalidOptionError, "delay"),
        ({"delay": object()}, InvalidOptionError, "delay"),
        ({"ttl": datetime.now(timezone.utc)}, InvalidOptionError, "ttl"),
        ({"max_duration": 1}, InvalidOptionError, "max_duration"),
        ({"tags": [f"t{i}" for i in range(6)]}, LimitExceededError, "tags"),
        ({"colour": "red"}, InvalidOptionError, "colour"),
        ({"queue": {"concurrency_limit": 1}}, InvalidOptionError, "queue"),
        ({"metadata": {"x": object()}}, PayloadError, "metadata"),
    ]
    messages = []
    for options, error, option in cases:
        with pytest.raises(error) as info:
            opts.trigger(1, **options)
        assert info.value.option == option, options
        messages.append(str(info.value).split("=")[0])
    assert messages == [f"invalid {option}" for _, _, option in cases]
    with pytest.raises(PayloadError) as payload_error:
        runlane.tasks.trigger(f"opts-{uid}", {"x": object()})
    assert payload_error.value.option == "payload"
    with pytest.raises(InvalidOptionError) as bad_id:
        runlane.tasks.trigger("not a task id", 1)
    assert bad_id.value.option == "task"

    class Signup(pydantic.BaseModel):
        email: str

    @runlane.schema_task(id=f"signup-{uid}", schema=Signup)
    def signup(payload: Signup) -> str:
        return payload.email

    with pytest.raises(TaskPayloadParsedError) as parsed:
        signup.trigger({"email": 1})
    assert [e["loc"] for e in parsed.value.errors] == [("email",)]
    assert list(runlane.runs.list(task_identifier=f"signup-{uid}")) == []  # nothing written


def test_python_values_as_options(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"typed-{uid}", max_duration=60)
    def typed(payload: Any) -> Any:
        return payload

    at = datetime(2099, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    key = runlane.idempotency_keys.create(f"typed-{uid}")
    handle = typed.trigger(
        1,
        delay=at,
        ttl=timedelta(minutes=5),
        idempotency_key=key,
        idempotency_key_ttl=timedelta(hours=1),
        max_duration=runlane.timeout.NONE,
        queue=runlane.queue(name=f"typed-q-{uid}", concurrency_limit=1),
        machine="large-1x",
        version="1.2.3",
        test=True,
    )
    run = runlane.runs.retrieve(handle)
    assert (run.delayed_until, run.ttl, run.idempotency_key) == (at, "5m", key)
    assert (run.max_duration, run.queue, run.machine, run.version, run.is_test) == (
        None,  # timeout.NONE: no limit
        f"typed-q-{uid}",
        "large-1x",
        "1.2.3",
        True,
    )
    assert runlane.queues.retrieve(f"typed-q-{uid}").concurrency_limit == 1
    naive = typed.trigger(2, delay=datetime(2099, 1, 2, 3, 4, 5), ttl=300)
    assert runlane.runs.retrieve(naive).delayed_until == at  # naive datetimes are UTC


def test_failed_runs(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"fails-{uid}")
    def fails(payload: Any) -> Any:
        raise AbortTaskRunError(f"no {payload}")

    run = fails.trigger("way").wait(timeout=30)
    assert (run.status, run.is_failed, run.attempt_count) == ("FAILED", True, 1)
    assert run.error is not None and run.error.message == "no way"
    assert run.error.name == "AbortTaskRunError"
    assert [r.id for r in runlane.runs.list(task_identifier=f"fails-{uid}", status="FAILED")] == [
        run.id
    ]


def test_the_async_twins(mode: Mode, uid: str) -> None:
    @runlane.task(id=f"aio-{uid}")
    async def aio_task(payload: int) -> int:
        return payload + 1

    async def main() -> tuple[Any, ...]:
        handle = await aio_task.aio_trigger(1, tags=[uid])
        run = await handle.aio_wait(timeout=30)
        polled = await runlane.runs.aio_poll(handle, timeout=5)
        page = await runlane.runs.aio_list(tag=uid)
        seen = [r.id async for r in page]
        batch = await runlane.tasks.aio_batch_trigger(f"aio-{uid}", [{"payload": 5}])
        retrieved = await runlane.batch.aio_retrieve(batch)
        zones = await runlane.schedules.aio_timezones()
        return run, polled, seen, retrieved.run_ids, [h.id for h in batch], zones

    run, polled, seen, run_ids, batch_ids, zones = asyncio.run(main())
    assert run.output == 2 and polled == run and seen == [run.id]
    assert run_ids == batch_ids and "UTC" in zones


# ================================================================ remote mode's own
def test_the_client_has_no_store_and_says_so(remote: Runtime, server: RemoteServer) -> None:
    @runlane.task(id="remote-parent")
    def parent(payload: Any) -> Any:
        return payload

    handle = parent.trigger({"p": 1})
    # written in the server's store, not in anything of this process
    assert operations.retrieve_run(server.rt, handle.id).payload == {"p": 1}
    checks = [
        lambda: remote.store,
        lambda: remote.broker,
        lambda: runlane.Worker().start(),
        lambda: run_until_idle(timeout=1),
        lambda: parent.trigger_and_wait(1),
        lambda: parent.batch_trigger_and_wait([{"payload": 1}]),
        lambda: runlane.batch.trigger_and_wait([{"id": "remote-parent", "payload": 1}]),
        lambda: runlane.wait.for_(seconds=1),
        lambda: runlane.auth.create_key("nope"),
    ]
    for check in checks:
        with pytest.raises(ConfigurationError, match="remote mode"):
            check()


def test_authentication_errors(server: RemoteServer) -> None:
    unknown = "rl_dev_" + "Z" * 40
    with remote_client(server, key=unknown), pytest.raises(AuthenticationError, match="secret"):
        runlane.runs.list()
    key, row = operations.create_key(server.rt, "to revoke")
    with remote_client(server, key=key):
        assert runlane.queues.list() is not None
        operations.revoke_key(server.rt, row.id)
        with pytest.raises(AuthenticationError):
            runlane.tasks.trigger("anything", 1)
    with remote_client(server, key="rl_prod_" + "P" * 40), pytest.raises(AuthenticationError):
        runlane.runs.retrieve("run_x1")  # another environment's unknown key


def test_configuration(server: RemoteServer, monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.url
    with pytest.raises(ConfigurationError, match="store= is a setting"):
        config.build_runtime(api_url=url, secret_key=server.key, store="memory://")
    with pytest.raises(ConfigurationError, match="concurrency_limit"):
        config.build_runtime(api_url=url, secret_key=server.key, concurrency_limit=2)
    monkeypatch.delenv("RUNLANE_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="secret key"):
        config.build_runtime(api_url=url)
    with pytest.raises(ConfigurationError, match="environment 'dev', not 'prod'"):
        config.build_runtime(api_url=url, secret_key=server.key, environment="prod")
    with pytest.raises(ConfigurationError, match="http"):
        config.build_runtime(api_url="localhost:8030", secret_key=server.key)
    with pytest.raises(InvalidOptionError, match="request_options"):
        config.build_runtime(api_url=url, secret_key=server.key, request_options={"x": 1})
    with pytest.raises(ConfigurationError, match="request_options"):
        config.build_runtime(store="memory://", request_options={"retry": {}})
    monkeypatch.setenv("RUNLANE_API_URL", url)
    monkeypatch.setenv("RUNLANE_SECRET_KEY", server.key)
    from_env = config.build_runtime()
    try:
        assert isinstance(from_env, RemoteRuntime) and from_env.settings.api_url == url
        assert from_env.environment == "dev" and from_env.ops.list_queues() is not None
    finally:
        from_env.close()
    local = config.build_runtime(store="memory://")  # an explicit store wins
    try:
        assert not isinstance(local, RemoteRuntime)
    finally:
        local.close()


class Flaky:
    """An ASGI app in front of the API that answers the planned failures first, then passes
    requests through; ``seen`` counts the API requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.plan: list[tuple[int, dict[str, str]]] = []
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
            if self.plan:
                status, headers = self.plan.pop(0)
                body = json.dumps({"error": {"message": "not now", "code": "unavailable"}})
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            *((k.encode(), v.encode()) for k, v in headers.items()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


@pytest.fixture
def flaky(server: RemoteServer) -> Iterator[tuple[Flaky, str]]:
    app = Flaky(asgi_app(server.rt))
    with serving_app(app) as url:
        yield app, url


def test_retries(server: RemoteServer, flaky: tuple[Flaky, str]) -> None:
    app, url = flaky

    @runlane.task(id="remote-retried")
    def retried(payload: Any) -> Any:
        return payload

    with remote_client(server, url=url, request_options=FAST_RETRY):
        handle = runlane.tasks.trigger("remote-retried", 1)
        app.seen.clear()
        app.plan = [(503, {}), (503, {})]  # then the real answer
        assert runlane.runs.retrieve(handle).id == handle.id
        assert len(app.seen) == 3
        app.seen.clear()
        app.plan = [(429, {}), (503, {})]  # refused: even a trigger is sent again
        assert runlane.tasks.trigger("remote-retried", 2).id.startswith("run_")
        assert len(app.seen) == 3
        app.seen.clear()
        app.plan = [(503, {})] * 3  # every attempt refused: the store is unavailable
        with pytest.raises(StoreUnavailableError, match="not now"):
            runlane.runs.retrieve(handle)
        assert len(app.seen) == 3
        app.seen.clear()
        app.plan = [(500, {})]  # a trigger the server may have acted on is not repeated
        with pytest.raises(RunlaneError, match="not now"):
            runlane.tasks.trigger("remote-retried", 3)
        assert len(app.seen) == 1
        app.seen.clear()
        app.plan = [(500, {}), (502, {})]  # a read is
        assert runlane.runs.retrieve(handle).id == handle.id and len(app.seen) == 3
        app.seen.clear()
        app.plan = [(503, {"retry-after": "1"})]  # the server's Retry-After is honoured
        started = time.monotonic()
        runlane.runs.retrieve(handle)
        assert time.monotonic() - started >= 0.9 and len(app.seen) == 2
    port = free_port()  # nothing listens there
    nowhere = f"http://127.0.0.1:{port}"
    with (
        remote_client(server, url=nowhere, request_options=FAST_RETRY),
        pytest.raises(StoreUnavailableError, match="did not answer"),
    ):
        runlane.runs.retrieve(handle)


def test_public_tokens(remote: Runtime, server: RemoteServer) -> None:
    @runlane.task(id="remote-token")
    def token_task(payload: Any) -> Any:
        return payload

    mine, other = token_task.trigger({"secret": 1}), token_task.trigger({"secret": 2})
    mine.wait(timeout=30)
    base = f"{server.url}/api/runlane/v1"
    with httpx.Client(headers={"authorization": f"Bearer {mine.public_access_token}"}) as c:
        seen = c.get(f"{base}/runs/{mine.id}")
        assert seen.status_code == 200 and seen.json()["payload"] is None  # never to a token
        assert seen.json()["status"] == "COMPLETED"
        assert c.get(f"{base}/runs/{other.id}").status_code == 404  # not its run
        assert c.get(f"{base}/runs").status_code == 403  # a secret key's route
    signed_here = runlane.auth.create_public_token(scopes={"read": {"runs": [other.id]}})
    with httpx.Client(headers={"authorization": f"Bearer {signed_here}"}) as c:
        assert c.get(f"{base}/runs/{other.id}").status_code == 200


def test_names_with_slashes_and_colons(remote: Runtime) -> None:
    task_id = f"remote/ns:{uuid.uuid4().hex[:8]}"

    @runlane.task(id=task_id)
    def odd(payload: Any) -> Any:
        return payload

    run = runlane.tasks.trigger(task_id, "x").wait(timeout=30)
    assert run.output == "x" and run.queue == f"task/{task_id}"
    assert runlane.queues.retrieve(run.queue).name == run.queue
    assert runlane.queues.pause(run.queue).paused and not runlane.queues.resume(run.queue).paused


def test_native_routes_speak_plain_json(server: RemoteServer) -> None:
    """What another client sends: plain JSON options, runlane's names; errors with details."""

    @runlane.task(id="remote-plain")
    def plain(payload: Any) -> Any:
        return payload

    base = f"{server.url}/api/runlane/v1"
    with httpx.Client(headers={"authorization": f"Bearer {server.key}"}, timeout=30) as c:
        made = c.post(
            f"{base}/tasks/remote-plain/trigger",
            json={"payload": {"a": 1}, "options": {"delay": "1h", "tags": ["plain"]}},
        )
        assert made.status_code == 200 and set(made.json()) >= {"id", "task_identifier"}
        run = c.get(f"{base}/runs/{made.json()['id']}").json()
        assert run["status"] == "DELAYED" and run["tags"] == ["plain"]
        bad = c.post(f"{base}/tasks/remote-plain/trigger", json={"options": {"ttl": "soon"}})
        error = bad.json()["error"]
        assert bad.status_code == 422 and error["code"] == "invalid_option"
        assert (error["param"], error["type"], error["value"]) == (
            "ttl",
            "InvalidOptionError",
            "soon",
        )
        state = c.post(f"{base}/runs/{made.json()['id']}/cancel").json()
        assert state["status"] == "CANCELED"
        again = c.post(f"{base}/runs/{made.json()['id']}/reschedule", json={"delay": "1h"})
        assert again.status_code == 422 and again.json()["error"]["type"] == "InvalidRunStateError"
        assert c.post(f"{base}/batches", json={"items": 5}).status_code == 422


def test_every_management_verb_has_a_remote_twin() -> None:
    """``Runtime.ops`` offers every verb of core/operations and core/schedules, and remote
    mode answers (or refuses) each one."""
    internal = {"sync_declared", "fire_due", "fire"}  # the engine's, not management verbs
    verbs = {
        name
        for module in (operations, schedule_ops)
        for name, fn in vars(module).items()
        if inspect.isfunction(fn)
        and fn.__module__ == module.__name__
        and not name.startswith("_")
        and name not in internal
        and next(iter(inspect.signature(fn).parameters), None) == "rt"
    }
    assert verbs <= set(vars(LocalOperations)), sorted(verbs - set(vars(LocalOperations)))
    assert verbs <= set(vars(RemoteOperations)), sorted(verbs - set(vars(RemoteOperations)))


def test_the_previous_runtime_comes_back(server: RemoteServer) -> None:
    before = runtime.peek()
    with remote_client(server) as rt:
        assert runtime.get() is rt
    assert runtime.peek() is before
