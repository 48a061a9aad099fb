"""The neutral API on real servers: an ASGI application (uvicorn: ``runlane serve``) and a
WSGI application (gunicorn and any WSGI server). Both read the body up to the API's limit
(a larger one is refused with 413 before it is read whole) and hand the API a ``Request``;
the ASGI side runs the synchronous API in a worker thread, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    MutableMapping,
)
from typing import Any

from runlane.frameworks.http.api import ApiError, HttpApi, Request, Response

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_DONE = object()


class AsgiApp:
    """``uvicorn.run(AsgiApp(api))``. ``lifespan``: called with "startup" / "shutdown"."""

    def __init__(self, api: HttpApi, lifespan: Callable[[str], None] | None = None) -> None:
        self.api = api
        self.lifespan = lifespan
        self._streams: set[Any] = set()  # the streaming bodies being sent (realtime SSE)

    def end_streams(self) -> None:
        """The server is stopping: end the streams being sent, without their ``event: end``
        (their clients reconnect, with Last-Event-ID, to a server that is up), so that the
        server need not wait for streams that never end by themselves."""
        for body in list(self._streams):
            abort = getattr(body, "abort", None)
            if abort is not None:
                abort()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: none here
            return
        try:
            body = await self._body(scope, receive)
        except ApiError as error:
            await self._send(send, error.response())
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(
            method=scope["method"],
            path=scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?")[0],
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
        )
        response = await asyncio.to_thread(self.api.handle, request)
        await self._send(send, response, receive)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.api.max_body
        for name, value in scope["headers"]:
            if name.lower() == b"content-length" and value.isdigit() and int(value) > limit:
                raise ApiError(413, "too_large", f"the request body is over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"the request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    async def _send(self, send: Send, response: Response, receive: Receive | None = None) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if isinstance(response.body, bytes):  # sized: one write, no chunked framing
            headers.append((b"content-length", str(len(response.body)).encode()))
            start = {"type": "http.response.start", "status": response.status, "headers": headers}
            await send(start)
            await send({"type": "http.response.body", "body": response.body})
            return
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        self._streams.add(response.body)
        chunks = async_chunks(response.body)
        gone = asyncio.ensure_future(_disconnected(receive)) if receive is not None else None
        try:
            while True:  # until the stream ends or the client goes away
                step = asyncio.ensure_future(anext(chunks, _DONE))
                waiting = {step} if gone is None else {step, gone}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
                    return
                chunk = step.result()
                if chunk is _DONE:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            self._streams.discard(response.body)
            if gone is not None:
                gone.cancel()
            with contextlib.suppress(Exception):
                await chunks.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            if kind in ("startup", "shutdown"):
                try:
                    if self.lifespan is not None:
                        await asyncio.to_thread(self.lifespan, kind)
                except Exception as exc:
                    await send({"type": f"lifespan.{kind}.failed", "message": str(exc)})
                    return
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return


class WsgiApp:
    """A WSGI application: ``gunicorn 'module:wsgi_app'``."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        limit = self.api.max_body
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            response = ApiError(413, "too_large", f"the request body is over {limit} bytes")
            return self._respond(response.response(), start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        path = (
            raw.split("?")[0]
            if raw
            else environ.get("SCRIPT_NAME", "")
            + environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        )
        request = Request(
            method=environ["REQUEST_METHOD"],
            path=path,
            query_string=environ.get("QUERY_STRING", ""),
            headers=headers,
            body=body,
        )
        return self._respond(self.api.handle(request), start_response)

    @staticmethod
    def _respond(response: Response, start_response: Callable[..., Any]) -> Iterator[bytes]:
        reason = _REASONS.get(response.status, "Unknown")
        if isinstance(response.body, bytes):
            headers = [*response.headers, ("content-length", str(len(response.body)))]
            start_response(f"{response.status} {reason}", headers)
            return iter([response.body])
        start_response(f"{response.status} {reason}", response.headers)
        return iter(response.body)


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone away."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def async_chunks(body: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncGenerator[bytes]:
    """A response body's chunks on the event loop: an async body as it is (a Server-Sent
    Events stream holds no thread), a synchronous one each chunk in a thread (it may block
    between chunks). Closing this closes the body."""
    if isinstance(body, AsyncIterable):
        chunks = aiter(body)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        return
    sync = iter(body)
    try:
        while True:
            chunk = await asyncio.to_thread(next, sync, _DONE)
            if chunk is _DONE:
                return
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(sync, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    414: "URI Too Long",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
