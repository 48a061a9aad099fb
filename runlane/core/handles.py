"""What a trigger returns: handles on the runs (and batches) it created, which can wait for them."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict

from runlane.core import polling
from runlane.core.models import Run


class RunHandle(BaseModel):
    """What a trigger returns. ``is_cached`` is true when an idempotency key matched a run."""

    model_config = ConfigDict(frozen=True)

    id: str
    task_identifier: str
    is_cached: bool = False
    public_access_token: str | None = None

    def __str__(self) -> str:
        return self.id

    def wait(self, timeout: float | None = None, *, poll_interval_ms: int = 1000) -> Run:
        """Block until the run is final and return it; ``RunTimeoutError`` (a
        ``TimeoutError``) after ``timeout`` seconds. See ``runs.poll``."""
        return polling.poll(self.id, timeout, poll_interval_ms)

    async def aio_wait(self, timeout: float | None = None, *, poll_interval_ms: int = 1000) -> Run:
        """Awaitable twin of :meth:`wait`."""
        return await polling.aio_poll(self.id, timeout, poll_interval_ms)


class BatchHandle(BaseModel):
    model_config = ConfigDict(frozen=True)

    batch_id: str
    runs: list[RunHandle]
    is_cached: bool = False

    @property
    def id(self) -> str:
        return self.batch_id

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[RunHandle]:  # type: ignore[override]
        return iter(self.runs)

    def __getitem__(self, i: int) -> RunHandle:
        return self.runs[i]
