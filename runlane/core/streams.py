"""Run streams: ``metadata.stream(key, iterable)`` writes each chunk to the run's stream as it
passes, for realtime subscribers (``subscription.with_streams()``).

A chunk is written at once when the last write is older than ``LINGER`` seconds; faster
chunks are gathered and written together, by the next chunk or by one flusher thread per
process at most ``LINGER`` later, so a fast producer costs a store call per batch and a slow
one sees each chunk go out as it comes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from runlane.core import jsonvalue
from runlane.errors import InvalidOptionError, LimitExceededError

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime

LINGER = 0.02  # seconds a chunk may wait to be written with the next ones
BATCH = 64  # chunks written in one store call at most
KEY_LENGTH = 64
RESERVED = frozenset({"run"})  # a part's type is "run" or a stream key


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > KEY_LENGTH or key in RESERVED:
        raise InvalidOptionError(
            "key", key, f"a stream key: 1-{KEY_LENGTH} characters, not {sorted(RESERVED)}"
        )
    return key


class StreamWriter:
    """Writes one stream of one run; ``add`` each chunk, ``close`` at the end."""

    def __init__(self, rt: Runtime, run_id: str, key: str) -> None:
        self.rt = rt
        self.run_id = run_id
        self.key = check_key(key)
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._last_write = 0.0
        self.error: BaseException | None = None  # a write the flusher failed: raised by add

    def add(self, value: Any) -> None:
        limits = self.rt.settings.limits
        text = jsonvalue.dumps(value)
        if len(text.encode()) > limits.stream_chunk_bytes:
            raise LimitExceededError(
                "chunk",
                f"{len(text.encode())} bytes",
                f"a stream chunk is at most {limits.stream_chunk_bytes} bytes as JSON",
            )
        with self._lock:
            if self.error is not None:
                error, self.error = self.error, None
                raise error
            self._pending.append(text)
            due = len(self._pending) >= BATCH or time.monotonic() - self._last_write >= LINGER
            if due:
                self._write()
        if not due:
            _flusher.watch(self)

    def flush(self) -> None:
        with self._lock:
            self._write()

    def close(self) -> None:
        self.flush()
        _flusher.forget(self)

    def _write(self) -> None:
        """Write what is pending (the lock held)."""
        if not self._pending:
            return
        chunks, self._pending = self._pending, []
        self._last_write = time.monotonic()
        written = self.rt.store.append_stream(
            self.run_id,
            self.key,
            chunks,
            now=self.rt.now(),
            max_chunks=self.rt.settings.limits.stream_chunks_per_run,
        )
        if written is None:
            raise LimitExceededError("run", self.run_id, "the run no longer exists")


class _Flusher:
    """One thread per process writes the chunks that waited ``LINGER``."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._writers: set[StreamWriter] = set()
        self._thread: threading.Thread | None = None

    def watch(self, writer: StreamWriter) -> None:
        with self._lock:
            self._writers.add(writer)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="runlane-streams", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def forget(self, writer: StreamWriter) -> None:
        with self._lock:
            self._writers.discard(writer)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._writers:
                    if not self._lock.wait(10.0) and not self._writers:
                        self._thread = None
                        return
                writers, self._writers = list(self._writers), set()
            time.sleep(LINGER)
            for writer in writers:
                try:
                    writer.flush()
                except BaseException as exc:  # the producer's next add raises it
                    writer.error = exc


_flusher = _Flusher()


def tee(writer: StreamWriter | None, iterable: Iterable[Any]) -> Iterator[Any]:
    """Each value of ``iterable``, written as a chunk first (``writer`` None: only passed on)."""
    try:
        for value in iterable:
            if writer is not None:
                writer.add(value)
            yield value
    finally:
        if writer is not None:
            writer.close()


async def atee(writer: StreamWriter | None, iterable: AsyncIterable[Any]) -> AsyncIterator[Any]:
    try:
        async for value in iterable:
            if writer is not None:
                writer.add(value)
            yield value
    finally:
        if writer is not None:
            writer.close()
