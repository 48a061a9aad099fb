"""The HTTP client of remote mode: one keep-alive ``httpx.Client`` per runtime, JSON in and
out, ``Authorization: Bearer <secret key>``, retries, and the server's JSON errors turned back
into the errors local mode raises.

Retries follow the reference's ``requestOptions.retry``: a few attempts (3 by default) with
exponential backoff and jitter (``core.retrying``), a ``Retry-After`` honoured. A request is
retried when the server could not have acted on it (connection refused, 429 rate limited, 503
store unavailable) and, when it is safe to repeat (reads, PUT, DELETE, cancel, pause ...), also
after a 500/502/504 or a connection lost mid-way. A trigger is not repeated after those: an
idempotency key is what makes a trigger safe to send twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from runlane.api.retry import retry_after_ms
from runlane.core.operations import QueueNotFoundError
from runlane.core.options import RetryOptions
from runlane.core.retrying import backoff_delay_ms
from runlane.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidOptionError,
    InvalidRunStateError,
    InvalidScheduleStateError,
    LimitExceededError,
    PayloadError,
    RunlaneError,
    RunNotFoundError,
    ScheduleNotFoundError,
    StoreRejectedError,
    StoreUnavailableError,
    TaskNotFoundError,
    TaskPayloadParsedError,
)

DEFAULT_RETRY = RetryOptions(
    max_attempts=3, factor=2.0, min_timeout_in_ms=1000, max_timeout_in_ms=30_000, randomize=True
)
DEFAULT_TIMEOUT = 60.0  # seconds a request may take
MAX_RETRY_AFTER = 60.0  # seconds of a server's Retry-After honoured at most
USER_AGENT = "runlane-python-sdk"

_REFUSED = {429, 503}  # the server did not act on the request: always retried
_FAILED = {500, 502, 504}  # it may have: retried when the request is safe to repeat
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_SAFE_METHODS = {"GET", "HEAD", "PUT", "DELETE"}

# what a 404 means, by the kind of thing the route reads
_NOT_FOUND: dict[str | None, type[RunlaneError]] = {
    "run": RunNotFoundError,
    "batch": RunNotFoundError,
    "schedule": ScheduleNotFoundError,
    "queue": QueueNotFoundError,
    "task": TaskNotFoundError,
}
# the errors a native route names in "type", rebuilt as they were raised
_TYPES: dict[str, type[RunlaneError]] = {
    cls.__name__: cls
    for cls in (
        InvalidOptionError,
        PayloadError,
        LimitExceededError,
        TaskPayloadParsedError,
        RunNotFoundError,
        ScheduleNotFoundError,
        TaskNotFoundError,
        QueueNotFoundError,
        InvalidRunStateError,
        InvalidScheduleStateError,
        StoreUnavailableError,
        StoreRejectedError,
    )
}


def _make(cls: type[RunlaneError], message: str, **attributes: Any) -> RunlaneError:
    """``cls`` with the server's message as it is (its own constructor would rephrase it)."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    for name, value in attributes.items():
        setattr(exc, name, value)
    return exc


def error_of(response: httpx.Response, kind: str | None) -> RunlaneError:
    """The runlane error a failed response stands for. ``kind``: what the route reads ("run",
    "batch", "schedule", "queue", "task"), which names what a 404 did not find."""
    status = response.status_code
    where = f"{response.request.method} {response.request.url}"
    try:
        error = response.json()["error"]
        message, code = str(error["message"]), str(error["code"])
    except Exception:  # not runlane's JSON error (a proxy's page, say)
        error, code = {}, ""
        message = f"HTTP {status} from {where}: {response.text[:200]!r}"
    param = error.get("param")
    if status in (401, 403):
        return AuthenticationError(
            f"{message} ({where}): check RUNLANE_SECRET_KEY / configure(secret_key=...)"
        )
    option = {"option": param or "", "value": error.get("value"), "reason": error.get("reason")}
    option["reason"] = option["reason"] or message
    typed = _TYPES.get(str(error.get("type")))
    if typed is not None:
        if issubclass(typed, InvalidOptionError):
            return _make(typed, message, **option)
        if typed is TaskPayloadParsedError:
            errors = error.get("errors")
            cause = RunlaneError(message)
            return _make(
                typed, message, cause=cause, errors=errors if isinstance(errors, list) else []
            )
        if issubclass(typed, InvalidRunStateError):
            return _make(typed, message, run_id=error.get("run_id"), status=error.get("status"))
        if issubclass(typed, InvalidScheduleStateError):
            return _make(typed, message, schedule_id=error.get("schedule_id"))
        return typed(message)
    if status == 404:
        if code == "task_not_found":
            return TaskNotFoundError(message)
        if code == "no_route":
            return ConfigurationError(
                f"{message}: is RUNLANE_API_URL the root of a runlane server (`runlane serve`) "
                "of this version?"
            )
        return _NOT_FOUND.get(kind, RunlaneError)(message)
    if status == 413:
        return _make(LimitExceededError, message, **option)
    if status == 422:
        if code == "invalid_payload":
            return _make(TaskPayloadParsedError, message, cause=RunlaneError(message), errors=[])
        if code == "invalid_state":
            if kind == "schedule":
                return _make(InvalidScheduleStateError, message, schedule_id=None)
            return _make(InvalidRunStateError, message, run_id=None, status=None)
        return _make(InvalidOptionError, message, **option)
    if status == 429:
        return RunlaneError(f"rate limited: {message}")
    if status in (502, 503, 504):
        return StoreUnavailableError(message)
    return RunlaneError(message)


class Client:
    """Requests to one runlane server with one secret key (thread-safe: the ``aio_`` twins
    call it from worker threads)."""

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        *,
        retry: RetryOptions = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.retry = retry
        self._sleep = sleep
        self._options: dict[str, Any] = {
            "base_url": self.api_url,
            "headers": {
                "authorization": f"Bearer {secret_key}",
                "accept": "application/json",
                "user-agent": USER_AGENT,
            },
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        }
        self._http = httpx.Client(**self._options, transport=transport)

    @property
    def http(self) -> httpx.Client:
        """The keep-alive client (realtime streams read through it)."""
        return self._http

    def async_http(self) -> httpx.AsyncClient:
        """A new async client to the same server with the same key (for one event loop)."""
        return httpx.AsyncClient(**self._options)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,  # a list of (name, value) pairs (a name repeated), or a dict
        body: Any = None,
        kind: str | None = None,
        safe: bool | None = None,
    ) -> Any:
        """The JSON answer to ``method path``; the runlane error of a failed one. ``safe``:
        the request may be repeated after a failure the server may have acted on (by default
        GET, PUT and DELETE)."""
        repeatable = method in _SAFE_METHODS if safe is None else safe
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, path, params=params, json=body)
            except httpx.TransportError as exc:
                if isinstance(exc, _NOT_SENT) or repeatable:
                    delay = self._delay(attempt, None)
                    if delay is not None:
                        self._sleep(delay)
                        continue
                raise StoreUnavailableError(
                    f"the runlane server at {self.api_url} did not answer {method} {path}: "
                    f"{type(exc).__name__}: {exc or 'no response'}"
                ) from exc
            status = response.status_code
            if status < 400:
                return self._json(response)
            if status in _REFUSED or (status in _FAILED and repeatable):
                delay = self._delay(attempt, response)
                if delay is not None:
                    self._sleep(delay)
                    continue
            raise error_of(response, kind)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds before the next attempt (None: none left): the backoff, or the server's
        ``Retry-After`` when it gives one."""
        backoff = backoff_delay_ms(self.retry, attempt)
        if backoff is None:
            return None
        if response is not None:
            after = retry_after_ms(response.headers.get("retry-after"), time.time())
            if after is not None:
                return min(max(after, 0.0) / 1000, MAX_RETRY_AFTER)
        return backoff / 1000

    def _json(self, response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RunlaneError(
                f"{response.request.method} {response.request.url} answered "
                f"{response.status_code} without JSON: is RUNLANE_API_URL a runlane server?"
            ) from None
