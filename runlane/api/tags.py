"""``runlane.tags``: add tags to the current run (at most 5 per run, 1-64 characters each)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runlane.core import context
from runlane.core.aio import aio
from runlane.core.limits import Limits
from runlane.core.options import normalize_tags

__all__ = ["add", "aio_add"]

log = logging.getLogger("runlane.tags")


def add(tags: str | Sequence[str]) -> list[str]:
    """Add tags to the current run; returns its tags. Tags past the limit are logged and
    ignored, as in the reference."""
    active = context.require("tags.add()")
    rt = active.runtime
    limits = rt.settings.limits
    # validate each tag's shape; the count is checked against the run's tags below
    new = normalize_tags(tags, Limits(tags_per_run=10**6, tag_length=limits.tag_length))
    current = active.tags
    fresh = [t for t in new if t not in current]
    if not fresh:
        return list(current)
    if len(current) + len(fresh) > limits.tags_per_run:
        log.error(
            "tags.add(%r) ignored: run %s has %d tag(s) and the limit is %d",
            fresh,
            active.run_id,
            len(current),
            limits.tags_per_run,
        )
        return list(current)
    result = rt.ops.add_run_tags(active.run_id, fresh)
    active.tags = list(result)
    return list(result)


aio_add = aio(add)
