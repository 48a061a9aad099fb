from __future__ import annotations

from typing import Any

from runlane.core.handles import BatchHandle, RunHandle
from runlane.core.models import Run
from runlane.errors import InvalidOptionError


def run_id_of(value: Any, option: str = "run") -> str:
    """A run id from an id string, a RunHandle or a Run."""
    if isinstance(value, (RunHandle, Run)):
        return value.id
    if isinstance(value, str) and value.startswith("run_") and 4 < len(value) <= 64:
        return value
    raise InvalidOptionError(option, value, "expected a run id ('run_…'), a RunHandle or a Run")


def batch_id_of(value: Any, option: str = "batch") -> str:
    if isinstance(value, BatchHandle):
        return value.batch_id
    if isinstance(value, str) and value.startswith("batch_") and len(value) <= 64:
        return value
    raise InvalidOptionError(option, value, "expected a batch id ('batch_…') or a BatchHandle")
