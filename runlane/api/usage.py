"""``runlane.usage``: how long the current attempt and run have been executing."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from runlane.core import context

__all__ = ["AttemptUsage", "RunUsage", "Usage", "get_current"]


class AttemptUsage(BaseModel):
    model_config = ConfigDict(frozen=True)
    duration_ms: int


class RunUsage(BaseModel):
    model_config = ConfigDict(frozen=True)
    duration_ms: int


class Usage(BaseModel):
    """``attempt.duration_ms``: this attempt so far; ``total.duration_ms``: the run's
    executing time over all its attempts, this one included."""

    model_config = ConfigDict(frozen=True)
    attempt: AttemptUsage
    total: RunUsage


def get_current() -> Usage | None:
    """The usage of the current attempt (None outside a run)."""
    active = context.current()
    if active is None or active.control is None:
        return None
    attempt_ms = int(active.control.elapsed() * 1000)
    return Usage(
        attempt=AttemptUsage(duration_ms=attempt_ms),
        total=RunUsage(duration_ms=active.ctx.run.duration_ms + attempt_ms),
    )
