"""Riding through a store outage (issue 20), against a real Redis behind a proxy that can go
down and come back, or lose one reply after Redis executed the command (tests/redis_proxy.py).

- every Redis error reaches the caller as StoreUnavailableError / StoreRejectedError;
- a trigger is retried while the store is unavailable, and never creates two runs;
- a finished attempt's result is kept while the store is unavailable and recorded when it
  answers again, even past the attempt's lease; the body is never executed twice;
- a worker that gives up recording never runs that attempt again: the run is retried by the
  reaper once its lease lapses;
- while the store is down, each retry is one line in the log, with no traceback.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import runlane
from runlane.core import runtime
from runlane.errors import StoreError, StoreRejectedError, StoreUnavailableError
from tests.adapters import delete_redis_prefix
from tests.helpers import wait_final, wait_for, wait_status
from tests.redis_proxy import RedisProxy

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.timeout(120)

LEASE = 2.0


@pytest.fixture
def proxy(redis_url: str) -> Iterator[RedisProxy]:
    p = RedisProxy(redis_url).start()
    yield p
    p.close()


@pytest.fixture
def outage(redis_url: str, proxy: RedisProxy) -> Iterator[RedisProxy]:
    """runlane configured on a private prefix of the session Redis, through the proxy."""
    prefix = f"rlout-{uuid.uuid4().hex[:12]}"
    runlane.configure(
        store=proxy.url(f"prefix={prefix}"),
        environment="prod",
        engine_interval=0.05,
        lease_timeout=LEASE,
        store_retry_timeout=15,
    )
    try:
        yield proxy
    finally:
        proxy.up()
        old = runtime.install(None)
        if old is not None:
            old.close()
        delete_redis_prefix(redis_url, prefix)


def _runs_with(marker: str) -> list[runlane.Run]:
    return [r for r in runlane.runs.list(limit=100) if (r.payload or {}).get("m") == marker]


def _down_for(proxy: RedisProxy, seconds: float) -> threading.Thread:
    def cycle() -> None:
        proxy.down()
        time.sleep(seconds)
        proxy.up()

    t = threading.Thread(target=cycle)
    t.start()
    return t


# ---------------------------------------------------------------------------- errors


class _LoadingServer:
    """A server that answers as Redis does while it loads its data after a restart: the
    connection handshake is accepted, every other command gets ``-LOADING``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while True:
                    command, buf = _one_command(buf)
                    if command is None:
                        break
                    if command[0].upper() in (b"CLIENT", b"SELECT", b"PING", b"AUTH"):
                        conn.sendall(b"+OK\r\n")
                    else:
                        conn.sendall(b"-LOADING Redis is loading the dataset in memory\r\n")

    def close(self) -> None:
        self.sock.close()


def _one_command(buf: bytes) -> tuple[list[bytes] | None, bytes]:
    """One RESP command (an array of bulk strings) from the front of ``buf``, if whole."""
    if not buf.startswith(b"*"):
        return None, buf
    end = buf.find(b"\r\n")
    if end < 0:
        return None, buf
    count, pos, parts = int(buf[1:end]), end + 2, []
    for _ in range(count):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, buf
        size = int(buf[pos + 1 : end])
        start = end + 2
        if len(buf) < start + size + 2:
            return None, buf
        parts.append(buf[start : start + size])
        pos = start + size + 2
    return parts, buf[pos:]


def test_redis_loading_its_data_is_store_unavailable_not_a_type_error():
    """Seen in a restart: `trigger()` raised TypeError ("the JSON object must be str, bytes or
    bytearray, not BusyLoadingError") while Redis loaded its AOF."""
    server = _LoadingServer()
    try:
        runlane.configure(
            store=f"redis://127.0.0.1:{server.port}/0", environment="prod", store_retry_timeout=0.3
        )

        @runlane.task(id="loading-trigger")
        def loading_trigger(payload):
            return payload

        with pytest.raises(StoreUnavailableError, match="loading"):
            loading_trigger.trigger({"x": 1})
        with pytest.raises(StoreUnavailableError):
            runlane.runs.retrieve("run_01hzzzzzzzzzzzzzzzzzzzzzzz")
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()
        server.close()


def test_an_unreachable_store_is_unavailable_and_a_refusal_is_rejected(outage):
    store = runtime.get().store
    outage.down()
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        runlane.runs.list(limit=1)
    outage.up()
    store.client.set(store._k("run:run_wrongtype"), "a string where a hash belongs")
    with pytest.raises(StoreRejectedError, match="WRONGTYPE"):
        runlane.runs.retrieve("run_wrongtype")


def test_every_store_error_is_a_store_error_subclass():
    assert issubclass(StoreUnavailableError, StoreError)
    assert issubclass(StoreRejectedError, StoreError)


# ---------------------------------------------------------------------------- triggers


def test_a_trigger_whose_reply_was_lost_is_retried_and_creates_one_run(outage):
    @runlane.task(id="lost-create")
    def lost_create(payload):
        return payload

    outage.lose_reply(b"create_runs")
    handle = lost_create.trigger({"m": "a"})
    assert outage.lost == 1  # Redis created the run; its reply never arrived
    runs = _runs_with("a")
    assert [r.id for r in runs] == [handle.id]
    assert runs[0].status in ("QUEUED", "WAITING_FOR_DEPLOY")


def test_a_batch_whose_reply_was_lost_creates_each_run_once(outage):
    @runlane.task(id="lost-batch")
    def lost_batch(payload):
        return payload

    outage.lose_reply(b"create_runs")
    batch = lost_batch.batch_trigger(
        [{"payload": {"m": "b", "i": i}, "options": {"idempotency_key": f"k{i}"}} for i in range(5)]
    )
    assert outage.lost == 1
    runs = _runs_with("b")
    assert sorted(r.id for r in runs) == sorted(h.id for h in batch.runs)
    assert len(runs) == 5 and not any(h.is_cached for h in batch.runs)
    assert runlane.batch.retrieve(batch.batch_id).run_ids == [h.id for h in batch.runs]


def test_a_trigger_rides_through_a_short_outage(outage, caplog):
    @runlane.task(id="outage-trigger")
    def outage_trigger(payload):
        return payload

    outage_trigger.trigger({"m": "warm"})  # connections made, task registered
    caplog.set_level(logging.WARNING, logger="runlane")
    cycle = _down_for(outage, 1.5)
    time.sleep(0.2)
    handle = outage_trigger.trigger({"m": "c"})
    cycle.join()
    assert [r.id for r in _runs_with("c")] == [handle.id]
    waits = [r for r in caplog.records if "store unavailable (trigger" in r.getMessage()]
    assert waits, "each wait is logged"
    assert all(r.exc_info is None and "retrying in" in r.getMessage() for r in waits)


def test_a_trigger_that_gives_up_raises_store_unavailable_and_writes_nothing(outage):
    @runlane.task(id="gives-up")
    def gives_up(payload):
        return payload

    gives_up.trigger({"m": "warm"})
    runtime.get().settings.store_retry_timeout = 0.5
    outage.down()
    with pytest.raises(StoreUnavailableError):
        gives_up.trigger({"m": "d"}, idempotency_key="d-key")
    outage.up()
    assert _runs_with("d") == []
    again = gives_up.trigger({"m": "d"}, idempotency_key="d-key")  # the key was not taken
    assert not again.is_cached


# ---------------------------------------------------------------------------- results


class _Body:
    """A task body that waits to be let go, counting its executions by attempt id."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()
        self.attempts: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, payload, ctx):
        with self.lock:
            self.attempts.append(ctx.attempt.id)
        self.running.set()
        if payload.get("hold"):
            assert self.release.wait(30)
        return {"done": payload["m"]}


@pytest.mark.parametrize("down_for", [1.0, 2 * LEASE + 1], ids=["short", "past-the-lease"])
def test_a_result_finished_during_an_outage_is_recorded_once_it_returns(outage, down_for, caplog):
    body = _Body()
    task = runlane.task(id=f"ends-in-outage-{int(down_for)}")(body)
    caplog.set_level(logging.INFO, logger="runlane")
    with runlane.Worker(concurrency=4, fetch_timeout=0.2):
        handle = task.trigger({"m": "e", "hold": True})
        assert body.running.wait(20)
        outage.down()
        body.release.set()  # the body ends while the store is down
        time.sleep(down_for)
        outage.up()
        run = wait_final(handle, timeout=30)
        time.sleep(LEASE)  # a reaper or a reclaim that would run it again has had its chance
    assert run.status == "COMPLETED" and run.output == {"done": "e"}
    assert [a.status for a in run.attempts] == ["COMPLETED"]
    assert len(body.attempts) == 1, f"executed {len(body.attempts)} times"
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"recording run {handle.id}" in m and "retrying in" in m for m in messages)
    lapsed = [m for m in messages if "unavailable past its lease" in m]
    assert len(lapsed) == (1 if down_for > LEASE else 0)
    assert not [r for r in caplog.records if "store unavailable" in r.getMessage() and r.exc_info]


def test_a_worker_that_gives_up_recording_never_runs_that_attempt_again(outage):
    """With the result kept only briefly, a long outage makes the worker give up: the run is
    retried as a new attempt once its lease lapses (as if the worker had died), and the
    attempt that ran is never executed again by this worker's other threads."""
    runtime.get().settings.result_retry_timeout = 0.5
    body = _Body()
    task = runlane.task(id="gives-up-recording", retry={"max_attempts": 3, "min_timeout_in_ms": 0})(
        body
    )
    with runlane.Worker(concurrency=4, fetch_timeout=0.2):
        handle = task.trigger({"m": "f", "hold": True})
        assert body.running.wait(20)
        outage.down()
        body.release.set()
        time.sleep(2.0)
        outage.up()
        run = wait_final(handle, timeout=40)
    assert run.status == "COMPLETED"
    assert len(body.attempts) == len(set(body.attempts)), "an attempt ran twice"
    assert [a.status for a in run.attempts][-1] == "COMPLETED"
    assert len(run.attempts) == 2 and run.attempts[0].status in ("CRASHED", "FAILED")


def test_threads_whose_fetch_failed_adopt_a_lost_delivery_once(outage):
    """A fetch started the run's attempt but its reply was lost: the in-flight delivery is
    adopted by exactly one of the threads that then look for it."""
    rt = runtime.get()
    body = _Body()
    task = runlane.task(id="adopted-once")(body)
    rt.engine.register([task])
    handle = task.trigger({"m": "g"})
    wait_status(handle, "QUEUED", timeout=10)
    consumer = rt.broker.consumer("w-adopt", rt.registry.ids())
    from runlane.core.executor import Executor

    start = Executor(rt, "w-adopt").start_request()
    outage.lose_reply(b"fetch_start")
    with pytest.raises(StoreUnavailableError):
        consumer.fetch(1, 1.0, start)
    got: list = []
    barrier = threading.Barrier(6)

    def look() -> None:
        barrier.wait()
        got.extend(consumer.fetch(1, 0.3, start))

    threads = [threading.Thread(target=look) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [d.dispatch.run_id for d in got] == [handle.id]
    assert got[0].started is not None and got[0].started.attempt_number == 1


# ---------------------------------------------------------------------------- workers


def test_a_worker_waits_out_an_outage_with_a_line_per_retry(outage, caplog):
    body = _Body()
    task = runlane.task(id="waits-out")(body)
    caplog.set_level(logging.INFO, logger="runlane")
    with runlane.Worker(concurrency=2, fetch_timeout=0.2):
        task.trigger({"m": "warm"})
        wait_for(lambda: body.attempts, timeout=20)
        outage.down()
        time.sleep(1.5)
        outage.up()
        handle = task.trigger({"m": "h"})
        assert wait_final(handle, timeout=30).status == "COMPLETED"
    unavailable = [r for r in caplog.records if "store unavailable" in r.getMessage()]
    assert unavailable
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in unavailable)
    assert all(
        "retrying in" in r.getMessage() or "shortly" in r.getMessage() or "later" in r.getMessage()
        for r in unavailable
    )


def test_store_retry_timeout_is_checked(tmp_path):
    from runlane.errors import InvalidOptionError

    for bad in (-1, 61, "10", True):
        with pytest.raises(InvalidOptionError, match="store_retry_timeout"):
            runlane.configure(store=f"sqlite:///{tmp_path}/x.db", store_retry_timeout=bad)


def test_a_reclaim_waits_for_a_fetch_that_is_handing_its_delivery(outage):
    """A fetch has taken a run (it is in flight) but not yet handed it to its thread when a
    reclaim, started by another thread's failed fetch, looks for orphans: the reclaim waits,
    and the delivery is the fetching thread's alone."""
    rt = runtime.get()
    task = runlane.task(id="handing")(_Body())
    rt.engine.register([task])
    handle = task.trigger({"m": "i"})
    wait_status(handle, "QUEUED", timeout=10)
    consumer = rt.broker.consumer("w-hand", rt.registry.ids())
    from runlane.core.executor import Executor

    start = Executor(rt, "w-hand").start_request()
    fetched, release = threading.Event(), threading.Event()
    real = consumer._fetch_once

    def slow_to_hand(*args, **kwargs):
        got = real(*args, **kwargs)  # the run is in flight now, not yet handed
        fetched.set()
        assert release.wait(20)
        return got

    consumer._fetch_once = slow_to_hand
    first: list = []
    a = threading.Thread(target=lambda: first.extend(consumer.fetch(1, 1.0, start)))
    a.start()
    assert fetched.wait(20)
    consumer._unsure = True  # as after another thread's failed fetch
    second: list = []
    b = threading.Thread(target=lambda: second.extend(consumer._reclaim(start)))
    b.start()
    b.join(0.5)
    assert b.is_alive(), "the reclaim looked while a fetch was handing its delivery"
    release.set()
    a.join(20)
    b.join(20)
    assert [d.dispatch.run_id for d in first] == [handle.id]
    assert second == []
