"""Alerts (runlane.contrib.alerts): a real HTTP receiver gets one signed alert per run end that
an alert hears, retried with backoff until it answers 2xx, never twice for one run and status;
``verify`` refuses what was not signed with the secret, or was signed too long ago; bad
configuration is an error naming the entry and field at fault, never showing the secret."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import runlane
from runlane.contrib.alerts import (
    TASK_ID,
    Alert,
    AlertEvent,
    WebhookVerificationError,
    build_event,
    signed_headers,
    verify,
    wiring,
)
from runlane.core import runtime as runtime_mod
from runlane.core import signals
from runlane.errors import ConfigurationError, InvalidOptionError
from tests.helpers import wait_final, wait_for

SECRET = "alert-secret-0123456789abcdef"
FAST_RETRY = {"min_timeout_in_ms": 50, "max_timeout_in_ms": 200, "factor": 2, "randomize": False}


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on a free loopback port that records every POST and answers with the
    next of ``answers`` (then 200)."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            self.deliveries.append(Delivery(headers, body))
            return self.answers.pop(0) if self.answers else 200

    def got(self, count: int) -> list[Delivery]:
        def enough() -> list[Delivery] | None:
            with self.lock:
                return list(self.deliveries) if len(self.deliveries) >= count else None

        return wait_for(enough, timeout=20, message=f"{count} alert deliveries")

    def count(self) -> int:
        with self.lock:
            return len(self.deliveries)


@pytest.fixture(scope="module")
def _server() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiver.answer(body, dict(self.headers.items()))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/runlane"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver(_server: Receiver) -> Receiver:
    with _server.lock:
        _server.deliveries.clear()
        _server.answers.clear()
    return _server


@pytest.fixture
def configure(tmp_path: Path) -> Iterator[Any]:
    """``configure(**options)``: a runtime on a SQLite file in tmp_path (or ``store``)."""

    def make(**options: Any) -> runtime_mod.Runtime:
        options.setdefault("store", f"sqlite:///{tmp_path}/runlane.db")
        return runlane.configure(engine_interval=0.05, **options)

    yield make
    old = runtime_mod.install(None)
    if old is not None:
        old.close()


def alert_to(receiver: Receiver, **fields: Any) -> dict[str, Any]:
    return {"url": receiver.url, "secret": SECRET, "retry": FAST_RETRY, **fields}


def alert_runs() -> list[runlane.Run]:
    return list(runlane.runs.list(task_identifier=TASK_ID))


def verified(delivery: Delivery) -> AlertEvent:
    return verify(delivery.body, delivery.headers, SECRET)


def _failing_task() -> Any:
    @runlane.task(id="alerts-boom", retry={"max_attempts": 1})
    def boom(payload: dict) -> None:
        runlane.metadata.set("step", "charging")
        raise RuntimeError(f"card declined for {payload['user']}")

    return boom


def test_a_failed_run_sends_one_signed_alert(configure, receiver) -> None:
    configure(alerts=[alert_to(receiver)])
    handle = _failing_task().trigger({"user": "ada"}, tags=["billing"])
    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        (delivery,) = receiver.got(1)
        (sent,) = alert_runs()
        assert wait_final(sent.id).status == "COMPLETED"
    event = verified(delivery)
    assert event.type == "run.failed" and event.status == "FAILED"
    assert event.run.id == handle.id and event.run.task_identifier == "alerts-boom"
    assert event.run.error is not None and "card declined for ada" in event.run.error.message
    assert event.run.tags == ["billing"] and event.run.metadata == {"step": "charging"}
    assert event.run.attempt_count == 1 and event.run.finished_at is not None
    assert event.run.payload is None  # the payload is not sent
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers["x-runlane-event-id"] == event.id
    assert headers["x-runlane-signature"].startswith(f"t={headers['x-runlane-timestamp']},v1=")
    # the alert run holds the alert's name and the event, never its URL or secret
    stored = runlane.runs.retrieve(sent.id)
    assert SECRET not in json.dumps(stored.payload) and receiver.url not in json.dumps(
        stored.payload
    )
    assert receiver.count() == 1


def test_configured_statuses_and_tasks(configure, receiver) -> None:
    configure(alerts=[alert_to(receiver, statuses=["COMPLETED", "CANCELED"], tasks=["alerts-ok"])])

    @runlane.task(id="alerts-ok")
    def ok(payload: dict) -> dict:
        return {"fine": True}

    _failing_task().trigger({"user": "bob"})  # FAILED: not a status this alert hears
    later = ok.trigger({}, delay="1h")
    runlane.runs.cancel(later.id)  # CANCELED, in this process
    done = ok.trigger({})
    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        deliveries = receiver.got(2)
        wait_final(done)
        for sent in wait_for(lambda: len(alert_runs()) == 2 and alert_runs()):
            wait_final(sent.id)
    events = sorted((verified(d) for d in deliveries), key=lambda e: e.type)
    assert [(e.type, e.run.id) for e in events] == [
        ("run.canceled", later.id),
        ("run.completed", done.id),
    ]
    assert receiver.count() == 2


def test_a_failing_receiver_is_retried_with_backoff(configure, receiver) -> None:
    receiver.answers.extend([500, 503])
    configure(alerts=[alert_to(receiver)])
    _failing_task().trigger({"user": "cy"})
    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        deliveries = receiver.got(3)
        (sent,) = alert_runs()
        final = wait_final(sent.id)
    assert final.status == "COMPLETED" and final.attempt_count == 3
    events = [verified(d) for d in deliveries]  # each delivery signed afresh, all valid
    assert len({e.id for e in events}) == 1
    assert receiver.count() == 3


def test_a_refusing_receiver_is_not_retried_and_never_alerted_on(configure, receiver) -> None:
    receiver.answers.extend([404, 404])
    configure(alerts=[alert_to(receiver)])
    _failing_task().trigger({"user": "di"})
    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        receiver.got(1)
        (sent,) = alert_runs()
        final = wait_final(sent.id)
    assert final.status == "FAILED" and final.attempt_count == 1
    assert "answered 404" in final.error.message and receiver.url not in final.error.message
    assert len(alert_runs()) == 1 and receiver.count() == 1  # no alert about the alert


def test_a_repeated_report_sends_nothing_more(configure, receiver) -> None:
    configure(alerts=[alert_to(receiver)])
    handle = _failing_task().trigger({"user": "eve"})
    with runlane.Worker(concurrency=2, fetch_timeout=0.1):
        receiver.got(1)
        run = wait_final(handle)
        signals.run_failed.send(run.task_identifier, run=run, attempt=1, ctx=None, error=run.error)
        wiring.alert(run)
        (sent,) = alert_runs()
        wait_final(sent.id)
    assert len(alert_runs()) == 1 and receiver.count() == 1


def test_a_crashed_run_is_alerted(configure, receiver) -> None:
    rt = configure(alerts=[alert_to(receiver)])
    started, release = threading.Event(), threading.Event()

    @runlane.task(id="alerts-hang", retry={"max_attempts": 1})
    def hang(payload: dict) -> None:
        started.set()
        release.wait(20)

    handle = hang.trigger({})
    try:
        with runlane.Worker(concurrency=2, fetch_timeout=0.1):
            assert started.wait(20)
            rt.engine.reap(time.time() + 3600)  # as if its worker had died
            (delivery,) = receiver.got(1)
            release.set()
    finally:
        release.set()
    event = verified(delivery)
    assert (event.type, event.run.id) == ("run.crashed", handle.id)


def test_on_redis(configure, receiver, redis_url) -> None:
    import uuid

    from tests.adapters import delete_redis_prefix

    prefix = f"rltest-{uuid.uuid4().hex[:12]}"
    try:
        configure(store=f"{redis_url}?prefix={prefix}", alerts=[alert_to(receiver)])
        handle = _failing_task().trigger({"user": "fay"})
        with runlane.Worker(concurrency=2, fetch_timeout=0.1):
            (delivery,) = receiver.got(1)
            (sent,) = alert_runs()
            assert wait_final(sent.id).status == "COMPLETED"
        assert verified(delivery).run.id == handle.id
    finally:
        old = runtime_mod.install(None)
        if old is not None:
            old.close()
        delete_redis_prefix(redis_url, prefix)


# ---------------------------------------------------------------------- verify
def _signed(body: bytes = b"", at: int | None = None) -> tuple[bytes, dict[str, str]]:
    run = _a_run()
    event = build_event(run, time.time())
    body = body or json.dumps(event).encode()
    return body, signed_headers(body, event["id"], SECRET, at or int(time.time()))


def _a_run() -> runlane.Run:
    now = "2024-05-01T12:00:00+00:00"
    return runlane.Run.model_validate(
        {
            "id": "run_abc",
            "task_identifier": "t",
            "status": "FAILED",
            "environment": "dev",
            "created_at": now,
            "updated_at": now,
            "queue": "task/t",
        }
    )


def test_verify_accepts_a_signed_alert_and_refuses_the_rest() -> None:
    body, headers = _signed()
    event = verify(body, headers, SECRET)
    assert event.run.id == "run_abc" and event.type == "run.failed"
    assert verify(body, headers, ["old-secret-000000000", SECRET]).id == event.id  # rotation

    def reason(**changes: Any) -> str:
        given = {"body": body, "headers": headers, "secret": SECRET, **changes}
        with pytest.raises(WebhookVerificationError) as caught:
            verify(given.pop("body"), given.pop("headers"), given.pop("secret"), **given)
        return caught.value.reason

    assert reason(secret="not-the-secret-0000000") == "bad_signature"
    assert reason(body=body.replace(b"run_abc", b"run_abd")) == "bad_signature"
    assert reason(now=time.time() + 301) == "stale_timestamp"
    assert reason(headers={}) == "missing_header"
    assert reason(max_body=10) == "body_too_large"
    stale_body, stale = _signed(at=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(stale_body, stale, SECRET)
    other, other_headers = _signed(body=b'{"id": "evt_1"}')
    with pytest.raises(WebhookVerificationError, match="not a runlane alert"):
        verify(other, other_headers, SECRET)


def test_the_webhooks_receiver_knows_runlane_alerts() -> None:
    from runlane.contrib import webhooks

    body, headers = _signed()
    event = webhooks.verify("runlane", body=body, headers=headers, secret=SECRET)
    assert event.type == "run.failed" and event.id.startswith("evt_")


# ---------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("alerts", "named", "reason"),
    [
        ("https://x.example", "alerts", "expected a list"),
        ([{"url": "https://x.example"}], "alerts[0]", "secret is required"),
        ([{"url": "ftp://x.example", "secret": SECRET}], "alerts[0].url", "http:// or https://"),
        ([{"url": "https://x.example", "secret": "short"}], "alerts[0].secret", "16 characters"),
        (
            [{"url": "https://x.example", "secret": SECRET, "statuses": ["QUEUED"]}],
            "alerts[0].statuses",
            "not a final run status",
        ),
        (
            [{"url": "https://x.example", "secret": SECRET, "tasks": "one"}],
            "alerts[0].tasks",
            "list of task ids",
        ),
        (
            [{"url": "https://x.example", "secret": SECRET, "retry": {"factor": 0}}],
            "alerts[0].retry",
            "retry.factor",
        ),
        (
            [{"url": "https://x.example", "secret": SECRET, "status": ["FAILED"]}],
            "alerts[0].status",
            "not an alert option",
        ),
        ([{"url": "https://x.example", "secret": SECRET}] * 2, "alerts", "give each a name"),
    ],
)
def test_bad_alerts_are_named(configure, alerts: Any, named: str, reason: str) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        configure(alerts=alerts)
    assert caught.value.option == named and reason in str(caught.value)
    assert SECRET not in str(caught.value)


def test_alerts_from_the_environment_a_model_and_nowhere(configure, monkeypatch) -> None:
    monkeypatch.setenv("RUNLANE_ALERT_URL", "https://ops.example/hook")
    with pytest.raises(ConfigurationError, match="RUNLANE_ALERT_SECRET"):
        configure()
    monkeypatch.setenv("RUNLANE_ALERT_SECRET", SECRET)
    monkeypatch.setenv("RUNLANE_ALERT_STATUSES", "FAILED, expired")
    rt = configure()
    (alert,) = wiring.alerts_of(rt)
    assert alert.url == "https://ops.example/hook" and {s.value for s in alert.statuses} == {
        "FAILED",
        "EXPIRED",
    }
    assert SECRET not in repr(alert)
    assert rt.registry.get(TASK_ID) is not None
    model = Alert(url="https://ops.example/other", secret=SECRET, name="ops")
    assert wiring.alerts_of(configure(alerts=[model])) == (model,)
    assert wiring.alerts_of(configure(alerts=[])) == ()  # explicitly none: the env is not read
    # no open runtime alerts any more: the receivers are gone (signals cost nothing again)
    assert all(r is not wiring._on_end for r in signals.run_failed.receivers.values())
    with pytest.raises(ConfigurationError, match="alerts= is a setting of that server"):
        runlane.configure(api_url="http://127.0.0.1:1", alerts=[model])


def test_flask_and_django_settings_carry_alerts(tmp_path, receiver) -> None:
    flask = pytest.importorskip("flask")
    from runlane.frameworks.django import conf
    from runlane.frameworks.flask import Runlane

    assert conf.configure_options({"ALERTS": [alert_to(receiver)]}) == {
        "alerts": [alert_to(receiver)]
    }
    app = flask.Flask("alerts")
    app.config["RUNLANE_STORE_URL"] = f"sqlite:///{tmp_path}/flask.db"
    app.config["RUNLANE_ALERTS"] = [alert_to(receiver, name="ops")]
    try:
        Runlane(app)
        (alert,) = wiring.alerts_of(app.extensions["runlane"].runtime)
        assert alert.name == "ops"
    finally:
        app.extensions["runlane"].close()
    bad = flask.Flask("bad-alerts")
    bad.config["RUNLANE_STORE_URL"] = f"sqlite:///{tmp_path}/bad.db"
    bad.config["RUNLANE_ALERTS"] = [{"url": "ftp://x.example", "secret": SECRET}]
    with pytest.raises(ConfigurationError, match="RUNLANE_ALERTS") as caught:
        Runlane(bad)
    assert SECRET not in str(caught.value)
