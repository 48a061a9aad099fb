"""Run metadata operations with the reference semantics (pure, no store).

Reference (Trigger.dev ``applyMetadataOperations``): set; delete a top-level key; replace;
append (missing key → [v]; existing list → push; any other existing value → [old, v]);
remove (deep-equal, ``dequal``; ignored on non-lists); increment (non-number counts as 0);
decrement = increment(-v). Keys ``__proto__``/``constructor``/``prototype`` rejected.
Consecutive sets/increments of one key collapse. Limit 262,144 bytes of UTF-8 JSON.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from datetime import date, datetime, timezone
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
from runlane.core.limits import DEFAULT_LIMITS
from runlane.core.metadata import (
    OPS,
    MetadataState,
    apply_ops,
    check_key,
    check_size,
    collapse,
    encoded_size,
    make_op,
)
from runlane.errors import InvalidOptionError, LimitExceededError, PayloadError, RunlaneError

FORBIDDEN = ("__proto__", "constructor", "prototype")


def op(kind: str, key: str | None = None, value: Any = None) -> dict[str, Any]:
    return make_op(kind, key, value)


def apply(md: dict[str, Any], *ops: dict[str, Any]) -> dict[str, Any]:
    return apply_ops(md, list(ops))


# ---------------------------------------------------------------- set / delete / replace


def test_set() -> None:
    assert apply({}, op("set", "a", 1)) == {"a": 1}
    assert apply({"a": 1}, op("set", "a", [1, 2])) == {"a": [1, 2]}
    assert apply({"a": 1}, op("set", "b", None)) == {"a": 1, "b": None}
    assert apply({}, op("set", "d", date(2030, 1, 1))) == {"d": "2030-01-01"}
    assert apply({}, op("set", "n", {"x": {"y": [True]}})) == {"n": {"x": {"y": [True]}}}


def test_set_keys_are_literal_not_paths() -> None:
    assert apply({"a": {"b": 1}}, op("set", "a.b", 2)) == {"a": {"b": 1}, "a.b": 2}


def test_delete() -> None:
    assert apply({"a": 1, "b": 2}, op("delete", "a")) == {"b": 2}
    assert apply({"b": 2}, op("delete", "missing")) == {"b": 2}
    assert apply({"a": {"b": 1}}, op("delete", "b")) == {"a": {"b": 1}}  # top-level only
    assert op("delete", "a") == {"op": "delete", "key": "a"}


def test_replace() -> None:
    assert apply({"a": 1, "b": 2}, op("replace", None, {"c": 3})) == {"c": 3}
    assert apply({"a": 1}, op("replace", None, {})) == {}
    assert apply({}, op("replace", None, {"when": datetime(2030, 1, 1, tzinfo=timezone.utc)})) == {
        "when": "2030-01-01T00:00:00+00:00"
    }


def test_ops_apply_in_order() -> None:
    ops = [
        op("set", "a", 1),
        op("increment", "a", 2),
        op("append", "a", "x"),
        op("replace", None, {"z": 0}),
        op("set", "b", 1),
        op("delete", "z"),
    ]
    assert apply_ops({"q": 9}, ops) == {"b": 1}


# ---------------------------------------------------------------- append


def test_append_missing_key_creates_a_list() -> None:
    assert apply({}, op("append", "logs", "step 1")) == {"logs": ["step 1"]}


def test_append_to_a_list() -> None:
    assert apply({"logs": ["a"]}, op("append", "logs", "b")) == {"logs": ["a", "b"]}
    assert apply({"l": []}, op("append", "l", [1])) == {"l": [[1]]}
    assert apply({"l": [1]}, op("append", "l", {"k": None})) == {"l": [1, {"k": None}]}


@pytest.mark.parametrize("old", ["text", 5, 2.5, True, False, {"a": 1}, 0, ""])
def test_append_to_a_non_list_wraps_the_old_value(old: Any) -> None:
    assert apply({"k": old}, op("append", "k", "new")) == {"k": [old, "new"]}


def test_append_to_an_existing_null_wraps_it() -> None:
    # JSON null is a value, not a missing key: the reference checks ``=== undefined``, so
    # append on {"k": null} gives [null, v], not [v].
    assert apply({"k": None}, op("append", "k", 1)) == {"k": [None, 1]}


def test_append_twice() -> None:
    assert apply({}, op("append", "k", 1), op("append", "k", 2)) == {"k": [1, 2]}
    assert apply({"k": "x"}, op("append", "k", 1), op("append", "k", 2)) == {"k": ["x", 1, 2]}


# ---------------------------------------------------------------- remove


def test_remove_every_deep_equal_item() -> None:
    md = {"k": [1, 2, 1, 3, 1]}
    assert apply(md, op("remove", "k", 1)) == {"k": [2, 3]}
    md = {"k": [{"a": [1, 2]}, {"a": [2, 1]}, {"a": [1, 2]}, "x"]}
    assert apply(md, op("remove", "k", {"a": [1, 2]})) == {"k": [{"a": [2, 1]}, "x"]}
    md = {"k": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}  # key order does not matter
    assert apply(md, op("remove", "k", {"b": 2, "a": 1})) == {"k": []}
    md = {"k": [[1, [2]], [1, [2, 3]]]}
    assert apply(md, op("remove", "k", [1, [2]])) == {"k": [[1, [2, 3]]]}


def test_remove_value_not_present() -> None:
    assert apply({"k": [1, 2]}, op("remove", "k", 3)) == {"k": [1, 2]}
    assert apply({"k": []}, op("remove", "k", 3)) == {"k": []}


@pytest.mark.parametrize("old", ["abc", 5, {"a": 1}, None, True])
def test_remove_is_ignored_on_non_lists(old: Any) -> None:
    assert apply({"k": old}, op("remove", "k", "a")) == {"k": old}
    assert apply({"k": old}, op("remove", "k", old)) == {"k": old}


def test_remove_on_missing_key_does_not_create_it() -> None:
    assert apply({"x": 1}, op("remove", "k", 1)) == {"x": 1}


def test_remove_deep_equality_is_json_equality() -> None:
    # JSON (and the reference's dequal) tell true from 1 and "1" from 1; 1 and 1.0 are the
    # same JSON number.
    md = {"k": [1, True, 1.0, "1", [1], False, 0]}
    assert apply(md, op("remove", "k", 1)) == {"k": [True, "1", [1], False, 0]}
    assert apply(md, op("remove", "k", True)) == {"k": [1, 1.0, "1", [1], False, 0]}
    assert apply(md, op("remove", "k", 0)) == {"k": [1, True, 1.0, "1", [1], False]}
    nested = {"k": [{"a": True}, {"a": 1}]}
    assert apply(nested, op("remove", "k", {"a": 1})) == {"k": [{"a": True}]}


def test_remove_result_types_are_exact() -> None:
    out = apply({"k": [1, True, "1"]}, op("remove", "k", 1))["k"]
    assert [type(v) for v in out] == [bool, str]


# ---------------------------------------------------------------- increment / decrement


def test_increment() -> None:
    assert apply({}, op("increment", "n", 1)) == {"n": 1}
    assert apply({"n": 41}, op("increment", "n", 1)) == {"n": 42}
    assert apply({"n": 1}, op("increment", "n", 0.5)) == {"n": 1.5}
    assert apply({"n": 1.5}, op("increment", "n", 2)) == {"n": 3.5}
    assert apply({"n": 5}, op("increment", "n", -7)) == {"n": -2}
    out = apply({"n": 1}, op("increment", "n", 2))
    assert type(out["n"]) is int


@pytest.mark.parametrize("old", ["5", None, True, False, [1], {"a": 1}, ""])
def test_increment_non_number_counts_as_zero(old: Any) -> None:
    assert apply({"n": old}, op("increment", "n", 3)) == {"n": 3}


def test_decrement_is_a_negative_increment(in_run: ActiveRun) -> None:
    runlane.metadata.set("n", 10).decrement("n", 3).decrement("n")
    assert runlane.metadata.get("n") == 6
    runlane.metadata.decrement("missing", 2)
    assert runlane.metadata.get("missing") == -2
    runlane.metadata.decrement("f", 0.5)
    assert runlane.metadata.get("f") == -0.5
    assert apply({"n": 10}, op("increment", "n", -3)) == {"n": 7}


@pytest.mark.parametrize("value", ["1", None, True, False, [1], {"a": 1}])
def test_increment_by_a_non_number_is_rejected(value: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        make_op("increment", "n", value)
    assert "increment" in str(info.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_increment_by_a_non_finite_number_is_rejected(value: float) -> None:
    # NaN/inf are not JSON: accepting them makes the later flush fail in json.dumps
    with pytest.raises(InvalidOptionError):
        make_op("increment", "n", value)


def test_decrement_by_a_non_number_is_rejected(in_run: ActiveRun) -> None:
    with pytest.raises(InvalidOptionError):
        runlane.metadata.decrement("n", "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError):
        runlane.metadata.decrement("n", True)
    assert runlane.metadata.current() == {"start": True}


# ---------------------------------------------------------------- apply_ops does not alias


def test_apply_ops_never_mutates_its_input() -> None:
    md = {"l": [1], "d": {"x": 1}, "n": 1}
    before = copy.deepcopy(md)
    apply(
        md,
        op("append", "l", 2),
        op("remove", "l", 1),
        op("increment", "n", 1),
        op("delete", "d"),
        op("set", "new", 1),
    )
    assert md == before


def test_set_value_is_copied() -> None:
    value = {"inner": [1]}
    o = op("set", "k", value)
    value["inner"].append(2)
    out = apply({}, o)
    assert out == {"k": {"inner": [1]}}
    out["k"]["inner"].append(3)
    assert apply({}, o) == {"k": {"inner": [1]}}


def test_replace_value_is_copied() -> None:
    o = op("replace", None, {"a": [1]})
    out = apply({}, o)
    out["a"].append(2)
    assert o["value"] == {"a": [1]}


# ---------------------------------------------------------------- make_op validation


def test_op_names() -> None:
    assert set(OPS) == {"set", "delete", "replace", "append", "remove", "increment"}
    for bad in ("update", "del", "SET", "", None):
        with pytest.raises(InvalidOptionError):
            make_op(bad, "k", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", FORBIDDEN)
@pytest.mark.parametrize("kind", ["set", "delete", "append", "remove", "increment"])
def test_forbidden_keys_rejected_for_every_op(kind: str, key: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        make_op(kind, key, 1)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RunlaneError)
    assert "metadata" in str(info.value) and key in str(info.value)


@pytest.mark.parametrize("key", FORBIDDEN)
def test_forbidden_keys_rejected_anywhere_in_values(key: str) -> None:
    for kind in ("set", "append", "remove"):
        with pytest.raises(InvalidOptionError):
            make_op(kind, "ok", {"a": [{key: 1}]})
    with pytest.raises(InvalidOptionError):
        make_op("replace", None, {key: 1})
    with pytest.raises(InvalidOptionError):
        make_op("replace", None, {"deep": {"er": [{key: {}}]}})


def test_similar_keys_are_fine() -> None:
    for key in ("proto", "__proto", "Constructor", "prototypes", "my_constructor_count"):
        assert make_op("set", key, 1)["key"] == key


@pytest.mark.parametrize("key", ["", None, 1, b"k", ("k",)])
def test_bad_keys(key: Any) -> None:
    with pytest.raises(InvalidOptionError) as info:
        check_key(key)
    assert "metadata key" in str(info.value)
    with pytest.raises(InvalidOptionError):
        make_op("set", key, 1)


def test_replace_takes_a_dict() -> None:
    for bad in ([1], "x", None, 5):
        with pytest.raises(InvalidOptionError) as info:
            make_op("replace", None, bad)
        assert "metadata" in str(info.value)


@pytest.mark.parametrize("value", [{1, 2}, b"x", object(), math.nan, {"a": {1: 2}}])
def test_non_json_values_rejected(value: Any) -> None:
    for kind in ("set", "append", "remove"):
        with pytest.raises(PayloadError) as info:
            make_op(kind, "k", value)
        assert info.value.option == "metadata"


def test_values_are_converted_to_json_data() -> None:
    o = make_op("set", "k", (1, date(2030, 1, 1)))
    assert o == {"op": "set", "key": "k", "value": [1, "2030-01-01"]}


# ---------------------------------------------------------------- collapse


def test_collapse_consecutive_sets_last_wins() -> None:
    ops = [op("set", "p", 0.1), op("set", "p", 0.2), op("set", "p", 0.3)]
    assert collapse(ops) == [op("set", "p", 0.3)]


def test_collapse_consecutive_increments_sum() -> None:
    ops = [op("increment", "n", 1), op("increment", "n", 2), op("increment", "n", -1)]
    assert collapse(ops) == [op("increment", "n", 2)]


def test_collapse_keeps_other_keys_and_ops_apart() -> None:
    ops = [op("set", "a", 1), op("set", "b", 1), op("set", "a", 2)]
    assert collapse(ops) == ops
    ops = [op("append", "l", 1), op("append", "l", 2)]
    assert collapse(ops) == ops
    ops = [op("set", "a", 1), op("increment", "a", 1)]
    assert collapse(ops) == ops


def test_collapse_replace_drops_everything_before_it() -> None:
    ops = [
        op("set", "a", 1),
        op("append", "l", 1),
        op("replace", None, {"r": 1}),
        op("set", "b", 2),
    ]
    assert collapse(ops) == [op("replace", None, {"r": 1}), op("set", "b", 2)]


def test_collapse_empty_and_input_unchanged() -> None:
    assert collapse([]) == []
    ops = [op("increment", "n", 1), op("increment", "n", 2)]
    before = copy.deepcopy(ops)
    collapse(ops)
    assert ops == before


SEQUENCES = [
    [op("set", "a", 1), op("set", "a", 2), op("increment", "a", 1), op("increment", "a", 1)],
    [
        op("increment", "n", 1),
        op("set", "n", "x"),
        op("increment", "n", 2),
        op("increment", "n", 3),
    ],
    [
        op("append", "l", 1),
        op("set", "l", 5),
        op("set", "l", [0]),
        op("append", "l", 2),
        op("remove", "l", 0),
    ],
    [op("set", "a", 1), op("delete", "a"), op("delete", "a"), op("increment", "a", 4)],
    [
        op("set", "a", 1),
        op("replace", None, {"b": 1}),
        op("increment", "b", 1),
        op("increment", "b", 1),
        op("replace", None, {}),
        op("set", "c", 1),
    ],
    [op("increment", "a", 1), op("increment", "b", 1), op("increment", "a", 1)],
]


@pytest.mark.parametrize("ops", SEQUENCES)
@pytest.mark.parametrize("start", [{}, {"a": 10, "n": "s", "l": ["q"], "b": 1.5}])
def test_collapse_preserves_the_result(ops: list[dict[str, Any]], start: dict[str, Any]) -> None:
    assert apply_ops(start, collapse(ops)) == apply_ops(start, ops)
    assert len(collapse(ops)) <= len(ops)


# ---------------------------------------------------------------- size


def test_encoded_size_and_limit() -> None:
    assert encoded_size({}) == 2
    assert encoded_size({"a": "é"}) == len('{"a":"é"}'.encode())
    limit = DEFAULT_LIMITS.metadata_bytes
    assert limit == 262_144
    filler = "x" * (limit - len('{"k":""}'))
    check_size({"k": filler}, limit)  # exactly the limit
    with pytest.raises(LimitExceededError) as info:
        check_size({"k": filler + "x"}, limit)
    assert info.value.option == "metadata"
    assert "262144" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RunlaneError)


# ---------------------------------------------------------------- MetadataState


def test_state_applies_and_queues_ops() -> None:
    state = MetadataState({"a": 1}, 1000)
    state.apply(op("increment", "a", 1))
    state.apply(op("increment", "a", 1))
    state.apply(op("set", "b", [1]))
    assert state.snapshot() == {"a": 3, "b": [1]}
    assert state.get("a") == 3 and state.get("missing") is None
    assert state.dirty
    assert state.take_pending() == [op("increment", "a", 2), op("set", "b", [1])]
    assert not state.dirty and state.take_pending() == []


def test_state_returns_copies() -> None:
    state = MetadataState({}, 1000)
    state.apply(op("set", "l", [1]))
    state.get("l").append(2)
    state.snapshot()["l"].append(3)
    assert state.snapshot() == {"l": [1]}


def test_state_rejects_an_op_over_the_limit_and_keeps_its_state() -> None:
    state = MetadataState({}, 50)
    state.apply(op("set", "a", "x" * 10))
    with pytest.raises(LimitExceededError):
        state.apply(op("set", "b", "y" * 100))
    assert state.snapshot() == {"a": "x" * 10}
    assert state.take_pending() == [op("set", "a", "x" * 10)]


def test_state_restore_pending_goes_first() -> None:
    state = MetadataState({}, 1000)
    state.apply(op("set", "a", 1))
    failed = state.take_pending()
    state.apply(op("set", "b", 2))
    state.restore_pending(failed)
    assert state.take_pending() == [op("set", "a", 1), op("set", "b", 2)]


# ---------------------------------------------------------------- the public API in a run


@pytest.fixture
def in_run() -> Iterator[ActiveRun]:
    """A storeless current run (what the executor sets while an attempt runs)."""
    started = datetime(2030, 1, 1, tzinfo=timezone.utc)
    ctx = Context(
        task=TaskInfo(id="t"),
        attempt=AttemptInfo(id="attempt_1", number=1, started_at=started),
        run=RunInfo(id="run_1", tags=[], is_test=False, created_at=started, started_at=started),
        queue=QueueInfo(id="task/t", name="task/t"),
        environment=EnvironmentInfo(id="dev", slug="dev", type="DEVELOPMENT"),
    )
    active = ActiveRun(
        ctx=ctx,
        runtime=None,  # type: ignore[arg-type]
        metadata=MetadataState({"start": True}, DEFAULT_LIMITS.metadata_bytes),
    )
    token = context.activate(active)
    try:
        yield active
    finally:
        context._current.reset(token)


def test_fluent_api_in_a_run(in_run: ActiveRun) -> None:
    md = runlane.metadata
    assert md.set("progress", 0.5).append("logs", "step 1").increment("done", 1) is md
    md.append("logs", "step 2").remove("logs", "step 1").increment("done")
    assert md.current() == {"start": True, "progress": 0.5, "logs": ["step 2"], "done": 2}
    md.delete("start")
    assert md.get("start") is None
    md.replace({"fresh": [1]})
    assert md.current() == {"fresh": [1]}
    assert in_run.metadata.take_pending()[0] == op("replace", None, {"fresh": [1]})


def test_forbidden_key_in_a_run_changes_nothing(in_run: ActiveRun) -> None:
    for key in FORBIDDEN:
        with pytest.raises(InvalidOptionError):
            runlane.metadata.set(key, 1)
        with pytest.raises(InvalidOptionError):
            runlane.metadata.replace({key: 1})
    assert runlane.metadata.current() == {"start": True}
    assert not in_run.metadata.dirty


def test_api_over_the_size_limit_in_a_run(in_run: ActiveRun) -> None:
    with pytest.raises(LimitExceededError):
        runlane.metadata.set("big", "x" * DEFAULT_LIMITS.metadata_bytes)
    assert runlane.metadata.current() == {"start": True}


def test_api_outside_a_run_is_a_validating_no_op() -> None:
    assert context.current() is None
    md = runlane.metadata
    assert md.set("x", 1) is md
    assert md.append("l", 1).increment("n").decrement("n").delete("x").remove("l", 1) is md
    assert md.replace({"a": 1}) is md
    assert md.get("x") is None
    assert md.current() is None
    md.flush()
    with pytest.raises(InvalidOptionError):
        md.set("__proto__", 1)
    with pytest.raises(PayloadError):
        md.set("x", {1, 2})
