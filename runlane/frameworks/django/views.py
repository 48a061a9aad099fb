"""The management API under a Django URL include: one catch-all view that forwards to the
neutral API (``runlane.frameworks.http``), built once per configured runtime with no prefix and
given the path after the include's prefix."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from runlane.core import runtime
from runlane.frameworks.http.api import HttpApi, Request
from runlane.frameworks.http.app import build_api
from runlane.frameworks.http.servers import async_chunks

_lock = threading.Lock()
_built: tuple[Any, HttpApi] | None = None


def api() -> HttpApi:
    """The API over the current runtime (built again after the settings change)."""
    global _built
    rt = runtime.get()
    built = _built
    if built is None or built[0] is not rt:
        with _lock:
            from runlane.frameworks.django import conf

            built = (rt, build_api(rt, secret_key=conf.state.values.get("SECRET_KEY")))
            _built = built
    return built[1]


def _api_path(request: HttpRequest, rest: str) -> str:
    """The path below the include, undecoded where the server gives the raw URI (gunicorn's
    ``RAW_URI``, ``REQUEST_URI``) so that ``%2F`` stays inside one segment; else re-quoted."""
    decoded = request.path
    mount = decoded[: len(decoded) - len(rest)] if rest else decoded
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if raw:
        raw = raw.split("?", 1)[0]
        if "://" in raw:  # an absolute URI
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        if raw.startswith(mount):
            return "/" + raw[len(mount) :]
    return "/" + quote(rest, safe="/:@!$&'()*+,;=-._~")


@csrf_exempt  # bearer keys, never cookies
@transaction.non_atomic_requests  # (ATOMIC_REQUESTS) an API trigger is created at once
def api_view(request: HttpRequest, rest: str = "") -> HttpResponse:
    headers = {key.lower(): value for key, value in request.headers.items()}
    answer = api().handle(
        Request(
            method=request.method or "GET",
            path=_api_path(request, rest),
            query_string=request.META.get("QUERY_STRING", ""),
            headers=headers,
            body=request.body,
        )
    )
    response: HttpResponse | StreamingHttpResponse
    if isinstance(answer.body, bytes):
        response = HttpResponse(answer.body, status=answer.status)
    elif isinstance(request, ASGIRequest):  # on the event loop: an SSE stream holds no thread
        response = StreamingHttpResponse(async_chunks(answer.body), status=answer.status)
    else:  # WSGI: in this thread (Django would buffer an async iterator whole)
        response = StreamingHttpResponse(iter(answer.body), status=answer.status)
    if not any(name.lower() == "content-type" for name, _ in answer.headers):
        del response["Content-Type"]
    for name, value in answer.headers:
        response[name] = value
    return response  # type: ignore[return-value]
