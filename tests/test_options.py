"""Option parsing shared by every entry point (pure, no store): trigger options, queues, retry,
tags, task ids, concurrency keys, machines, and idempotency-key hashing.

Every error is an InvalidOptionError (ValueError + RunlaneError) whose ``option`` names the option
and whose message contains the option name and the value.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest

import runlane
from runlane.core import context
from runlane.core.context import (
    ActiveRun,
    AttemptInfo,
    Context,
    EnvironmentInfo,
    QueueInfo,
    RunInfo,
    TaskInfo,
)
from runlane.core.idempotency import IdempotencyKey, create, make_idempotency_key
from runlane.core.limits import DEFAULT_LIMITS, Limits
from runlane.core.metadata import MetadataState
from runlane.core.options import (
    DEFAULT_MACHINE,
    MACHINES,
    TIMEOUT_NONE,
    TRIGGER_OPTION_NAMES,
    UNSET,
    QueueSpec,
    RetryOptions,
    TriggerOptions,
    normalize_tags,
    parse_queue,
    parse_retry,
    parse_trigger_options,
    validate_concurrency_key,
    validate_machine,
    validate_max_duration,
    validate_positive_int,
    validate_queue_name,
    validate_task_id,
)
from runlane.errors import InvalidOptionError, LimitExceededError, RunlaneError

NOW = 1_750_000_000.0
D2030 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse(**raw: Any) -> TriggerOptions:
    return parse_trigger_options(raw, NOW, DEFAULT_LIMITS)


def assert_option_error(exc: BaseException, option: str) -> None:
    assert isinstance(exc, InvalidOptionError)
    assert isinstance(exc, ValueError)
    assert isinstance(exc, RunlaneError)
    assert exc.option == option, (exc.option, str(exc))
    assert option in str(exc)


# ---------------------------------------------------------------- a fake current run


@pytest.fixture
def in_run() -> Iterator[ActiveRun]:
    """Make a (storeless) run current, as the executor does while an attempt runs."""
    started = datetime(2030, 1, 1, tzinfo=timezone.utc)
    ctx = Context(
        task=TaskInfo(id="parent-task"),
        attempt=AttemptInfo(id="attempt_01abc", number=3, started_at=started),
        run=RunInfo(
            id="run_01parentrunid",
            tags=[],
            is_test=False,
            created_at=started,
            started_at=started,
        ),
        queue=QueueInfo(id="task/parent-task", name="task/parent-task"),
        environment=EnvironmentInfo(id="dev", slug="dev", type="DEVELOPMENT"),
    )
    active = ActiveRun(
        ctx=ctx,
        runtime=None,  # type: ignore[arg-type]
        metadata=MetadataState({}, DEFAULT_LIMITS.metadata_bytes),
    )
    token = context.activate(active)
    try:
        yield active
    finally:
        context._current.reset(token)


# ---------------------------------------------------------------- parse_trigger_options: valid


def test_no_options_gives_defaults() -> None:
    for raw in (None, {}):
        opts = parse_trigger_options(raw, NOW, DEFAULT_LIMITS)
        assert opts == TriggerOptions()
    opts = TriggerOptions()
    assert opts.delay_until is None and opts.ttl is None and not opts.ttl_given
    assert opts.idempotency_key is None and opts.tags == [] and opts.metadata is None
    assert opts.max_duration_given is False and opts.is_test is False


def test_trigger_option_names_are_the_snake_case_twins() -> None:
    assert {
        "delay",
        "ttl",
        "idempotency_key",
        "idempotency_key_ttl",
        "concurrency_key",
        "queue",
        "max_attempts",
        "max_duration",
        "tags",
        "metadata",
        "machine",
    } <= TRIGGER_OPTION_NAMES


def test_every_option_parsed() -> None:
    opts = parse(
        delay="1h52m18s",
        ttl="10m",
        idempotency_key="k",
        idempotency_key_ttl="5m",
        concurrency_key="user_42",
        queue={"name": "paid", "concurrency_limit": 10},
        max_attempts=3,
        max_duration=60,
        tags=["user_42", "vip"],
        metadata={"a": 1},
        machine="large-1x",
        version="20240101.1",
        test=True,
    )
    assert opts.delay_until == NOW + 6738
    assert opts.ttl == 600 and opts.ttl_given
    assert opts.idempotency_key == sha("k")
    assert isinstance(opts.idempotency_key, IdempotencyKey)
    assert opts.idempotency_key_ttl == 300
    assert opts.concurrency_key == "user_42"
    assert opts.queue == QueueSpec(name="paid", concurrency_limit=10)
    assert opts.max_attempts == 3
    assert opts.max_duration == 60 and opts.max_duration_given
    assert opts.tags == ["user_42", "vip"]
    assert opts.metadata == {"a": 1}
    assert opts.machine == "large-1x"
    assert opts.version == "20240101.1"
    assert opts.is_test is True


def test_none_values_mean_not_given() -> None:
    opts = parse(
        delay=None,
        ttl=None,
        idempotency_key=None,
        idempotency_key_ttl=None,
        concurrency_key=None,
        queue=None,
        max_attempts=None,
        tags=None,
        metadata=None,
        machine=None,
        version=None,
        test=None,
    )
    assert opts.delay_until is None and opts.ttl is None and not opts.ttl_given
    assert opts.idempotency_key is None and opts.queue is None and opts.tags == []


@pytest.mark.parametrize(
    ("delay", "until"),
    [
        ("88s", NOW + 88),
        (30, NOW + 30),
        (timedelta(hours=1), NOW + 3600),
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()),
        (D2030, D2030.timestamp()),
        ("2020-01-01T00:00:00Z", NOW),  # past: now
        (0, NOW),
    ],
)
def test_delay_forms(delay: Any, until: float) -> None:
    assert parse(delay=delay).delay_until == until


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [("10m", 600), (3600, 3600), (timedelta(minutes=1), 60), ("1h52m18s", 6738), ("1w", 604_800)],
)
def test_ttl_durations(ttl: Any, seconds: float) -> None:
    opts = parse(ttl=ttl)
    assert opts.ttl == seconds and opts.ttl_given


@pytest.mark.parametrize("ttl", [0, 0.0, False])
def test_ttl_zero_or_false_means_no_ttl(ttl: Any) -> None:
    opts = parse(ttl=ttl)
    assert opts.ttl == 0 and opts.ttl_given


def test_max_duration_none_and_timeout_none_mean_no_limit() -> None:
    for value in (None, TIMEOUT_NONE):
        opts = parse(max_duration=value)
        assert opts.max_duration is None and opts.max_duration_given
    assert parse(max_duration="5s").max_duration == 5
    assert parse(max_duration=5).max_duration == 5
    assert parse(max_duration="1h").max_duration == 3600
    assert parse(max_duration=timedelta(minutes=2)).max_duration == 120


def test_queue_as_a_name_string() -> None:
    assert parse(queue="paid").queue == QueueSpec(name="paid")


def test_tags_single_string_and_dedup() -> None:
    assert parse(tags="user_1").tags == ["user_1"]
    assert parse(tags=("a", "b", "a")).tags == ["a", "b"]


def test_metadata_mapping_is_copied_to_a_dict() -> None:
    src = MappingProxyType({"a": 1})
    opts = parse(metadata=src)
    assert opts.metadata == {"a": 1} and type(opts.metadata) is dict


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_machine_preset(machine: str) -> None:
    assert parse(machine=machine).machine == machine


# ---------------------------------------------------------------- parse_trigger_options: errors

E = InvalidOptionError
L = LimitExceededError

BAD_TRIGGER_OPTIONS: list[tuple[str, dict[str, Any], type[InvalidOptionError]]] = [
    ("delay", {"delay": "soon"}, E),
    ("delay", {"delay": "1x"}, E),
    ("delay", {"delay": -5}, E),
    ("delay", {"delay": True}, E),
    ("delay", {"delay": "2030-13-45"}, E),
    ("delay", {"delay": math.inf}, E),
    ("delay", {"delay": [1]}, E),
    ("ttl", {"ttl": "10 minutes"}, E),
    ("ttl", {"ttl": -1}, E),
    ("ttl", {"ttl": True}, E),
    ("ttl", {"ttl": "0s"}, E),
    ("ttl", {"ttl": datetime(2030, 1, 1, tzinfo=timezone.utc)}, E),
    ("ttl", {"ttl": datetime(2030, 1, 1)}, E),
    ("ttl", {"ttl": date(2030, 1, 1)}, E),
    ("ttl", {"ttl": "2030-01-01T00:00:00Z"}, E),
    ("idempotency_key", {"idempotency_key": ""}, E),
    ("idempotency_key", {"idempotency_key": []}, E),
    ("idempotency_key", {"idempotency_key": 5}, E),
    ("idempotency_key", {"idempotency_key": ["a", 5]}, E),
    ("idempotency_key", {"idempotency_key": b"k"}, E),
    ("idempotency_key", {"idempotency_key": {"k": 1}}, E),
    ("idempotency_key", {"idempotency_key": "x" * 2049}, E),
    ("idempotency_key_ttl", {"idempotency_key_ttl": "1x"}, E),
    ("idempotency_key_ttl", {"idempotency_key_ttl": "5 m"}, E),
    ("idempotency_key_ttl", {"idempotency_key_ttl": -60}, E),
    ("idempotency_key_ttl", {"idempotency_key_ttl": True}, E),
    ("concurrency_key", {"concurrency_key": ""}, E),
    ("concurrency_key", {"concurrency_key": "x" * 257}, E),
    ("concurrency_key", {"concurrency_key": "a\nb"}, E),
    ("concurrency_key", {"concurrency_key": "a\x00"}, E),
    ("concurrency_key", {"concurrency_key": "a\x7f"}, E),
    ("concurrency_key", {"concurrency_key": 42}, E),
    ("queue", {"queue": "bad name"}, E),
    ("queue", {"queue": ""}, E),
    ("queue", {"queue": 5}, E),
    ("queue", {"queue": {"concurrency_limit": 1}}, E),  # needs a name
    ("queue", {"queue": {"name": "q", "limit": 1}}, E),
    ("queue.name", {"queue": {"name": "-q"}}, E),
    ("queue.name", {"queue": {"name": 5}}, E),
    ("queue.concurrency_limit", {"queue": {"name": "q", "concurrency_limit": -1}}, E),
    ("queue.concurrency_limit", {"queue": {"name": "q", "concurrency_limit": "3"}}, E),
    ("queue.concurrency_limit", {"queue": {"name": "q", "concurrency_limit": True}}, E),
    ("queue.concurrency_limit", {"queue": {"name": "q", "concurrency_limit": 1.5}}, E),
    (
        "queue.total_concurrency_limit",
        {"queue": {"name": "q", "total_concurrency_limit": -2}},
        E,
    ),
    ("max_attempts", {"max_attempts": 0}, E),
    ("max_attempts", {"max_attempts": -1}, E),
    ("max_attempts", {"max_attempts": "3"}, E),
    ("max_attempts", {"max_attempts": True}, E),
    ("max_attempts", {"max_attempts": 2.0}, E),
    ("max_duration", {"max_duration": 4}, E),
    ("max_duration", {"max_duration": "4s"}, E),
    ("max_duration", {"max_duration": 4.9}, E),
    ("max_duration", {"max_duration": 0}, E),
    ("max_duration", {"max_duration": -10}, E),
    ("max_duration", {"max_duration": "forever"}, E),
    ("max_duration", {"max_duration": True}, E),
    ("tags", {"tags": ["a", "b", "c", "d", "e", "f"]}, L),
    ("tags", {"tags": ["x" * 65]}, E),
    ("tags", {"tags": "x" * 65}, E),
    ("tags", {"tags": [""]}, E),
    ("tags", {"tags": ""}, E),
    ("tags", {"tags": [1]}, E),
    ("tags", {"tags": ["ok", None]}, E),
    ("tags", {"tags": 5}, E),
    ("tags", {"tags": {"a": 1}}, E),
    ("tags", {"tags": ["ok", "a\tb"]}, E),
    ("metadata", {"metadata": "notadict"}, E),
    ("metadata", {"metadata": [1, 2]}, E),
    ("metadata", {"metadata": 5}, E),
    ("machine", {"machine": "huge"}, E),
    ("machine", {"machine": "SMALL-1X"}, E),
    ("machine", {"machine": 5}, E),
    ("machine", {"machine": {"preset": "large-1x"}}, E),
    ("version", {"version": ""}, E),
    ("version", {"version": 5}, E),
    ("version", {"version": "v" * 65}, E),
    ("test", {"test": "yes"}, E),
    ("test", {"test": 1}, E),
    # unknown names (typos, camelCase, options that are not trigger options)
    ("delayy", {"delayy": "1h"}, E),
    ("idempotencyKey", {"idempotencyKey": "k"}, E),
    ("maxAttempts", {"maxAttempts": 3}, E),
    ("retry", {"retry": {"max_attempts": 2}}, E),
    ("payload", {"payload": {}}, E),
]


@pytest.mark.parametrize(
    ("option", "raw", "exc_type"),
    BAD_TRIGGER_OPTIONS,
    ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(BAD_TRIGGER_OPTIONS)],
)
def test_bad_trigger_option_names_the_option(
    option: str, raw: dict[str, Any], exc_type: type[InvalidOptionError]
) -> None:
    with pytest.raises(exc_type) as info:
        parse_trigger_options(raw, NOW, DEFAULT_LIMITS)
    assert_option_error(info.value, option)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ({"delay": "soon"}, "'soon'"),
        ({"ttl": "10 minutes"}, "'10 minutes'"),
        ({"max_attempts": "3"}, "'3'"),
        ({"machine": "huge"}, "'huge'"),
        ({"concurrency_key": 42}, "42"),
        ({"delayy": "1h"}, "'1h'"),
    ],
)
def test_bad_trigger_option_message_shows_the_value(raw: dict[str, Any], shown: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_trigger_options(raw, NOW, DEFAULT_LIMITS)
    assert shown in str(info.value)
    assert info.value.value == next(iter(raw.values()))


def test_unknown_option_message_lists_the_known_ones() -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse(dealy="1h")
    assert "dealy" in str(info.value) and "delay" in str(info.value)


def test_ttl_datetime_error_explains_ttl_takes_a_duration() -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse(ttl=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert "duration" in str(info.value)


def test_long_values_are_abbreviated_in_the_message() -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse(concurrency_key="k" * 1000)
    assert len(str(info.value)) < 400
    assert info.value.value == "k" * 1000


def test_limits_are_configurable() -> None:
    limits = Limits(tags_per_run=2, tag_length=3, min_max_duration_seconds=60)
    assert parse_trigger_options({"tags": ["a", "b"]}, NOW, limits).tags == ["a", "b"]
    with pytest.raises(LimitExceededError):
        parse_trigger_options({"tags": ["a", "b", "c"]}, NOW, limits)
    with pytest.raises(InvalidOptionError):
        parse_trigger_options({"tags": ["abcd"]}, NOW, limits)
    with pytest.raises(InvalidOptionError) as info:
        parse_trigger_options({"max_duration": 59}, NOW, limits)
    assert "60" in str(info.value)


# ---------------------------------------------------------------- idempotency keys


def test_idempotency_key_outside_a_run_is_global() -> None:
    assert context.current() is None
    assert create("my-key") == sha("my-key")
    for scope in ("run", "attempt", "global"):
        assert create("my-key", scope=scope) == sha("my-key")
    assert create(["a", "b", "c"]) == sha("a-b-c")
    assert create(("user", "42")) == sha("user-42")
    assert isinstance(create("k"), IdempotencyKey) and isinstance(create("k"), str)
    assert len(create("k")) == 64


def test_idempotency_key_scopes_inside_a_run(in_run: ActiveRun) -> None:
    run_id = in_run.ctx.run.id
    assert create("my-key") == sha(f"my-key-{run_id}")  # "run" is the default in a run
    assert create("my-key", scope="run") == sha(f"my-key-{run_id}")
    assert create("my-key", scope="attempt") == sha(f"my-key-{run_id}-3")
    assert create("my-key", scope="global") == sha("my-key")
    assert create(["a", "b"], scope="run") == sha(f"a-b-{run_id}")
    assert create(["a", "b"], scope="attempt") == sha(f"a-b-{run_id}-3")


def test_raw_idempotency_key_option_is_hashed(in_run: ActiveRun) -> None:
    run_id = in_run.ctx.run.id
    assert parse(idempotency_key="k").idempotency_key == sha(f"k-{run_id}")
    assert parse(idempotency_key=["k", "2"]).idempotency_key == sha(f"k-2-{run_id}")


def test_created_key_is_not_hashed_again(in_run: ActiveRun) -> None:
    key = create("k", scope="global")
    assert make_idempotency_key(key) is key
    assert parse(idempotency_key=key).idempotency_key == sha("k")
    attempt_key = create("k", scope="attempt")
    assert parse(idempotency_key=attempt_key).idempotency_key == attempt_key


def test_raw_idempotency_key_outside_a_run() -> None:
    assert parse(idempotency_key="k").idempotency_key == sha("k")
    assert parse(idempotency_key=["a", "b"]).idempotency_key == sha("a-b")
    # a key that looks like a hash is still hashed: only IdempotencyKey is passed through
    assert parse(idempotency_key=sha("k")).idempotency_key == sha(sha("k"))


@pytest.mark.parametrize("scope", ["", "RUN", "task", None, 1])
def test_idempotency_key_bad_scope(scope: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        create("k", scope=scope)
    assert_option_error(info.value, "scope")


# ---------------------------------------------------------------- parse_queue


def test_parse_queue_forms() -> None:
    assert parse_queue("paid") == QueueSpec(name="paid")
    assert parse_queue({"name": "paid"}) == QueueSpec(name="paid")
    assert parse_queue({"concurrency_limit": 1}) == QueueSpec(concurrency_limit=1)
    assert parse_queue({"name": "llm", "concurrency_limit": 1, "total_concurrency_limit": 20}) == (
        QueueSpec(name="llm", concurrency_limit=1, total_concurrency_limit=20)
    )
    assert parse_queue({"name": "q", "concurrency_limit": 0}).concurrency_limit == 0
    assert parse_queue({"name": "q", "concurrency_limit": None}).concurrency_limit is None
    spec = QueueSpec(name="x", concurrency_limit=2)
    assert parse_queue(spec) is spec
    assert parse_queue(MappingProxyType({"name": "m"})) == QueueSpec(name="m")


def test_parse_queue_object_from_runlane_queue() -> None:
    shared = runlane.queue(name="shared", concurrency_limit=3, total_concurrency_limit=6)
    assert parse_queue(shared) == QueueSpec(
        name="shared", concurrency_limit=3, total_concurrency_limit=6
    )
    with pytest.raises(InvalidOptionError) as info:
        runlane.queue(name="bad name")
    assert info.value.option == "queue.name"


@pytest.mark.parametrize(
    "name",
    ["paid", "a", "task/convert-video", "llm:v2", "a.b_c-d", "A1", "x" * 128],
)
def test_valid_queue_names(name: str) -> None:
    assert validate_queue_name(name) == name
    assert parse_queue(name).name == name


@pytest.mark.parametrize(
    "name", ["", " ", "bad name", "-q", "_q", "/q", "q\n", "x" * 129, "é", "q!", None, 5]
)
def test_invalid_queue_names(name: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_queue({"name": name} if name is not None else {"name": 5})
    assert_option_error(info.value, "queue.name")


@pytest.mark.parametrize(
    ("value", "option"),
    [
        (5, "queue"),
        (["q"], "queue"),
        ("bad name", "queue"),
        ({"name": "q", "bogus": 1}, "queue"),
        ({"name": "q", "concurrencyLimit": 1}, "queue"),
        ({"name": "q", "concurrency_limit": -1}, "queue.concurrency_limit"),
        ({"name": "q", "concurrency_limit": "1"}, "queue.concurrency_limit"),
        ({"name": "q", "concurrency_limit": False}, "queue.concurrency_limit"),
        ({"name": "q", "total_concurrency_limit": -1}, "queue.total_concurrency_limit"),
        ({"name": "q", "total_concurrency_limit": 2.5}, "queue.total_concurrency_limit"),
    ],
)
def test_parse_queue_errors(value: Any, option: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_queue(value)
    assert_option_error(info.value, option)


# ---------------------------------------------------------------- parse_retry


def test_parse_retry_defaults_are_the_reference_ones() -> None:
    r = parse_retry(None)
    assert r == RetryOptions()
    assert (r.max_attempts, r.factor, r.min_timeout_in_ms, r.max_timeout_in_ms, r.randomize) == (
        3,
        2.0,
        1000,
        10000,
        True,
    )


def test_parse_retry_full_and_partial() -> None:
    full = parse_retry(
        {
            "max_attempts": 5,
            "factor": 3,
            "min_timeout_in_ms": 500,
            "max_timeout_in_ms": 20000,
            "randomize": False,
            "out_of_memory": {"machine": "large-1x"},
        }
    )
    assert full == RetryOptions(5, 3.0, 500, 20000, False, "large-1x")
    assert isinstance(full.factor, float)
    partial = parse_retry({"max_attempts": 1})
    assert partial == RetryOptions(max_attempts=1)


def test_parse_retry_merges_onto_a_base() -> None:
    base = RetryOptions(max_attempts=10, factor=1.5, randomize=False)
    assert parse_retry({"max_attempts": 2}, base) == RetryOptions(
        max_attempts=2, factor=1.5, randomize=False
    )
    assert parse_retry(None, base) is base
    given = RetryOptions(max_attempts=7)
    assert parse_retry(given, base) is given


def test_parse_retry_min_equal_max_is_fine() -> None:
    r = parse_retry({"min_timeout_in_ms": 0, "max_timeout_in_ms": 0})
    assert r.min_timeout_in_ms == r.max_timeout_in_ms == 0


@pytest.mark.parametrize(
    ("value", "option"),
    [
        ("3", "retry"),
        (3, "retry"),
        ([("max_attempts", 3)], "retry"),
        ({"maxAttempts": 3}, "retry"),
        ({"attempts": 3}, "retry"),
        ({"max_attempts": 0}, "retry.max_attempts"),
        ({"max_attempts": -1}, "retry.max_attempts"),
        ({"max_attempts": "3"}, "retry.max_attempts"),
        ({"max_attempts": True}, "retry.max_attempts"),
        ({"factor": 0.5}, "retry.factor"),
        ({"factor": "2"}, "retry.factor"),
        ({"factor": True}, "retry.factor"),
        ({"min_timeout_in_ms": -1}, "retry.min_timeout_in_ms"),
        ({"min_timeout_in_ms": 1.5}, "retry.min_timeout_in_ms"),
        ({"max_timeout_in_ms": "10"}, "retry.max_timeout_in_ms"),
        ({"randomize": "yes"}, "retry.randomize"),
        ({"randomize": 1}, "retry.randomize"),
        ({"out_of_memory": "large-1x"}, "retry.out_of_memory"),
        ({"out_of_memory": {"machine": "large-1x", "x": 1}}, "retry.out_of_memory"),
        ({"out_of_memory": {"machine": "huge"}}, "retry.out_of_memory.machine"),
        ({"min_timeout_in_ms": 5000, "max_timeout_in_ms": 1000}, "retry"),
        ({"min_timeout_in_ms": 20000}, "retry"),  # over the default max of 10000
    ],
)
def test_parse_retry_errors(value: Any, option: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_retry(value)
    assert_option_error(info.value, option)


def test_parse_retry_custom_option_prefix() -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_retry({"max_attempts": 0}, option="retries.default")
    assert info.value.option == "retries.default.max_attempts"


# ---------------------------------------------------------------- tags


def test_normalize_tags_forms() -> None:
    limits = DEFAULT_LIMITS
    assert normalize_tags(None, limits) == []
    assert normalize_tags([], limits) == []
    assert normalize_tags("t", limits) == ["t"]
    assert normalize_tags(["a", "b"], limits) == ["a", "b"]
    assert normalize_tags(("b", "a"), limits) == ["b", "a"]  # order kept
    assert normalize_tags(["a", "a", "b"], limits) == ["a", "b"]
    five = [f"t{i}" for i in range(5)]
    assert normalize_tags(five, limits) == five
    assert normalize_tags(["x" * 64], limits) == ["x" * 64]
    assert normalize_tags(["x"], limits) == ["x"]
    assert normalize_tags(["user:42", "product_1", "é✓"], limits) == ["user:42", "product_1", "é✓"]
    # duplicates do not count against the limit
    assert normalize_tags([*five, "t0"], limits) == five


def test_six_tags_exceed_the_limit() -> None:
    with pytest.raises(LimitExceededError) as info:
        normalize_tags([f"t{i}" for i in range(6)], DEFAULT_LIMITS)
    assert_option_error(info.value, "tags")
    assert "5" in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        [""],
        ["x" * 65],
        "x" * 65,
        [1],
        [None],
        ["ok", b"b"],
        5,
        {"a"},
        {"a": 1},
        ["a\nb"],
        ["\x00"],
    ],
)
def test_bad_tags(value: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        normalize_tags(value, DEFAULT_LIMITS)
    assert_option_error(info.value, "tags")
    assert not isinstance(info.value, LimitExceededError)


# ---------------------------------------------------------------- task ids


@pytest.mark.parametrize(
    "task_id",
    [
        "a",
        "convert-video",
        "daily_report",
        "emails.send",
        "ns:task",
        "team/task",
        "A1",
        "9lives",
        "x" * 128,
    ],
)
def test_valid_task_ids(task_id: str) -> None:
    assert validate_task_id(task_id) == task_id


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        " ",
        "has space",
        "-leading",
        "_leading",
        ".x",
        "/x",
        "x" * 129,
        "é",
        "tab\t",
        "new\n",
        "a?b",
        "a#b",
        None,
        5,
        b"abc",
        ["a"],
    ],
)
def test_invalid_task_ids(task_id: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        validate_task_id(task_id)
    assert_option_error(info.value, "id")
    with pytest.raises(InvalidOptionError) as info:
        validate_task_id(task_id, "task")
    assert_option_error(info.value, "task")


# ---------------------------------------------------------------- concurrency keys


@pytest.mark.parametrize("key", ["u", "user_42", "x" * 256, "é ✓ with spaces", "a/b:c"])
def test_valid_concurrency_keys(key: str) -> None:
    assert validate_concurrency_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "x" * 257, "a\nb", "\t", "\x00", "a\x1f", "a\x7f", 42, None, ["k"], b"k"]
)
def test_invalid_concurrency_keys(key: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        validate_concurrency_key(key)
    assert_option_error(info.value, "concurrency_key")


# ---------------------------------------------------------------- machines and small validators


def test_machine_presets_match_the_reference() -> None:
    assert MACHINES == {
        "micro": (0.25, 0.25),
        "small-1x": (0.5, 0.5),
        "small-2x": (1, 1),
        "medium-1x": (1, 2),
        "medium-2x": (2, 4),
        "large-1x": (4, 8),
        "large-2x": (8, 16),
    }
    assert DEFAULT_MACHINE == "small-1x"
    for name in MACHINES:
        assert validate_machine(name) == name


@pytest.mark.parametrize(
    "value",
    # the v3 object form {"preset": ...} and other unhashable values must not be a TypeError
    ["huge", "", "Small-1x", "small-1X", None, 1, ["micro"], {"preset": "large-1x"}],
)
def test_invalid_machines(value: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        validate_machine(value)
    assert_option_error(info.value, "machine")
    assert "large-1x" in str(info.value)  # lists the presets


def test_validate_positive_int() -> None:
    assert validate_positive_int(1, "n") == 1
    assert validate_positive_int(0, "n", minimum=0) == 0
    for bad in (0, -1, True, False, 1.0, "1", None):
        with pytest.raises(InvalidOptionError) as info:
            validate_positive_int(bad, "n")
        assert_option_error(info.value, "n")


def test_validate_max_duration() -> None:
    assert validate_max_duration(5, "max_duration", DEFAULT_LIMITS) == 5
    assert validate_max_duration("5m", "max_duration", DEFAULT_LIMITS) == 300
    assert validate_max_duration(300.7, "max_duration", DEFAULT_LIMITS) == 300
    assert validate_max_duration(None, "max_duration", DEFAULT_LIMITS) is None
    assert validate_max_duration(TIMEOUT_NONE, "max_duration", DEFAULT_LIMITS) is None
    for bad in (4, 4.99, "4s", 0, -5, "x", True):
        with pytest.raises(InvalidOptionError) as info:
            validate_max_duration(bad, "max_duration", DEFAULT_LIMITS)
        assert_option_error(info.value, "max_duration")


def test_max_duration_beyond_any_storable_value_is_an_option_error() -> None:
    # 1e300 seconds parses, but int(1e300) overflows SQLite's INTEGER when the run is written.
    with pytest.raises(InvalidOptionError) as info:
        validate_max_duration(1e300, "max_duration", DEFAULT_LIMITS)
    assert_option_error(info.value, "max_duration")


def test_unset_is_a_falsy_singleton() -> None:
    assert not UNSET
    assert repr(UNSET) == "UNSET"
    assert type(UNSET)() is UNSET
