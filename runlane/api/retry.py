"""``runlane.retry``: retry a block of code, or an HTTP request, with the task retry arithmetic.

    retry.on_throw(fn, max_attempts=3)      call ``fn(attempt)`` until it stops raising
    retry.fetch(url, retry={...})           an httpx request, retried by status, on timeouts and
                                            on connection errors; refuses non-public addresses
    retry.aio_on_throw / retry.aio_fetch    the awaitable twins

Nothing is written twice for sync and async. The decisions (which rule matches a response, how
long to wait, whether an address may be fetched) are pure functions, and ``fetch`` is one
sans-I/O flow, a generator that yields the I/O it needs (``resolve``, ``send``, ``read``,
``close``, ``sleep``); ``_drive`` and ``_aio_drive`` perform those steps with an ``httpx.Client``
or an ``httpx.AsyncClient``.

Waits block the caller (``sleep``, injectable); inside a task they hold the worker like any other
code does.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import ipaddress
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx

from runlane.core.aio import run_sync
from runlane.core.options import RetryOptions, parse_retry
from runlane.core.retrying import backoff_delay_ms
from runlane.errors import AbortTaskRunError, InvalidOptionError

__all__ = [
    "CONNECTION_ERRORS",
    "MAX_FETCH_ATTEMPTS",
    "MAX_REDIRECTS",
    "MAX_WAIT_MS",
    "RESET_FORMATS",
    "FetchRetry",
    "HeadersStrategy",
    "StatusRule",
    "aio_fetch",
    "aio_on_throw",
    "error_retry_delay_ms",
    "fetch",
    "match_status_rule",
    "on_throw",
    "parse_fetch_retry",
    "reset_delay_ms",
    "retry_after_ms",
    "status_retry_delay_ms",
]

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# on_throw
# ---------------------------------------------------------------------------------------------


def _on_throw_options(**options: Any) -> RetryOptions:
    return parse_retry(options, option="on_throw")


def _on_throw_delay_s(options: RetryOptions, attempt: int, error: Exception) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None to re-raise ``error``."""
    if isinstance(error, AbortTaskRunError):  # as in a task: never retried
        return None
    delay = backoff_delay_ms(options, attempt)
    return None if delay is None else delay / 1000


def _attempt_caller(fn: Callable[..., T]) -> Callable[[int], T]:
    """``fn(attempt)``, or ``fn()`` for a function that takes no positional argument."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: pass the attempt
        return fn
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return fn
    return lambda _attempt: fn()


def on_throw(
    fn: Callable[[int], T],
    *,
    max_attempts: int = 3,
    factor: float = 2,
    min_timeout_in_ms: int = 1000,
    max_timeout_in_ms: int = 10000,
    randomize: bool = False,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``fn(attempt)`` (1-based) until it returns; wait the backoff between attempts.

    After a failure of attempt ``n`` the wait is the task formula
    ``min(max_timeout_in_ms, min_timeout_in_ms * factor ** (n - 1))`` (times a random factor in
    [1, 2) when ``randomize``). When the last attempt fails, its exception is re-raised.
    ``AbortTaskRunError`` and non-``Exception`` errors (KeyboardInterrupt, runlane's suspend
    signal) are re-raised at once. ``fn`` may also take no argument.
    """
    options = _on_throw_options(
        max_attempts=max_attempts,
        factor=factor,
        min_timeout_in_ms=min_timeout_in_ms,
        max_timeout_in_ms=max_timeout_in_ms,
        randomize=randomize,
    )
    call = _attempt_caller(fn)
    attempt = 1
    while True:
        try:
            return call(attempt)
        except Exception as error:
            delay = _on_throw_delay_s(options, attempt, error)
            if delay is None:
                raise
        sleep(delay)
        attempt += 1


async def aio_on_throw(
    fn: Callable[[int], Awaitable[T] | T],
    *,
    max_attempts: int = 3,
    factor: float = 2,
    min_timeout_in_ms: int = 1000,
    max_timeout_in_ms: int = 10000,
    randomize: bool = False,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Awaitable twin of :func:`on_throw`: awaits ``fn(attempt)`` and sleeps with asyncio."""
    options = _on_throw_options(
        max_attempts=max_attempts,
        factor=factor,
        min_timeout_in_ms=min_timeout_in_ms,
        max_timeout_in_ms=max_timeout_in_ms,
        randomize=randomize,
    )
    call = _attempt_caller(fn)
    attempt = 1
    while True:
        try:
            result = call(attempt)
            return await result if inspect.isawaitable(result) else result  # type: ignore[return-value]
        except Exception as error:
            delay = _on_throw_delay_s(options, attempt, error)
            if delay is None:
                raise
        await sleep(delay)
        attempt += 1


# ---------------------------------------------------------------------------------------------
# fetch: options
# ---------------------------------------------------------------------------------------------

MAX_FETCH_ATTEMPTS = 10
"""The reference's cap on the attempts of one fetch, whatever a rule's ``max_attempts`` says."""
MAX_REDIRECTS = 10
MAX_WAIT_MS = 10 * 60 * 1000
"""No single wait of fetch is longer than this (a far-away reset time is retried early)."""
RESET_FORMATS = (
    "unix_timestamp",
    "unix_timestamp_in_ms",
    "iso_8601",
    "iso_8601_duration_openai_variant",
)
_EPOCH_CUTOFF_S = 1e9  # a "timestamp" below 2001-09-09 is a number of seconds from now

_DEFAULT_BY_STATUS: Mapping[str, Any] = {"429,408,409,5xx": {"strategy": "backoff"}}
_RETRY_KEYS = ("by_status", "timeout", "connection_error")
_HEADER_NAME_KEYS = ("limit_header", "remaining_header", "reset_header")
_STATUS_PART = re.compile(r"(\d{3})(?:-(\d{3}))?|([1-5])xx|([1-5]\d)x|all")
_OPENAI_DURATION = re.compile(
    r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?", re.ASCII
)


@dataclass(frozen=True)
class HeadersStrategy:
    """Wait until the reset time in ``reset_header`` (or a ``Retry-After``, if later).

    ``limit_header`` and ``remaining_header`` are accepted, as in the reference, but the wait
    depends on the reset time alone.
    """

    limit_header: str = "x-ratelimit-limit"
    remaining_header: str = "x-ratelimit-remaining"
    reset_header: str = "x-ratelimit-reset"
    reset_format: str = "unix_timestamp_in_ms"


@dataclass(frozen=True)
class StatusRule:
    key: str
    ranges: tuple[tuple[int, int], ...]
    strategy: RetryOptions | HeadersStrategy

    def matches(self, status: int) -> bool:
        return any(lo <= status <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class FetchRetry:
    """Parsed ``retry=`` of fetch. A None ``timeout``/``connection_error`` means no retrying."""

    by_status: tuple[StatusRule, ...] = ()
    timeout: RetryOptions | None = None
    connection_error: RetryOptions | None = None


def parse_fetch_retry(value: Any) -> FetchRetry:
    """``retry=`` of fetch. None: the reference defaults (429, 408, 409 and 5xx, timeouts and
    connection errors, each with the task backoff defaults); False: no retrying. In a dict, a
    missing key takes its default and a None (or False) value turns that kind of retry off."""
    if isinstance(value, FetchRetry):
        return value
    if value is False:
        return FetchRetry()
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise InvalidOptionError(
            "retry", value, "must be a dict (by_status, timeout, connection_error) or False"
        )
    unknown = set(value) - set(_RETRY_KEYS)
    if unknown:
        raise InvalidOptionError(
            "retry", value, f"unknown key(s) {sorted(unknown)}; known: {list(_RETRY_KEYS)}"
        )
    by_status = value.get("by_status", _DEFAULT_BY_STATUS)
    if by_status is None or by_status is False:
        rules: tuple[StatusRule, ...] = ()
    elif isinstance(by_status, Mapping):
        rules = tuple(_parse_status_rule(key, rule) for key, rule in by_status.items())
    else:
        raise InvalidOptionError("retry.by_status", by_status, "must be a dict of status: strategy")
    return FetchRetry(
        by_status=rules,
        timeout=_parse_backoff(value.get("timeout", {}), "retry.timeout"),
        connection_error=_parse_backoff(
            value.get("connection_error", {}), "retry.connection_error"
        ),
    )


def _parse_backoff(value: Any, option: str) -> RetryOptions | None:
    if value is None or value is False:
        return None
    if isinstance(value, Mapping) and "out_of_memory" in value:
        raise InvalidOptionError(f"{option}.out_of_memory", value, "is not a fetch retry option")
    return parse_retry(value, option=option)


def _parse_status_rule(key: Any, value: Any) -> StatusRule:
    option = f"retry.by_status[{key!r}]"
    text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(text, str):
        raise InvalidOptionError(option, key, "status keys are strings")
    ranges = []
    for part in text.split(","):
        m = _STATUS_PART.fullmatch(part.strip().lower())
        if m is None:
            raise InvalidOptionError(
                option,
                key,
                'a status key is a code ("429"), a range ("500-599"), a class ("5xx"), "all", '
                'or a comma-separated list of them ("408,409,5xx")',
            )
        if m[0] == "all":
            lo, hi = 100, 599
        elif m[3] or m[4]:
            lo = int(m[3] or m[4]) * (100 if m[3] else 10)
            hi = lo + (99 if m[3] else 9)
        else:
            lo, hi = int(m[1]), int(m[2] or m[1])
        if not 100 <= lo <= hi <= 599:
            raise InvalidOptionError(option, key, "codes are 100-599; a range's start <= its end")
        ranges.append((lo, hi))
    return StatusRule(text, tuple(ranges), _parse_strategy(value, option))


def _parse_strategy(value: Any, option: str) -> RetryOptions | HeadersStrategy:
    if not isinstance(value, Mapping):
        raise InvalidOptionError(
            option, value, 'must be a dict: {"strategy": "backoff", ...} or {"strategy": "headers"}'
        )
    rest = dict(value)
    strategy = rest.pop("strategy", "backoff")
    if strategy == "backoff":
        backoff = _parse_backoff(rest, option)
        assert backoff is not None
        return backoff
    if strategy != "headers":
        raise InvalidOptionError(f"{option}.strategy", strategy, 'must be "backoff" or "headers"')
    known = (*_HEADER_NAME_KEYS, "reset_format")
    unknown = set(rest) - set(known)
    if unknown:
        raise InvalidOptionError(
            option, value, f"unknown headers-strategy key(s) {sorted(unknown)}; known: {known}"
        )
    for name in _HEADER_NAME_KEYS:
        if name in rest and (not isinstance(rest[name], str) or not rest[name].strip()):
            raise InvalidOptionError(f"{option}.{name}", rest[name], "must be a header name")
    if rest.get("reset_format", RESET_FORMATS[1]) not in RESET_FORMATS:
        raise InvalidOptionError(
            f"{option}.reset_format", rest["reset_format"], f"must be one of {RESET_FORMATS}"
        )
    return HeadersStrategy(**rest)


# ---------------------------------------------------------------------------------------------
# fetch: decisions (pure)
# ---------------------------------------------------------------------------------------------

CONNECTION_ERRORS: tuple[type[Exception], ...] = (httpx.NetworkError, httpx.RemoteProtocolError)
_RETRIABLE_ERRORS = (httpx.TimeoutException, *CONNECTION_ERRORS)


def _clamp_ms(ms: float) -> int:
    return round(min(float(MAX_WAIT_MS), max(0.0, ms)))


def reset_delay_ms(value: str | None, reset_format: str, now: float) -> float | None:
    """Milliseconds from ``now`` (epoch seconds) to the reset a header gives; None if unreadable.

    May be negative (a reset in the past). A "unix timestamp" below 10**9 s (or 10**12 ms)
    cannot be a current time, so it is read as a delay from now, as some APIs send it.
    """
    text = (value or "").strip()
    if not text:
        return None
    if reset_format in ("unix_timestamp", "unix_timestamp_in_ms"):
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        seconds = number if reset_format == "unix_timestamp" else number / 1000
        return seconds * 1000 if seconds < _EPOCH_CUTOFF_S else (seconds - now) * 1000
    if reset_format == "iso_8601":
        at = _parse_iso_8601(text)
        return None if at is None else (at - now) * 1000
    m = _OPENAI_DURATION.fullmatch(text)  # "6m59s", "1h6m18s", "20ms", "1.5s"
    if m is None or not any(m.groups()):
        return None
    days, hours, minutes, secs, millis = m.groups()
    total_minutes = (int(days or 0) * 24 + int(hours or 0)) * 60 + int(minutes or 0)
    return total_minutes * 60_000 + float(secs or 0) * 1000 + int(millis or 0)


def _parse_iso_8601(text: str) -> float | None:
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


def retry_after_ms(value: str | None, now: float) -> float | None:
    """A standard ``Retry-After`` (delay-seconds or an HTTP date) in ms from ``now``."""
    text = (value or "").strip()
    if not text:
        return None
    if re.fullmatch(r"\d+", text, re.ASCII):
        return int(text) * 1000.0
    try:
        at = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return (at.timestamp() - now) * 1000


def match_status_rule(plan: FetchRetry, status: int) -> StatusRule | None:
    """The first rule (in the order given) whose key covers ``status``."""
    return next((rule for rule in plan.by_status if rule.matches(status)), None)


def status_retry_delay_ms(
    plan: FetchRetry, status: int, headers: Mapping[str, str], attempt: int, now: float
) -> int | None:
    """Ms to wait before sending again after attempt ``attempt`` got ``status``; None: keep it.

    2xx and statuses no rule covers are kept. ``backoff``: the task backoff, or longer when the
    response has a ``Retry-After``; none once the rule's ``max_attempts`` are used. ``headers``:
    until the reset time of ``reset_header`` or ``Retry-After`` (the later); none when neither
    is readable. Every wait is clamped to [0, MAX_WAIT_MS].
    """
    if 200 <= status < 300 or attempt >= MAX_FETCH_ATTEMPTS:
        return None
    rule = match_status_rule(plan, status)
    if rule is None:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    after = retry_after_ms(lowered.get("retry-after"), now)
    strategy = rule.strategy
    if isinstance(strategy, RetryOptions):
        delay = backoff_delay_ms(strategy, attempt)
        return None if delay is None else _clamp_ms(max(float(delay), after or 0.0))
    reset = reset_delay_ms(lowered.get(strategy.reset_header.lower()), strategy.reset_format, now)
    waits = [w for w in (reset, after) if w is not None]
    return _clamp_ms(max(waits)) if waits else None


def error_retry_delay_ms(plan: FetchRetry, error: BaseException, attempt: int) -> int | None:
    """Ms to wait before sending again after attempt ``attempt`` raised; None: re-raise."""
    if isinstance(error, httpx.TimeoutException):
        options = plan.timeout
    elif isinstance(error, CONNECTION_ERRORS):
        options = plan.connection_error
    else:
        return None
    if options is None or attempt >= MAX_FETCH_ATTEMPTS:
        return None
    return backoff_delay_ms(options, attempt)


# ---------------------------------------------------------------------------------------------
# fetch: address checks (pure, but for _resolve)
# ---------------------------------------------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BLOCKED = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),  # before private: Python counts 240.0.0.0/4 as both
    ("is_private", "private"),
)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched without allow_private (None: it is a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    for attribute, reason in _BLOCKED:
        if getattr(ip, attribute):
            return reason
    return None if ip.is_global else "not publicly routable"


def _refuse(url: httpx.URL, what: str) -> InvalidOptionError:
    return InvalidOptionError(
        "url",
        str(url),
        f"{what}; fetch refuses loopback, private, link-local and other non-public addresses "
        "unless allow_private=True",
    )


def _precheck(url: httpx.URL, allow_private: bool) -> tuple[str, int] | None:
    """Refuse what the URL alone shows; return (host, port) when its name must be resolved."""
    if url.scheme not in ("http", "https"):
        raise InvalidOptionError("url", str(url), "only http and https URLs can be fetched")
    host = url.raw_host.decode("ascii")
    if not host:
        raise InvalidOptionError("url", str(url), "has no host")
    if allow_private:
        return None
    try:
        ip = ipaddress.ip_address(host.replace("%25", "%"))
    except ValueError:
        return host, url.port or (443 if url.scheme == "https" else 80)
    reason = _blocked_reason(ip)
    if reason is not None:
        raise _refuse(url, f"{ip} is {reason}")
    return None


def _check_resolved(url: httpx.URL, addresses: list[str]) -> None:
    """Refuse the URL if any address its host resolved to is not public."""
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        reason = _blocked_reason(ip)
        if reason is not None:
            raise _refuse(url, f"{url.host} resolves to {ip}, which is {reason}")


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a failure is a connection error, so it is retried)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpx.ConnectError(f"could not resolve {host!r}: {exc}") from exc
    if not infos:
        raise httpx.ConnectError(f"{host!r} resolved to no address")
    return [str(info[4][0]) for info in infos]


# ---------------------------------------------------------------------------------------------
# fetch: the flow (sans-I/O) and its two drivers
# ---------------------------------------------------------------------------------------------

# ("resolve", host, port) | ("send", request, auth) | ("read" | "close", response) | ("sleep", s)
Step = tuple[Any, ...]
Flow = Generator[Step, Any, httpx.Response]


def _fetch_flow(build: Callable[[], httpx.Request], plan: FetchRetry, allow_private: bool) -> Flow:
    attempt = 1
    while True:
        try:
            response = yield from _follow_redirects(build(), allow_private)
            delay = status_retry_delay_ms(
                plan, response.status_code, response.headers, attempt, time.time()
            )
            if delay is None:
                yield ("read", response)
                return response
            yield ("close", response)  # a retried response's body is never read
        except _RETRIABLE_ERRORS as error:
            delay = error_retry_delay_ms(plan, error, attempt)
            if delay is None:
                raise
        yield ("sleep", delay / 1000)
        attempt += 1


def _follow_redirects(request: httpx.Request, allow_private: bool) -> Flow:
    """Send ``request``, following redirects (httpx's rules) and checking the URL of each hop."""
    history: list[httpx.Response] = []
    while True:
        target = _precheck(request.url, allow_private)
        if target is not None:
            _check_resolved(request.url, (yield ("resolve", *target)))
        # the client's auth goes with the first hop only, as when httpx follows redirects itself
        auth = httpx.USE_CLIENT_DEFAULT if not history else None
        response = yield ("send", request, auth)
        if response.next_request is None:
            response.history = history
            return response
        yield ("close", response)
        history.append(response)
        if len(history) > MAX_REDIRECTS:
            raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=request)
        request = response.next_request


def _drive(flow: Flow, client: httpx.Client, sleep: Callable[[float], object]) -> httpx.Response:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        op, arg = step[0], step[1]
        try:
            if op == "resolve":
                value = _resolve(*step[1:])
            elif op == "send":
                value = client.send(arg, auth=step[2], stream=True, follow_redirects=False)
            elif op == "read":
                try:
                    arg.read()
                except BaseException:
                    arg.close()
                    raise
            elif op == "close":
                arg.close()
            else:
                sleep(arg)
        except Exception as exc:
            error = exc


async def _aio_drive(
    flow: Flow, client: httpx.AsyncClient, sleep: Callable[[float], Awaitable[object]]
) -> httpx.Response:
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        op, arg = step[0], step[1]
        try:
            if op == "resolve":
                value = await run_sync(_resolve, *step[1:])
            elif op == "send":
                value = await client.send(arg, auth=step[2], stream=True, follow_redirects=False)
            elif op == "read":
                try:
                    await arg.aread()
                except BaseException:
                    await arg.aclose()
                    raise
            elif op == "close":
                await arg.aclose()
            else:
                await sleep(arg)
        except Exception as exc:
            error = exc


def _request_args(
    url: Any,
    method: Any,
    headers: Any,
    params: Any,
    json: Any,
    content: Any,
    data: Any,
    timeout_in_ms: Any,
) -> dict[str, Any]:
    try:
        parsed = httpx.URL(url)
    except (TypeError, httpx.InvalidURL) as exc:
        raise InvalidOptionError("url", url, f"not a valid URL ({exc})") from None
    if not isinstance(method, str) or not method.strip():
        raise InvalidOptionError("method", method, "must be an HTTP method name")
    timeout: Any = httpx.USE_CLIENT_DEFAULT
    if timeout_in_ms is not None:
        if (
            isinstance(timeout_in_ms, bool)
            or not isinstance(timeout_in_ms, (int, float))
            or not 0 < timeout_in_ms < math.inf
        ):
            raise InvalidOptionError("timeout_in_ms", timeout_in_ms, "must be a number > 0")
        timeout = httpx.Timeout(timeout_in_ms / 1000)
    args: dict[str, Any] = {
        "method": method.strip().upper(),
        "url": parsed,
        "headers": headers,
        "params": params,
        "timeout": timeout,
    }
    for name, body in (("json", json), ("content", content), ("data", data)):
        if body is not None:
            args[name] = body
    return args


def fetch(
    url: str | httpx.URL,
    *,
    method: str = "GET",
    headers: Any = None,
    params: Any = None,
    json: Any = None,
    content: Any = None,
    data: Any = None,
    retry: Any = None,
    timeout_in_ms: float | None = None,
    allow_private: bool = False,
    client: httpx.Client | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> httpx.Response:
    """Send an HTTP request with httpx, retrying as ``retry`` says; return the ``httpx.Response``.

    ``retry={"by_status": {...}, "timeout": {...}, "connection_error": {...}}``:

    - ``by_status`` maps a status key (``"429"``, ``"500-599"``, ``"5xx"``, ``"408,409"``,
      ``"all"``; the first matching key wins) to ``{"strategy": "backoff", max_attempts, factor,
      min_timeout_in_ms, max_timeout_in_ms, randomize}`` or ``{"strategy": "headers",
      limit_header, remaining_header, reset_header, reset_format}`` (formats: ``RESET_FORMATS``;
      see :func:`status_retry_delay_ms`). A 2xx, or a status no key covers, is returned at
      once; **when a rule's attempts are used up, the last response is returned, not raised**
      (as in the reference): check ``response.status_code`` or call ``raise_for_status()``.
    - ``timeout`` (httpx timeouts; ``timeout_in_ms`` sets the request's timeout, else the
      client's) and ``connection_error`` (failed connects and resolves, resets, hang-ups) take
      backoff options; when their attempts are used up the last error is raised.

    Unset options follow the reference: 429, 408, 409 and 5xx, timeouts and connection errors
    are retried with the task backoff defaults; ``retry=False`` turns all retrying off and a
    ``None`` value turns one kind off. No fetch makes more than ``MAX_FETCH_ATTEMPTS`` attempts.

    Only http and https. Unless ``allow_private``, the URL of every hop (redirects are followed
    here, at most ``MAX_REDIRECTS``, with httpx's rules) is checked before anything is sent: an
    IP literal, or every address its name resolves to, must be public, else
    ``InvalidOptionError`` (option ``"url"``). httpx resolves the name again to connect, so a
    name whose answer changes in between (DNS rebinding) is not caught: where that matters, also
    route requests through an egress proxy that refuses private ranges.

    ``client``: an ``httpx.Client`` to send with (its redirect setting is ignored); by default a
    new one for this call. Retried responses are closed unread; the returned one is read. A
    ``content`` that is an iterator cannot be sent twice: pass bytes when retrying.
    """
    plan = parse_fetch_retry(retry)
    args = _request_args(url, method, headers, params, json, content, data, timeout_in_ms)
    if client is not None and not isinstance(client, httpx.Client):
        raise InvalidOptionError("client", client, "fetch takes an httpx.Client")
    http = client or httpx.Client()
    try:
        return _drive(
            _fetch_flow(lambda: http.build_request(**args), plan, allow_private), http, sleep
        )
    finally:
        if client is None:
            http.close()


async def aio_fetch(
    url: str | httpx.URL,
    *,
    method: str = "GET",
    headers: Any = None,
    params: Any = None,
    json: Any = None,
    content: Any = None,
    data: Any = None,
    retry: Any = None,
    timeout_in_ms: float | None = None,
    allow_private: bool = False,
    client: httpx.AsyncClient | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> httpx.Response:
    """Awaitable twin of :func:`fetch`, on an ``httpx.AsyncClient``; sleeps with asyncio."""
    plan = parse_fetch_retry(retry)
    args = _request_args(url, method, headers, params, json, content, data, timeout_in_ms)
    if client is not None and not isinstance(client, httpx.AsyncClient):
        raise InvalidOptionError("client", client, "aio_fetch takes an httpx.AsyncClient")
    http = client or httpx.AsyncClient()
    try:
        flow = _fetch_flow(lambda: http.build_request(**args), plan, allow_private)
        return await _aio_drive(flow, http, sleep)
    finally:
        if client is None:
            await http.aclose()
