"""The run log: entries recorded by ``logger``, spans of ``logger.trace`` and captured prints.

Entries are buffered per attempt and written to the store with the metadata flush (every
second) and at the end of the attempt. Logs are lenient where payloads are strict: an attribute
that is not JSON is recorded as its ``repr``; a message is cut at 32 KiB; an attempt records at
most ``MAX_ENTRIES`` entries and then one entry saying the rest was dropped.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runlane.core import context, jsonvalue
from runlane.errors import PayloadError

LEVELS = ("debug", "log", "info", "warn", "error")
MAX_MESSAGE = 32 * 1024
MAX_ENTRIES = 10_000


class LogEntry(BaseModel):
    """One line of a run's log (``runs.logs(run_id)``)."""

    model_config = ConfigDict(frozen=True)

    seq: int = 0
    run_id: str
    attempt: int
    time: datetime
    level: str
    kind: str = "log"  # log | span | stdout | stderr
    message: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    duration_ms: float | None = None  # spans


def _attr(value: Any) -> Any:
    try:
        return jsonvalue.to_json_value(value, "log attribute")
    except PayloadError:
        return repr(value)


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _attr(v) for k, v in attributes.items()}


class LogBuffer:
    def __init__(self, run_id: str, attempt: int) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._count = 0

    def add(
        self,
        level: str,
        message: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        kind: str = "log",
        duration_ms: float | None = None,
        at: float | None = None,
    ) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "...[truncated]"
        entry = {
            "run_id": self.run_id,
            "attempt": self.attempt,
            "time": at or time.time(),
            "level": level,
            "kind": kind,
            "message": message,
            "attributes": clean_attributes(attributes or {}),
            "duration_ms": duration_ms,
        }
        with self._lock:
            self._count += 1
            if self._count > MAX_ENTRIES:
                if self._count == MAX_ENTRIES + 1:
                    entry = {
                        **entry,
                        "level": "warn",
                        "kind": "log",
                        "attributes": {},
                        "message": f"log limit of {MAX_ENTRIES} entries reached; "
                        "later entries of this attempt are dropped",
                    }
                else:
                    return
            self._pending.append(entry)

    def take(self) -> list[dict[str, Any]]:
        if not self._pending:  # nothing logged (an add after this: the next take)
            return []
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def restore(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending = entries + self._pending


class _RunStream(io.TextIOBase):
    """Stands in for sys.stdout/stderr: inside a run, lines also go to the run log."""

    def __init__(self, original: Any, kind: str) -> None:
        self._original = original
        self._kind = kind
        self._partial = threading.local()

    def write(self, text: str) -> int:
        active = context.current()
        if (
            active is not None
            and active.logs is not None
            and not _forwarding()
            and not active.replaying
        ):
            buf = getattr(self._partial, "text", "") + text
            *lines, rest = buf.split("\n")
            self._partial.text = rest
            for line in lines:
                active.logs.add(
                    "info" if self._kind == "stdout" else "error", line, kind=self._kind
                )
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()

    def fileno(self) -> int:
        return self._original.fileno()

    def isatty(self) -> bool:
        return self._original.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


forwarding = threading.local()  # set while runlane.logger forwards a record to logging


def _forwarding() -> bool:
    """True while a record already in the run log is forwarded to logging (not a print)."""
    return getattr(forwarding, "on", False)


_install_lock = threading.Lock()


def capture_prints() -> None:
    """Route prints made inside runs to their logs (idempotent; other output is untouched).
    Called at every attempt start, since test runners and tools swap sys.stdout."""
    if isinstance(sys.stdout, _RunStream) and isinstance(sys.stderr, _RunStream):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _RunStream):
            sys.stdout = _RunStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _RunStream):
            sys.stderr = _RunStream(sys.stderr, "stderr")


def flush_partial_line(active: Any) -> None:
    """Record a print that did not end with a newline when the attempt ends."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, _RunStream):
            rest = getattr(stream._partial, "text", "")
            if rest and active.logs is not None:
                active.logs.add(
                    "info" if stream._kind == "stdout" else "error", rest, kind=stream._kind
                )
            stream._partial.text = ""
