"""The framework-neutral HTTP layer: requests and responses as plain values, routes, JSON
errors with stable codes, size limits and authentication, in one synchronous ``handle()``.

Servers and frameworks adapt it: ``asgi.py`` (uvicorn, ``runlane serve``), ``wsgi.py``
(gunicorn), and the Flask, Django and FastAPI integrations. It holds no state of its own: the
runtime of each request's environment (``runtime_for``) does the work, through the operations
layer (``runlane.core.operations``, ``runlane.core.schedules``) and the engine.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from runlane.errors import (
    InvalidOptionError,
    InvalidRunStateError,
    InvalidScheduleStateError,
    LimitExceededError,
    RunlaneError,
    RunNotFoundError,
    ScheduleNotFoundError,
    StoreUnavailableError,
    TaskNotFoundError,
    TaskPayloadParsedError,
)

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime
    from runlane.frameworks.http.auth import Principal

log = logging.getLogger("runlane.http")

MAX_BODY = 6 * 1024 * 1024  # bytes of a request body (a 5 MB batch and its JSON framing)
MAX_QUERY = 8 * 1024  # bytes of a query string
MAX_PATH = 2048  # characters of a path
_ID = r"[A-Za-z0-9_\-.:@%+~]{1,512}"  # a path parameter, undecoded (a "/" in it comes as %2F)


# ---------------------------------------------------------------------- values
@dataclass
class Request:
    """A request as every server and framework can give it. ``headers`` keys are lower case;
    ``path`` is undecoded (``%2F`` stays one segment)."""

    method: str
    path: str
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # the route's path parameters
    principal: Principal | None = None  # who is calling (set by authentication)
    runtime: Runtime | None = None  # the runtime of the caller's environment
    api: HttpApi | None = None  # the API answering it

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def query(self) -> dict[str, list[str]]:
        if len(self.query_string) > MAX_QUERY:
            raise ApiError(414, "uri_too_long", f"the query string is over {MAX_QUERY} bytes")
        return parse_qs(self.query_string, keep_blank_values=True)

    def arg(self, name: str) -> str | None:
        """The last value of query parameter ``name``."""
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body as JSON (an empty body is ``{}``); 400 when it is not JSON."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, "malformed_json", f"the request body is not JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ApiError(400, "malformed_json", "the request body must be a JSON object")
        return data

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None, "an authenticated route's request has a runtime"
        return self.runtime


@dataclass
class Response:
    """A response: ``body`` is bytes, or chunks for a stream: an iterable, or one that is
    both iterable and async iterable (Server-Sent Events: ``sse.EventStream``), which async
    servers iterate on their event loop and WSGI servers in their thread."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        return cls(status, body, [("content-type", "application/json"), *headers])

    @property
    def streaming(self) -> bool:
        return not isinstance(self.body, bytes)


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "code", ...}}`` with ``status``: 400
    malformed, 401/403 authentication, 404 unknown, 409/422 state and validation, 413 too
    large, 429 rate limited. ``code`` is stable: clients branch on it, not on the message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)
        self.param = param

    def response(self) -> Response:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.param is not None:
            error["param"] = self.param
        return Response.json({"error": error}, self.status, self.headers)


def error_of(exc: BaseException) -> ApiError:
    """The HTTP answer to one of runlane's errors (anything else is a 500, logged)."""
    if isinstance(exc, ApiError):
        return exc
    message = str(exc)
    if isinstance(exc, (RunNotFoundError, ScheduleNotFoundError)):
        return ApiError(404, "not_found", message)
    if isinstance(exc, TaskNotFoundError):
        return ApiError(404, "task_not_found", message)
    if isinstance(exc, LimitExceededError):
        return ApiError(413, "too_large", message, param=exc.option)
    if isinstance(exc, TaskPayloadParsedError):
        return ApiError(422, "invalid_payload", message)
    if isinstance(exc, InvalidOptionError):
        return ApiError(422, "invalid_option", message, param=exc.option)
    if isinstance(exc, (InvalidRunStateError, InvalidScheduleStateError)):
        return ApiError(422, "invalid_state", message)
    if isinstance(exc, StoreUnavailableError):
        return ApiError(503, "store_unavailable", message, headers=[("retry-after", "1")])
    if isinstance(exc, LookupError) and isinstance(exc, RunlaneError):
        return ApiError(404, "not_found", message)
    if isinstance(exc, RunlaneError):
        return ApiError(400, "bad_request", message)
    return ApiError(500, "internal_error", "internal server error")


# ---------------------------------------------------------------------- routes
Handler = Callable[[Request], "Response | Any"]


@dataclass(frozen=True)
class Route:
    """One route. ``auth``: "secret" (a secret key), "public" (a secret key, or a public access
    token whose scopes ``scope(request)`` allows), or "none". ``summary``: for OpenAPI;
    ``in_schema``: whether the OpenAPI document lists it (the dashboard's pages are no part of
    the API's contract)."""

    method: str
    path: str
    handler: Handler
    name: str
    summary: str = ""
    auth: str = "secret"
    scope: Callable[[Request], Iterable[str]] | None = None
    in_schema: bool = True
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{_ID})", self.path)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, route: Route) -> None:
        for other in self.routes:
            if other.method == route.method and other.path == route.path:
                raise ValueError(f"route {route.method} {route.path} is defined twice")
        self.routes.append(route)

    def route(
        self,
        method: str,
        path: str,
        *,
        name: str,
        summary: str = "",
        auth: str = "secret",
        scope: Callable[[Request], Iterable[str]] | None = None,
        in_schema: bool = True,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(
                Route(
                    method,
                    path,
                    handler,
                    name,
                    summary or (handler.__doc__ or "").strip().split("\n")[0],
                    auth,
                    scope,
                    in_schema,
                )
            )
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
            allowed.append(route.method)
        if allowed:
            raise ApiError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path}",
                headers=[("allow", ", ".join(sorted(set(allowed))))],
            )
        raise ApiError(404, "no_route", f"no route {method} {path}")


class HttpApi:
    """The management API as one callable: ``api.handle(request) -> response``.

    ``runtime_for(environment)``: the runtime serving an environment (the environment comes
    from the caller's key or token). ``authenticator``: checks the ``Authorization`` header
    (see ``auth.Authenticator``). ``prefix``: where the routes are mounted (``/runlane``
    under a framework, nothing under ``runlane serve``)."""

    def __init__(
        self,
        runtime_for: Callable[[str], Runtime],
        authenticator: Any,
        *,
        routers: Iterable[Router] = (),
        prefix: str = "",
        max_body: int = MAX_BODY,
        sse_heartbeat: float | None = None,
    ) -> None:
        self.runtime_for = runtime_for
        self.authenticator = authenticator
        self.router = Router()
        for router in routers:
            for route in router.routes:
                self.router.add(route)
        self.prefix = prefix.rstrip("/")
        self.max_body = max_body
        # seconds between Server-Sent Events heartbeats (None: RUNLANE_SSE_HEARTBEAT, or 15)
        self.sse_heartbeat = sse_heartbeat
        self.environments: Any = runtime_for  # (closed with the server: see app.Environments)

    def handle(self, request: Request) -> Response:
        try:
            return self._handle(request)
        except Exception as exc:  # every error is JSON with a stable code
            error = error_of(exc)
            if error.status >= 500 and not isinstance(exc, (ApiError, StoreUnavailableError)):
                log.exception("%s %s failed", request.method, request.path)
            return error.response()

    def _handle(self, request: Request) -> Response:
        path = request.path
        if len(path) > MAX_PATH:
            raise ApiError(414, "uri_too_long", f"the path is over {MAX_PATH} characters")
        if self.prefix:
            if not (path == self.prefix or path.startswith(self.prefix + "/")):
                raise ApiError(404, "no_route", f"no route {request.method} {path}")
            path = path[len(self.prefix) :] or "/"
        if len(request.body) > self.max_body:
            raise ApiError(413, "too_large", f"the request body is over {self.max_body} bytes")
        route, params = self.router.match(request.method.upper(), path)
        request.params, request.api = params, self
        if route.auth != "none":
            principal = self.authenticator.authenticate(request, route)
            request.principal = principal
            request.runtime = self.runtime_for(principal.environment)
        result = route.handler(request)
        if isinstance(result, Response):
            return result
        return Response.json(result)
