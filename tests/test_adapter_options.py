"""The Celery and Dramatiq adapters' own surface: routing per queue and machine preset, the
wire format (JSON, no ETA or delay: the store owns time), JSON-only deliveries, configuration
errors, and ``wrap()`` of an existing Celery task. Workers here are real Celery workers started
in this process (``start_worker``) over the Redis broker."""

from __future__ import annotations

import base64
import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

import runlane
from runlane.backends._routing import Routes
from runlane.backends.celery import TASK_NAME, CeleryBroker, wrap
from runlane.backends.celery import worker as celery_worker
from runlane.backends.dramatiq import ACTOR_NAME, DramatiqBroker
from runlane.core import runtime
from runlane.core.types import Dispatch
from runlane.errors import ConfigurationError, InvalidOptionError, PayloadError
from tests.adapters import CeleryUnderTest
from tests.helpers import wait_final, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def harness(redis_url: str, tmp_path: Path) -> Iterator[CeleryUnderTest]:
    """A Celery app on the Redis broker whose runlane runtime uses a SQLite store."""
    h = CeleryUnderTest(redis_url)
    runlane.configure(store=f"sqlite:///{tmp_path}/runlane.db", broker=h.broker)
    yield h
    old = runtime.install(None)
    if old is not None:
        old.close()
    h.close()


def _raw_messages(h: CeleryUnderTest, queue: str) -> list[dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(h.url)
    try:
        return [json.loads(m) for m in client.lrange(f"{h.prefix}:{queue}", 0, -1)]
    finally:
        client.close()


# ---------------------------------------------------------------------- routing
def test_routes_by_machine_preset_and_by_runlane_queue():
    routes = Routes("jobs", machines=["large-1x"], routes={"reports": "jobs-reports"})
    assert routes.route(Dispatch("r", "t", "task/t")) == "jobs"
    assert routes.route(Dispatch("r", "t", "task/t", "large-1x")) == "jobs.large-1x"
    assert routes.route(Dispatch("r", "t", "task/t", "micro")) == "jobs"  # no queue of its own
    assert routes.route(Dispatch("r", "t", "reports", "large-1x")) == "jobs-reports"
    assert routes.names == ["jobs", "jobs.large-1x", "jobs-reports"]
    every = Routes()
    assert every.names[0] == "runlane" and "runlane.large-2x" in every.names


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"queue": "has space"}, "queue"),
        ({"queue": ""}, "queue"),
        ({"queue": "x.DQ"}, "queue"),
        ({"machines": ["huge-9x"]}, "machines"),
        ({"machines": "large-1x"}, "machines"),
        ({"routes": ["a"]}, "routes"),
        ({"routes": {"reports": "bad name!"}}, "routes['reports']"),
    ],
)
def test_bad_routing_options_are_clear_errors(kwargs, option):
    with pytest.raises(InvalidOptionError) as err:
        Routes(**kwargs)
    assert err.value.option == option


def test_adapters_want_their_framework_objects():
    with pytest.raises(InvalidOptionError, match=r"celery\.Celery"):
        CeleryBroker("not an app")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match=r"dramatiq\.Broker"):
        DramatiqBroker(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- wire format
def test_celery_messages_are_json_without_eta_and_sent_only_when_due(harness, tmp_path):
    clock = runlane.FakeClock()
    store = f"sqlite:///{tmp_path}/runlane.db"
    rt = runlane.configure(store=store, broker=harness.broker, clock=clock)

    @runlane.task(id="later", machine="large-1x")
    def later(payload):
        return payload

    handle = later.trigger({"n": 1}, delay="1h")
    assert harness.broker.pending() == 0  # the delay lives in the store, not in Celery
    clock.advance(3601)
    rt.engine.tick()
    assert runlane.runs.retrieve(handle).status == "QUEUED"
    assert harness.broker.pending() == 1
    [message] = _raw_messages(harness, f"{harness.prefix}.large-1x")
    assert message["content-type"] == "application/json"
    headers = message["headers"]
    assert headers["task"] == TASK_NAME and headers["shadow"] == "runlane:later"
    assert headers["eta"] is None and headers["expires"] is None
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [handle.id, "later", "task/later", "large-1x", "dev"] and kwargs == {}


def test_a_task_routes_entry_for_runlanes_task_is_reported_once_and_not_used(harness, caplog):
    harness.app.conf.task_routes = {"runlane.*": {"queue": "elsewhere"}}

    @runlane.task(id="routed")
    def routed(payload):
        return payload

    with caplog.at_level(logging.WARNING, logger="runlane.celery"):
        routed.trigger(None)
        routed.trigger(None)
    reports = [r.getMessage() for r in caplog.records if "task_routes" in r.getMessage()]
    assert len(reports) == 1
    assert "'elsewhere'" in reports[0] and "routes=" in reports[0]
    assert len(_raw_messages(harness, harness.prefix)) == 2  # both in runlane's own queue


def test_a_worker_reports_a_task_routes_entry_and_still_executes_runs(harness, caplog):
    harness.app.conf.task_routes = {"runlane.execute": "elsewhere"}

    @runlane.task(id="routed-run")
    def routed_run(payload):
        return payload

    with caplog.at_level(logging.WARNING, logger="runlane.celery"), harness.running(1):
        reports = [r.getMessage() for r in caplog.records if "task_routes" in r.getMessage()]
        assert len(reports) == 1 and "'elsewhere'" in reports[0]  # at the worker's start
        handle = routed_run.trigger({"n": 1})
        assert wait_final(handle).output == {"n": 1}  # from runlane's own queue
    assert sum("task_routes" in r.getMessage() for r in caplog.records) == 1


def test_no_report_without_a_route_for_runlanes_task(caplog):
    import celery

    app = celery.Celery("plain", set_as_current=False)
    app.conf.task_routes = {"reports.*": {"queue": "reports"}}  # routes other tasks only
    with caplog.at_level(logging.WARNING, logger="runlane.celery"):
        CeleryBroker(app).warn_ignored_route()
    assert "task_routes" not in caplog.text


def test_dramatiq_messages_are_json_and_never_delayed():
    broker = StubBroker()
    adapter = DramatiqBroker(broker, queue="jobs", machines=["large-1x"])
    adapter.send([Dispatch("run_1", "t", "task/t"), Dispatch("run_2", "t", "task/t", "large-1x")])
    assert adapter.pending() == 2
    assert broker.queues["jobs.DQ"].qsize() == 0 and broker.queues["jobs.large-1x.DQ"].qsize() == 0
    first = json.loads(broker.queues["jobs"].get_nowait())
    second = json.loads(broker.queues["jobs.large-1x"].get_nowait())
    assert first["actor_name"] == ACTOR_NAME
    assert first["args"] == ["run_1", "t", "task/t", None, None]  # no runtime sends through it
    assert second["args"] == ["run_2", "t", "task/t", "large-1x", None]
    assert "eta" not in first["options"] and "eta" not in second["options"]
    actor = broker.get_actor(ACTOR_NAME)
    assert actor.options == {"max_retries": 0, "time_limit": float("inf")}


# ---------------------------------------------------------------------- JSON only
class Canary:
    """Unpickling this writes a file: proof that a pickle body was decoded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path(self.path).write_text, ("unpickled",))


def test_celery_worker_refuses_a_pickled_delivery_before_decoding_it(harness, tmp_path, caplog):
    harness.app.conf.accept_content = ["json", "pickle"]  # the app allows pickle elsewhere

    @runlane.task(id="json-only")
    def json_only(payload):
        return payload

    canary = tmp_path / "canary"
    handle = json_only.trigger({"ok": True})
    with caplog.at_level(logging.WARNING), harness.running(2):
        assert wait_final(handle).output == {"ok": True}  # the JSON delivery runs
        harness.app.send_task(
            TASK_NAME,
            args=[handle.id, "json-only", Canary(str(canary)), None],
            queue=harness.prefix,
            serializer="pickle",
        )
        wait_for(
            lambda: "accepts JSON messages only" in caplog.text,
            message="the worker to refuse the pickle message",
        )
        wait_for(lambda: harness.broker.pending() == 0, message="the message to be dropped")
    assert not canary.exists()
    assert "pickle" in caplog.text  # a warning about the app-wide setting


def test_dramatiq_refuses_a_pickle_encoder():
    old = dramatiq.get_encoder()
    dramatiq.set_encoder(dramatiq.PickleEncoder())
    try:
        with pytest.raises(ConfigurationError, match="JSON only"):
            DramatiqBroker(StubBroker())
    finally:
        dramatiq.set_encoder(old)


# ---------------------------------------------------------------------- configuration
def test_a_celery_app_without_json_is_refused_at_worker_start(harness):
    harness.app.conf.accept_content = ["pickle"]
    with pytest.raises(ConfigurationError, match="does not accept JSON"), harness.running(1):
        pass


def test_green_pools_are_refused(harness):
    from celery.concurrency.solo import TaskPool

    class GreenPool(TaskPool):  # type: ignore[misc]
        is_green = True

    with pytest.raises(ConfigurationError, match="prefork, threads or solo"):
        harness.app.WorkController(pool_cls=GreenPool, concurrency=1)


def test_a_worker_process_without_the_adapter_configured_says_so(tmp_path):
    runlane.configure(store=f"sqlite:///{tmp_path}/runlane.db")  # the local broker
    try:
        with pytest.raises(ConfigurationError, match="not configured with a CeleryBroker"):
            celery_worker.process.start(slots=1)
    finally:
        runtime.install(None).close()


def test_a_run_from_another_environment_is_reported(harness, tmp_path, caplog):
    store = f"sqlite:///{tmp_path}/runlane.db"

    @runlane.task(id="env-bound")
    def env_bound(payload):
        return 1

    runlane.configure(store=store, broker=harness.broker, environment="staging")
    handle = env_bound.trigger({})
    runlane.configure(store=store, broker=harness.broker, environment="prod")
    with caplog.at_level(logging.ERROR), harness.running(1):
        wait_for(lambda: "belongs to environment 'staging'" in caplog.text, message="a report")
    assert handle.id in caplog.text and "this Celery worker runs 'prod'" in caplog.text


def test_worker_consumes_runlane_queues_unless_told_otherwise(harness):
    with harness.running(1) as worker:
        consumed = set(worker.app.amqp.queues.consume_from)
    assert set(harness.broker.queues) <= consumed
    assert f"{harness.prefix}.default" in consumed  # the app's own queue is still consumed


# ---------------------------------------------------------------------- wrap()
def test_wrap_runs_the_celery_function_and_delay_keeps_working(harness):
    calls: list[tuple[str, int]] = []

    @harness.app.task(name="emails.send")
    def send(user_id: int, template: str = "welcome") -> dict:
        calls.append((template, user_id))
        return {"to": user_id, "template": template}

    original_run = send.run
    task = wrap(send, retry={"max_attempts": 2})
    assert task.id == "emails.send"  # the Celery task's name by default
    assert send.run is original_run  # the Celery task is unchanged

    with harness.running(2):
        run = wait_final(task.trigger({"user_id": 7, "template": "promo"}))
        assert run.status == "COMPLETED" and run.output == {"to": 7, "template": "promo"}
        legacy = send.apply_async(args=(8,), queue=f"{harness.prefix}.default")
        wait_for(lambda: ("welcome", 8) in calls, message="the plain Celery call")
    assert legacy.id and ("promo", 7) in calls


def test_wrap_checks_the_payload_at_trigger_time(harness):
    @harness.app.task(name="reports.build")
    def build(account: str, year: int = 2024) -> str:
        return f"{account}-{year}"

    task = wrap(build, id="build-report")
    assert task.id == "build-report"
    with pytest.raises(PayloadError, match="missing a required argument: 'account'"):
        task.trigger({"year": 2023})
    with pytest.raises(PayloadError, match="unexpected keyword argument 'colour'"):
        task.trigger({"account": "a", "colour": "red"})
    with pytest.raises(PayloadError, match="dict of its keyword arguments"):
        task.trigger(["a", 2023])
    assert list(runlane.runs.list()) == []  # nothing was written


def test_wrap_a_bound_task_and_refuse_what_is_not_a_task(harness):
    @harness.app.task(name="bound.echo", bind=True)
    def echo(self, text: str) -> dict:
        return {"text": text, "task": self.name}

    task = wrap(echo, id="bound-echo")
    with harness.running(1):
        assert wait_final(task.trigger({"text": "hi"})).output == {
            "text": "hi",
            "task": "bound.echo",
        }
    with pytest.raises(InvalidOptionError, match="Celery task"):
        wrap(lambda: None)  # type: ignore[arg-type]


def test_self_retry_in_a_wrapped_task_is_a_failed_attempt_that_runlane_retries(harness):
    @harness.app.task(name="flaky.fetch", bind=True)
    def fetch(self, url: str) -> str:
        if not seen:
            seen.append(url)
            raise self.retry(exc=ConnectionError("upstream down"))
        return f"fetched {url}"

    seen: list[str] = []
    task = wrap(fetch, retry={"max_attempts": 2, "min_timeout_in_ms": 0, "max_timeout_in_ms": 1})
    with harness.running(1):
        run = wait_final(task.trigger({"url": "https://example.test"}))
    assert run.status == "COMPLETED" and run.output == "fetched https://example.test"
    assert run.attempt_count == 2 and "upstream down" in run.attempts[0].error.message


def test_pickle_is_what_the_canary_detects(tmp_path):
    """The canary really writes its file when unpickled (so its absence above means
    something)."""
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(Canary(str(canary))))
    assert canary.read_text() == "unpickled"


def test_celery_publish_signals_see_runlane_messages(harness):
    """runlane publishes without apply_async's per-call bookkeeping, but through Celery's own
    message path: publish signals (used by tracing and monitoring) see every dispatch."""
    from celery import signals

    seen: list[tuple[Any, Any]] = []

    def before(sender=None, headers=None, routing_key=None, **kwargs):
        seen.append((sender, headers["shadow"], headers["id"], routing_key))

    signals.before_task_publish.connect(before, weak=False)
    try:

        @runlane.task(id="signalled")
        def signalled(payload):
            return payload

        signalled.trigger({"n": 1})
    finally:
        signals.before_task_publish.disconnect(before)
    [(sender, shadow, message_id, routing_key)] = seen
    assert sender == TASK_NAME and shadow == "runlane:signalled"
    assert message_id and routing_key == harness.prefix


def test_celery_eager_mode_executes_the_run_at_trigger_time(harness):
    """task_always_eager (Celery's test mode) is honoured: the dispatch runs in this process."""
    harness.app.conf.task_always_eager = True

    @runlane.task(id="eager")
    def eager(payload):
        return {"doubled": payload["n"] * 2}

    try:
        run = runlane.runs.retrieve(eager.trigger({"n": 21}))
    finally:
        celery_worker.process.stop()  # the host the eager execution started in this process
    assert run.status == "COMPLETED" and run.output == {"doubled": 42}


# ---------------------------------------------------------------------- publishing over AMQP
def _get_all(app: Any, queue: str) -> list[Any]:
    """The messages waiting in a RabbitMQ queue (taken off it)."""
    out = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            out.append(message)
    return out


def test_celery_publish_over_amqp_is_celerys_own_message(amqp_url):
    """Without publish signals or sent events, CeleryBroker publishes with kombu directly
    (skipping send_task_message's per-call work): the message on RabbitMQ is the one Celery's
    own path publishes (a receiver of before_task_publish makes runlane take that path), the
    queue is declared before the first message (nothing lost on a fresh queue), and again on a
    new connection."""
    from celery import signals

    h = CeleryUnderTest(amqp_url)
    try:
        d = Dispatch("run_a", "fast-task", "task/fast-task", None)
        h.broker.send([d])  # the queue did not exist: declared first

        def before(**kwargs: Any) -> None:
            pass

        signals.before_task_publish.connect(before, weak=False)
        try:
            h.broker.send([d])  # Celery's send_task_message
        finally:
            signals.before_task_publish.disconnect(before)
        fast, own = _get_all(h.app, h.prefix)
        varying = {"id", "root_id"}
        assert {k: v for k, v in fast.headers.items() if k not in varying} == {
            k: v for k, v in own.headers.items() if k not in varying
        }
        assert fast.headers["task"] == TASK_NAME and fast.headers["shadow"] == "runlane:fast-task"
        props = ("content_type", "content_encoding", "delivery_mode", "priority", "reply_to")
        assert [fast.properties.get(p) for p in props] == [own.properties.get(p) for p in props]
        assert fast.properties["correlation_id"] == fast.headers["id"]
        assert fast.delivery_info["routing_key"] == own.delivery_info["routing_key"] == h.prefix
        assert fast.delivery_info["exchange"] == own.delivery_info["exchange"]
        assert json.loads(fast.body) == json.loads(own.body)
        assert json.loads(fast.body)[0] == ["run_a", "fast-task", "task/fast-task", None, None]

        # the connection lost (the queue deleted meanwhile): kombu reconnects, and the queue
        # is declared again on the new channel before the message is published
        from tests.adapters import delete_amqp_queues

        delete_amqp_queues(amqp_url, [h.prefix])
        with h.app.producer_or_acquire() as producer:
            producer.connection.collect()
        h.broker.send([Dispatch("run_b", "fast-task", "task/fast-task", None)])
        [again] = _get_all(h.app, h.prefix)
        assert json.loads(again.body)[0][0] == "run_b"
    finally:
        h.close()
