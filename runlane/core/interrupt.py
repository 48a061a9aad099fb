"""Stopping an attempt from outside: max duration and cancel.

An attempt runs on one executor thread. To stop it, the supervisor calls
``AttemptControl.interrupt(reason)``:

- while the attempt is in synchronous user code, ``AttemptInterrupted`` is raised inside that
  thread (``PyThreadState_SetAsyncExc``), which stops pure-Python loops at once and blocking
  calls as soon as they return to Python;
- while it awaits (async task bodies and hooks), the attempt's asyncio task is cancelled, which
  stops ``await asyncio.sleep`` and every other await at once.

``AttemptInterrupted`` derives from BaseException so ``except Exception`` in a task does not
swallow it; an attempt that swallows it anyway still ends as interrupted, because the outcome is
decided from ``control.reason``, not from what the code returned.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

TIMEOUT = "timeout"
CANCEL = "cancel"


class AttemptInterrupted(BaseException):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )
    if done > 1:  # should never happen: undo
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return bool(done == 1)


class _Timeout(AttemptInterrupted):
    def __init__(self) -> None:
        super().__init__(TIMEOUT)


class _Cancel(AttemptInterrupted):
    def __init__(self) -> None:
        super().__init__(CANCEL)


_EXC = {TIMEOUT: _Timeout, CANCEL: _Cancel}


class AttemptControl:
    """The handle the supervisor holds on one executing attempt."""

    def __init__(self, max_duration: float | None, used: float = 0.0) -> None:
        """``used``: seconds this attempt already executed before it was suspended."""
        self.thread_id = threading.get_ident()
        self.started = time.monotonic() - used
        self.deadline = None if max_duration is None else self.started + max_duration
        self.reason: str | None = None
        self.interrupted_at: float | None = None
        self._lock = threading.Lock()
        self._in_sync = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._finished = False  # set by finish(): no interrupt reaches the thread after it
        self._paused_at: float | None = None
        self._paused_total = 0.0

    # -- used by the attempt's own thread
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call user code so that an interrupt can reach it."""
        self.check()
        with self._lock:
            self._in_sync += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._in_sync -= 1

    def finish(self) -> None:
        """The attempt's code has returned: from now on an interrupt is refused."""
        with self._lock:
            self._finished = True

    @property
    def finished(self) -> bool:
        return self._finished

    def check(self) -> None:
        if self.reason is not None:
            raise _EXC[self.reason]()

    def bind_task(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._loop, self._task = loop, task
            pending = self.reason
        if pending is not None:
            loop.call_soon_threadsafe(task.cancel)

    def unbind_task(self) -> None:
        with self._lock:
            self._loop = self._task = None

    def pause(self) -> None:
        """Stop counting toward the max duration (waiting is not executing)."""
        with self._lock:
            self._paused_at = time.monotonic()

    def resume(self) -> None:
        with self._lock:
            if self._paused_at is not None:
                paused = time.monotonic() - self._paused_at
                self._paused_total += paused
                if self.deadline is not None:
                    self.deadline += paused
                self._paused_at = None

    def elapsed(self) -> float:
        """Seconds of execution so far (waits excluded)."""
        with self._lock:
            paused = self._paused_total
            if self._paused_at is not None:
                paused += time.monotonic() - self._paused_at
        return time.monotonic() - self.started - paused

    def past_deadline(self, now: float) -> bool:
        with self._lock:
            return self._paused_at is None and self.deadline is not None and now >= self.deadline

    # -- used by the supervisor
    def interrupt(self, reason: str) -> bool:
        """Ask the attempt to stop; True the first time."""
        with self._lock:
            if self.reason is not None or self._finished:
                return False
            self.reason = reason
            self.interrupted_at = time.monotonic()
            if self._in_sync:
                _raise_in_thread(self.thread_id, _EXC[reason])
            elif self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)
        return True
