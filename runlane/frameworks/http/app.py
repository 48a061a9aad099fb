"""Building the management API for a runtime: ``build_api()`` (what ``runlane serve`` and the
framework integrations mount), the runtime of each environment it serves, and the OpenAPI
document of its routes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from runlane import config
from runlane.core import runtime as runtime_mod
from runlane.core.runtime import Runtime
from runlane.frameworks.http.api import ApiError, HttpApi, Request, Router
from runlane.frameworks.http.auth import Authenticator

VERSION = "1"


class Environments:
    """The runtime of each environment a server serves: its own runtime for its environment;
    for another (a caller's key names it), a runtime on the same store, built once."""

    def __init__(self, base: Runtime) -> None:
        self.base = base
        self._runtimes: dict[str, Runtime] = {base.environment: base}
        self._lock = threading.Lock()

    def __call__(self, environment: str) -> Runtime:
        rt = self._runtimes.get(environment)
        if rt is not None:
            return rt
        url = self.base.settings.store_url
        if not url or "://" not in url:  # a Store object was configured: its own only
            raise ApiError(
                403,
                "forbidden",
                f"this server serves environment {self.base.environment!r} only",
            )
        with self._lock:
            rt = self._runtimes.get(environment)
            if rt is None:
                rt = config.build_runtime(store=url, environment=environment)
                self._runtimes[environment] = rt
        return rt

    def close(self) -> None:
        for env, rt in list(self._runtimes.items()):
            if rt is not self.base:
                rt.close()
            self._runtimes.pop(env, None)


def build_api(
    rt: Runtime | None = None,
    *,
    prefix: str = "",
    secret_key: str | None = None,
    routers: Iterable[Router] | None = None,
) -> HttpApi:
    """The management API over ``rt`` (the configured runtime by default), its routes mounted
    under ``prefix``. ``secret_key``: accepted for its environment besides the store's keys
    (default: the runtime's ``secret_key``, i.e. ``RUNLANE_SECRET_KEY``)."""
    from runlane.frameworks.http import routes

    base = rt or runtime_mod.get()
    runtime_for = Environments(base)
    key = secret_key or base.settings.secret_key or os.environ.get("RUNLANE_SECRET_KEY")
    all_routers = [*(routers if routers is not None else routes.ROUTERS), _meta]
    return HttpApi(runtime_for, Authenticator(runtime_for, key), routers=all_routers, prefix=prefix)


_meta = Router()


@_meta.route("GET", "/api/openapi.json", name="openapi", auth="none")
def _openapi(request: Request) -> Any:
    """The OpenAPI document of this API."""
    assert request.api is not None
    return openapi(request.api.router.routes)


@_meta.route("GET", "/healthz", name="health", auth="none")
def _health(request: Request) -> Any:
    """Liveness: 200 while the server answers."""
    return {"ok": True}


def openapi(api_routes: Iterable[Any]) -> dict[str, Any]:
    """OpenAPI 3.1 for the routes (those ``in_schema``): paths, methods, path parameters, the
    bearer scheme and the error shape every route shares."""
    paths: dict[str, dict[str, Any]] = {}
    for route in api_routes:
        if not route.in_schema:
            continue
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "default": {
                    "description": "An error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.pattern.groupindex
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.auth == "none":
            operation["security"] = []
        if route.method in ("POST", "PUT", "PATCH"):
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "runlane management API", "version": VERSION},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a secret key (rl_<env>_...) or a public access token",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "code"],
                            "properties": {
                                "message": {"type": "string"},
                                "code": {"type": "string"},
                                "param": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
        "security": [{"bearer": []}],
    }
