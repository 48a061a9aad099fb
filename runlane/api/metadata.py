"""``runlane.metadata``: read and update the current run's metadata (fluent; no-ops outside)."""

from __future__ import annotations

from typing import Any

from runlane.core import context
from runlane.core.aio import run_sync
from runlane.core.executor import flush_active
from runlane.core.metadata import make_op


class RunMetadata:
    """Operations on the current run's metadata. Each update returns ``self`` for chaining;
    updates are applied locally at once and flushed to the store every second and at the end
    of the attempt."""

    def _update(self, op: str, key: str | None = None, value: Any = None) -> RunMetadata:
        active = context.current()
        built = make_op(op, key, value)  # validate even outside a run
        if active is not None:
            active.metadata.apply(built)
        return self

    def set(self, key: str, value: Any) -> RunMetadata:
        return self._update("set", key, value)

    def delete(self, key: str) -> RunMetadata:
        return self._update("delete", key)

    def replace(self, value: dict[str, Any]) -> RunMetadata:
        return self._update("replace", None, value)

    def append(self, key: str, value: Any) -> RunMetadata:
        return self._update("append", key, value)

    def remove(self, key: str, value: Any) -> RunMetadata:
        return self._update("remove", key, value)

    def increment(self, key: str, value: int | float = 1) -> RunMetadata:
        return self._update("increment", key, value)

    def decrement(self, key: str, value: int | float = 1) -> RunMetadata:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self._update("increment", key, value)  # make_op reports the bad value
        return self._update("increment", key, -value)

    def get(self, key: str) -> Any:
        active = context.current()
        return None if active is None else active.metadata.get(key)

    def current(self) -> dict[str, Any] | None:
        active = context.current()
        return None if active is None else active.metadata.snapshot()

    def flush(self) -> None:
        """Write pending updates to the store now."""
        active = context.current()
        if active is not None:
            flush_active(active.runtime, active)

    async def aio_flush(self) -> None:
        await run_sync(self.flush)

    def __repr__(self) -> str:
        return "<runlane.metadata>"


metadata = RunMetadata()
