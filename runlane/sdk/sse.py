"""Server-Sent Events as the realtime routes (``/realtime/v1/...``) send them and remote mode
reads them: the one place that knows the format.

An event is ``id: <cursor>`` (where a subscription resumes from), ``event: run | chunk | end``
and one ``data:`` line of JSON: a run as the native routes give it (``model_dump(mode="json")``),
a stream part as ``{"key", "chunk", "run_id"}``, and ``{}`` for the end. A line starting with
``:`` is a comment (the heartbeat), ``retry: <ms>`` how long a client waits to reconnect.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

RUN = "run"
CHUNK = "chunk"
END = "end"
PING = b": ping\n\n"


@dataclass(frozen=True)
class Event:
    """One event as received: ``id`` is the last id seen (SSE carries it over)."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data) if self.data else None


def dumps(data: Any) -> str:
    """The JSON of an event's data (no newline in it, so one ``data:`` line)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


def encode(event: str, data: Any, id: int | str | None = None) -> bytes:
    """One event as bytes."""
    return encode_text(event, dumps(data), id)


def encode_text(event: str, text: str, id: int | str | None = None) -> bytes:
    """One event as bytes, its data already JSON (``dumps``)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


def retry_hint(ms: int) -> bytes:
    return f"retry: {int(ms)}\n\n".encode()


class Decoder:
    """Lines in, events out (the parsing rules of the HTML standard's event streams).
    ``retry``: the server's last reconnection hint in milliseconds, or None."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """One line (without its end); the event a blank line completes."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = Event(self._event or "message", "\n".join(self._data), self.last_id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def events(self, lines: Iterable[str]) -> Iterator[Event]:
        for line in lines:
            event = self.feed(line)
            if event is not None:
                yield event

    async def aevents(self, lines: AsyncIterable[str]) -> AsyncIterator[Event]:
        async for line in lines:
            event = self.feed(line)
            if event is not None:
                yield event
