"""Flask: ``Runlane(app)`` or ``Runlane().init_app(app)``.

``init_app`` reads the app's ``RUNLANE_*`` config keys (a key that is not set falls back to the
environment variable of the same name, then to runlane's default), configures runlane with
them, keeps its state in ``app.extensions["runlane"]``, and registers a blueprint that answers
every request under ``RUNLANE_URL_PREFIX`` (default ``/runlane``) with runlane's management API
(Trigger.dev's routes; the dashboard too, once it exists). Tasks executed in a process that
configured runlane this way (a worker started from the app, ``flask runlane worker``) run
inside ``app.app_context()``: a global ``middleware`` hook pushes it.

One process has one runlane runtime. The first app initialised configures it; another app with
the same runlane settings shares it (its tasks run in the first app's context); another app
with different settings is an error naming the key that differs. ``state.close()`` (on
``app.extensions["runlane"]``) closes the runtime, so that the next ``init_app`` configures
runlane afresh (an app factory in tests).
"""

from __future__ import annotations

import difflib
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import flask
from flask import Blueprint, Flask

from runlane import config
from runlane.core import runtime as runtime_mod
from runlane.core.runtime import Runtime
from runlane.errors import ConfigurationError, InvalidOptionError
from runlane.frameworks.http.api import ApiError, HttpApi
from runlane.frameworks.http.api import Request as ApiRequest
from runlane.frameworks.http.api import Response as ApiResponse
from runlane.frameworks.http.app import build_api

__all__ = ["CONFIG_KEYS", "Runlane", "RunlaneState"]

EXTENSION = "runlane"
DEFAULT_URL_PREFIX = "/runlane"


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, value, "must be a non-empty string")
    return value.strip()


def _int(key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(key, value, "must be an integer >= 1")
    return value


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _bad(key, value, "must be a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _bad(key, value, "must be a number of seconds >= 0")
    return float(value)


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(key, value, "must be a dict")
    return value


def _broker(key: str, value: Any) -> Any:
    return value if not isinstance(value, str) else _text(key, value)


def _as_is(key: str, value: Any) -> Any:
    return value


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    raise _bad(key, value, "must be True or False")


_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS.update({"0": False, "false": False, "no": False, "off": False})


def _prefix(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(key, value, "must be a path such as '/runlane'")
    prefix = value.strip().rstrip("/")
    if prefix and not re.fullmatch(r"(/[A-Za-z0-9_.~\-]+)+", prefix):
        raise _bad(key, value, "must be a path such as '/runlane' (or '' for the root)")
    return prefix


# app.config key → (the runlane.configure() option it sets, its check). A key that is absent or
# None is not given (the environment variable, then runlane's default, applies); for
# RUNLANE_MAX_DURATION and RUNLANE_RETENTION, None is a value (no limit, keep forever).
CONFIG_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "RUNLANE_STORE_URL": ("store", _as_is),  # a URL, or a Store object
    "RUNLANE_BROKER": ("broker", _broker),  # "local" | "redis" | a Broker object
    "RUNLANE_ENV": ("environment", _text),
    "RUNLANE_SECRET_KEY": ("secret_key", _text),
    "RUNLANE_CONCURRENCY_LIMIT": ("concurrency_limit", _int),
    "RUNLANE_API_URL": ("api_url", _text),
    "RUNLANE_REQUEST_OPTIONS": ("request_options", _mapping),
    "RUNLANE_RETRIES": ("retries", _mapping),
    "RUNLANE_MAX_DURATION": ("max_duration", _as_is),
    "RUNLANE_MACHINE": ("machine", _text),
    "RUNLANE_LIMITS": ("limits", _mapping),
    "RUNLANE_VERSION": ("version", _text),
    "RUNLANE_METADATA_FLUSH_INTERVAL": ("metadata_flush_interval", _seconds),
    "RUNLANE_ENGINE_INTERVAL": ("engine_interval", _seconds),
    "RUNLANE_WAIT_IN_PLACE": ("wait_in_place", _seconds),
    "RUNLANE_LEASE_TIMEOUT": ("lease_timeout", _seconds),
    "RUNLANE_STORE_RETRY_TIMEOUT": ("store_retry_timeout", _seconds),
    "RUNLANE_RETENTION": ("retention", _as_is),
    "RUNLANE_ALERTS": ("alerts", _as_is),  # [{"url": ..., "secret": ...}] (contrib.alerts)
}
_NONE_IS_A_VALUE = {"RUNLANE_MAX_DURATION", "RUNLANE_RETENTION"}
_HOLD_SECRETS = {"RUNLANE_ALERTS"}  # an error shows the part at fault (masked), not the whole
# the extension's own keys: where the API is mounted, whether it is, whether tasks get an app
# context
FLASK_KEYS: dict[str, tuple[Any, Callable[[str, Any], Any]]] = {
    "RUNLANE_URL_PREFIX": (DEFAULT_URL_PREFIX, _prefix),
    "RUNLANE_API": (None, _bool),  # default: mounted unless in remote mode (RUNLANE_API_URL)
    "RUNLANE_APP_CONTEXT": (True, _bool),
}


def _bad(key: str, value: Any, reason: str) -> ConfigurationError:
    shown = repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return ConfigurationError(f"app.config[{key!r}] = {shown}: {reason}")


@dataclass
class RunlaneState:
    """What ``init_app`` leaves in ``app.extensions["runlane"]``."""

    extension: Runlane
    runtime: Runtime
    options: dict[str, Any]  # what runlane.configure() was given (from app.config)
    url_prefix: str
    api: HttpApi | None  # None: the API is not mounted (RUNLANE_API = False, remote mode)
    app_context: bool
    shared: bool = False  # the runtime was configured for another app with the same settings

    def close(self) -> None:
        """Close the runtime (and the API's runtimes of other environments) and uninstall it,
        so that the next ``init_app`` configures runlane afresh."""
        with _lock:
            if self.api is not None:
                self.api.environments.close()
            if runtime_mod.peek() is self.runtime:
                runtime_mod.install(None)
            if _configured.runtime is self.runtime:
                _configured.clear()
            self.runtime.close()


@dataclass
class _Configured:
    """The runtime the extension installed in this process, and for which app."""

    runtime: Runtime | None = None
    signature: dict[str, Any] = field(default_factory=dict)
    app: weakref.ref[Flask] | None = None
    app_name: str = ""

    def clear(self) -> None:
        self.runtime, self.signature, self.app, self.app_name = None, {}, None, ""


_configured = _Configured()
_lock = threading.RLock()


class Runlane:
    """The Flask extension. ``options``: further ``runlane.configure()`` options that have no
    config key (hooks such as ``on_failure``, ``clock``); the app's config wins over an option
    given both ways."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION in app.extensions:
            raise RuntimeError(
                "runlane is already initialised on this Flask app: use that Runlane instance "
                "(app.extensions['runlane'].extension)"
            )
        options, flask_settings = self._read_config(app)
        prefix = flask_settings["RUNLANE_URL_PREFIX"]
        app_context = flask_settings["RUNLANE_APP_CONTEXT"]
        if app_context and "middleware" in options:
            raise ConfigurationError(
                "Runlane(middleware=...): the extension's global middleware pushes the app "
                "context; give your middleware to the tasks (@task(middleware=...)), or set "
                "RUNLANE_APP_CONTEXT = False and push app.app_context() in yours"
            )
        remote = _remote(options)
        mount = flask_settings["RUNLANE_API"]
        if mount is None:
            mount = not remote
        elif mount and remote:
            raise ConfigurationError(
                "app.config['RUNLANE_API'] = True: this app is in remote mode (RUNLANE_API_URL); "
                "the API is served by the runlane server it calls, not here"
            )
        rt, shared = self._runtime(app, options, app_context)
        api = build_api(rt, prefix=prefix) if mount else None
        app.extensions[EXTENSION] = RunlaneState(
            self, rt, options, prefix, api, app_context, shared
        )
        if api is not None:
            app.register_blueprint(_blueprint(), url_prefix=prefix or None)

    # ------------------------------------------------------------------ configuration
    def _read_config(self, app: Flask) -> tuple[dict[str, Any], dict[str, Any]]:
        known = {*CONFIG_KEYS, *FLASK_KEYS}
        for key in app.config:
            if key.startswith("RUNLANE_") and key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ConfigurationError(
                    f"app.config[{key!r}]: not a runlane setting; {hint}the keys are "
                    + ", ".join(sorted(known))
                )
        options = dict(self.options)
        for key, (option, check) in CONFIG_KEYS.items():
            if key not in app.config:
                continue
            value = app.config[key]
            if value is None and key not in _NONE_IS_A_VALUE:
                continue
            options[option] = check(key, value) if value is not None else None
        settings = {}
        for key, (default, check) in FLASK_KEYS.items():
            value = app.config.setdefault(key, default)
            settings[key] = None if value is None else check(key, value)
        return options, settings

    def _runtime(
        self, app: Flask, options: dict[str, Any], app_context: bool
    ) -> tuple[Runtime, bool]:
        signature = {**options, "app_context": app_context}
        with _lock:
            installed = runtime_mod.peek()
            if installed is not None and installed is _configured.runtime:
                if signature == _configured.signature:
                    return installed, True
                raise ConfigurationError(_differs(app, signature))
            built = dict(options)
            if app_context and not _remote(options):  # (a remote process executes no task)
                built["middleware"] = _app_context_middleware(weakref.ref(app))
            try:
                rt = config.configure(**built)
            except InvalidOptionError as exc:
                key = _key_of(exc.option)
                if key is None:
                    raise
                reason = exc.reason
                if exc.option != CONFIG_KEYS[key][0]:  # a part of it: retries.default...
                    reason = f"{exc.option}={exc.value!r}: {reason}"
                given = exc.value if key in _HOLD_SECRETS else app.config.get(key, exc.value)
                raise _bad(key, given, reason) from None
            except ConfigurationError as exc:
                given = {
                    k: app.config[k]
                    for k in ("RUNLANE_STORE_URL", "RUNLANE_BROKER", "RUNLANE_API_URL")
                    if app.config.get(k) is not None
                }
                where = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "the environment"
                raise ConfigurationError(
                    f"runlane could not be configured from app.config ({where}): {exc}"
                ) from None
            _configured.runtime, _configured.signature = rt, signature
            _configured.app, _configured.app_name = weakref.ref(app), app.name
            return rt, False


def _remote(options: Mapping[str, Any]) -> bool:
    """Whether runlane.configure(**options) is remote mode (as it decides)."""
    if options.get("api_url") is not None:
        return True
    return (
        options.get("store") is None
        and options.get("broker") is None
        and bool(os.environ.get("RUNLANE_API_URL"))
    )


def _key_of(option: str) -> str | None:
    head = option.split(".")[0].split("[")[0]
    for key, (name, _) in CONFIG_KEYS.items():
        if name == head:
            return key
    return None


def _differs(app: Flask, signature: dict[str, Any]) -> str:
    before = _configured.signature
    names = {name: key for key, (name, _) in CONFIG_KEYS.items()}
    names["app_context"] = "RUNLANE_APP_CONTEXT"
    for name in sorted(set(before) | set(signature)):
        if before.get(name, "<unset>") != signature.get(name, "<unset>"):
            what = names.get(name, f"Runlane({name}=...)")
            return (
                f"runlane is already configured in this process by Flask app "
                f"{_configured.app_name!r}, and app {app.name!r} sets {what} differently "
                f"({before.get(name, '<unset>')!r} before, {signature.get(name, '<unset>')!r} "
                "now). A process has one runlane runtime: give every app the same RUNLANE_* "
                "settings, or close the first one (app.extensions['runlane'].close())"
            )
    return "runlane is already configured in this process with other settings"


# ---------------------------------------------------------------------- app context for tasks
def _app_context_middleware(app_ref: weakref.ref[Flask]) -> Callable[..., Any]:
    async def flask_app_context(payload: Any, ctx: Any, call_next: Callable[[], Any]) -> Any:
        """Run the task (and its on_start hooks) inside the Flask app's context, unless one is
        active already."""
        app = app_ref()
        if app is None or flask.has_app_context():
            return await call_next()
        with app.app_context():
            return await call_next()

    return flask_app_context


# ---------------------------------------------------------------------- the blueprint
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_SAFE = "/:@-._~!$&'()*+,;="  # what stays as it is when a path has to be quoted again


def _blueprint() -> Blueprint:
    bp = Blueprint("runlane", __name__)
    # OPTIONS is answered by the API (405), not by Flask
    common: dict[str, Any] = {"methods": _METHODS, "provide_automatic_options": False}
    bp.add_url_rule("", "api", _view, defaults={"path": ""}, strict_slashes=False, **common)
    bp.add_url_rule("/<path:path>", "api_path", _view, **common)
    return bp


def _view(path: str) -> flask.Response:
    state: RunlaneState = flask.current_app.extensions[EXTENSION]
    assert state.api is not None
    request = flask.request
    limit = state.api.max_body
    length = request.content_length
    if length is not None and length > limit:
        return _to_flask(_too_large(limit))
    try:
        body = request.stream.read(limit + 1)
    except Exception as exc:  # werkzeug refusing the body (MAX_CONTENT_LENGTH)
        if getattr(exc, "code", None) == 413:
            return _to_flask(_too_large(limit))
        raise
    if len(body) > limit:
        return _to_flask(_too_large(limit))
    headers = {name.lower(): value for name, value in request.headers.items()}
    api_request = ApiRequest(
        method=request.method,
        path=_raw_path(request),
        query_string=request.query_string.decode("latin-1"),
        headers=headers,
        body=body,
    )
    return _to_flask(state.api.handle(api_request))


def _too_large(limit: int) -> ApiResponse:
    return ApiError(413, "too_large", f"the request body is over {limit} bytes").response()


def _raw_path(request: flask.Request) -> str:
    """The path as the client sent it, below the app's script root: ``%2F`` stays one segment
    (the API's path parameters may contain ``/``). Without the raw URI (a server that does
    not give it, or a rewrite), the decoded path quoted again."""
    decoded = request.path
    given = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if isinstance(given, str) and given:
        raw = given.split("?", 1)[0]
        if not raw.startswith("/") and "://" in raw:  # an absolute URI in the request line
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        root = quote(request.script_root, safe=_SAFE)
        if root and raw.startswith(root):
            raw = raw[len(root) :]
        if unquote(raw) == decoded:
            return raw
    return quote(decoded, safe=_SAFE)


def _to_flask(response: ApiResponse) -> flask.Response:
    body: bytes | Iterable[bytes] = response.body
    return flask.Response(
        body,
        status=response.status,
        headers=response.headers,
        direct_passthrough=response.streaming,  # a stream is sent chunk by chunk as made
    )
