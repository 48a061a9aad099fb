"""Redis store: the change feed (the ``feed`` stream the Lua writes: one entry a call for the
runs it changed, one a stream chunk) and run streams (``st:<id>``). A feed entry's id is
``<n>-0``, n counting up from 1 with no hole, so its position is n and a reader tells what
was trimmed (or lost with a restart)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from runlane.backends.redis.reads import _translate
from runlane.core.types import Change, FeedRead, StreamChunk
from runlane.errors import LimitExceededError

# the longest a read blocks the server connection in one call (the caller reads again)
_MAX_BLOCK = 1.0


def _position(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


class RedisFeed:
    client: redis.Redis

    def _k(self, name: str) -> str:
        raise NotImplementedError

    def _call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _head(self) -> int:
        return int(self.client.get(self._k("feedseq")) or 0)

    @_translate
    def read_feed(self, after: int, *, limit: int, timeout: float = 0.0) -> FeedRead:
        if after < 0:
            return FeedRead([], self._head())
        block = None if timeout <= 0 else max(1, int(min(timeout, _MAX_BLOCK) * 1000))
        got = self.client.xread({self._k("feed"): f"{after}-0"}, count=limit, block=block)
        entries = got[0][1] if got else []
        if not entries:
            head = self._head()
            if head < after:  # the server lost the feed (a restart without persistence)
                return FeedRead([], head, gap=True)
            return FeedRead([], after, gap=head > after)  # (entries trimmed: rare)
        changes = [
            Change(_position(eid), run_id, fields["k"])
            for eid, fields in entries
            for run_id in fields["r"].split(",")  # (the runs one call changed)
        ]
        return FeedRead(changes, changes[-1].position, gap=changes[0].position > after + 1)

    @_translate
    def append_stream(
        self, run_id: str, key: str, chunks: Sequence[str], *, now: float, max_chunks: int
    ) -> int | None:
        reply = self._call(
            "append_stream", run_id=run_id, key=key, chunks=list(chunks), max=max_chunks, now=now
        )
        if reply is None:
            return None
        if isinstance(reply, dict):
            raise LimitExceededError(
                "stream", key, f"run {run_id}'s streams hold at most {max_chunks} chunks"
            )
        return int(reply)

    @_translate
    def read_stream(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[StreamChunk]:
        entries = self.client.xrange(self._k(f"st:{run_id}"), f"({after}-0", "+", count=limit)
        return [StreamChunk(_position(eid), f["k"], f["d"]) for eid, f in entries]
