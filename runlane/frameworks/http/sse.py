"""A Server-Sent Events response body, for every server: an async iterator for ASGI (a
thousand subscribers hold no thread), and the same iterator driven by an event loop of its
own for WSGI (one thread per subscriber, as WSGI has). It starts with a ``retry:`` hint (which
also sends the headers at once), writes a heartbeat comment when nothing came for
``heartbeat`` seconds (proxies and browsers keep the connection), and calls ``on_close``
however it ends: finished, failed, or the client gone (an ASGI server cancels it; a WSGI
server calls ``close()``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterator

from runlane.sdk import sse

HEARTBEAT = 15.0  # seconds between heartbeats unless RUNLANE_SSE_HEARTBEAT says
RETRY_MS = 1000  # how long a browser waits before it reconnects
HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),  # nginx: do not buffer the stream
]


def heartbeat_seconds(given: float | None = None) -> float:
    """``given``, else ``RUNLANE_SSE_HEARTBEAT``, else 15 s."""
    if given is not None:
        return given
    raw = os.environ.get("RUNLANE_SSE_HEARTBEAT")
    try:
        return max(0.01, float(raw)) if raw else HEARTBEAT
    except ValueError:
        return HEARTBEAT


class EventStream:
    """An SSE body over ``events`` (encoded events, ``sse.encode``), ended by ``event: end``
    when ``events`` ends. ``heartbeat`` None: ``events`` yields its own (``sse.PING``) and is
    passed on as it comes, with no task per event."""

    def __init__(
        self,
        events: AsyncIterable[bytes],
        *,
        heartbeat: float | None,
        on_close: Callable[[], None] = lambda: None,
        retry_ms: int = RETRY_MS,
    ) -> None:
        self._events = events
        self._heartbeat = heartbeat
        self._on_close = on_close
        self._retry_ms = retry_ms
        self._closed = False
        self._aborted = False  # ended by the server, not by its events: no ``event: end``
        self._running: Generator[bytes] | None = None  # the synchronous iteration

    def close(self) -> None:
        """Stop (idempotent; a WSGI server calls it when the client is gone): ``on_close``
        runs once."""
        running, self._running = self._running, None
        if running is not None:
            with contextlib.suppress(ValueError):  # (called from inside it)
                running.close()
        self._on_close_once()

    def abort(self) -> None:
        """End the stream without ``event: end`` (the server stops: the client reconnects)."""
        self._aborted = True
        self._on_close_once()

    def _on_close_once(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._heartbeat is None:  # the events bring their own heartbeats
            async for chunk in self._passed():
                yield chunk
            return
        source = aiter(self._events)
        pending: asyncio.Future[bytes] | None = None
        try:
            yield sse.retry_hint(self._retry_ms)
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(source))
                done, _ = await asyncio.wait({pending}, timeout=self._heartbeat)
                if not done:
                    yield sse.PING
                    continue
                task, pending = pending, None
                try:
                    chunk = task.result()
                except StopAsyncIteration:
                    break
                yield chunk
            if not self._aborted:
                yield sse.encode(sse.END, {})
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            self.close()

    async def _passed(self) -> AsyncIterator[bytes]:
        source = aiter(self._events)
        try:
            yield sse.retry_hint(self._retry_ms)
            async for chunk in source:
                yield chunk
            if not self._aborted:
                yield sse.encode(sse.END, {})
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            self.close()

    def __iter__(self) -> Iterator[bytes]:
        """The same events in this thread, on an event loop of its own (WSGI)."""
        self._running = self._iterate()
        return self._running

    def _iterate(self) -> Generator[bytes]:
        with asyncio.Runner() as runner:
            chunks = aiter(self)

            async def step() -> bytes:
                return await anext(chunks)

            try:
                while True:
                    try:
                        chunk = runner.run(step())
                    except StopAsyncIteration:
                        return
                    yield chunk
            finally:
                self._running = None
                with contextlib.suppress(Exception):
                    runner.run(chunks.aclose())
                self.close()
