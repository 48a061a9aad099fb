"""runlane.signals: sent in order, with the right arguments, on every store and adapter; a
receiver that raises changes nothing; a signal nobody listens to costs no work."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

import runlane
from runlane import signals
from runlane.core import runtime
from runlane.core import signals as core_signals
from tests.helpers import wait_final, wait_for

ALL = {
    "run_triggered": signals.run_triggered,
    "attempt_started": signals.attempt_started,
    "run_succeeded": signals.run_succeeded,
    "run_failed": signals.run_failed,
    "run_retrying": signals.run_retrying,
    "run_canceled": signals.run_canceled,
    "run_expired": signals.run_expired,
}


class Recorder:
    """Receives every signal: (signal name, sender, kwargs), in the order received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.receivers = {name: self._receiver(name) for name in ALL}

    def _receiver(self, name: str) -> Any:
        def receive(sender: str, **kwargs: Any) -> None:
            with self.lock:
                self.events.append((name, sender, kwargs))

        return receive

    def connect(self, **senders: str) -> Recorder:
        for name, signal in ALL.items():
            if name in senders:
                signal.connect(self.receivers[name], sender=senders[name])
            else:
                signal.connect(self.receivers[name])
        return self

    def names(self, run_id: str | None = None) -> list[str]:
        with self.lock:
            return [n for n, _, kw in self.events if run_id is None or _run_id(kw) == run_id]

    def of(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return [(s, kw) for n, s, kw in self.events if n == name]

    def wait(self, name: str, count: int = 1) -> list[tuple[str, dict[str, Any]]]:
        return wait_for(lambda: len(self.of(name)) >= count and self.of(name), message=name)


def _run_id(kwargs: dict[str, Any]) -> str:
    return kwargs["handle"].id if "handle" in kwargs else kwargs["run"].id


@pytest.fixture(autouse=True)
def _only_this_tests_receivers() -> Iterator[None]:
    """Each test sees only the receivers it connects: any connected before (by another test
    module in this session) are set aside for the test and put back after it."""
    saved = [
        (
            s,
            dict(s.receivers),
            {k: set(v) for k, v in s._by_sender.items()},
            {k: set(v) for k, v in s._by_receiver.items()},
        )
        for s in ALL.values()
    ]
    for signal, *_ in saved:
        _clear(signal)
    yield
    for signal, receivers, by_sender, by_receiver in saved:
        _clear(signal)
        signal.receivers.update(receivers)
        signal._by_sender.update(by_sender)
        signal._by_receiver.update(by_receiver)


def _clear(signal: Any) -> None:
    signal.receivers.clear()
    signal._by_sender.clear()
    signal._by_receiver.clear()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder().connect()


def test_success_in_order(rt, recorder):
    @runlane.task(id="sig-ok")
    def ok(payload, ctx):
        runlane.metadata.set("seen", payload["n"])
        return {"double": payload["n"] * 2}

    handle = ok.trigger({"n": 21}, tags=["t1"])
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        recorder.wait("run_succeeded")
    assert recorder.names() == ["run_triggered", "attempt_started", "run_succeeded"]
    (sender, triggered), (_, started), (_, succeeded) = (
        recorder.of("run_triggered")[0],
        recorder.of("attempt_started")[0],
        recorder.of("run_succeeded")[0],
    )
    assert sender == "sig-ok"
    assert triggered["handle"].id == handle.id and not triggered["handle"].is_cached
    assert triggered["batch_id"] is None and triggered["ctx"] is None
    assert started["run"].id == handle.id and started["run"].status == "EXECUTING"
    assert started["attempt"] == 1 and started["resumed"] is False
    assert started["ctx"].run.id == handle.id and started["ctx"].attempt.number == 1
    run = succeeded["run"]
    assert run.id == handle.id and run.status == "COMPLETED" and run.is_success
    assert run.output == {"double": 42} and run.metadata == {"seen": 21}
    assert run.tags == ["t1"] and run.attempt_count == 1 and run.finished_at is not None
    assert succeeded["attempt"] == 1 and succeeded["ctx"].task.id == "sig-ok"
    stored = runlane.runs.retrieve(handle)
    assert (stored.status, stored.output, stored.metadata) == (run.status, run.output, run.metadata)


def test_failure_after_retries(rt, recorder):
    @runlane.task(
        id="sig-flaky",
        retry={"max_attempts": 3, "min_timeout_in_ms": 10, "factor": 1, "randomize": False},
    )
    def flaky(payload, ctx):
        raise ValueError(f"no {ctx.attempt.number}")

    handle = flaky.trigger({})
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        recorder.wait("run_failed")
    assert recorder.names() == [
        "run_triggered",
        "attempt_started",
        "run_retrying",
        "attempt_started",
        "run_retrying",
        "attempt_started",
        "run_failed",
    ]
    assert [kw["attempt"] for _, kw in recorder.of("attempt_started")] == [1, 2, 3]
    retrying = recorder.of("run_retrying")
    for number, (sender, kw) in enumerate(retrying, start=1):
        assert sender == "sig-flaky" and kw["attempt"] == number
        assert kw["error"].name == "ValueError" and kw["error"].message == f"no {number}"
        assert isinstance(kw["retry_at"], datetime) and kw["retry_at"] == kw["run"].retry_at
        assert kw["run"].status == "REATTEMPTING" and kw["run"].finished_at is None
    (sender, failed) = recorder.of("run_failed")[0]
    assert sender == "sig-flaky" and failed["attempt"] == 3
    assert failed["error"].message == "no 3" and failed["run"].error == failed["error"]
    assert failed["run"].status == "FAILED" and failed["run"].attempt_count == 3
    assert "retry_at" not in failed
    assert wait_final(handle).status == "FAILED"


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_cancel_and_bulk_cancel(rt, recorder):
    @runlane.task(id="sig-later")
    def later(payload):
        return 1

    one = later.trigger({}, delay="1h")
    assert runlane.runs.cancel(one).status == "CANCELED"
    runlane.runs.cancel(one)  # canceled already: not again
    assert recorder.names() == ["run_triggered", "run_canceled"]
    sender, kw = recorder.of("run_canceled")[0]
    assert sender == "sig-later" and kw["run"].id == one.id and kw["run"].status == "CANCELED"

    two = [later.trigger({}, delay="1h", tags=["bulk"]) for _ in range(2)]
    done = runlane.runs.bulk_cancel(tag="bulk")
    assert sorted(done.ids) == sorted(h.id for h in two)
    canceled = recorder.of("run_canceled")[1:]
    assert sorted(kw["run"].id for _, kw in canceled) == sorted(h.id for h in two)
    assert all(kw["run"].status == "CANCELED" for _, kw in canceled)


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_expire_on_the_leader_tick(clock, recorder):
    @runlane.task(id="sig-ttl")
    def ttl_task(payload):
        return 1

    handle = ttl_task.trigger({}, ttl="10s")  # no worker takes it
    clock.advance(11)
    runtime.get().engine.tick()
    assert recorder.names() == ["run_triggered", "run_expired"]
    sender, kw = recorder.of("run_expired")[0]
    assert sender == "sig-ttl" and kw["run"].id == handle.id and kw["run"].status == "EXPIRED"
    runtime.get().engine.tick()
    assert len(recorder.of("run_expired")) == 1


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_batch_one_signal_per_run(rt, recorder):
    @runlane.task(id="sig-a")
    def a(payload):
        return 1

    @runlane.task(id="sig-b")
    def b(payload):
        return 2

    batch = runlane.batch.trigger_by_task([{"task": a, "payload": {}}, {"task": b, "payload": {}}])
    got = recorder.of("run_triggered")
    assert [s for s, _ in got] == ["sig-a", "sig-b"]
    assert [kw["handle"].id for _, kw in got] == [r.id for r in batch.runs]
    assert {kw["batch_id"] for _, kw in got} == {batch.batch_id}


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_trigger_inside_a_run_carries_its_context(rt, recorder):
    @runlane.task(id="sig-child")
    def child(payload):
        return 1

    @runlane.task(id="sig-parent")
    def parent(payload, ctx):
        return child.trigger({}).id

    handle = parent.trigger({})
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        child_id = wait_final(handle).output
        recorder.wait("run_succeeded", 2)
    (_, from_task) = recorder.of("run_triggered")[1]
    assert from_task["handle"].id == child_id and from_task["ctx"].run.id == handle.id


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_a_raising_receiver_is_logged_and_changes_nothing(rt, recorder, caplog):
    def broken_receiver(sender, **kwargs):
        raise RuntimeError("boom")

    signals.run_triggered.connect(broken_receiver)
    signals.run_succeeded.connect(broken_receiver)

    @runlane.task(id="sig-robust")
    def robust(payload):
        return "fine"

    with caplog.at_level(logging.WARNING, logger="runlane.signals"):
        handle = robust.trigger({})
        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            recorder.wait("run_succeeded")
            assert wait_final(handle).output == "fine"
    assert recorder.names() == ["run_triggered", "attempt_started", "run_succeeded"]
    lines = [r for r in caplog.records if r.name == "runlane.signals"]
    assert len(lines) == 2 and not any(r.exc_info for r in lines)
    assert all("broken_receiver" in r.getMessage() and "boom" in r.getMessage() for r in lines)


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_disconnect_and_senders(rt):
    got: list[tuple[str, str]] = []

    def only_a(sender, handle, **kwargs):
        got.append((sender, handle.id))

    def everything(sender, handle, **kwargs):
        got.append(("any", handle.id))

    @runlane.task(id="sig-x")
    def x(payload):
        return 1

    @runlane.task(id="sig-y")
    def y(payload):
        return 1

    signals.run_triggered.connect(only_a, sender="sig-x")
    signals.run_triggered.connect(everything)
    hx, hy = x.trigger({}), y.trigger({})
    assert sorted(got) == sorted([("sig-x", hx.id), ("any", hx.id), ("any", hy.id)])
    got.clear()
    signals.run_triggered.disconnect(everything)
    hx2 = x.trigger({})
    y.trigger({})
    assert got == [("sig-x", hx2.id)]
    signals.run_triggered.disconnect(only_a)  # from every sender it was connected to
    x.trigger({})
    assert got == [("sig-x", hx2.id)] and not signals.run_triggered.receivers


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_a_lambda_stays_connected(rt):
    got: list[str] = []
    signals.run_triggered.connect(lambda sender, handle, **kw: got.append(handle.id))

    @runlane.task(id="sig-lambda")
    def t(payload):
        return 1

    assert got == [t.trigger({}).id]  # held strongly, unlike blinker's default


@pytest.mark.native_only  # (the order on each backend: the two cases above)
def test_nobody_connected_means_no_work(rt, monkeypatch):
    calls: list[str] = []
    for name in (
        "send_triggered",
        "send_attempt_started",
        "send_attempt_ended",
        "send_runs",
        "ended_run",
    ):
        monkeypatch.setattr(
            core_signals, name, lambda *a, _name=name, **kw: calls.append(_name), raising=True
        )

    @runlane.task(id="sig-quiet")
    def quiet(payload):
        return 1

    @runlane.task(id="sig-quiet-fail")
    def fails(payload):
        raise ValueError("x")

    handles = [quiet.trigger({}), fails.trigger({}, max_attempts=1)]
    runlane.runs.cancel(quiet.trigger({}, delay="1h"))
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        assert [wait_final(h).status for h in handles] == ["COMPLETED", "FAILED"]
    # a receiver connected to another signal only does not make these ones send
    signals.run_expired.connect(lambda sender, **kw: None)
    quiet.trigger({})
    assert calls == []


def test_remote_mode_sends_run_triggered_on_the_client(tmp_path):
    from tests.remote_support import remote_client, remote_server

    got: list[tuple[str, str, str]] = []
    signals.run_triggered.connect(
        lambda sender, handle, **kw: got.append(
            (threading.current_thread().name, sender, handle.id)
        ),
        sender="sig-remote",
    )

    @runlane.task(id="sig-remote")
    def remote_task(payload):
        return 1

    with remote_server(tmp_path, concurrency=1) as server, remote_client(server):
        handle = remote_task.trigger({})
        batch = runlane.batch.trigger_by_task([{"task": remote_task, "payload": {}}])
    mine = [(s, i) for t, s, i in got if t == threading.current_thread().name]
    assert mine == [("sig-remote", handle.id), ("sig-remote", batch.runs[0].id)]
