"""runlane.frameworks.http.shapes: Trigger.dev's request JSON → runlane's verbs, runlane's models
→ Trigger.dev's response JSON. The responses are built from real runs, batches and schedules of
a memory:// runtime and validated by the zod schemas of @trigger.dev/core 3.3.17
(tests/node/validate_shapes.cjs); the requests parsed include those the official SDK sends
(tests/node/capture_requests.cjs). Node and tests/node/node_modules (``npm ci --prefix
tests/node``) missing: those tests skip locally and fail in CI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runlane
from runlane.core import operations, runtime
from runlane.core import schedules as schedule_ops
from runlane.core.limits import Limits
from runlane.core.models import RunStatus
from runlane.core.options import parse_trigger_options
from runlane.errors import InvalidOptionError, PayloadError
from runlane.frameworks.http import shapes
from runlane.testing import memory_runtime, run_until_idle

NODE_DIR = Path(__file__).resolve().parent / "node"


# ---------------------------------------------------------------------- node
@pytest.fixture(scope="session")
def node() -> str:
    binary = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "@trigger.dev" / "core").is_dir()
    if binary and installed:
        return binary
    why = "node is not installed" if not binary else "run `npm ci --prefix tests/node`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the Trigger.dev schema checks need Node: {why}")
    pytest.skip(f"the Trigger.dev schema checks need Node: {why}")


def run_node(node: str, script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, script], cwd=NODE_DIR, input=stdin, capture_output=True, text=True, timeout=120
    )


def validate(node: str, documents: dict[str, list[Any]]) -> dict[str, Any]:
    """Each document checked by the schema it is filed under; returns the unknown keys."""
    done = run_node(node, "validate_shapes.cjs", json.dumps(documents))
    assert done.stdout, done.stderr
    result = json.loads(done.stdout)
    assert result["failures"] == [], json.dumps(result["failures"], indent=1)[:4000]
    assert result["checked"] == sum(len(docs) for docs in documents.values())
    return result


@pytest.fixture(scope="session")
def sdk_requests(node: str) -> dict[str, Any]:
    """What @trigger.dev/sdk 3.3.17 sends for each management call (name → request)."""
    done = run_node(node, "capture_requests.cjs")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def fake() -> Iterator[runlane.FakeClock]:
    clock = runlane.FakeClock()
    with memory_runtime(clock):
        yield clock


def query(request: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request["query"]:
        out.setdefault(key, []).append(value)
    return out


# ---------------------------------------------------------------------- trigger requests
TRIGGER_BODY = {  # as the SDK sends tasks.trigger("my-task", {...}, {every option})
    "payload": '{"json":{"video":"v1","sizes":[1,2.5],"nested":{"ok":true,"none":null}}}',
    "context": {"traceparent": "00-x"},
    "options": {
        "queue": {"name": "paid", "concurrencyLimit": 10},
        "concurrencyKey": "user_42",
        "payloadType": "application/super+json",
        "idempotencyKey": hashlib.sha256(b"order-7").hexdigest(),
        "idempotencyKeyTTL": "1h",
        "delay": "1h52m18s",
        "ttl": "10m",
        "tags": ["user_42", "video"],
        "maxAttempts": 3,
        "metadata": {"step": 1},
        "maxDuration": 60,
        "machine": "large-1x",
        "lockToVersion": "20250301.1",
        "test": True,
        "metadataType": "application/json",
    },
}
TRIGGER_OPTIONS = {
    "queue": {"name": "paid", "concurrency_limit": 10},
    "concurrency_key": "user_42",
    "idempotency_key": hashlib.sha256(b"order-7").hexdigest(),
    "idempotency_key_ttl": "1h",
    "delay": "1h52m18s",
    "ttl": "10m",
    "tags": ["user_42", "video"],
    "max_attempts": 3,
    "metadata": {"step": 1},
    "max_duration": 60,
    "machine": "large-1x",
    "version": "20250301.1",
    "test": True,
}


def test_trigger_options_take_runlane_names_that_runlane_accepts():
    payload, options = shapes.parse_trigger_body(TRIGGER_BODY)
    assert payload == {"video": "v1", "sizes": [1, 2.5], "nested": {"ok": True, "none": None}}
    assert options == TRIGGER_OPTIONS
    parsed = parse_trigger_options(options, now=1000.0, limits=Limits())
    assert parsed.queue.name == "paid" and parsed.queue.concurrency_limit == 10
    assert parsed.delay_until == 1000.0 + 6738 and parsed.ttl == 600
    # the SDK hashed the key already (as idempotency_keys.create does): it is not hashed again
    assert parsed.idempotency_key == hashlib.sha256(b"order-7").hexdigest()
    assert (parsed.max_attempts, parsed.max_duration, parsed.is_test) == (3, 60, True)


@pytest.mark.parametrize(
    ("payload", "payload_type", "expected"),
    [
        ("hello", "text/plain", "hello"),
        ("", "text/plain", ""),
        ('{"json":42}', "application/super+json", 42),
        ('{"json":null}', "application/super+json", None),
        ('{"json":[1,{"a":"b"}]}', "application/super+json", [1, {"a": "b"}]),
        ({"raw": [1]}, "application/json", {"raw": [1]}),
        ({"raw": [1]}, None, {"raw": [1]}),  # the reference's default type
        (None, "application/json", None),  # undefined: no payload at all
        (  # undefined members are dropped, as JSON.stringify drops them; arrays keep null
            '{"json":{"a":1,"gone":null,"b":{"c":null},"l":[null,1]},"meta":{"values":'
            '{"gone":["undefined"],"b.c":["undefined"],"l.0":["undefined"]},"v":1}}',
            "application/super+json",
            {"a": 1, "b": {}, "l": [None, 1]},
        ),
        (
            '{"json":{"x.y":null,"k":2},"meta":{"values":{"x\\\\.y":["undefined"]},"v":1}}',
            "application/super+json",
            {"k": 2},
        ),
        (  # one object in two places: the JSON holds both copies
            '{"json":{"p":{"a":1},"q":{"a":1}},"meta":{"referentialEqualities":{"p":["q"]},"v":1}}',
            "application/super+json",
            {"p": {"a": 1}, "q": {"a": 1}},
        ),
    ],
)
def test_json_payloads_in_every_form_the_sdk_sends(payload, payload_type, expected):
    assert shapes.decode_payload(payload, payload_type) == expected


@pytest.mark.parametrize(
    ("payload", "payload_type", "match"),
    [
        (
            '{"json":{"a":{"at":"1970-01-01T00:00:00.000Z"}},"meta":{"values":{"a.at":["Date"]}}}',
            "application/super+json",
            r"\$\.a\.at is a JavaScript Date, which is not JSON",
        ),
        (
            '{"json":{"n":"NaN"},"meta":{"values":{"n":["number"]}}}',
            "application/super+json",
            r"\$\.n is a JavaScript number",
        ),
        ('{"json":[["a",1]],"meta":{"values":["map"]}}', "application/super+json", r"\$ is a"),
        ('{"json":{"s":[1]},"meta":{"values":{"s":["set"]}}}', "application/super+json", "set"),
        ('{"json":1,"extra":2}', "application/super+json", "not a superjson envelope"),
        ("not json", "application/super+json", "not valid superjson"),
        ({"json": 1}, "application/super+json", "is a JSON string"),
        (1, "text/plain", "a text/plain payload is a string"),
        ("x", "application/store", "JSON payloads only"),
        ("x", "application/octet-stream", "JSON payloads only"),
    ],
)
def test_payloads_that_are_not_json_are_refused(payload, payload_type, match):
    with pytest.raises(PayloadError, match=match):
        shapes.decode_payload(payload, payload_type)


def test_an_unknown_payload_type_names_the_field():
    with pytest.raises(PayloadError) as info:
        shapes.parse_trigger_body({"payload": "x", "options": {"payloadType": "application/store"}})
    assert info.value.option == "options.payloadType"
    with pytest.raises(PayloadError) as info:
        shapes.parse_batch_trigger_body(
            {"items": [{"task": "t", "payload": "{", "options": {"payloadType": "x/y"}}]}
        )
    assert info.value.option == "items[0].options.payloadType"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": 1, "opts": {}}, "opts"),
        ({"options": {"concurency": "k"}}, "options.concurency"),
        ({"options": {"maxAttempts": "3"}}, "options.maxAttempts"),
        ({"options": {"maxAttempts": True}}, "options.maxAttempts"),
        ({"options": {"test": 1}}, "options.test"),
        ({"options": {"tags": {"a": 1}}}, "options.tags"),
        ({"options": {"metadata": [1]}}, "options.metadata"),
        ({"options": {"metadataType": "application/super+json"}}, "options.metadataType"),
        ({"options": {"idempotencyKey": ""}}, "options.idempotencyKey"),
        ({"options": {"idempotencyKey": "k" * 2049}}, "options.idempotencyKey"),
        ({"options": {"queue": "paid"}}, "options.queue"),
        ({"options": {"queue": {"name": "q", "limit": 1}}}, "options.queue.limit"),
        ({"options": {"queue": {"concurrencyLimit": 1001}}}, "options.queue.concurrencyLimit"),
        ({"options": {"queue": {"name": 3}}}, "options.queue.name"),
        ({"options": {"dependentAttempt": "attempt_1"}}, "options.dependentAttempt"),
        ({"options": {"parentAttempt": "attempt_1"}}, "options.parentAttempt"),
        ({"options": []}, "options"),
        ([], "body"),
    ],
)
def test_malformed_trigger_requests_name_the_field(body, field):
    with pytest.raises(InvalidOptionError) as info:
        shapes.parse_trigger_body(body)
    assert info.value.option == field


def test_null_options_count_as_not_given():
    body = {
        "payload": None,
        "options": {"delay": None, "queue": {"name": "q", "concurrencyLimit": None}},
    }
    assert shapes.parse_trigger_body(body) == (None, {"queue": {"name": "q"}})
    assert shapes.parse_trigger_body({}) == (None, {})


def test_batch_items_become_runlane_batch_items():
    body = {
        "items": [
            {
                "task": "a",
                "payload": '{"json":{"n":1}}',
                "options": {"payloadType": "application/super+json"},
            },
            {"task": "b", "payload": "two", "options": {"payloadType": "text/plain", "tags": "t"}},
            {"task": "c"},
        ]
    }
    assert shapes.parse_batch_trigger_body(body) == [
        {"id": "a", "payload": {"n": 1}, "options": {}},
        {"id": "b", "payload": "two", "options": {"tags": "t"}},
        {"id": "c", "payload": None, "options": {}},
    ]
    for bad, field in [
        ({"items": {}}, "items"),
        ({"items": [{"payload": 1}]}, "items[0].task"),
        ({"items": [{"task": "a", "extra": 1}]}, "items[0].extra"),
        ({"items": [{"task": "a"}, {"task": "b", "options": {"ttl": []}}]}, "items[1].options.ttl"),
        ({"items": [], "dependentAttempt": "x"}, "dependentAttempt"),
    ]:
        with pytest.raises(InvalidOptionError) as info:
            shapes.parse_batch_trigger_body(bad)
        assert info.value.option == field


def test_batch_headers_refuse_a_batch_wide_idempotency_key():
    shapes.parse_batch_trigger_headers({"batch-processing-strategy": "sequential"})
    shapes.parse_batch_trigger_headers({"idempotency-key-ttl": "1h"})
    with pytest.raises(InvalidOptionError, match=r"give each item options\.idempotencyKey"):
        shapes.parse_batch_trigger_headers({"idempotency-key": "abc"})
    with pytest.raises(InvalidOptionError) as info:
        shapes.parse_batch_trigger_headers({"batch-processing-strategy": "random"})
    assert info.value.option == "batch-processing-strategy"


def test_runlane_option_names_map_back_to_request_fields():
    assert shapes.wire_option_name("max_attempts") == "options.maxAttempts"
    assert shapes.wire_option_name("queue.name") == "options.queue.name"
    assert shapes.wire_option_name("items[2].delay") == "items[2].options.delay"
    assert shapes.wire_option_name("items[0].payload") == "items[0].payload"
    assert shapes.wire_option_name("version") == "options.lockToVersion"
    assert shapes.wire_option_name("something_else") == "something_else"


# ---------------------------------------------------------------------- other requests
def test_reschedule_tags_and_metadata_bodies():
    assert shapes.parse_reschedule_body({"delay": "1h"}) == "1h"
    assert shapes.parse_reschedule_body({"delay": "2025-03-01T12:00:00.000Z"}).startswith("2025")
    assert shapes.parse_add_tags_body({"tags": "a"}) == ["a"]
    assert shapes.parse_add_tags_body({"tags": ["a", "b"]}) == ["a", "b"]
    for parse, body, field in [
        (shapes.parse_reschedule_body, {}, "delay"),
        (shapes.parse_reschedule_body, {"delay": "1h", "when": 1}, "when"),
        (shapes.parse_add_tags_body, {"tags": [1]}, "tags"),
        (shapes.parse_add_tags_body, {"tag": "a"}, "tag"),
    ]:
        with pytest.raises(InvalidOptionError) as info:
            parse(body)
        assert info.value.option == field


def test_metadata_operations_become_runlane_operations():
    update = shapes.parse_update_metadata_body(
        {
            "metadata": {"ignored": True},  # operations win, as in the reference
            "operations": [
                {"type": "set", "key": "progress", "value": 0.5},
                {"type": "delete", "key": "old"},
                {"type": "append", "key": "logs", "value": "step 1"},
                {"type": "remove", "key": "logs", "value": "step 0"},
                {"type": "increment", "key": "done", "value": -1},
                {"type": "update", "value": {"fresh": 1}},
            ],
            "parentOperations": [{"type": "increment", "key": "children", "value": 1}],
        }
    )
    assert update.operations == [
        {"op": "set", "key": "progress", "value": 0.5},
        {"op": "delete", "key": "old"},
        {"op": "append", "key": "logs", "value": "step 1"},
        {"op": "remove", "key": "logs", "value": "step 0"},
        {"op": "increment", "key": "done", "value": -1},
        {"op": "replace", "value": {"fresh": 1}},
    ]
    assert update.parent_operations == [{"op": "increment", "key": "children", "value": 1}]
    assert update.root_operations == []
    replaced = shapes.parse_update_metadata_body({"metadata": {"a": [1]}})
    assert replaced.operations == [{"op": "replace", "value": {"a": [1]}}]
    assert shapes.parse_update_metadata_body({"operations": []}).operations == []
    for body, field in [
        ({"operations": [{"type": "merge", "key": "a"}]}, "operations[0].type"),
        ({"operations": [{"type": "set", "value": 1}]}, "operations[0].key"),
        ({"operations": [{"type": "set", "key": "$.a.b", "value": 1}]}, "operations[0].key"),
        ({"operations": [{"type": "delete", "key": "a", "value": 1}]}, "operations[0].value"),
        ({"operations": [{"type": "increment", "key": "a", "value": "1"}]}, "operations[0].value"),
        (
            {"rootOperations": [{"type": "set", "key": "__proto__", "value": 1}]},
            "rootOperations[0].key",
        ),
        ({"metadata": {"a": {"__proto__": 1}}}, "metadata"),
        ({"operations": [{"type": "update", "value": {"prototype": 1}}]}, "operations[0].value"),
        ({"metadata": [1]}, "metadata"),
        ({"meta": {}}, "meta"),
    ]:
        with pytest.raises(InvalidOptionError) as info:
            shapes.parse_update_metadata_body(body)
        assert info.value.option == field


def test_schedule_bodies_become_schedule_verb_arguments():
    full = {
        "task": "report",
        "cron": "0 8 * * *",
        "timezone": "Asia/Tokyo",
        "externalId": "user_1",
        "deduplicationKey": "user_1-report",
    }
    assert shapes.parse_create_schedule_body(full) == {
        "task": "report",
        "cron_expression": "0 8 * * *",
        "timezone": "Asia/Tokyo",
        "external_id": "user_1",
        "deduplication_key": "user_1-report",
    }
    put = {"task": "report", "cron": "0 9 * * *"}
    assert shapes.parse_update_schedule_body(put) == {
        "task": "report",
        "cron_expression": "0 9 * * *",
        "timezone": "UTC",  # a PUT replaces the schedule, as in the reference
        "external_id": None,
    }
    assert shapes.parse_update_schedule_body({"cron": "0 9 * * *"}, partial=True) == {
        "cron_expression": "0 9 * * *"
    }
    for parse, body, field in [
        (shapes.parse_create_schedule_body, {"cron": "* * * * *"}, "task"),
        (shapes.parse_create_schedule_body, {**full, "generator": {}}, "generator"),
        (shapes.parse_create_schedule_body, {**full, "externalId": 7}, "externalId"),
        (shapes.parse_update_schedule_body, {"task": "report"}, "cron"),
        (shapes.parse_update_schedule_body, {**put, "deduplicationKey": "x"}, "deduplicationKey"),
    ]:
        with pytest.raises(InvalidOptionError) as info:
            parse(body)
        assert info.value.option == field


def test_list_queries_as_the_sdk_builds_them():
    q = shapes.parse_list_runs_query(
        {
            "filter[status]": ["COMPLETED,FAILED,COMPLETED"],
            "filter[taskIdentifier]": "a,b",
            "filter[version]": "1",
            "filter[tag]": "t",
            "filter[schedule]": "sched_1",
            "filter[isTest]": "false",
            "filter[createdAt][from]": "1740830400000",
            "filter[createdAt][to]": "2025-03-02T00:00:00Z",
            "filter[batch]": "batch_1",
            "filter[env]": "prod",  # the caller's key says which environment
            "page[size]": "10",
            "page[after]": "run_cursor",
        },
        now=0,
    )
    assert q.status == ("COMPLETED", "FAILED") and q.task_identifier == ("a", "b")
    assert (q.version, q.tag, q.schedule, q.batch) == (("1",), ("t",), "sched_1", "batch_1")
    assert q.created_from == 1740830400.0 and q.created_to == 1740873600.0
    assert (q.is_test, q.limit, q.after) == (False, 10, "run_cursor")
    period = shapes.parse_list_runs_query({"filter[createdAt][period]": "1d"}, now=100000.0)
    assert period.created_from == 100000.0 - 86400 and period.limit == 20
    for params, field in [
        ({"filter[queue]": "q"}, "filter[queue]"),
        ({"page[before]": "run_1"}, "page[before]"),
        ({"filter[bulkAction]": "bulk_1"}, "filter[bulkAction]"),
        ({"filter[status]": "DONE"}, "filter[status]"),
        ({"filter[isTest]": "yes"}, "filter[isTest]"),
        ({"page[size]": "0"}, "page[size]"),
        ({"page[size]": "101"}, "page[size]"),
        ({"page[size]": "ten"}, "page[size]"),
        ({"filter[createdAt][from]": "yesterday"}, "filter[createdAt][from]"),
        (
            {"filter[createdAt][period]": "1d", "filter[createdAt][from]": "1"},
            "filter[createdAt][period]",
        ),
        ({"filter[createdAt][period]": "a while"}, "filter[createdAt][period]"),
    ]:
        with pytest.raises(InvalidOptionError) as info:
            shapes.parse_list_runs_query(params, now=0)
        assert info.value.option == field
    assert shapes.parse_list_schedules_query({"page": ["2"], "perPage": "5"}) == (2, 5)
    assert shapes.parse_list_schedules_query({}) == (1, 20)
    with pytest.raises(InvalidOptionError, match="perPage"):
        shapes.parse_list_schedules_query({"perPage": "-1"})
    assert shapes.parse_timezones_query({"excludeUtc": "true"}) is True
    assert shapes.parse_timezones_query({}) is False


# ---------------------------------------------------------------------- a world of runs
def build_world(clock: runlane.FakeClock) -> dict[str, Any]:
    """Runs in most statuses, a parent and its child, a batch, schedules: as the store has
    them."""
    rt = runtime.get()

    @runlane.task(id="double")
    def double(payload: Any) -> Any:
        runlane.metadata.set("seen", True)
        return {"doubled": payload["n"] * 2}

    @runlane.task(id="boom", retry={"max_attempts": 2, "randomize": False})
    def boom(payload: Any) -> Any:
        raise ValueError("no luck")

    @runlane.task(id="parent")
    def parent(payload: Any) -> Any:
        return double.trigger_and_wait({"n": 5}).unwrap()

    single = runlane.queue(name="single", concurrency_limit=1)

    @runlane.task(id="holder", queue=single)
    def holder(payload: Any) -> Any:
        runlane.wait.for_(hours=1)

    @runlane.task(id="late", queue=single)
    def late(payload: Any) -> Any:
        return "ran"

    @runlane.schedules.task(id="hourly")
    def hourly(payload: Any) -> Any:
        return "tick"

    @runlane.schedules.task(id="declared", cron="0 5 * * *")
    def declared(payload: Any) -> Any:
        return "declared"

    @runlane.task(id="patient")
    def patient(payload: Any) -> Any:
        runlane.wait.for_(minutes=30)

    handles: dict[str, Any] = {
        "completed": double.trigger(
            {"n": 2}, tags=["user_42"], metadata={"plan": "pro"}, idempotency_key="k1"
        ),
        "failed": boom.trigger({}),
        "parent": parent.trigger(None),
        "held": holder.trigger({}),
        "expired": late.trigger({}, ttl="10m"),
        "canceled": double.trigger({"n": 0}, delay="1d"),
    }
    runlane.runs.cancel(handles["canceled"])
    batch = double.batch_trigger([{"payload": {"n": 1}}, {"payload": {"n": 3}}])
    schedule = runlane.schedules.create(
        task="hourly", cron="0 * * * *", external_id="user_1", deduplication_key="user_1-h"
    )
    run_until_idle()
    schedule = runlane.schedules.retrieve(schedule.id)
    assert schedule.next_run is not None
    clock.set(schedule.next_run.timestamp() + 1)
    run_until_idle(advance_clock=False)
    fired = runlane.runs.list(schedule=schedule.id).data[0]  # the newest tick's run
    handles["patient"] = patient.trigger({})
    run_until_idle(advance_clock=False)  # frozen on its wait; nothing else is due
    handles["delayed"] = double.trigger({"n": 1}, delay="1h")
    handles["queued"] = double.trigger({"n": 1})
    handles["waiting"] = runlane.tasks.trigger("no-worker-has-it", [1, 2])
    runs = {name: runlane.runs.retrieve(h) for name, h in handles.items()}
    runs["scheduled"] = fired
    (child,) = [r for r in runlane.runs.list(task_identifier="double").data if r.parent_id]
    runs["child"] = runlane.runs.retrieve(child.id)
    inactive = runlane.schedules.create(task="hourly", cron="30 2 * * 1", timezone="Europe/Paris")
    inactive = runlane.schedules.deactivate(inactive.id)
    declarative = runlane.schedules.retrieve(schedule_ops.declarative_id("declared"))
    return {
        "rt": rt,
        "handles": handles,
        "runs": runs,
        "batch": batch,
        "batch_runs": [runlane.runs.retrieve(h) for h in batch.runs],
        "schedules": {"active": schedule, "inactive": inactive, "declarative": declarative},
    }


def test_the_world_has_the_statuses_it_claims(fake):
    world = build_world(fake)
    statuses = {name: run.status.value for name, run in world["runs"].items()}
    assert statuses == {
        "completed": "COMPLETED",
        "failed": "FAILED",
        "parent": "COMPLETED",
        "held": "COMPLETED",
        "expired": "EXPIRED",
        "canceled": "CANCELED",
        "patient": "FROZEN",
        "delayed": "DELAYED",
        "queued": "QUEUED",
        "waiting": "WAITING_FOR_DEPLOY",
        "scheduled": "COMPLETED",
        "child": "COMPLETED",
    }


def test_run_responses_carry_runlane_values(fake):
    world = build_world(fake)
    runs = world["runs"]
    done = shapes.retrieve_run_response(runs["completed"])
    assert done["status"] == "COMPLETED" and done["taskIdentifier"] == "double"
    assert (done["isCompleted"], done["isSuccess"], done["isFailed"]) == (True, True, False)
    assert done["payload"] == {"n": 2} and done["output"] == {"doubled": 4}
    assert done["tags"] == ["user_42"] and done["metadata"] == {"plan": "pro", "seen": True}
    assert done["idempotencyKey"] == hashlib.sha256(b"k1").hexdigest()
    assert done["createdAt"].endswith("Z") and len(done["createdAt"]) == 24
    assert done["attemptCount"] == 1 and done["attempts"][0]["status"] == "COMPLETED"
    assert done["triggerFunction"] == "trigger" and done["relatedRuns"] == {"children": []}
    assert "error" not in done and "delayedUntil" not in done
    failed = shapes.retrieve_run_response(runs["failed"])
    assert failed["error"]["name"] == "ValueError" and failed["error"]["message"] == "no luck"
    assert [a["status"] for a in failed["attempts"]] == ["FAILED", "FAILED"]
    assert "output" not in failed and failed["isFailed"] is True
    expired = shapes.retrieve_run_response(runs["expired"])
    assert expired["isCompleted"] is True and expired["expiredAt"] and expired["ttl"] == "10m"
    delayed = shapes.retrieve_run_response(runs["delayed"])
    assert delayed["isQueued"] is True and "delayedUntil" in delayed and "startedAt" not in delayed
    frozen = shapes.retrieve_run_response(runs["patient"])
    assert frozen["isExecuting"] is True and frozen["attempts"][0]["status"] == "PAUSED"
    child = shapes.retrieve_run_response(
        runs["child"], parent=runs["parent"], root=runs["parent"], children=[]
    )
    assert child["depth"] == 1 and child["relatedRuns"]["parent"]["id"] == runs["parent"].id
    assert "payload" not in child["relatedRuns"]["root"]
    public = shapes.public_run_response(runs["completed"])
    assert "payload" not in public and "output" not in public
    assert public["metadata"] == done["metadata"]
    scheduled = shapes.retrieve_run_response(
        runs["scheduled"], schedule=world["schedules"]["active"]
    )
    assert scheduled["schedule"] == {
        "id": world["schedules"]["active"].id,
        "generator": {"type": "CRON", "expression": "0 * * * *", "description": "Every hour"},
        "externalId": "user_1",
        "deduplicationKey": "user_1-h",
    }
    member = shapes.retrieve_run_response(world["batch_runs"][0])
    assert member["batchId"] == world["batch"].batch_id
    assert member["triggerFunction"] == "batchTrigger"
    item = shapes.list_run_item(runs["queued"])
    assert item["env"] == {"id": "dev", "name": "dev"} and "attempts" not in item


def test_every_runlane_status_has_a_trigger_dev_status():
    assert set(shapes.RUN_STATUS) == set(RunStatus)
    assert set(shapes.RUN_STATUS.values()) == {s.value for s in RunStatus}


def test_pages_batches_schedules_and_small_answers(fake):
    world = build_world(fake)
    rt = world["rt"]
    first = operations.list_runs(rt, operations.run_query(limit=3))
    page = shapes.list_runs_response(first)
    assert len(page["data"]) == 3 and page["pagination"] == {"next": first.next_cursor}
    last = operations.list_runs(rt, operations.run_query(limit=100))
    assert shapes.list_runs_response(last)["pagination"] == {}
    batch = operations.retrieve_batch(rt, world["batch"].batch_id)
    answer = shapes.retrieve_batch_response(batch, world["batch_runs"])
    assert answer["status"] == "COMPLETED" and answer["runCount"] == 2
    assert shapes.retrieve_batch_response(batch)["status"] == "PENDING"
    pending = shapes.retrieve_batch_response(batch, [world["batch_runs"][0]])
    assert pending["status"] == "PENDING"
    trig = shapes.batch_trigger_response(world["batch"], [None, "key-2"])
    assert trig["isCached"] is False and "idempotencyKey" not in trig["runs"][0]
    assert trig["runs"][1]["idempotencyKey"] == "key-2"
    active = shapes.schedule_response(world["schedules"]["active"], "dev")
    assert active["environments"] == [{"id": "dev", "type": "DEVELOPMENT"}]
    assert active["nextRun"].endswith(":00:00.000Z") and active["type"] == "IMPERATIVE"
    inactive = shapes.schedule_response(world["schedules"]["inactive"], "prod")
    assert inactive["nextRun"] is None and inactive["externalId"] is None
    assert inactive["environments"][0]["type"] == "PRODUCTION"
    everything = list(world["schedules"].values())
    selected, count = shapes.offset_page(iter(everything), 2, 2)
    assert selected == everything[2:] and count == 3
    listing = shapes.list_schedules_response(
        selected, page=2, per_page=2, count=count, environment="dev"
    )
    assert listing["pagination"] == {"currentPage": 2, "totalPages": 2, "count": 3}
    zones = shapes.timezones_response(runlane.schedules.timezones())
    assert zones["timezones"][0] == "UTC" and zones["timezones"].count("UTC") == 1
    assert (
        "UTC" not in shapes.timezones_response(["UTC", "Asia/Tokyo"], exclude_utc=True)["timezones"]
    )
    assert shapes.add_tags_response(2) == {"message": "Successfully set 2 new tags."}
    assert shapes.add_tags_response(0) == {"message": "No new tags to add"}
    headers = dict(shapes.trigger_response_headers("dev", "tok"))
    assert json.loads(headers["x-trigger-jwt-claims"]) == {"sub": "dev", "pub": True}
    assert headers["x-trigger-jwt"] == "tok"
    assert shapes.iso(world["runs"]["completed"].created_at.replace(tzinfo=None)).endswith("Z")


# ---------------------------------------------------------------------- against the SDK
def test_every_response_passes_the_sdk_schemas(fake, node):
    world = build_world(fake)
    rt, runs, schedules = world["rt"], world["runs"], world["schedules"]
    done = runs["completed"]
    retrieved = [shapes.retrieve_run_response(run) for run in runs.values()]
    retrieved += [
        shapes.retrieve_run_response(
            runs["child"], parent=runs["parent"], root=runs["parent"], children=[done]
        ),
        shapes.retrieve_run_response(runs["scheduled"], schedule=schedules["active"]),
        shapes.retrieve_run_response(world["batch_runs"][1]),
    ]
    # the statuses a drain never leaves a run in, on a real run's shape
    retrieved += [
        shapes.retrieve_run_response(done.model_copy(update={"status": status}))
        for status in RunStatus
    ]
    public = [shapes.public_run_response(run) for run in runs.values()]
    pages = [
        shapes.list_runs_response(operations.list_runs(rt, operations.run_query(limit=limit)))
        for limit in (1, 5, 100)
    ]
    schedule_docs = [shapes.schedule_response(s, "dev") for s in schedules.values()]
    listed, count = shapes.offset_page(schedules.values(), 1, 2)
    schedule_pages = [
        shapes.list_schedules_response(listed, page=1, per_page=2, count=count, environment="dev"),
        shapes.list_schedules_response([], page=1, per_page=20, count=0, environment="prod"),
    ]
    replay = runlane.runs.replay(done)
    batch = operations.retrieve_batch(rt, world["batch"].batch_id)
    result = validate(
        node,
        {
            "RetrieveRunResponse": retrieved + public,
            "RelatedRunDetails": [shapes.related_run(run) for run in runs.values()],
            "ListRunResponseItem": [shapes.list_run_item(run) for run in runs.values()],
            "ListRunsPage": pages,
            "ListRunResponse": pages,
            "TriggerTaskResponse": [shapes.trigger_response(world["handles"]["queued"])],
            "BatchTriggerTaskV2Response": [
                shapes.batch_trigger_response(world["batch"], ["k1", None])
            ],
            "CanceledRunResponse": [shapes.canceled_run_response(runs["canceled"].id)],
            "ReplayRunResponse": [shapes.replay_run_response(replay)],
            "ScheduleObject": schedule_docs,
            "DeletedScheduleObject": [shapes.deleted_schedule_response(schedules["inactive"].id)],
            "ListSchedulesPage": schedule_pages,
            "ListSchedulesResult": schedule_pages,
            "TimezonesResult": [
                shapes.timezones_response(runlane.schedules.timezones()),
                shapes.timezones_response(runlane.schedules.timezones(), exclude_utc=True),
            ],
            "UpdateMetadataResponseBody": [shapes.metadata_response(done.metadata)],
            "RetrieveBatchResponse": [
                shapes.retrieve_batch_response(batch),
                shapes.retrieve_batch_response(batch, world["batch_runs"]),
            ],
            "AddTagsResponse": [shapes.add_tags_response(1), shapes.add_tags_response(0)],
            "JWTClaims": [shapes.jwt_claims_response("dev")],
        },
    )
    # every field sent is one the schema knows, but isCached (the reference sends it too)
    assert result["unknown"] == [
        {"schema": "TriggerTaskResponse", "index": 0, "path": "$.isCached"}
    ]


def test_what_the_sdk_sends_triggers_runlane_runs(fake, node, sdk_requests):
    @runlane.task(id="my-task")
    def my_task(payload: Any) -> Any:
        return payload

    expected_payloads = {
        "trigger_object": {"video": "v1", "sizes": [1, 2.5], "nested": {"ok": True, "none": None}},
        "trigger_string": "hello",
        "trigger_number": 42,
        "trigger_null": None,
        "trigger_undefined": None,
        "trigger_array": [1, "two", {"three": 3}],
        "trigger_undefined_key": {"a": 1},
        "trigger_delay_date": {"a": 1},
    }
    responses = []
    for name, payload in expected_payloads.items():
        request = sdk_requests[name]
        assert (request["method"], request["path"]) == ("POST", "/api/v1/tasks/my-task/trigger")
        got, options = shapes.parse_trigger_body(request["body"])
        assert got == payload, name
        handle = runlane.tasks.trigger("my-task", got, **options)
        responses.append(shapes.retrieve_run_response(runlane.runs.retrieve(handle)))
        if name == "trigger_object":
            assert options == {k: v for k, v in TRIGGER_OPTIONS.items() if k != "test"}
            run = runlane.runs.retrieve(handle)
            assert (run.queue, run.concurrency_key, run.machine) == ("paid", "user_42", "large-1x")
            assert (run.max_attempts, run.max_duration, run.version) == (3, 60, "20250301.1")
            assert run.status == "DELAYED" and run.tags == ["user_42", "video"]
            # the same key from Python (hashed as the SDK hashes it) finds the SDK's run
            again = my_task.trigger({}, idempotency_key="order-7")
            assert again.is_cached and again.id == handle.id
    with pytest.raises(PayloadError, match=r"\$\.at is a JavaScript Date"):
        shapes.parse_trigger_body(sdk_requests["trigger_date"]["body"])

    handles = []
    for name in ("batch_trigger", "batch_by_id"):
        request = sdk_requests[name]
        assert (request["method"], request["path"]) == ("POST", "/api/v1/tasks/batch")
        shapes.parse_batch_trigger_headers(request["headers"])
        items = shapes.parse_batch_trigger_body(request["body"])
        batch = runlane.batch.trigger(items)
        keys = [item["options"].get("idempotency_key") for item in items]
        handles.append(shapes.batch_trigger_response(batch, keys))
    assert handles[0]["runs"][1]["idempotencyKey"] == hashlib.sha256(b"item-2").hexdigest()
    with pytest.raises(InvalidOptionError, match="idempotency-key"):
        shapes.parse_batch_trigger_headers(sdk_requests["batch_idempotent"]["headers"])

    rt = runtime.get()
    for name in ("list_runs_all", "list_runs_period", "list_runs_none"):
        request = sdk_requests[name]
        assert (request["method"], request["path"]) == ("GET", "/api/v1/runs")
        operations.list_runs(rt, shapes.parse_list_runs_query(query(request), now=rt.now()))
    listed = shapes.parse_list_runs_query(query(sdk_requests["list_runs_all"]), now=rt.now())
    assert listed.status == ("COMPLETED", "FAILED") and listed.limit == 10
    assert listed.created_from == 1740830400.0 and listed.after == "run_cursor"

    delayed = runlane.tasks.trigger("my-task", 1, delay="1d")
    for name in ("reschedule_duration", "reschedule_date"):
        delay = shapes.parse_reschedule_body(sdk_requests[name]["body"])
        responses.append(shapes.retrieve_run_response(runlane.runs.reschedule(delayed, delay)))
    assert runlane.runs.retrieve(delayed).status == "QUEUED"  # the date had passed

    @runlane.schedules.task(id="my-schedule")
    def my_schedule(payload: Any) -> Any:
        return None

    created = schedule_ops.create_schedule(
        rt, **shapes.parse_create_schedule_body(sdk_requests["create_schedule"]["body"])
    )
    assert (created.timezone, created.external_id) == ("America/New_York", "user_1")
    updated = schedule_ops.update_schedule(
        rt, created.id, **shapes.parse_update_schedule_body(sdk_requests["update_schedule"]["body"])
    )
    assert (updated.cron, updated.timezone, updated.external_id) == ("0 9 * * *", "UTC", "user_2")
    assert updated.deduplication_key == "user_1-reminder"
    page, per_page = shapes.parse_list_schedules_query(query(sdk_requests["list_schedules"]))
    assert (page, per_page) == (2, 5)
    assert shapes.parse_timezones_query(query(sdk_requests["timezones"])) is True
    assert shapes.parse_timezones_query(query(sdk_requests["timezones_all"])) is False
    validate(
        node,
        {
            "RetrieveRunResponse": responses,
            "BatchTriggerTaskV2Response": handles,
            "ScheduleObject": [shapes.schedule_response(s, "dev") for s in (created, updated)],
        },
    )
