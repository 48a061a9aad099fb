"""JSON on the wire, never pickle: ``to_json_value`` / ``encode`` (pure, no store).

Values with one obvious JSON form are converted (datetime → ISO string, UUID → str, tuple → list,
str/int Enum → its value, pydantic model → model_dump(mode="json")); everything else is a
PayloadError (an InvalidOptionError, so a ValueError) naming the option and the offending path.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from runlane.core.jsonvalue import dumps, encode, loads, to_json_value
from runlane.core.limits import DEFAULT_LIMITS
from runlane.errors import InvalidOptionError, PayloadError, RunlaneError


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Plain(enum.Enum):
    A = "a"
    B = 2


class Odd(enum.Enum):
    X = (1, 2)


class Address(BaseModel):
    city: str
    since: date


class User(BaseModel):
    id: uuid.UUID
    name: str
    created: datetime
    address: Address
    tags: tuple[str, ...] = ()


def assert_payload_error(exc: BaseException, option: str, *fragments: str) -> None:
    assert isinstance(exc, PayloadError)
    assert isinstance(exc, InvalidOptionError)
    assert isinstance(exc, ValueError)
    assert isinstance(exc, RunlaneError)
    assert exc.option == option
    assert option in str(exc)
    for fragment in fragments:
        assert fragment in str(exc), (fragment, str(exc))


# ---------------------------------------------------------------- plain JSON passes unchanged


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        1e308,
        "",
        "héllo ✓ 🚀",
        [],
        {},
        [1, "a", None, True, 2.5],
        {"a": {"b": [{"c": None}]}},
        {"": 1},
    ],
)
def test_plain_json_is_unchanged(value: Any) -> None:
    out = to_json_value(value)
    assert out == value
    assert json.loads(dumps(out)) == value


def test_bool_stays_bool_and_int_stays_int() -> None:
    out = to_json_value({"t": True, "f": False, "n": 1})
    assert out["t"] is True and out["f"] is False
    assert type(out["n"]) is int


def test_result_is_a_copy() -> None:
    src = {"a": [1, 2]}
    out = to_json_value(src)
    out["a"].append(3)
    assert src == {"a": [1, 2]}


# ---------------------------------------------------------------- conversions


def test_datetime_date_time_to_iso() -> None:
    aware = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
    naive = datetime(2030, 1, 2, 3, 4, 5)
    offset = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    out = to_json_value(
        {
            "aware": aware,
            "naive": naive,
            "offset": offset,
            "d": date(2030, 1, 2),
            "t": time(3, 4, 5),
        }
    )
    assert out == {
        "aware": "2030-01-02T03:04:05.600000+00:00",
        "naive": "2030-01-02T03:04:05",
        "offset": "2030-01-02T03:04:05+02:00",
        "d": "2030-01-02",
        "t": "03:04:05",
    }
    assert datetime.fromisoformat(out["aware"]) == aware


def test_uuid_to_str() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert to_json_value(u) == "12345678-1234-5678-1234-567812345678"
    assert to_json_value({"id": u}) == {"id": str(u)}


def test_tuple_to_list() -> None:
    assert to_json_value((1, (2, 3), [4, (5,)])) == [1, [2, 3], [4, [5]]]
    assert type(to_json_value((1,))) is list


def test_enums_to_their_value() -> None:
    assert to_json_value(Color.RED) == "red"
    assert to_json_value(Level.HIGH) == 3
    assert to_json_value(Plain.A) == "a"
    assert to_json_value(Plain.B) == 2
    assert dumps(to_json_value({"c": Color.RED, "l": Level.HIGH})) == '{"c":"red","l":3}'


def test_enums_become_plain_values() -> None:
    # "plain JSON data": a str-mixin enum member must come back as a real str, as a value read
    # back from the store would be (metadata.get() in the run would otherwise differ from the
    # stored value).
    assert type(to_json_value(Color.RED)) is str
    assert type(to_json_value(Level.HIGH)) is int
    assert type(to_json_value(Plain.A)) is str


def test_enum_with_a_non_json_value_is_rejected() -> None:
    with pytest.raises(PayloadError) as info:
        to_json_value({"e": Odd.X})
    assert_payload_error(info.value, "payload", "$.e")


def test_pydantic_model_dumped_in_json_mode() -> None:
    u = User(
        id=uuid.UUID(int=1),
        name="ann",
        created=datetime(2030, 1, 1, tzinfo=timezone.utc),
        address=Address(city="Oslo", since=date(2020, 5, 1)),
        tags=("a", "b"),
    )
    out = to_json_value({"user": u, "list": [Address(city="X", since=date(2021, 1, 1))]})
    assert out == {
        "user": {
            "id": "00000000-0000-0000-0000-000000000001",
            "name": "ann",
            "created": "2030-01-01T00:00:00Z",
            "address": {"city": "Oslo", "since": "2020-05-01"},
            "tags": ["a", "b"],
        },
        "list": [{"city": "X", "since": "2021-01-01"}],
    }
    json.loads(dumps(out))


def test_dict_subclasses_are_dicts() -> None:
    assert to_json_value(OrderedDict([("b", 1), ("a", 2)])) == {"b": 1, "a": 2}


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_rejected(value: float) -> None:
    with pytest.raises(PayloadError) as info:
        to_json_value({"a": [1, value]})
    assert_payload_error(info.value, "payload", "$.a[1]")
    with pytest.raises(PayloadError):
        to_json_value(value)


@pytest.mark.parametrize("key", [1, 1.5, None, True, (1, 2), b"k", uuid.UUID(int=3)])
def test_non_str_keys_rejected(key: Any) -> None:
    with pytest.raises(PayloadError) as info:
        to_json_value({"outer": {key: "v"}})
    assert_payload_error(info.value, "payload", "$.outer", "key")


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset({1}), "frozenset"),
        (b"bytes", "bytes"),
        (bytearray(b"x"), "bytearray"),
        (object(), "object"),
        (Decimal("1.5"), "Decimal"),
        (Fraction(1, 3), "Fraction"),
        (1 + 2j, "complex"),
        (Path("/tmp"), "Path"),
        (timedelta(seconds=1), "timedelta"),
        (lambda: None, "function"),
        (range(3), "range"),
        (iter([1]), "list_iterator"),
        (Exception("x"), "Exception"),
        (type, "type"),
    ],
)
def test_non_json_values_rejected_with_path(value: Any, type_name: str) -> None:
    with pytest.raises(PayloadError) as info:
        to_json_value({"a": {"b": [0, 1, value]}})
    assert_payload_error(info.value, "payload", "$.a.b[2]", type_name)


def test_top_level_non_json_value_path_is_dollar() -> None:
    with pytest.raises(PayloadError) as info:
        to_json_value({1, 2})
    assert_payload_error(info.value, "payload", "$", "set")


def test_custom_object_rejected_and_never_pickled() -> None:
    class Thing:
        def __reduce__(self) -> Any:  # pragma: no cover - must never be called
            raise AssertionError("pickled")

    with pytest.raises(PayloadError) as info:
        to_json_value([Thing()])
    assert_payload_error(info.value, "payload", "$[0]", "Thing")


def test_option_name_is_used() -> None:
    with pytest.raises(PayloadError) as info:
        to_json_value({"x": {1}}, "metadata")
    assert_payload_error(info.value, "metadata", "$.x")
    with pytest.raises(PayloadError) as info:
        to_json_value({"x": {1}}, "output")
    assert_payload_error(info.value, "output", "$.x")


def test_self_referencing_structures_rejected() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(PayloadError) as info:
        to_json_value(loop)
    assert_payload_error(info.value, "payload")
    d: dict[str, Any] = {}
    d["self"] = d
    with pytest.raises(PayloadError):
        to_json_value(d)


def test_nesting_depth_limit() -> None:
    ok: Any = 1
    for _ in range(200):
        ok = [ok]
    assert to_json_value(ok) == ok
    deep: Any = 1
    for _ in range(1000):
        deep = {"a": deep}
    with pytest.raises(PayloadError) as info:
        to_json_value(deep)
    assert_payload_error(info.value, "payload", "deeper")


# ---------------------------------------------------------------- encode: text and size limit


def test_encode_is_compact_utf8_json() -> None:
    text = encode({"a": [1, 2], "s": "é✓", "d": date(2030, 1, 1)}, "payload", None)
    assert text == '{"a":[1,2],"s":"é✓","d":"2030-01-01"}'
    assert loads(text) == {"a": [1, 2], "s": "é✓", "d": "2030-01-01"}
    assert loads(None) is None
    assert encode(None, "payload", 10) == "null"


def test_encode_limit_is_in_utf8_bytes_inclusive() -> None:
    limit = 100
    exact = "x" * (limit - 2)  # '"' + 98 x + '"' = 100 bytes
    assert len(encode(exact, "payload", limit).encode()) == limit
    with pytest.raises(PayloadError) as info:
        encode(exact + "x", "payload", limit)
    assert_payload_error(info.value, "payload", "101", "100")
    # multi-byte characters count by their UTF-8 size, not by characters
    wide = "é" * 49  # 98 bytes + 2 quotes = 100
    assert len(encode(wide, "payload", limit).encode()) == 100
    with pytest.raises(PayloadError):
        encode(wide + "é", "payload", limit)  # 102 bytes, 52 characters


def test_encode_default_payload_limit_is_3_mib() -> None:
    limit = DEFAULT_LIMITS.payload_bytes
    assert limit == 3 * 1024 * 1024
    assert len(encode("x" * (limit - 2), "payload", limit)) == limit
    with pytest.raises(PayloadError) as info:
        encode({"blob": "x" * limit}, "payload", limit)
    assert_payload_error(info.value, "payload", str(limit))


def test_encode_rejects_before_measuring() -> None:
    with pytest.raises(PayloadError) as info:
        encode({"a": math.nan}, "payload", 10**9)
    assert_payload_error(info.value, "payload", "$.a")


def test_limits_default_values() -> None:
    assert DEFAULT_LIMITS.batch_bytes == 5 * 1024 * 1024
    assert DEFAULT_LIMITS.output_bytes == 10 * 1024 * 1024
    assert DEFAULT_LIMITS.batch_items == 500
    assert DEFAULT_LIMITS.metadata_bytes == 262_144
    assert DEFAULT_LIMITS.tags_per_run == 5
    assert DEFAULT_LIMITS.tag_length == 64
    assert DEFAULT_LIMITS.idempotency_key_ttl_seconds == 30 * 24 * 3600
    assert DEFAULT_LIMITS.min_max_duration_seconds == 5


def test_none_is_null_within_the_limit() -> None:
    """None (what most tasks return) is encoded without the converter, and still counts
    against the limit."""
    assert encode(None, "output", None) == "null"
    assert encode(None, "output", 4) == "null"
    with pytest.raises(PayloadError, match="over the limit of 3"):
        encode(None, "output", 3)


@pytest.mark.parametrize("value", [0, -1.5, "é\u2028", [1, {"a": None}], {"k": [True, 2**70]}])
def test_dumps_is_compact_json_as_the_standard_library_writes_it(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert dumps(value) == expected
    with pytest.raises(ValueError):
        dumps(math.nan)
