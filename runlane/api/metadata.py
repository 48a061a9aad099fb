"""``runlane.metadata``: read and update the current run's metadata (fluent; no-ops outside)."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, Iterable
from typing import Any

from typing_extensions import Self

from runlane.core import context, streams
from runlane.core.aio import run_sync
from runlane.core.executor import flush_active
from runlane.core.metadata import make_op
from runlane.errors import InvalidOptionError


class _Updates(abc.ABC):
    """The update operations, shared by ``metadata``, ``metadata.parent`` and ``.root``."""

    @abc.abstractmethod
    def _update(self, op: str, key: str | None = None, value: Any = None) -> Self:
        """Apply one validated operation to this object's target run."""

    def set(self, key: str, value: Any) -> Self:
        return self._update("set", key, value)

    def delete(self, key: str) -> Self:
        return self._update("delete", key)

    def replace(self, value: dict[str, Any]) -> Self:
        return self._update("replace", None, value)

    def append(self, key: str, value: Any) -> Self:
        return self._update("append", key, value)

    def remove(self, key: str, value: Any) -> Self:
        return self._update("remove", key, value)

    def increment(self, key: str, value: int | float = 1) -> Self:
        return self._update("increment", key, value)

    def decrement(self, key: str, value: int | float = 1) -> Self:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self._update("increment", key, value)  # make_op reports the bad value
        return self._update("increment", key, -value)


class _RelativeMetadata(_Updates):
    """``metadata.parent`` / ``metadata.root``: updates to another run's metadata, applied
    atomically in the store (so increments from many children all count). On a root run
    they apply to the run itself; outside a run they do nothing."""

    def __init__(self, which: str) -> None:
        self._which = which

    def _update(self, op: str, key: str | None = None, value: Any = None) -> Self:
        built = make_op(op, key, value)
        active = context.current()
        if active is None or active.replaying:  # applied before the suspension already
            return self
        run = active.ctx.run
        target = run.parent_id if self._which == "parent" else run.root_id
        if target is None or target == run.id:
            active.metadata.apply(built)
        else:
            active.remote_metadata.add(target, built)
        return self

    def __repr__(self) -> str:
        return f"<runlane.metadata.{self._which}>"


class RunMetadata(_Updates):
    """Operations on the current run's metadata. Each update returns the object for chaining;
    updates are applied locally at once and flushed to the store every second and at the end
    of the attempt."""

    parent = _RelativeMetadata("parent")
    root = _RelativeMetadata("root")

    def _update(self, op: str, key: str | None = None, value: Any = None) -> Self:
        active = context.current()
        built = make_op(op, key, value)  # validate even outside a run
        if active is not None and not active.replaying:  # replayed: applied already
            active.metadata.apply(built)
        return self

    def get(self, key: str) -> Any:
        active = context.current()
        return None if active is None else active.metadata.get(key)

    def current(self) -> dict[str, Any] | None:
        active = context.current()
        return None if active is None else active.metadata.snapshot()

    def stream(self, key: str, iterable: Iterable[Any] | AsyncIterable[Any]) -> Any:
        """Send ``iterable``'s values to the run's stream ``key`` as they pass, for realtime
        subscribers (``runs.subscribe_to_run(id).with_streams()``: parts of type ``key``).
        Returns an iterator of the same values (an async one for an async iterable): iterate
        it, and each value is written, in order, as it is produced. Values must be JSON (at
        most ``limits.stream_chunk_bytes`` each, ``limits.stream_chunks_per_run`` in all).
        Outside a run, the values only pass through."""
        streams.check_key(key)
        active = context.current()
        writer = None
        if active is not None and not active.replaying:  # replayed: written already
            writer = streams.StreamWriter(active.runtime, active.run_id, key)
        if isinstance(iterable, AsyncIterable):
            return streams.atee(writer, iterable)
        if not isinstance(iterable, Iterable):
            raise InvalidOptionError("iterable", iterable, "an iterable or async iterable")
        return streams.tee(writer, iterable)

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
