"""The JSON of the Redis store's calls: arguments out, replies in (orjson where installed), and
numbers as the Lua formats them."""

from __future__ import annotations

import json
from typing import Any

try:  # a faster codec for the store's own documents, where installed (the redis extra has it)
    import orjson
except ImportError:  # pragma: no cover - the standard library's
    orjson = None


def _dumps(value: Any) -> str | bytes:
    """A store call's argument as JSON (UTF-8 bytes with orjson)."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value)


def _num(value: float) -> str:
    """A number as the script's as_text() formats it ("%.17g": the same number, and integers
    without a fraction), for a plain argument the script may store as it is."""
    return f"{value:.17g}"


def _text(value: str | None) -> str:
    """A string (or None) as JSON text (``_dumps``, as ``str``)."""
    text = _dumps(value)
    return text.decode() if isinstance(text, bytes) else text


def _loads(text: str | None) -> Any:
    """A command's JSON reply as Python values (None or "" → None). The few documents most
    replies hold ("{}", "[]") are answered without the decoder, each a new object since the
    caller may change it; orjson decodes where installed, ``json`` what orjson refuses
    (integers past 64 bits, NaN)."""
    if not text or text == "null":
        return None
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if text == "1":
        return 1
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)
