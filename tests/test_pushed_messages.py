"""Messages the Redis store writes itself: with Celery or Dramatiq on the store's own Redis
server, the transition that creates and admits a run also writes its message, exactly as
kombu's Redis transport / Dramatiq's RedisBroker would (one round trip a trigger, no client
library in between). Real Redis, real workers; everything else keeps the usual send."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis

import runlane
from runlane.backends._pushing import RedisServer, server_of_client, server_of_kombu
from runlane.backends.redis.store import RedisStore
from runlane.core import runtime
from runlane.core.types import Dispatch, Push
from runlane.errors import StoreError
from tests.adapters import CeleryUnderTest, DramatiqUnderTest, delete_redis_prefix, unique_prefix
from tests.helpers import new_run, wait_final, wait_for

pytestmark = pytest.mark.timeout(120)


def _with_db(url: str, db: int) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{db}"


@pytest.fixture
def store_url(redis_url: str) -> Iterator[str]:
    """A Redis store under a private prefix on the test Redis (the brokers' server)."""
    prefix = unique_prefix()
    yield f"{redis_url}?prefix={prefix}"
    delete_redis_prefix(redis_url, prefix)


def _harness(kind: Any, redis_url: str) -> Iterator[Any]:
    h = kind(redis_url)
    yield h
    old = runtime.install(None)
    if old is not None:
        old.close()
    h.close()


@pytest.fixture
def celery_h(redis_url: str) -> Iterator[CeleryUnderTest]:
    yield from _harness(CeleryUnderTest, redis_url)


@pytest.fixture
def dramatiq_h(redis_url: str) -> Iterator[DramatiqUnderTest]:
    yield from _harness(DramatiqUnderTest, redis_url)


def _refuse_send(broker: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The broker's own send records its calls (a pushed trigger makes none)."""
    sent: list[Any] = []
    real = broker.send

    def send(dispatches: Any) -> None:
        sent.extend(dispatches)
        real(dispatches)

    monkeypatch.setattr(broker, "send", send)
    return sent


def _list(url: str, key: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return client.lrange(key, 0, -1)
    finally:
        client.close()


def _decode_celery(raw: bytes) -> tuple[dict[str, Any], list[Any]]:
    envelope = json.loads(raw)
    body = json.loads(base64.b64decode(envelope["body"]))
    return envelope, body


# ---------------------------------------------------------------------- Celery
def test_celery_message_written_by_the_store_is_the_one_kombu_writes(
    celery_h, store_url, monkeypatch
):
    runlane.configure(store=store_url, broker=celery_h.broker)
    sent = _refuse_send(celery_h.broker, monkeypatch)

    @runlane.task(id="pushed", machine="large-1x")
    def pushed(payload):
        return payload

    handle = pushed.trigger({"n": 1})
    assert sent == []  # written by the create transition itself
    key = f"{celery_h.prefix}:{celery_h.prefix}.large-1x"
    [ours] = _list(celery_h.url, key)
    # the same dispatch through Celery's own publishing, for comparison
    celery_h.broker.send([Dispatch(handle.id, "pushed", "task/pushed", "large-1x")])
    theirs = _list(celery_h.url, key)[0]  # LPUSH: the newest first
    env_ours, body_ours = _decode_celery(ours)
    env_theirs, body_theirs = _decode_celery(theirs)
    assert (
        body_ours
        == body_theirs
        == [
            [handle.id, "pushed", "task/pushed", "large-1x", "dev"],
            {},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
    )
    assert set(env_ours) == set(env_theirs)
    for field in ("content-type", "content-encoding"):
        assert env_ours[field] == env_theirs[field]
    varying = {"id", "root_id"}  # the task id: new for each message
    assert {k: v for k, v in env_ours["headers"].items() if k not in varying} == {
        k: v for k, v in env_theirs["headers"].items() if k not in varying
    }
    assert env_ours["headers"]["id"] == env_ours["headers"]["root_id"]
    props_ours, props_theirs = env_ours["properties"], env_theirs["properties"]
    assert set(props_ours) == set(props_theirs)
    varying = {"correlation_id", "delivery_tag"}
    assert {k: v for k, v in props_ours.items() if k not in varying} == {
        k: v for k, v in props_theirs.items() if k not in varying
    }
    assert props_ours["correlation_id"] == env_ours["headers"]["id"]


def test_celery_worker_executes_pushed_runs(celery_h, store_url, monkeypatch):
    runlane.configure(store=store_url, broker=celery_h.broker)
    sent = _refuse_send(celery_h.broker, monkeypatch)

    @runlane.task(id="double")
    def double(payload):
        return {"n": payload["n"] * 2}

    handles = [double.trigger({"n": i}) for i in range(5)]
    with celery_h.running(2):
        runs = [wait_final(h) for h in handles]
    assert [r.status for r in runs] == ["COMPLETED"] * 5
    assert [r.output for r in runs] == [{"n": i * 2} for i in range(5)]
    assert sent == []


def test_celery_push_into_the_brokers_own_database(redis_url, monkeypatch):
    """The store on one database, Celery's messages on another of the same server."""
    broker_url, prefix = _with_db(redis_url, 13), unique_prefix()
    h = CeleryUnderTest(broker_url)
    try:
        runlane.configure(store=f"{_with_db(redis_url, 12)}?prefix={prefix}", broker=h.broker)
        sent = _refuse_send(h.broker, monkeypatch)

        @runlane.task(id="elsewhere")
        def elsewhere(payload):
            return payload

        handle = elsewhere.trigger({})
        assert sent == []
        [raw] = _list(broker_url, f"{h.prefix}:{h.prefix}")
        assert _decode_celery(raw)[1][0][0] == handle.id
        assert _list(_with_db(redis_url, 12), f"{h.prefix}:{h.prefix}") == []
        with h.running(1):
            assert wait_final(handle).status == "COMPLETED"
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()
        h.close()
        delete_redis_prefix(_with_db(redis_url, 12), prefix)


def test_celery_publish_signals_turn_the_push_off(celery_h, store_url):
    """Receivers of Celery's publish signals (tracing, monitoring) see runlane's messages:
    while one is connected, runs are published through Celery."""
    from celery import signals

    runlane.configure(store=store_url, broker=celery_h.broker)
    seen: list[str] = []

    def before(sender=None, headers=None, **kwargs):
        seen.append(headers["shadow"])

    @runlane.task(id="watched")
    def watched(payload):
        return payload

    watched.trigger({})  # pushed: nobody listens
    signals.before_task_publish.connect(before, weak=False)
    try:
        watched.trigger({})
    finally:
        signals.before_task_publish.disconnect(before)
    assert seen == ["runlane:watched"]
    assert len(_list(celery_h.url, f"{celery_h.prefix}:{celery_h.prefix}")) == 2


def test_a_run_that_waits_for_a_slot_is_sent_when_admitted(celery_h, store_url, monkeypatch):
    """Only a run admitted by its create transition is pushed; one that waits for a
    concurrency slot goes through the broker once a slot frees."""
    rt = runlane.configure(store=store_url, broker=celery_h.broker, engine_interval=0.05)
    sent = _refuse_send(celery_h.broker, monkeypatch)

    @runlane.task(id="one-at-a-time", queue={"name": "single", "concurrency_limit": 1})
    def single(payload):
        return payload

    first, second = single.trigger({"n": 1}), single.trigger({"n": 2})
    key = f"{celery_h.prefix}:{celery_h.prefix}"
    assert len(_list(celery_h.url, key)) == 1 and sent == []
    assert runlane.runs.retrieve(second).status == "QUEUED"
    runlane.runs.cancel(first)  # frees the slot: the second run is admitted and sent
    rt.engine.tick()
    wait_for(lambda: [d.run_id for d in sent] == [second.id], message="the second run's send")
    assert len(_list(celery_h.url, key)) == 2


# ---------------------------------------------------------------------- Dramatiq
class Recorder(dramatiq.Middleware):
    def __init__(self) -> None:
        self.before: list[Any] = []
        self.after: list[Any] = []

    def before_enqueue(self, broker, message, delay):
        self.before.append(message)

    def after_enqueue(self, broker, message, delay):
        self.after.append(message)


def test_dramatiq_message_written_by_the_store_is_the_one_redisbroker_writes(
    dramatiq_h, store_url, monkeypatch
):
    runlane.configure(store=store_url, broker=dramatiq_h.broker)
    sent = _refuse_send(dramatiq_h.broker, monkeypatch)

    @runlane.task(id="pushed")
    def pushed(payload):
        return {"got": payload}

    handle = pushed.trigger({"n": 1})
    assert sent == []
    client = redis.Redis.from_url(dramatiq_h.url)
    try:
        key = f"{dramatiq_h.prefix}:{dramatiq_h.prefix}"
        [ours_id] = client.lrange(key, 0, -1)
        ours = json.loads(client.hget(key + ".msgs", ours_id))
        # the same dispatch through Dramatiq's own enqueue, for comparison
        dramatiq_h.broker.send([Dispatch(handle.id, "pushed", "task/pushed", None)])
        theirs_id = client.lrange(key, 0, -1)[1]
        theirs = json.loads(client.hget(key + ".msgs", theirs_id))
    finally:
        client.close()
    assert ours["options"]["redis_message_id"] == ours_id.decode()
    assert theirs["options"]["redis_message_id"] == theirs_id.decode()
    varying = {"message_id", "message_timestamp", "options"}
    assert {k: v for k, v in ours.items() if k not in varying} == {
        k: v for k, v in theirs.items() if k not in varying
    }
    assert ours["args"] == [handle.id, "pushed", "task/pushed", None, "dev"]
    # a Dramatiq worker executes it (and the compared duplicate finds the run finished)
    with dramatiq_h.running(2):
        run = wait_final(handle)
    assert run.status == "COMPLETED" and run.output == {"got": {"n": 1}}
    assert len(run.attempts) == 1


def test_dramatiq_enqueue_hooks_see_every_message_once(dramatiq_h, store_url, monkeypatch):
    """A middleware with enqueue hooks: runs are enqueued through Dramatiq, so its hooks see
    each message once (before and after), as for any actor."""
    recorder = Recorder()
    dramatiq_h.dramatiq_broker.add_middleware(recorder)
    runlane.configure(store=store_url, broker=dramatiq_h.broker)
    sent = _refuse_send(dramatiq_h.broker, monkeypatch)

    @runlane.task(id="hooked")
    def hooked(payload):
        return payload

    handle = hooked.trigger({})
    assert [d.run_id for d in sent] == [handle.id]
    [before] = recorder.before
    assert recorder.after == [before] and before.args[0] == handle.id


def test_a_message_the_store_cannot_write_is_handed_to_the_broker(celery_h, store_url, monkeypatch):
    """The queue's list key holds something else (a string): the run is created and admitted
    all the same, and handed to Celery to send (whose own LPUSH fails there too, so the run
    stays QUEUED for the redelivery loop)."""
    runlane.configure(store=store_url, broker=celery_h.broker)
    sent = _refuse_send(celery_h.broker, monkeypatch)
    key = f"{celery_h.prefix}:{celery_h.prefix}"
    client = redis.Redis.from_url(celery_h.url)
    client.set(key, "not a list")
    try:

        @runlane.task(id="blocked")
        def blocked(payload):
            return payload

        handle = blocked.trigger({})
        assert client.get(key) == b"not a list"
    finally:
        client.delete(key)
        client.close()
    assert [d.run_id for d in sent] == [handle.id]
    run = runlane.runs.retrieve(handle)
    assert run.status == "QUEUED"


# ---------------------------------------------------------------------- the store's side
def test_a_push_may_only_write_messages_and_is_checked_before_anything(store_url):
    store = RedisStore.from_url(store_url)
    try:
        now = 1_700_000_000.0
        new = new_run(created_at=now)
        bad = Push({new.id: [["DEL", "somebody-elses-key"]]}, {}, 0)
        with pytest.raises(StoreError, match="may not use DEL"):
            store.create_runs([new], now=now, ready=[], push=bad)
        assert store.get_run(new.id) is None
        # a message it may write: written with the run, which is not handed back to be sent
        key = store.prefix + "scratch-list"  # under the test's own prefix
        good = Push({new.id: [["RPUSH", key, "message"]]}, {}, 0)
        ready: list[Any] = []
        store.create_runs([new], now=now, ready=ready, push=good)
        assert good.done == [new.id] and ready == []
        assert store.client.lrange(key, 0, -1) == ["message"]
    finally:
        store.close()


class _BrokerAt:
    """A broker whose messages are kept on ``server`` (what the store pairs on)."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server

    def send(self, dispatches: Any) -> None:
        raise AssertionError("not sent in this test")

    def close(self) -> None:
        pass

    def redis_server(self) -> RedisServer:
        return self.server

    def push_commands(self, dispatches: Any) -> list[None]:
        return [None] * len(dispatches)


def test_which_servers_count_as_the_stores_own(redis_url):
    from kombu import Connection

    store = RedisStore.from_url(f"{redis_url}?prefix={unique_prefix()}")

    def writes_to(server: RedisServer) -> bool:
        return store.message_writer(_BrokerAt(server)) is not None

    own = server_of_client(store.client)
    assert own is not None and writes_to(own)
    other_db = RedisServer(own.host, own.port, None, own.db + 1, None, None, False)
    assert writes_to(other_db)  # another database of the same server
    next_port = (own.port or 0) + 1
    assert not writes_to(RedisServer(own.host, next_port, None, 0, None, None, False))
    assert not writes_to(RedisServer(own.host, own.port, None, 0, None, "secret", False))
    assert not writes_to(RedisServer(own.host, own.port, None, 0, None, None, True))
    store.close()
    local = RedisServer("localhost", 6379, None, 0, None, None, False)
    assert local.same_server(RedisServer("127.0.0.1", 6379, None, 3, None, None, False))
    assert server_of_kombu(Connection("redis://localhost:6380/4")) == RedisServer(
        "localhost", 6380, None, 4, None, None, False
    )
    assert server_of_kombu(Connection("redis://:pw@h/")).password == "pw"
    assert server_of_kombu(Connection("rediss://h:6390/1")).ssl
    for url in (
        "amqp://guest@localhost//",
        "redis+socket:///tmp/r.sock",
        "redis://a/0;redis://b/0",
    ):
        assert server_of_kombu(Connection(url)) is None, url
    from redis.sentinel import Sentinel, SentinelConnectionPool

    sentinel = redis.Redis(
        connection_pool=SentinelConnectionPool("primary", Sentinel([("127.0.0.1", 26379)]))
    )
    assert server_of_client(sentinel) is None  # its server is found elsewhere


def test_a_sqlite_store_writes_no_messages(celery_h, tmp_path: Path, monkeypatch):
    runlane.configure(store=f"sqlite:///{tmp_path}/runlane.db", broker=celery_h.broker)
    sent = _refuse_send(celery_h.broker, monkeypatch)

    @runlane.task(id="plain")
    def plain(payload):
        return payload

    handle = plain.trigger({})
    assert [d.run_id for d in sent] == [handle.id]
