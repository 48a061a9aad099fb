"""Remote mode's subscriptions: ``runs.subscribe_to_*`` read from a runlane server's
Server-Sent Events routes (``/realtime/v1/...``), with the surface of a local subscription
(it is one: a ``core.realtime.Subscription``): ``for`` and ``async for``, ``cursor``,
``with_streams()``, ``close()``.

A dropped connection is opened again with ``Last-Event-ID`` (the cursor of the last event),
after a backoff (the client's retry options); the subscription ends on ``event: end``. An
answer that is an error (404, 401, 403 ...) raises the error a local call raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from runlane.core.models import Run
from runlane.core.realtime import RealtimePart, Subscription
from runlane.core.retrying import backoff_delay_ms
from runlane.core.types import RunQuery
from runlane.errors import StoreUnavailableError
from runlane.sdk import sse
from runlane.sdk.client import error_of

if TYPE_CHECKING:
    from runlane.sdk.remote import RemoteRuntime

BASE = "/realtime/v1"
_DROPPED = (httpx.TransportError, httpx.RemoteProtocolError)


class RemoteSubscription(Subscription):
    """A subscription to the server's SSE route for ``kind`` and ``target``."""

    rt: RemoteRuntime  # type: ignore[assignment]

    def __init__(self, rt: RemoteRuntime, kind: str, target: Any, *, cursor: int | None) -> None:
        super().__init__(rt, kind, target, cursor=cursor)
        self._response: Any = None
        self._failures = 0  # connections in a row that failed before an event
        self._resumable = cursor is not None  # an event id to send back as Last-Event-ID
        self._latest: dict[str, Run] = {}

    # ------------------------------------------------------------------ what to ask
    def _request(self) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
        params: list[tuple[str, str]] = [("streams", "true")] if self.streams else []
        if self.kind == "run":
            path = f"{BASE}/runs/{quote(str(self.target), safe='')}"
        elif self.kind == "batch":
            path = f"{BASE}/batches/{quote(str(self.target), safe='')}"
        elif self.kind == "all":  # every run (of these tasks, into these statuses)
            path = f"{BASE}/runs"
            query: RunQuery = self.target
            params += [("task", task) for task in query.task_identifier]
            params += [("status", status) for status in query.status]
        else:
            path = f"{BASE}/runs"
            params.append(("tags", ",".join(self.target)))
        headers = {"accept": "text/event-stream"}
        if self._resumable:
            headers["last-event-id"] = str(self.cursor)
        return path, params, headers

    def _item(self, event: sse.Event) -> Any:
        """What ``event`` yields (None: nothing); ``_ended`` set on the end."""
        if event.event == sse.END:
            self._ended = True
            return None
        if event.id is not None and event.id.isdigit():
            self.cursor, self._resumable = int(event.id), True
        self._failures = 0
        data = event.json()
        if event.event == sse.RUN:
            run = Run.model_validate(data)
            self._latest[run.id] = run
            if not self.streams:
                return run
            return RealtimePart(type="run", run=run, run_id=run.id, cursor=self.cursor)
        if event.event == sse.CHUNK and self.streams:
            run_id = str(data["run_id"])
            return RealtimePart(
                type=str(data["key"]),
                run=self._latest.get(run_id),
                run_id=run_id,
                chunk=data.get("chunk"),
                cursor=self.cursor,
            )
        return None

    def _failed(self, exc: BaseException | None, response: httpx.Response | None) -> float:
        """Seconds before connecting again; the error when no attempt is left."""
        if response is not None and response.status_code < 500 and response.status_code != 429:
            response.read()
            raise error_of(response, "batch" if self.kind == "batch" else "run")
        self._failures += 1
        delay = backoff_delay_ms(self.rt.client.retry, self._failures)
        if delay is None:
            what = f"HTTP {response.status_code}" if response is not None else repr(exc)
            raise StoreUnavailableError(
                f"the realtime stream of {self.kind} {self.target!r} from {self.rt.client.api_url}"
                f" failed {self._failures} times in a row: {what}"
            ) from exc
        return delay / 1000

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Any]:
        http = self.rt.client.http
        try:
            while not (self._closed or self._ended):
                path, params, headers = self._request()
                self._started = True
                delay = 0.0
                try:
                    with http.stream("GET", path, params=params, headers=headers) as response:
                        self._response = response
                        if response.status_code != 200:
                            delay = self._failed(None, response)
                        else:
                            for event in sse.Decoder().events(response.iter_lines()):
                                item = self._item(event)
                                if item is not None:
                                    yield item
                                if self._ended or self._closed:
                                    break
                            else:
                                delay = self._failed(None, None)  # closed without its end
                except _DROPPED as exc:
                    if self._closed:
                        return
                    delay = self._failed(exc, None)
                if delay and not (self._closed or self._ended):
                    time.sleep(delay)
        finally:
            self.close()

    async def _aiter(self) -> AsyncIterator[Any]:
        client = self.rt.client
        try:
            async with client.async_http() as http:
                while not (self._closed or self._ended):
                    path, params, headers = self._request()
                    self._started = True
                    delay = 0.0
                    try:
                        async with http.stream(
                            "GET", path, params=params, headers=headers
                        ) as response:
                            if response.status_code != 200:
                                await response.aread()
                                delay = self._failed(None, response)
                            else:
                                async for event in sse.Decoder().aevents(response.aiter_lines()):
                                    item = self._item(event)
                                    if item is not None:
                                        yield item
                                    if self._ended or self._closed:
                                        break
                                else:
                                    delay = self._failed(None, None)
                    except _DROPPED as exc:
                        if self._closed:
                            return
                        delay = self._failed(exc, None)
                    if delay and not (self._closed or self._ended):
                        await asyncio.sleep(delay)
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        response, self._response = self._response, None
        if response is not None:
            try:
                response.close()
            except Exception:  # (closing from another thread while it reads)
                pass
