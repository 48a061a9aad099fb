"""FastAPI / Starlette: runlane's management API as an ``APIRouter``, a lifespan that runs an
in-process worker, and a dependency that gives endpoints runlane's verbs.

    from fastapi import FastAPI
    from runlane.frameworks.fastapi import RunlaneDep, lifespan, router

    app = FastAPI(lifespan=lifespan)              # a runlane.Worker from startup to shutdown
    app.include_router(router, prefix="/runlane")  # Trigger.dev's routes under /runlane

    @app.post("/signup")
    async def signup(rl: RunlaneDep):             # or rl = Depends(runlane_client)
        handle = await rl.tasks.aio_trigger("send-welcome", {"to": "ada@example.com"})
        return {"run": handle.id}

The router forwards every request under its prefix to the neutral API
(``runlane.frameworks.http``), built on first use over the configured runtime
(``runlane.configure(...)`` or the ``RUNLANE_*`` environment) and rebuilt when it is configured
again. The synchronous API runs in a worker thread; the event loop never waits on the store.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse

from runlane.api import auth as _auth
from runlane.api import batch as _batch
from runlane.api import idempotency_keys as _idempotency_keys
from runlane.api import queues as _queues
from runlane.api import runs as _runs
from runlane.api import schedules as _schedules
from runlane.api import tags as _tags
from runlane.api import tasks as _tasks
from runlane.core import runtime as runtime_mod
from runlane.core.options import validate_queue_name
from runlane.core.runtime import Runtime
from runlane.core.worker import Worker
from runlane.errors import InvalidOptionError
from runlane.frameworks.http.api import ApiError, HttpApi, Request, Response, error_of
from runlane.frameworks.http.app import build_api
from runlane.frameworks.http.servers import async_chunks

__all__ = [
    "RunlaneClient",
    "RunlaneDep",
    "build_router",
    "lifespan",
    "lifespan_with_worker",
    "router",
    "runlane_client",
]

log = logging.getLogger("runlane.fastapi")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PARAM = "runlane_path"  # the route's catch-all path parameter


# ---------------------------------------------------------------------- the neutral API
class _LazyApi:
    """The neutral API over ``rt``, or over the current runtime (built on first use, and
    again when ``runlane.configure()`` installs another one)."""

    def __init__(self, rt: Runtime | None, secret_key: str | None) -> None:
        self._fixed = rt
        self._secret_key = secret_key
        self._api: HttpApi | None = None
        self._base: Runtime | None = None
        self._lock = threading.Lock()

    def ready(self) -> HttpApi | None:
        """The API when it is built over the runtime in force (no I/O: safe on the loop)."""
        api, base = self._api, self._base
        wanted = self._fixed or runtime_mod.peek()
        if api is not None and base is wanted and base is not None and not base.closed:
            return api
        return None

    def build(self) -> HttpApi:
        """Build it (may configure runlane from the environment: call it in a thread)."""
        with self._lock:
            rt = self._fixed or runtime_mod.get()
            if self._api is not None and self._base is rt and not rt.closed:
                return self._api
            if rt.settings.api_url:
                raise ApiError(
                    500,
                    "remote_mode",
                    f"this process is a client of the runlane server at {rt.settings.api_url} "
                    "(RUNLANE_API_URL): it has no store to serve the API from",
                )
            old, self._api, self._base = self._api, build_api(rt, secret_key=self._secret_key), rt
        if old is not None:
            old.environments.close()
        return self._api

    def close(self) -> None:
        """Close the runtimes the API opened for other environments (not the base one)."""
        with self._lock:
            api, self._api, self._base = self._api, None, None
        if api is not None:
            api.environments.close()


_APIS: weakref.WeakSet[_LazyApi] = weakref.WeakSet()  # the lifespan closes them on shutdown


def build_router(rt: Runtime | None = None, *, secret_key: str | None = None) -> APIRouter:
    """An ``APIRouter`` serving the management API: over ``rt``, or the runtime configured
    when the first request comes. ``secret_key``: accepted besides the store's keys (default
    ``RUNLANE_SECRET_KEY``). Include it with a prefix: it answers every path under it."""
    lazy = _LazyApi(rt, secret_key)
    _APIS.add(lazy)
    made = APIRouter(tags=["runlane"])

    async def runlane_api(request: StarletteRequest) -> StarletteResponse:
        """runlane's management API (its own OpenAPI: ``api/openapi.json`` under the prefix)."""
        try:
            api = lazy.ready() or await run_in_threadpool(lazy.build)
            neutral = await _neutral_request(request, api.max_body)
        except Exception as exc:
            error = error_of(exc)
            if error.status >= 500 and not isinstance(exc, ApiError):
                log.exception("the runlane API could not be built")
            return _starlette_response(error.response())
        response = await run_in_threadpool(api.handle, neutral)
        return _starlette_response(response)

    made.add_api_route(
        f"/{{{_PARAM}:path}}",
        runlane_api,
        methods=METHODS,
        name="runlane",
        include_in_schema=False,
    )
    return made


router = build_router()
"""The management API over the configured runtime: ``app.include_router(router,
prefix="/runlane")``."""


async def _neutral_request(request: StarletteRequest, limit: int) -> Request:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:  # refused before a byte is read
        raise ApiError(413, "too_large", f"the request body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"the request body is over {limit} bytes")
    scope = request.scope
    return Request(
        method=request.method,
        path=_relative_path(scope),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        body=bytes(body),
    )


def _relative_path(scope: Mapping[str, Any]) -> str:
    """The request's path below where the router is mounted, undecoded (``%2F`` stays one
    segment), from the raw path when the server gives it."""
    tail = "/" + str(scope["path_params"].get(_PARAM, ""))
    full: str = scope["path"]
    mount = full[: len(full) - len(tail)] if full.endswith(tail) else ""
    raw = scope.get("raw_path")
    if raw:
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        root = scope.get("root_path", "")
        candidates = [mount, quote(mount)]
        if root and mount.startswith(root):  # a proxy that strips the root path
            candidates += [mount[len(root) :], quote(mount[len(root) :])]
        for candidate in candidates:
            rest = raw_path[len(candidate) :]
            if raw_path.startswith(candidate) and rest.startswith("/"):
                return rest
    return quote(tail, safe="/:@!$&'()*+,;=-._~")


def _starlette_response(response: Response) -> StarletteResponse:
    out: StarletteResponse
    if isinstance(response.body, bytes):
        out = StarletteResponse(response.body, status_code=response.status)
    else:
        out = StreamingResponse(async_chunks(response.body), status_code=response.status)
    out.raw_headers = [h for h in out.raw_headers if h[0] != b"content-type"] + [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers
        if k.lower() != "content-length"
    ]
    return out


# ---------------------------------------------------------------------- lifespan
Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def lifespan_with_worker(
    concurrency: int = 4,
    *,
    queues: Sequence[str] | None = None,
    name: str | None = None,
    stop_timeout: float = 30.0,
) -> Lifespan:
    """A lifespan that configures runlane from the environment if nothing configured it yet,
    and runs a ``runlane.Worker(concurrency, queues=..., name=...)`` in this process from
    startup to shutdown (running attempts get ``stop_timeout`` seconds to finish, then are
    handed back). It executes the tasks this process has imported.

    ``FastAPI(lifespan=lifespan_with_worker(8))``; with a lifespan of your own, enter it
    there: ``async with runlane_lifespan(app): yield``."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidOptionError("concurrency", concurrency, "must be an integer >= 1")
    checked = [validate_queue_name(q, "queues") for q in queues] if queues else None

    @asynccontextmanager
    async def runlane_lifespan(app: Any) -> AsyncIterator[None]:
        configured_here = runtime_mod.peek() is None
        rt = await run_in_threadpool(runtime_mod.get)  # RUNLANE_* when not configured
        worker = Worker(concurrency, queues=checked, name=name, runtime_=rt)
        await run_in_threadpool(worker.start)
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop, stop_timeout)
            for lazy in list(_APIS):
                lazy.close()
            if configured_here and runtime_mod.peek() is rt:  # what it configured, it closes
                runtime_mod.install(None)
                rt.close()

    return runlane_lifespan


lifespan = lifespan_with_worker()
"""``FastAPI(lifespan=lifespan)``: a worker of concurrency 4 beside the app (see
:func:`lifespan_with_worker`)."""


# ---------------------------------------------------------------------- the dependency
class RunlaneClient:
    """runlane's verbs for an endpoint, each with its ``aio_`` twin: ``rl.tasks.trigger`` /
    ``await rl.tasks.aio_trigger(...)``, ``rl.runs.aio_retrieve(...)``, ``rl.batch``,
    ``rl.schedules``, ``rl.queues``, ``rl.tags``, ``rl.auth``, ``rl.idempotency_keys`` (the
    modules ``runlane.tasks``, ``runlane.runs``, ...), over the configured runtime."""

    tasks = _tasks
    runs = _runs
    batch = _batch
    schedules = _schedules
    queues = _queues
    tags = _tags
    auth = _auth
    idempotency_keys = _idempotency_keys

    @property
    def runtime(self) -> Runtime:
        return runtime_mod.get()

    def __repr__(self) -> str:
        return f"<RunlaneClient {runtime_mod.peek()!r}>"


_CLIENT = RunlaneClient()


async def runlane_client() -> RunlaneClient:
    """The dependency: ``rl: RunlaneClient = Depends(runlane_client)``. Configures runlane
    from the environment (in a thread) when nothing configured it yet."""
    if runtime_mod.peek() is None:
        await run_in_threadpool(runtime_mod.get)
    return _CLIENT


RunlaneDep = Annotated[RunlaneClient, Depends(runlane_client)]
"""``async def view(rl: RunlaneDep)``: the same as ``rl = Depends(runlane_client)``."""
