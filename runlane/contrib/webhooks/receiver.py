"""``receive(provider, secret=..., task=...)``: a webhook endpoint, framework-neutral, with
thin adapters for Flask, Django, FastAPI and plain ASGI.

The neutral handler takes a ``runlane.frameworks.http.api.Request`` and returns a
``Response``: 200 ``{"id": run id, "isCached": bool}`` once the run is triggered (a redelivery
answers the same id, ``isCached`` true), or ``{"error": {"message", "code"}}`` with 400/401/413
when the delivery does not verify (``code``: the ``WebhookVerificationError`` reason), and
nothing is written. Framework modules are imported inside the adapters only.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from runlane.contrib.webhooks.events import WebhookEvent, WebhookVerificationError
from runlane.contrib.webhooks.schemes import (
    DEFAULT_MAX_BODY,
    DEFAULT_TOLERANCE,
    Scheme,
    Secrets,
    normalize_headers,
    scheme_for,
    secret_list,
)
from runlane.contrib.webhooks.triggering import trigger_from
from runlane.core.options import TRIGGER_OPTION_NAMES
from runlane.errors import InvalidOptionError, StoreUnavailableError
from runlane.frameworks.http.api import ApiError, Request, Response, Route, error_of

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime

log = logging.getLogger("runlane.webhooks")


def _too_large(limit: int, provider: str) -> ApiError:
    return ApiError(413, "body_too_large", f"{provider} webhook: the body is over {limit} bytes")


class Receiver:
    """One webhook endpoint: verify, then trigger ``task``. Call it with a neutral
    ``Request``; mount it with ``flask_view()``, ``django_view()``, ``fastapi_endpoint()``,
    ``asgi()`` or ``route(path)`` (runlane's own HTTP API)."""

    def __init__(
        self,
        provider: str | Scheme,
        *,
        secret: Secrets,
        task: Any,
        tolerance: float | None = DEFAULT_TOLERANCE,
        max_body: int = DEFAULT_MAX_BODY,
        types: Collection[str] | None = None,
        payload: Any = None,
        runtime: Runtime | Callable[[], Runtime] | None = None,
        **options: Any,
    ) -> None:
        scheme_options = {k: options.pop(k) for k in list(options) if k not in TRIGGER_OPTION_NAMES}
        self.scheme = scheme_for(provider, scheme_options)
        self.provider = self.scheme.name
        self.secrets = secret_list(secret)
        for s in self.secrets:
            self.scheme.key(s)  # a malformed secret fails here, not on the first delivery
        self.task = task if isinstance(task, str) else getattr(task, "id", None)
        if not isinstance(self.task, str) or not self.task:
            raise InvalidOptionError("task", task, "give a task id (or a Task)")
        if not isinstance(max_body, int) or max_body <= 0:
            raise InvalidOptionError("max_body", max_body, "must be a positive number of bytes")
        self.tolerance = tolerance
        self.max_body = max_body
        self.types = None if types is None else frozenset(types)
        self.payload = payload
        self.runtime = runtime
        self.options = options

    # -- the neutral handler
    def verify(self, request: Request) -> WebhookEvent:
        return self.scheme.verify(
            body=request.body,
            headers=request.headers,
            secret=self.secrets,
            tolerance=self.tolerance,
            max_body=self.max_body,
        )

    def __call__(self, request: Request) -> Response:
        if request.method.upper() != "POST":
            return ApiError(
                405, "method_not_allowed", "webhooks are POSTed", headers=[("allow", "POST")]
            ).response()
        try:
            event = self.verify(request)
        except WebhookVerificationError as exc:
            log.warning("webhook refused (%s): %s", exc.reason, exc)
            return ApiError(exc.status, exc.reason, str(exc)).response()
        if event.provider == "slack" and event.type == "url_verification":
            # Slack checks a new events URL with a signed challenge to echo: no run
            return Response.json({"challenge": (event.payload or {}).get("challenge")})
        if self.types is not None and event.type not in self.types:
            return Response.json({"id": None, "ignored": True, "type": event.type})
        try:
            handle = trigger_from(
                event, self.task, payload=self.payload, runtime=self._runtime(request),
                **self.options,
            )  # fmt: skip
        except Exception as exc:
            error = error_of(exc)
            if error.status >= 500 and not isinstance(exc, StoreUnavailableError):
                log.exception("webhook %s %s: trigger failed", event.provider, event.id)
            return error.response()
        return Response.json({"id": handle.id, "isCached": handle.is_cached})

    handle = __call__

    def _runtime(self, request: Request) -> Runtime | None:
        if self.runtime is not None:
            return self.runtime() if callable(self.runtime) else self.runtime
        return request.runtime  # set under runlane's API for authenticated routes; else current

    @property
    def name(self) -> str:
        return re.sub(r"\W", "_", f"runlane_webhook_{self.provider}_{self.task}")

    def _request(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Request:
        return Request(
            method=method,
            path=path,
            query_string=query,
            headers=normalize_headers(headers),
            body=body,
        )

    # -- runlane's own HTTP API
    def route(self, path: str) -> Route:
        """A ``Route`` for runlane's neutral API (``auth="none"``: the signature is the auth)."""
        return Route("POST", path, self, self.name, f"{self.provider} webhook", auth="none")

    # -- Flask
    def flask_view(self) -> Callable[..., Any]:
        """``app.add_url_rule("/webhooks/stripe", view_func=receiver.flask_view())`` (POST)."""

        def view(**_: Any) -> Any:
            from flask import Response as FlaskResponse
            from flask import request

            if (request.content_length or 0) > self.max_body:
                response = _too_large(self.max_body, self.provider).response()
            else:
                neutral = self._request(
                    request.method,
                    request.path,
                    request.query_string.decode("latin-1"),
                    request.headers.items(),
                    request.get_data(cache=True),
                )
                response = self(neutral)
            return FlaskResponse(response.body, status=response.status, headers=response.headers)

        view.__name__ = view.__qualname__ = self.name
        view.methods = ["POST"]  # type: ignore[attr-defined]
        return view

    # -- Django
    def django_view(self) -> Callable[..., Any]:
        """``path("webhooks/stripe", receiver.django_view())``; exempt from CSRF (the signature
        authenticates the sender) and from ``ATOMIC_REQUESTS`` (the view writes no row of the
        app's: its run, keyed by the delivery's id, is created at once, so a redelivery finds
        it; runlane refuses a keyed trigger deferred to a commit)."""

        def view(request: Any, *args: Any, **kwargs: Any) -> Any:
            from django.http import HttpResponse

            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > self.max_body:
                response = _too_large(self.max_body, self.provider).response()
            else:
                neutral = self._request(
                    request.method,
                    request.path,
                    request.META.get("QUERY_STRING", ""),
                    request.headers.items(),
                    request.body,
                )
                response = self(neutral)
            answer = HttpResponse(response.body, status=response.status)
            for name, value in response.headers:
                answer[name] = value
            return answer

        from django.db import transaction

        view.__name__ = view.__qualname__ = self.name
        view.csrf_exempt = True  # type: ignore[attr-defined]  # what @csrf_exempt sets
        # (ATOMIC_REQUESTS, on the default database, as runlane's API view)
        return transaction.non_atomic_requests(view)

    # -- ASGI and FastAPI
    async def _read(self, chunks: Any) -> bytes:
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > self.max_body:
                raise _too_large(self.max_body, self.provider)
        return bytes(body)

    def fastapi_endpoint(self) -> Callable[..., Any]:
        """``app.add_api_route("/webhooks/stripe", receiver.fastapi_endpoint(),
        methods=["POST"])`` (or on an ``APIRouter``). The body is read here, up to
        ``max_body``; verification and the trigger run in a worker thread."""
        from starlette.requests import Request as StarletteRequest
        from starlette.responses import Response as StarletteResponse

        async def endpoint(request: StarletteRequest) -> StarletteResponse:
            try:
                length = int(request.headers.get("content-length") or 0)
            except ValueError:
                length = 0
            try:
                if length > self.max_body:
                    raise _too_large(self.max_body, self.provider)
                body = await self._read(request.stream())
            except ApiError as error:
                response = error.response()
            else:
                neutral = self._request(
                    request.method,
                    request.url.path,
                    request.url.query,
                    request.headers.items(),
                    body,
                )
                response = await asyncio.to_thread(self, neutral)
            assert isinstance(response.body, bytes)
            return StarletteResponse(response.body, response.status, headers=dict(response.headers))

        endpoint.__name__ = endpoint.__qualname__ = self.name
        # real classes, not the postponed strings: FastAPI inspects the signature
        endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    "request",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    annotation=StarletteRequest,
                )
            ],
            return_annotation=StarletteResponse,
        )
        return endpoint

    def asgi(self) -> Callable[..., Any]:
        """A bare ASGI application answering every path with this receiver (mount it, or run
        it under uvicorn). Lifespan events are acknowledged."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    kind = message["type"].rsplit(".", 1)[-1]
                    await send({"type": f"lifespan.{kind}.complete"})
                    if kind == "shutdown":
                        return
            if scope["type"] != "http":
                return

            async def chunks() -> Any:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    yield message.get("body", b"")
                    if not message.get("more_body"):
                        return

            headers = normalize_headers(scope.get("headers") or [])
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                length = 0
            try:
                if length > self.max_body:
                    raise _too_large(self.max_body, self.provider)
                body = await self._read(chunks())
            except ApiError as error:
                response = error.response()
            else:
                neutral = self._request(
                    scope["method"],
                    scope.get("root_path", "") + scope["path"],
                    scope.get("query_string", b"").decode("latin-1"),
                    headers,
                    body,
                )
                response = await asyncio.to_thread(self, neutral)
            assert isinstance(response.body, bytes)
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
            await send({"type": "http.response.start", "status": response.status, "headers": raw})
            await send({"type": "http.response.body", "body": response.body})

        return app


def receive(
    provider: str | Scheme,
    *,
    secret: Secrets,
    task: Any,
    tolerance: float | None = DEFAULT_TOLERANCE,
    max_body: int = DEFAULT_MAX_BODY,
    types: Iterable[str] | None = None,
    payload: Any = None,
    runtime: Runtime | Callable[[], Runtime] | None = None,
    **options: Any,
) -> Receiver:
    """A webhook endpoint for ``provider`` that triggers ``task``. ``secret``: one or a list
    (rotation). ``types``: only these event types trigger (others are answered 200,
    ``"ignored": true``). ``payload``: the run's payload, a function of the event (default
    ``event.as_payload()``). ``runtime``: a Runtime or a function returning one (default: the
    current runtime). ``options``: trigger options (tags, queue, ttl, ...), and for "hmac" the
    scheme's options (header, algorithm, prefix, encoding, ...)."""
    return Receiver(
        provider,
        secret=secret,
        task=task,
        tolerance=tolerance,
        max_body=max_body,
        types=None if types is None else list(types),
        payload=payload,
        runtime=runtime,
        **options,
    )
