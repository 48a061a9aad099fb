"""The bad-input contract, end to end through the public API on the embedded default.

"Invalid input raises a ValueError/RunlaneError subclass that names the option and the value,
and writes nothing": no run, no idempotency key, no batch, no run number, nothing in the broker.
Checked for every trigger entry point: ``Task.trigger``, ``tasks.trigger`` (by id),
``Task.batch_trigger``, ``tasks.batch_trigger`` and ``batch.trigger`` (a bad item after a good one
that carries an idempotency key: the key must not be consumed).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

import runlane
from runlane.core.runtime import Runtime
from runlane.errors import (
    InvalidOptionError,
    InvalidRunStateError,
    LimitExceededError,
    NotInRunError,
    PayloadError,
    RunlaneError,
    RunNotFoundError,
)
from tests.helpers import wait_final

TASK_ID = "bad-input"
KEY = "the-idempotency-key"
MIB = 1024 * 1024
TABLES = (
    "rl_runs",
    "rl_idempotency",
    "rl_batches",
    "rl_run_tags",
    "rl_dispatch",
    "rl_counters",
    "rl_attempts",
)

E = InvalidOptionError
P = PayloadError
L = LimitExceededError


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def define() -> runlane.Task[Any]:
    @runlane.task(id=TASK_ID)
    def bad_input(payload: Any, ctx: runlane.Context) -> Any:
        return payload

    return bad_input


def _stored(rt: Runtime) -> dict[str, Any]:
    """Row counts of every SQLite table, or every Redis key of the store with its size."""
    store: Any = rt.store
    if hasattr(store, "db"):
        conn = store.db.conn
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    client = store.client
    sizes = {}
    for key in sorted(client.scan_iter(match=store.prefix + "*", count=1000)):
        kind = client.type(key)
        size = {
            "hash": client.hlen,
            "zset": client.zcard,
            "set": client.scard,
            "list": client.llen,
            "string": client.strlen,
        }.get(kind, lambda k: 0)(key)
        sizes[key] = (kind, size)
    return sizes


def snapshot(rt: Runtime) -> dict[str, Any]:
    """Everything a trigger could have written."""
    tables = _stored(rt)
    try:
        listed: Any = [r.id for r in runlane.runs.list(limit=100)]
    except Exception as exc:  # a run was written that cannot even be read back
        listed = f"runs.list() failed: {exc!r}"
    return {
        "tables": tables,
        "count_runs": rt.store.count_runs(),
        "listed": listed,
        "pending": rt.broker.pending(),
    }


def assert_rejected(exc: BaseException, exc_type: type[InvalidOptionError], option: str) -> None:
    assert isinstance(exc, exc_type), f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, InvalidOptionError)
    assert isinstance(exc, ValueError)
    assert isinstance(exc, RunlaneError)
    assert exc.option == option, (exc.option, str(exc))
    assert option in str(exc)


def assert_key_not_consumed(rt: Runtime, task: runlane.Task[Any], before: dict[str, Any]) -> None:
    """A later valid trigger with the same key makes a NEW run, numbered as if nothing had
    happened; a second one finds it (so the key mechanism itself works)."""
    first = task.trigger({"valid": True}, idempotency_key=KEY)
    assert first.is_cached is False
    run = runlane.runs.retrieve(first)
    assert run.idempotency_key == sha(KEY)
    assert run.number == sum(before["count_runs"].values()) + 1
    again = task.trigger({"valid": True}, idempotency_key=KEY)
    assert again.is_cached is True and again.id == first.id
    assert sum(rt.store.count_runs().values()) == sum(before["count_runs"].values()) + 1


# ---------------------------------------------------------------- bad trigger options

BAD_OPTIONS: list[tuple[str, dict[str, Any], type[InvalidOptionError]]] = [
    # delay: duration, seconds, datetime or ISO string
    ("delay", {"delay": "soon"}, E),
    ("delay", {"delay": "1x"}, E),
    ("delay", {"delay": "1h 30m"}, E),
    ("delay", {"delay": -5}, E),
    ("delay", {"delay": True}, E),
    ("delay", {"delay": math.nan}, E),
    ("delay", {"delay": "2030-13-45T00:00:00Z"}, E),
    ("delay", {"delay": "1s" * 51}, E),
    ("delay", {"delay": [1]}, E),
    ("delay", {"delay": "99999999999w"}, E),  # no datetime can hold it
    ("delay", {"delay": 1e300}, E),
    # ttl: a duration only
    ("ttl", {"ttl": "10 minutes"}, E),
    ("ttl", {"ttl": -1}, E),
    ("ttl", {"ttl": True}, E),
    ("ttl", {"ttl": "0s"}, E),
    ("ttl", {"ttl": datetime.now(timezone.utc) + timedelta(hours=1)}, E),
    ("ttl", {"ttl": date(2030, 1, 1)}, E),
    ("ttl", {"ttl": "2030-01-01T00:00:00Z"}, E),
    # idempotency_key_ttl: a duration as for ttl, seconds or timedelta
    ("idempotency_key_ttl", {"idempotency_key_ttl": "1h 30m"}, E),
    ("idempotency_key_ttl", {"idempotency_key_ttl": "five minutes"}, E),
    ("idempotency_key_ttl", {"idempotency_key_ttl": -60}, E),
    # max_attempts
    ("max_attempts", {"max_attempts": 0}, E),
    ("max_attempts", {"max_attempts": -1}, E),
    ("max_attempts", {"max_attempts": "3"}, E),
    ("max_attempts", {"max_attempts": True}, E),
    ("max_attempts", {"max_attempts": 2.5}, E),
    # max_duration: at least 5 s
    ("max_duration", {"max_duration": 4}, E),
    ("max_duration", {"max_duration": "4s"}, E),
    ("max_duration", {"max_duration": 0}, E),
    ("max_duration", {"max_duration": "forever"}, E),
    ("max_duration", {"max_duration": 1e300}, E),
    # machine
    ("machine", {"machine": "huge"}, E),
    ("machine", {"machine": 4}, E),
    ("machine", {"machine": {"preset": "large-1x"}}, E),
    # queue
    ("queue", {"queue": "bad name"}, E),
    ("queue", {"queue": 7}, E),
    ("queue", {"queue": {"concurrency_limit": 2}}, E),
    ("queue", {"queue": {"name": "q", "limit": 2}}, E),
    ("queue.name", {"queue": {"name": "bad name"}}, E),
    ("queue.concurrency_limit", {"queue": {"name": "q", "concurrency_limit": -1}}, E),
    ("queue.concurrency_limit", {"queue": {"name": "q", "concurrency_limit": "10"}}, E),
    ("queue.concurrency_limit", {"queue": {"name": "q", "concurrency_limit": True}}, E),
    # concurrency_key
    ("concurrency_key", {"concurrency_key": ""}, E),
    ("concurrency_key", {"concurrency_key": "k" * 257}, E),
    ("concurrency_key", {"concurrency_key": "user\n42"}, E),
    ("concurrency_key", {"concurrency_key": "user\x0042"}, E),
    ("concurrency_key", {"concurrency_key": 42}, E),
    # tags: at most 5, 1-64 characters
    ("tags", {"tags": ["t1", "t2", "t3", "t4", "t5", "t6"]}, L),
    ("tags", {"tags": ["x" * 65]}, E),
    ("tags", {"tags": ["ok", ""]}, E),
    ("tags", {"tags": ""}, E),
    ("tags", {"tags": [1]}, E),
    ("tags", {"tags": ["ok", None]}, E),
    ("tags", {"tags": 5}, E),
    # metadata: a JSON dict of at most 256 KB without prototype keys
    ("metadata", {"metadata": "not a dict"}, E),
    ("metadata", {"metadata": [("a", 1)]}, E),
    ("metadata key", {"metadata": {"__proto__": {"polluted": True}}}, E),
    ("metadata key", {"metadata": {"constructor": 1}}, E),
    ("metadata key", {"metadata": {"ok": {"nested": [{"prototype": 1}]}}}, E),
    ("metadata", {"metadata": {"big": "x" * (256 * 1024)}}, L),
    ("metadata", {"metadata": {"s": {1, 2}}}, P),
    ("metadata", {"metadata": {"n": math.nan}}, P),
    # version / test
    ("version", {"version": ""}, E),
    ("test", {"test": "yes"}, E),
    # unknown option names
    ("delayy", {"delayy": "1h"}, E),
    ("tag", {"tag": "t"}, E),
    ("idempotencyKey", {"idempotencyKey": "k"}, E),
    ("retry", {"retry": {"max_attempts": 1}}, E),
]

BAD_KEYS: list[tuple[str, dict[str, Any], type[InvalidOptionError]]] = [
    ("idempotency_key", {"idempotency_key": ""}, E),
    ("idempotency_key", {"idempotency_key": []}, E),
    ("idempotency_key", {"idempotency_key": 42}, E),
    ("idempotency_key", {"idempotency_key": b"bytes"}, E),
]

BAD_PAYLOADS: list[tuple[str, Any]] = [
    ("object", object()),
    ("set", {1, 2}),
    ("nested-set", {"a": [{"b": {1, 2}}]}),
    ("nan", math.nan),
    ("nested-inf", {"a": math.inf}),
    ("int-key", {1: "a"}),
    ("bytes", b"raw"),
    ("callable", {"f": print}),
    ("over-3mb", {"blob": "x" * (3 * MIB)}),
]


def _ids(table: list[tuple[str, Any, Any]]) -> list[str]:
    return [f"{i:02d}-{row[0]}" for i, row in enumerate(table)]


def _single_trigger(
    entry: str, task: runlane.Task[Any], payload: Any, opts: dict[str, Any]
) -> None:
    if entry == "Task.trigger":
        task.trigger(payload, **opts)
    else:
        runlane.tasks.trigger(TASK_ID, payload, **opts)


def _batch_trigger(entry: str, task: runlane.Task[Any], payload: Any, opts: dict[str, Any]) -> None:
    good = {"payload": {"good": 1}, "options": {"idempotency_key": KEY, "tags": ["good"]}}
    bad = {"payload": payload, "options": opts}
    if entry == "Task.batch_trigger":
        task.batch_trigger([good, bad])
    elif entry == "tasks.batch_trigger":
        runlane.tasks.batch_trigger(TASK_ID, [good, bad])
    else:
        runlane.batch.trigger([{"id": TASK_ID, **good}, {"id": TASK_ID, **bad}])


SINGLE = ["Task.trigger", "tasks.trigger"]
BATCH = ["Task.batch_trigger", "tasks.batch_trigger", "batch.trigger"]


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", SINGLE)
@pytest.mark.parametrize(("option", "opts", "exc_type"), BAD_OPTIONS, ids=_ids(BAD_OPTIONS))
def test_bad_option_in_a_trigger_writes_nothing(
    rt: Runtime,
    entry: str,
    option: str,
    opts: dict[str, Any],
    exc_type: type[InvalidOptionError],
) -> None:
    task = define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        _single_trigger(entry, task, {"ok": 1}, {**opts, "idempotency_key": KEY})
    assert_rejected(info.value, exc_type, option)
    assert snapshot(rt) == before
    assert_key_not_consumed(rt, task, before)


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", BATCH)
@pytest.mark.parametrize(("option", "opts", "exc_type"), BAD_OPTIONS, ids=_ids(BAD_OPTIONS))
def test_bad_option_in_a_batch_item_writes_nothing(
    rt: Runtime,
    entry: str,
    option: str,
    opts: dict[str, Any],
    exc_type: type[InvalidOptionError],
) -> None:
    task = define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        _batch_trigger(entry, task, {"ok": 1}, opts)
    assert_rejected(info.value, exc_type, f"items[1].{option}")
    assert snapshot(rt) == before
    assert_key_not_consumed(rt, task, before)


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", SINGLE + BATCH)
@pytest.mark.parametrize(("option", "opts", "exc_type"), BAD_KEYS, ids=_ids(BAD_KEYS))
def test_bad_idempotency_key_writes_nothing(
    rt: Runtime,
    entry: str,
    option: str,
    opts: dict[str, Any],
    exc_type: type[InvalidOptionError],
) -> None:
    task = define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        if entry in SINGLE:
            _single_trigger(entry, task, {"ok": 1}, opts)
        else:
            _batch_trigger(entry, task, {"ok": 1}, opts)
    assert_rejected(info.value, exc_type, option if entry in SINGLE else f"items[1].{option}")
    assert snapshot(rt) == before
    assert_key_not_consumed(rt, task, before)


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", SINGLE + BATCH)
@pytest.mark.parametrize(("name", "payload"), BAD_PAYLOADS, ids=[n for n, _ in BAD_PAYLOADS])
def test_bad_payload_writes_nothing(rt: Runtime, entry: str, name: str, payload: Any) -> None:
    task = define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        if entry in SINGLE:
            _single_trigger(entry, task, payload, {"idempotency_key": KEY})
        else:
            _batch_trigger(entry, task, payload, {})
    assert_rejected(info.value, PayloadError, "payload" if entry in SINGLE else "items[1].payload")
    assert snapshot(rt) == before
    assert_key_not_consumed(rt, task, before)


@pytest.mark.store_independent
def test_payload_error_message_names_the_path(rt: Runtime) -> None:
    task = define()
    with pytest.raises(PayloadError) as info:
        task.trigger({"user": {"ids": [1, {2, 3}]}})
    assert "$.user.ids[1]" in str(info.value) and "set" in str(info.value)
    with pytest.raises(PayloadError) as info:
        task.trigger({"blob": "x" * (3 * MIB)})
    assert str(3 * MIB) in str(info.value)


def test_payload_at_the_3_mib_limit_is_accepted(rt: Runtime) -> None:
    task = define()
    handle = task.trigger("x" * (3 * MIB - 2))  # exactly 3 MiB of JSON
    assert len(runlane.runs.retrieve(handle).payload) == 3 * MIB - 2


def test_existing_runs_are_untouched_by_a_bad_trigger(rt: Runtime) -> None:
    task = define()
    other = task.trigger({"n": 1}, idempotency_key="other", tags=["keep"])
    before = snapshot(rt)
    assert sum(before["count_runs"].values()) == 1 and before["pending"] == 1
    with pytest.raises(InvalidOptionError):
        task.trigger({"n": 2}, idempotency_key="other", delay="whenever")
    with pytest.raises(InvalidOptionError):
        task.trigger({"n": 2}, idempotency_key=KEY, tags=["a", "b", "c", "d", "e", "f"])
    assert snapshot(rt) == before
    assert runlane.runs.retrieve(other).tags == ["keep"]
    assert_key_not_consumed(rt, task, before)


@pytest.mark.store_independent
def test_ttl_datetime_message_says_ttl_takes_a_duration(rt: Runtime) -> None:
    task = define()
    with pytest.raises(InvalidOptionError) as info:
        task.trigger({}, ttl=datetime.now(timezone.utc) + timedelta(minutes=5))
    assert info.value.option == "ttl" and "duration" in str(info.value)


@pytest.mark.store_independent
def test_metadata_over_256_kb_message(rt: Runtime) -> None:
    task = define()
    with pytest.raises(LimitExceededError) as info:
        task.trigger({}, metadata={"big": "x" * (256 * 1024)})
    assert "262144" in str(info.value)
    assert snapshot(rt)["count_runs"] == {}


# ---------------------------------------------------------------- bad batches


BATCH_CALLS: dict[str, Callable[[runlane.Task[Any], list[dict[str, Any]]], Any]] = {
    "Task.batch_trigger": lambda task, items: task.batch_trigger(items),
    "tasks.batch_trigger": lambda task, items: runlane.tasks.batch_trigger(TASK_ID, items),
    "batch.trigger": lambda task, items: runlane.batch.trigger(
        [{"id": TASK_ID, **i} if isinstance(i, dict) else i for i in items]
    ),
    "batch.trigger_by_task": lambda task, items: runlane.batch.trigger_by_task(
        [{"task": task, **i} if isinstance(i, dict) else i for i in items]
    ),
}


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", list(BATCH_CALLS))
def test_batch_of_501_items_writes_nothing(rt: Runtime, entry: str) -> None:
    task = define()
    before = snapshot(rt)
    items = [
        {"payload": {"i": i}, "options": {"idempotency_key": KEY} if i == 0 else {}}
        for i in range(501)
    ]
    with pytest.raises(LimitExceededError) as info:
        BATCH_CALLS[entry](task, items)
    assert_rejected(info.value, LimitExceededError, "items")
    assert "500" in str(info.value) and "501" in str(info.value)
    assert snapshot(rt) == before
    assert_key_not_consumed(rt, task, before)


@pytest.mark.parametrize("entry", list(BATCH_CALLS))
def test_batch_of_500_items_is_accepted(rt: Runtime, entry: str) -> None:
    task = define()
    handle = BATCH_CALLS[entry](task, [{"payload": {"i": i}} for i in range(500)])
    assert handle.batch_id.startswith("batch_")
    assert len(handle.runs) == 500
    assert sum(rt.store.count_runs().values()) == 500


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", list(BATCH_CALLS))
def test_batch_over_5_mib_in_total_writes_nothing(rt: Runtime, entry: str) -> None:
    task = define()
    before = snapshot(rt)
    blob = "x" * int(2.6 * MIB)  # each item is under 3 MiB; together over 5 MiB
    items = [
        {"payload": {"blob": blob}, "options": {"idempotency_key": KEY}},
        {"payload": {"blob": blob}},
    ]
    with pytest.raises(LimitExceededError) as info:
        BATCH_CALLS[entry](task, items)
    assert_rejected(info.value, LimitExceededError, "items")
    assert str(5 * MIB) in str(info.value)
    assert snapshot(rt) == before
    assert_key_not_consumed(rt, task, before)


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", list(BATCH_CALLS))
@pytest.mark.parametrize(
    "bad_item", [5, "payload", None, ["payload", 1]], ids=["int", "str", "none", "list"]
)
def test_batch_item_that_is_not_a_dict_writes_nothing(
    rt: Runtime, entry: str, bad_item: Any
) -> None:
    task = define()
    before = snapshot(rt)
    items = [{"payload": {"good": 1}, "options": {"idempotency_key": KEY}}, bad_item]
    with pytest.raises(InvalidOptionError) as info:
        BATCH_CALLS[entry](task, items)
    assert_rejected(info.value, InvalidOptionError, "items[1]")
    assert snapshot(rt) == before
    assert_key_not_consumed(rt, task, before)


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", ["Task.batch_trigger", "tasks.batch_trigger"])
def test_batch_item_with_an_unknown_field_writes_nothing(rt: Runtime, entry: str) -> None:
    task = define()
    before = snapshot(rt)
    items = [
        {"payload": 1, "options": {"idempotency_key": KEY}},
        {"payload": 2, "option": {"delay": "1h"}},
    ]  # "option": a typo of "options"
    with pytest.raises(InvalidOptionError) as info:
        BATCH_CALLS[entry](task, items)
    assert_rejected(info.value, InvalidOptionError, "items[1]")
    assert snapshot(rt) == before


@pytest.mark.store_independent
@pytest.mark.parametrize("entry", list(BATCH_CALLS))
def test_batch_options_that_are_not_a_dict(rt: Runtime, entry: str) -> None:
    task = define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        BATCH_CALLS[entry](task, [{"payload": 1, "options": "1h"}])
    assert isinstance(info.value, InvalidOptionError)
    assert "items[0]" in str(info.value)
    assert snapshot(rt) == before


@pytest.mark.store_independent
@pytest.mark.parametrize(
    "call",
    [
        lambda task: task.batch_trigger(None),
        lambda task: task.batch_trigger(5),
        lambda task: runlane.tasks.batch_trigger(TASK_ID, None),
        lambda task: runlane.batch.trigger(None),
        lambda task: runlane.batch.trigger_by_task(None),
        lambda task: runlane.batch.trigger(5),
    ],
    ids=["Task-None", "Task-int", "tasks-None", "batch-None", "by_task-None", "batch-int"],
)
def test_batch_items_that_are_not_a_list(rt: Runtime, call: Callable[[Any], Any]) -> None:
    task = define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        call(task)
    assert_rejected(info.value, InvalidOptionError, "items")
    assert snapshot(rt) == before


def test_batch_trigger_with_a_bad_item_among_good_ones(rt: Runtime) -> None:
    task = define()
    before = snapshot(rt)
    items: list[dict[str, Any]] = [
        {"payload": {"i": 0}, "options": {"idempotency_key": KEY}},
        {"payload": {"i": 1}, "options": {"tags": ["fine"]}},
        {"payload": {"i": 2}, "options": {"delay": "next tuesday"}},
        {"payload": {"i": 3}},
    ]
    with pytest.raises(InvalidOptionError) as info:
        task.batch_trigger(items)
    assert_rejected(info.value, InvalidOptionError, "items[2].delay")
    assert "next tuesday" in str(info.value)
    assert snapshot(rt) == before
    # the same batch, fixed, creates every run and the key is fresh
    items[2] = {"payload": {"i": 2}, "options": {"delay": "1h"}}
    handle = task.batch_trigger(items)
    assert [h.is_cached for h in handle.runs] == [False] * 4
    assert runlane.runs.retrieve(handle.runs[0]).idempotency_key == sha(KEY)
    assert runlane.batch.retrieve(handle).run_ids == [h.id for h in handle.runs]


@pytest.mark.store_independent
def test_batch_by_id_item_errors(rt: Runtime) -> None:
    define()
    before = snapshot(rt)
    with pytest.raises(InvalidOptionError) as info:
        runlane.batch.trigger([{"id": TASK_ID, "payload": 1}, {"payload": 2}])  # no id
    assert_rejected(info.value, InvalidOptionError, "items[1]")
    with pytest.raises(InvalidOptionError) as info:
        runlane.batch.trigger([{"id": TASK_ID, "payload": 1}, {"id": "bad id", "payload": 2}])
    assert_rejected(info.value, InvalidOptionError, "items[1].task")
    with pytest.raises(InvalidOptionError) as info:
        runlane.batch.trigger_by_task([("not a task", 1)])
    assert_rejected(info.value, InvalidOptionError, "items[0]")
    with pytest.raises(InvalidOptionError) as info:
        runlane.tasks.batch_trigger("bad id", [{"payload": 1}])
    assert_rejected(info.value, InvalidOptionError, "items[0].task")
    assert snapshot(rt) == before


@pytest.mark.store_independent
def test_batch_by_id_with_an_unhashable_task_id(rt: Runtime) -> None:
    define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        runlane.batch.trigger([{"id": TASK_ID, "payload": 1}, {"id": ["a"], "payload": 2}])
    assert_rejected(info.value, InvalidOptionError, "items[1].task")
    assert snapshot(rt) == before


# ---------------------------------------------------------------- bad task ids


@pytest.mark.store_independent
@pytest.mark.parametrize(
    "task_id",
    ["", "bad id", "-leading", "x" * 129, "tab\there", "é", None, 5, ["a"]],
    ids=["empty", "space", "leading-dash", "129-chars", "tab", "non-ascii", "none", "int", "list"],
)
def test_bad_task_id_in_tasks_trigger(rt: Runtime, task_id: Any) -> None:
    define()
    before = snapshot(rt)
    with pytest.raises(RunlaneError) as info:
        runlane.tasks.trigger(task_id, {"ok": 1}, idempotency_key=KEY)
    assert_rejected(info.value, InvalidOptionError, "task")
    assert snapshot(rt) == before


@pytest.mark.store_independent
def test_bad_task_id_in_the_decorator(rt: Runtime) -> None:
    with pytest.raises(InvalidOptionError) as info:

        @runlane.task(id="not valid")
        def nope(payload: Any) -> None: ...

    assert_rejected(info.value, InvalidOptionError, "id")


# ---------------------------------------------------------------- runs.* with bad input


def test_reschedule_a_run_that_is_not_delayed(rt: Runtime) -> None:
    task = define()
    handle = task.trigger({"ok": 1})
    before = snapshot(rt)
    with pytest.raises(InvalidRunStateError) as info:
        runlane.runs.reschedule(handle, "1h")
    assert str(info.value) == "Cannot reschedule a run that is not delayed"
    assert isinstance(info.value, RunlaneError)
    run = runlane.runs.retrieve(handle)
    assert run.status == "QUEUED" and run.delayed_until is None
    assert snapshot(rt) == before


def test_reschedule_a_canceled_run(rt: Runtime) -> None:
    task = define()
    handle = task.trigger({"ok": 1}, delay="1h")
    runlane.runs.cancel(handle)
    with pytest.raises(InvalidRunStateError) as info:
        runlane.runs.reschedule(handle, "2h")
    assert str(info.value) == "Cannot reschedule a run that is not delayed"
    assert runlane.runs.retrieve(handle).status == "CANCELED"


@pytest.mark.store_independent
@pytest.mark.parametrize("delay", ["soon", -1, True, "2030-99-01", None])
def test_reschedule_with_a_bad_delay_changes_nothing(rt: Runtime, delay: Any) -> None:
    task = define()
    handle = task.trigger({"ok": 1}, delay="1h")
    before_run = runlane.runs.retrieve(handle)
    assert before_run.status == "DELAYED"
    before = snapshot(rt)
    with pytest.raises(InvalidOptionError) as info:
        runlane.runs.reschedule(handle, delay)
    assert_rejected(info.value, InvalidOptionError, "delay")
    after = runlane.runs.retrieve(handle)
    assert after.status == "DELAYED" and after.delayed_until == before_run.delayed_until
    assert snapshot(rt) == before


def test_reschedule_unknown_run(rt: Runtime) -> None:
    with pytest.raises(RunNotFoundError):
        runlane.runs.reschedule("run_doesnotexist", "1h")


@pytest.mark.store_independent
def test_retrieve_errors(rt: Runtime) -> None:
    with pytest.raises(RunNotFoundError) as not_found:
        runlane.runs.retrieve("run_doesnotexist")
    assert isinstance(not_found.value, RunlaneError)
    assert "run_doesnotexist" in str(not_found.value)
    for bad in ("garbage", "", "run_", "batch_01abc", None, 5, "run_" + "x" * 100):
        with pytest.raises(InvalidOptionError) as info:
            runlane.runs.retrieve(bad)
        assert_rejected(info.value, InvalidOptionError, "run")


@pytest.mark.store_independent
def test_other_run_operations_reject_bad_ids(rt: Runtime) -> None:
    for call in (runlane.runs.cancel, runlane.runs.replay):
        with pytest.raises(InvalidOptionError):
            call("garbage")
        with pytest.raises(RunNotFoundError):
            call("run_doesnotexist")
    with pytest.raises(InvalidOptionError):
        runlane.runs.update_metadata("garbage", {"a": 1})
    with pytest.raises(RunNotFoundError):
        runlane.runs.update_metadata("run_doesnotexist", {"a": 1})
    with pytest.raises(InvalidOptionError) as info:
        runlane.batch.retrieve("garbage")
    assert_rejected(info.value, InvalidOptionError, "batch")
    with pytest.raises(RunNotFoundError):
        runlane.batch.retrieve("batch_doesnotexist")
    assert snapshot(rt)["count_runs"] == {}


@pytest.mark.store_independent
@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "20"}, "limit"),
        ({"status": "NOPE"}, "status"),
        ({"status": ["QUEUED", "NOPE"]}, "status"),
        ({"status": "queued"}, "status"),
        ({"status": 5}, "status"),
        ({"task_identifier": 5}, "task_identifier"),
        ({"tag": [1]}, "tag"),
        ({"from_": "yesterday"}, "from_"),
        ({"to": object()}, "to"),
        ({"batch": "garbage"}, "batch"),
    ],
)
def test_runs_list_bad_filters(rt: Runtime, kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        runlane.runs.list(**kwargs)
    assert_rejected(info.value, InvalidOptionError, option)


@pytest.mark.store_independent
def test_update_metadata_bad_input_changes_nothing(rt: Runtime) -> None:
    task = define()
    handle = task.trigger({"ok": 1}, metadata={"keep": 1})
    before = snapshot(rt)
    with pytest.raises(InvalidOptionError) as info:
        runlane.runs.update_metadata(handle, {"__proto__": 1})
    assert "metadata" in str(info.value)
    with pytest.raises(InvalidOptionError):
        runlane.runs.update_metadata(handle, {"a": {"constructor": 1}})
    with pytest.raises(InvalidOptionError):
        runlane.runs.update_metadata(handle, "not a dict")  # type: ignore[arg-type]
    with pytest.raises(PayloadError):
        runlane.runs.update_metadata(handle, {"s": {1, 2}})
    with pytest.raises(LimitExceededError):
        runlane.runs.update_metadata(handle, {"big": "x" * (256 * 1024)})
    assert runlane.runs.retrieve(handle).metadata == {"keep": 1}
    assert snapshot(rt) == before


# ---------------------------------------------------------------- metadata and tags APIs


@pytest.mark.store_independent
def test_metadata_outside_a_run(rt: Runtime) -> None:
    md = runlane.metadata
    assert md.set("x", 1) is md
    assert md.get("x") is None
    assert md.current() is None
    for key in ("__proto__", "constructor", "prototype"):
        with pytest.raises(InvalidOptionError) as info:
            md.set(key, 1)
        assert "metadata" in str(info.value) and key in str(info.value)
    with pytest.raises(InvalidOptionError):
        md.replace({"__proto__": 1})
    assert snapshot(rt)["count_runs"] == {}


@pytest.mark.store_independent
def test_tags_add_outside_a_run(rt: Runtime) -> None:
    with pytest.raises(NotInRunError) as info:
        runlane.tags.add("product_1")
    assert isinstance(info.value, RunlaneError)
    assert "tags.add" in str(info.value)


def test_metadata_and_tags_errors_inside_a_run(worker: runlane.Worker) -> None:
    def attempt(call: Callable[[], Any]) -> list[Any] | None:
        try:
            call()
        except Exception as exc:
            return [type(exc).__name__, isinstance(exc, InvalidOptionError), str(exc)]
        return None

    @runlane.task(id="bad-input-in-run", retry={"max_attempts": 1})
    def in_run(payload: Any, ctx: runlane.Context) -> dict[str, Any]:
        md = runlane.metadata
        out = {
            "set_proto": attempt(lambda: md.set("__proto__", 1)),
            "set_constructor": attempt(lambda: md.set("constructor", 1)),
            "set_nested": attempt(lambda: md.set("ok", {"prototype": {}})),
            "replace": attempt(lambda: md.replace({"__proto__": 1})),
            "append": attempt(lambda: md.append("prototype", 1)),
            "non_json": attempt(lambda: md.set("s", {1, 2})),
            "tag_too_long": attempt(lambda: runlane.tags.add("x" * 65)),
            "tag_empty": attempt(lambda: runlane.tags.add("")),
        }
        md.set("fine", 1)
        return out

    run = wait_final(in_run.trigger({}))
    assert run.status == "COMPLETED", run.error
    for name, result in run.output.items():
        assert result is not None, name
        assert result[1] is True, (name, result)
    assert run.output["non_json"][0] == "PayloadError"
    for name in ("set_proto", "set_constructor", "set_nested", "replace", "append"):
        assert "metadata" in run.output[name][2]
    assert "tags" in run.output["tag_too_long"][2]
    assert run.metadata == {"fine": 1}
    assert run.tags == []
