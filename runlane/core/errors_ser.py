"""Errors as stored: ``{name, message, stack_trace}`` with the reference's truncation."""

from __future__ import annotations

import traceback

from runlane.core.models import TaskRunError

MAX_MESSAGE = 1000
MAX_FRAMES = 50


def serialize_exception(exc: BaseException, code: str | None = None) -> TaskRunError:
    message = str(exc)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "...[truncated]"
    frames = traceback.extract_tb(exc.__traceback__)
    if len(frames) > MAX_FRAMES:
        frames = frames[-MAX_FRAMES:]
    stack = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
    stack += "".join(traceback.format_exception_only(type(exc), exc))
    return TaskRunError(name=type(exc).__name__, message=message, stack_trace=stack, code=code)
