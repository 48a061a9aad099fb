"""Errors as stored: ``{name, message, stack_trace}`` with the reference's truncation."""

from __future__ import annotations

import os
import traceback

from runlane.core.models import TaskRunError

MAX_MESSAGE = 1000
MAX_FRAMES = 50
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_USER_CODE = {os.path.join(_PACKAGE, "demo.py")}  # the demo's tasks, user code in the package


def _user_frames(frames: traceback.StackSummary) -> list[traceback.FrameSummary]:
    """The stack without runlane's own frames on top (those that called the task); all of it
    when no frame is the user's."""
    for i, frame in enumerate(frames):
        if not frame.filename.startswith(_PACKAGE) or frame.filename in _USER_CODE:
            return list(frames[i:])
    return list(frames)


def serialize_exception(exc: BaseException, code: str | None = None) -> TaskRunError:
    message = str(exc)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "...[truncated]"
    frames = _user_frames(traceback.extract_tb(exc.__traceback__))
    if len(frames) > MAX_FRAMES:
        frames = frames[-MAX_FRAMES:]
    stack = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
    stack += "".join(traceback.format_exception_only(type(exc), exc))
    return TaskRunError(name=type(exc).__name__, message=message, stack_trace=stack, code=code)
