"""JSON on the wire, never pickle: the one place values are checked and encoded.

Payloads, outputs and metadata must be JSON. A few Python values have one obvious JSON form and
are converted (datetime/date/time → ISO string, UUID → str, tuple → list, str/int Enum → value,
pydantic model → ``model_dump(mode="json")``); anything else is rejected with an error that
names the option and the path of the offending value.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from datetime import date, datetime, time
from typing import Any

from runlane.errors import PayloadError

_MAX_DEPTH = 256


def _convert(value: Any, option: str, path: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise PayloadError(option, "…", f"nested deeper than {_MAX_DEPTH} levels at {path}")
    if isinstance(value, enum.Enum) and isinstance(value.value, (str, int)):
        return value.value  # before str/int: str- and int-mixin enums become plain values
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(option, value, f"{path} is {value}, which JSON cannot represent")
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise PayloadError(option, k, f"object keys must be strings; {path} has key {k!r}")
            out[k] = _convert(v, option, f"{path}.{k}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(v, option, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model
        return _convert(dump(mode="json"), option, path, depth + 1)
    raise PayloadError(
        option,
        value,
        f"{path} is a {type(value).__name__}, which is not JSON "
        "(runlane sends JSON only: use str, int, float, bool, None, list and dict)",
    )


def to_json_value(value: Any, option: str = "payload") -> Any:
    """Return ``value`` as plain JSON data, or raise PayloadError naming ``option``."""
    return _convert(value, option, "$", 0)


# one encoder for every call: json.dumps with options builds a new JSONEncoder each time
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Encode plain JSON data (already checked) compactly."""
    return _encoder.encode(value)


def encode(value: Any, option: str, limit: int | None) -> str:
    """Check, convert and encode ``value``; enforce ``limit`` bytes of UTF-8."""
    if value is None and (limit is None or limit >= 4):  # most tasks return nothing
        return "null"
    text = _encoder.encode(_convert(value, option, "$", 0))
    if limit is not None:
        size = len(text.encode("utf-8"))
        if size > limit:
            raise PayloadError(
                option, f"<{size} bytes>", f"is {size} bytes of JSON, over the limit of {limit}"
            )
    return text


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
