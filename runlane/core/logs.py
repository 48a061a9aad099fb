"""The run log: entries recorded by ``logger``, spans of ``logger.trace``, captured prints and
stdlib ``logging`` records; and the worker's console line per attempt (``runlane.worker.runs``).

Entries are buffered per attempt and written to the store with the metadata flush (every
second) and at the end of the attempt. Logs are lenient where payloads are strict: an attribute
that is not JSON is recorded as its ``repr``; a message is cut at 32 KiB; an attempt records at
most ``MAX_ENTRIES`` entries and then one entry saying the rest was dropped.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel, ConfigDict, Field

from runlane.core import context, jsonvalue
from runlane.errors import PayloadError

if TYPE_CHECKING:
    from runlane.core.models import TaskRunError

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

    def __init__(self, original: TextIO, kind: str) -> None:
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
            caller = sys._getframe(1)
            if caller.f_code is _STREAM_EMIT:  # a logging handler writes a record
                _add_record(active.logs, caller.f_locals.get("record"))
                return self._original.write(text)
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

# what a logging.StreamHandler (lastResort, basicConfig's, the CLI's) runs to write a record:
# a write from it is recorded as that record, at its level, not as a line of stderr
_STREAM_EMIT = logging.StreamHandler.emit.__code__
_last_record = threading.local()  # one record written by two handlers is recorded once


def _level(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    return "info" if levelno >= logging.INFO else "debug"


def _add_record(logs: LogBuffer, record: Any) -> None:
    if not isinstance(record, logging.LogRecord) or getattr(_last_record, "record", None) is record:
        return
    _last_record.record = record
    message = record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    for extra in (record.exc_text, record.stack_info):
        if extra:
            message = f"{message}\n{extra}"
    logs.add(_level(record.levelno), message, {"logger": record.name}, at=record.created)


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


# ---------------------------------------------------------------------- the worker's run lines
run_lines = logging.getLogger("runlane.worker.runs")
"""One line as an attempt starts and one as it ends ("run_… convert-video COMPLETED in 0.02 s"),
from what the executor already holds (no store read). ``runlane worker`` shows them on its
console; a program running ``runlane.Worker`` sees them once it configures logging."""


def _seconds(value: float) -> str:
    value = max(value, 0.0)
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def _error_text(error: TaskRunError | None) -> str:
    if error is None:
        return "unknown error"
    message = (error.message or "").strip().split("\n", 1)[0]
    if len(message) > 200:
        message = message[:200] + "..."
    return f"{error.name} {message}" if message else error.name


def log_received(run_id: str, task_id: str, attempt: int, resumed: bool) -> None:
    """The attempt has started (or resumed after a wait) on this worker."""
    if run_lines.isEnabledFor(logging.INFO):
        note = " (resumed after a wait)" if resumed else ""
        if attempt > 1:
            note = f" (attempt {attempt}){note}"
        run_lines.info("%s %s received%s", run_id, task_id, note)


def log_ended(
    run_id: str,
    task_id: str,
    outcome: Mapping[str, Any] | None,
    seconds: float,
    now: float,
    *,
    frozen: bool = False,
    handed_back: bool = False,
) -> None:
    """The attempt's end, as recorded: ``outcome`` holds the fields of its ``AttemptOutcome``
    (None: canceled, or ``handed_back`` on shutdown); ``frozen``: suspended on a wait.
    COMPLETED, CANCELED and FROZEN are INFO lines, a retry a WARNING, the rest ERROR."""
    status = "FROZEN" if frozen else "CANCELED" if outcome is None else outcome["run_status"].value
    if handed_back and outcome is None:
        status = "CRASHED"
    level = _END_LEVELS.get(status, logging.ERROR)
    if not run_lines.isEnabledFor(level):
        return
    took = _seconds(seconds)
    error = None if outcome is None else outcome.get("error")
    if status == "FROZEN":
        text = f"FROZEN on a wait after {took} (no worker held)"
    elif status == "CRASHED":
        text = f"CRASHED after {took}: handed back on shutdown (retried if attempts remain)"
    elif status == "CANCELED":
        text = f"CANCELED after {took}"
    elif status == "COMPLETED":
        text = f"COMPLETED in {took}"
    elif status == "REATTEMPTING":
        assert outcome is not None
        text = f"retrying in {_seconds(outcome['retry_at'] - now)}: {_error_text(error)}"
    else:  # FAILED, TIMED_OUT
        text = f"{status} in {took}: {_error_text(error)}"
    run_lines.log(level, "%s %s %s", run_id, task_id, text)


_END_LEVELS = {
    "COMPLETED": logging.INFO,
    "CANCELED": logging.INFO,
    "FROZEN": logging.INFO,
    "REATTEMPTING": logging.WARNING,
    "CRASHED": logging.WARNING,
}
