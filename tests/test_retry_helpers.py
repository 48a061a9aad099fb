"""runlane.retry: on_throw and fetch (against a real local HTTP server), and their aio twins.

Waits are asserted through an injected ``sleep`` that records what it was asked for; nothing
here measures time. Loopback is refused by default, so tests against the local server pass
``allow_private=True`` unless they test the refusal itself.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import httpx
import pytest

from runlane.api import retry as retry_mod
from runlane.api.retry import (
    MAX_FETCH_ATTEMPTS,
    MAX_WAIT_MS,
    aio_fetch,
    aio_on_throw,
    error_retry_delay_ms,
    fetch,
    on_throw,
    parse_fetch_retry,
    reset_delay_ms,
    retry_after_ms,
    status_retry_delay_ms,
)
from runlane.errors import AbortTaskRunError, InvalidOptionError

NO_JITTER = {"randomize": False}

# ---------------------------------------------------------------------------------------------
# a scripted local HTTP server
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hang: bool = False  # hold the request until the test ends (for timeouts)


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Script:
    def __init__(self, url: str) -> None:
        self.url = url
        self.routes: dict[str, list[Reply]] = {}
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    def on(self, path: str, *replies: Reply) -> None:
        """The n-th request to ``path`` gets ``replies[n]``; the last one repeats."""
        self.routes[path] = list(replies)

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]

    def reply_for(self, hit: Hit) -> Reply:
        path = hit.path.split("?", 1)[0]
        with self.lock:
            n = sum(1 for h in self.hits if h.path.split("?", 1)[0] == path)
            self.hits.append(hit)
        replies = self.routes.get(path) or [Reply(404, body=b"no route")]
        return replies[min(n, len(replies) - 1)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Script

    def handle_error(self, request, client_address) -> None:  # a client that gave up
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        script = self.server.script
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = script.reply_for(Hit(self.command, self.path, headers, body))
        if reply.hang:
            script.release.wait(5)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Script]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.script = Script(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd.script
    httpd.script.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


class Sleeps:
    """A recording ``sleep`` (sync and async); ``ms`` holds the requested waits."""

    def __init__(self) -> None:
        self.ms: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.ms.append(round(seconds * 1000, 3))

    async def aio(self, seconds: float) -> None:
        self(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# on_throw
# ---------------------------------------------------------------------------------------------


def test_on_throw_retries_until_success(sleeps: Sleeps) -> None:
    attempts: list[int] = []

    def flaky(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise RuntimeError(f"fail {attempt}")
        return "done"

    assert on_throw(flaky, max_attempts=5, sleep=sleeps) == "done"
    assert attempts == [1, 2, 3]
    assert sleeps.ms == [1000, 2000]


def test_on_throw_reraises_the_last_exception(sleeps: Sleeps) -> None:
    raised: list[Exception] = []

    def always(attempt: int) -> None:
        raised.append(ValueError(f"attempt {attempt}"))
        raise raised[-1]

    with pytest.raises(ValueError, match="attempt 4") as info:
        on_throw(always, max_attempts=4, sleep=sleeps)
    assert info.value is raised[-1]
    assert len(raised) == 4
    assert sleeps.ms == [1000, 2000, 4000]


def test_on_throw_caps_and_scales_the_backoff(sleeps: Sleeps) -> None:
    def always(attempt: int) -> None:
        raise RuntimeError

    with pytest.raises(RuntimeError):
        on_throw(
            always,
            max_attempts=5,
            factor=3,
            min_timeout_in_ms=100,
            max_timeout_in_ms=1000,
            sleep=sleeps,
        )
    assert sleeps.ms == [100, 300, 900, 1000]


def test_on_throw_randomized_delays_stay_in_range(sleeps: Sleeps) -> None:
    def always(attempt: int) -> None:
        raise RuntimeError

    with pytest.raises(RuntimeError):
        on_throw(always, randomize=True, sleep=sleeps)
    first, second = sleeps.ms
    assert 1000 <= first < 2000 and 2000 <= second < 4000


def test_on_throw_does_not_retry_abort(sleeps: Sleeps) -> None:
    calls: list[int] = []

    def abort(attempt: int) -> None:
        calls.append(attempt)
        raise AbortTaskRunError("stop")

    with pytest.raises(AbortTaskRunError):
        on_throw(abort, sleep=sleeps)
    assert calls == [1] and sleeps.ms == []


def test_on_throw_lets_base_exceptions_through(sleeps: Sleeps) -> None:
    class Suspend(BaseException):
        pass

    def suspend(attempt: int) -> None:
        raise Suspend

    with pytest.raises(Suspend):
        on_throw(suspend, sleep=sleeps)
    assert sleeps.ms == []


def test_on_throw_accepts_a_function_without_arguments(sleeps: Sleeps) -> None:
    calls: list[int] = []

    def no_args() -> int:
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError
        return 42

    assert on_throw(no_args, sleep=sleeps) == 42
    assert sleeps.ms == [1000]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max_attempts": 0}, "on_throw.max_attempts"),
        ({"factor": 0.5}, "on_throw.factor"),
        ({"min_timeout_in_ms": -1}, "on_throw.min_timeout_in_ms"),
        ({"min_timeout_in_ms": 5000, "max_timeout_in_ms": 10}, "on_throw"),
        ({"randomize": "yes"}, "on_throw.randomize"),
    ],
)
def test_on_throw_validates_options(kwargs: dict, option: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        on_throw(lambda attempt: None, **kwargs)
    assert info.value.option == option


async def test_aio_on_throw(sleeps: Sleeps) -> None:
    attempts: list[int] = []

    async def flaky(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise RuntimeError("not yet")
        return "async done"

    assert await aio_on_throw(flaky, sleep=sleeps.aio) == "async done"
    assert attempts == [1, 2, 3]
    assert sleeps.ms == [1000, 2000]


async def test_aio_on_throw_reraises_and_takes_sync_functions(sleeps: Sleeps) -> None:
    def always(attempt: int) -> None:
        raise KeyError(attempt)

    with pytest.raises(KeyError) as info:
        await aio_on_throw(always, max_attempts=2, sleep=sleeps.aio)
    assert info.value.args == (2,)
    assert sleeps.ms == [1000]


# ---------------------------------------------------------------------------------------------
# fetch: retry options and pure decisions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "option"),
    [
        ("often", "retry"),
        ({"by_stauts": {}}, "retry"),
        ({"by_status": ["500"]}, "retry.by_status"),
        ({"by_status": {"abc": {}}}, "retry.by_status['abc']"),
        ({"by_status": {"600": {}}}, "retry.by_status['600']"),
        ({"by_status": {"599-500": {}}}, "retry.by_status['599-500']"),
        ({"by_status": {"500": "backoff"}}, "retry.by_status['500']"),
        ({"by_status": {"500": {"strategy": "linear"}}}, "retry.by_status['500'].strategy"),
        ({"by_status": {"500": {"max_attempts": 0}}}, "retry.by_status['500'].max_attempts"),
        (
            {"by_status": {"429": {"strategy": "headers", "reset_format": "rfc"}}},
            "retry.by_status['429'].reset_format",
        ),
        ({"by_status": {"429": {"strategy": "headers", "factor": 2}}}, "retry.by_status['429']"),
        (
            {"by_status": {"429": {"strategy": "headers", "reset_header": ""}}},
            "retry.by_status['429'].reset_header",
        ),
        ({"timeout": {"max_attempts": "3"}}, "retry.timeout.max_attempts"),
        ({"connection_error": {"out_of_memory": {}}}, "retry.connection_error.out_of_memory"),
    ],
)
def test_fetch_retry_options_are_validated(retry: object, option: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_fetch_retry(retry)
    assert info.value.option == option


def test_fetch_retry_defaults_follow_the_reference() -> None:
    plan = parse_fetch_retry(None)
    assert [rule.key for rule in plan.by_status] == ["429,408,409,5xx"]
    for status in (429, 408, 409, 500, 503, 599):
        assert plan.by_status[0].matches(status)
    for status in (400, 404, 410, 600):
        assert not plan.by_status[0].matches(status)
    assert plan.timeout is not None and plan.connection_error is not None
    off = parse_fetch_retry({"timeout": None, "by_status": None})
    assert off.by_status == () and off.timeout is None and off.connection_error is not None
    assert parse_fetch_retry(False) == parse_fetch_retry(
        {"by_status": None, "timeout": None, "connection_error": None}
    )


def test_status_keys_and_first_match_wins() -> None:
    plan = parse_fetch_retry(
        {
            "by_status": {
                "429": {"strategy": "backoff", "min_timeout_in_ms": 7, **NO_JITTER},
                "408,409,41x": {"min_timeout_in_ms": 8, **NO_JITTER},
                "4xx": {"min_timeout_in_ms": 9, **NO_JITTER},
                "all": {"min_timeout_in_ms": 10, **NO_JITTER},
            }
        }
    )

    def delay(status: int) -> int | None:
        return status_retry_delay_ms(plan, status, {}, 1, 0.0)

    assert [delay(s) for s in (429, 408, 409, 413, 404, 302, 500)] == [7, 8, 8, 8, 9, 10, 10]
    assert delay(200) is None and delay(204) is None  # 2xx is never retried


def test_status_delay_backoff_exhausts_and_caps() -> None:
    plan = parse_fetch_retry({"by_status": {"5xx": {"max_attempts": 3, **NO_JITTER}}})
    assert [status_retry_delay_ms(plan, 503, {}, n, 0.0) for n in (1, 2, 3)] == [1000, 2000, None]
    many = parse_fetch_retry({"by_status": {"5xx": {"max_attempts": 50, **NO_JITTER}}})
    assert status_retry_delay_ms(many, 503, {}, MAX_FETCH_ATTEMPTS - 1, 0.0) == 10000
    assert status_retry_delay_ms(many, 503, {}, MAX_FETCH_ATTEMPTS, 0.0) is None


def test_status_delay_backoff_honours_retry_after() -> None:
    plan = parse_fetch_retry({"by_status": {"503": NO_JITTER}})
    assert status_retry_delay_ms(plan, 503, {"Retry-After": "5"}, 1, 0.0) == 5000
    assert status_retry_delay_ms(plan, 503, {"Retry-After": "0"}, 1, 0.0) == 1000
    huge = {"Retry-After": "86400"}
    assert status_retry_delay_ms(plan, 503, huge, 1, 0.0) == MAX_WAIT_MS


NOW = 1_700_000_000.0  # a fixed "now" in epoch seconds


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (str(int(NOW) + 30), "unix_timestamp", 30_000),
        (str(int(NOW * 1000) + 1500), "unix_timestamp_in_ms", 1500),
        ("30", "unix_timestamp", 30_000),  # too small to be a time: a delay
        ("2500", "unix_timestamp_in_ms", 2500),
        (str(int(NOW) - 30), "unix_timestamp", -30_000),
        ("2023-11-14T22:13:20Z", "iso_8601", 0),
        ("2023-11-14T22:14:20+00:00", "iso_8601", 60_000),
        ("2023-11-14T22:14:20", "iso_8601", 60_000),  # naive: UTC
        ("6m59s", "iso_8601_duration_openai_variant", 419_000),
        ("1h6m18s", "iso_8601_duration_openai_variant", 3_978_000),
        ("1d", "iso_8601_duration_openai_variant", 86_400_000),
        ("1.5s", "iso_8601_duration_openai_variant", 1500),
        ("20ms", "iso_8601_duration_openai_variant", 20),
        ("soon", "unix_timestamp", None),
        ("nan", "unix_timestamp_in_ms", None),
        ("yesterday", "iso_8601", None),
        ("6 minutes", "iso_8601_duration_openai_variant", None),
        ("", "iso_8601_duration_openai_variant", None),
        (None, "unix_timestamp", None),
    ],
)
def test_reset_delay_formats(value: str | None, fmt: str, expected: float | None) -> None:
    result = reset_delay_ms(value, fmt, NOW)
    assert result == (None if expected is None else pytest.approx(expected))


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_ms("120", NOW) == 120_000
    assert retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", NOW) == pytest.approx(30_000)
    assert retry_after_ms("Tue, 14 Nov 2023 22:12:20 GMT", NOW) == pytest.approx(-60_000)
    assert retry_after_ms("later", NOW) is None
    assert retry_after_ms("-5", NOW) is None
    assert retry_after_ms(None, NOW) is None


def test_headers_strategy_waits_for_the_later_hint_never_negative_and_capped() -> None:
    plan = parse_fetch_retry(
        {"by_status": {"429": {"strategy": "headers", "reset_format": "unix_timestamp"}}}
    )

    def delay(headers: dict[str, str]) -> int | None:
        return status_retry_delay_ms(plan, 429, headers, 1, NOW)

    assert delay({"X-RateLimit-Reset": str(int(NOW) + 12)}) == 12_000
    assert delay({"x-ratelimit-reset": str(int(NOW) + 12), "retry-after": "20"}) == 20_000
    assert delay({"retry-after": "3"}) == 3000
    assert delay({"x-ratelimit-reset": str(int(NOW) - 100)}) == 0
    assert delay({"x-ratelimit-reset": str(int(NOW) + 86_400)}) == MAX_WAIT_MS
    assert delay({}) is None  # nothing to go by: the response is returned
    assert delay({"x-ratelimit-reset": "garbage"}) is None
    assert status_retry_delay_ms(plan, 429, {"retry-after": "1"}, MAX_FETCH_ATTEMPTS, NOW) is None


def test_error_delays_by_kind() -> None:
    plan = parse_fetch_retry(
        {
            "timeout": {"max_attempts": 2, "min_timeout_in_ms": 50, **NO_JITTER},
            "connection_error": {"max_attempts": 3, "min_timeout_in_ms": 70, **NO_JITTER},
        }
    )
    assert error_retry_delay_ms(plan, httpx.ReadTimeout("slow"), 1) == 50
    assert error_retry_delay_ms(plan, httpx.ConnectTimeout("slow"), 2) is None
    assert error_retry_delay_ms(plan, httpx.ConnectError("refused"), 2) == 140
    assert error_retry_delay_ms(plan, httpx.RemoteProtocolError("hung up"), 1) == 70
    assert error_retry_delay_ms(plan, httpx.UnsupportedProtocol("ftp"), 1) is None
    assert error_retry_delay_ms(plan, ValueError("x"), 1) is None
    off = parse_fetch_retry(False)
    assert error_retry_delay_ms(off, httpx.ReadTimeout("slow"), 1) is None


# ---------------------------------------------------------------------------------------------
# fetch against the local server
# ---------------------------------------------------------------------------------------------


def test_fetch_success_and_request_parts(server: Script, sleeps: Sleeps) -> None:
    server.on("/echo", Reply(201, {"X-Served": "yes"}, b'{"ok": true}'))
    response = fetch(
        server.url + "/echo",
        method="post",
        headers={"X-Token": "t"},
        params={"q": "1"},
        json={"a": 1},
        allow_private=True,
        sleep=sleeps,
    )
    assert response.status_code == 201 and response.json() == {"ok": True}
    assert response.headers["x-served"] == "yes"
    (hit,) = server.hits
    assert hit.method == "POST" and hit.path == "/echo?q=1" and hit.body == b'{"a":1}'
    assert hit.headers["x-token"] == "t"
    assert sleeps.ms == []


def test_fetch_429_with_ratelimit_reset_then_200(server: Script, sleeps: Sleeps) -> None:
    reset_ms = int((time.time() + 3) * 1000)
    server.on(
        "/limited",
        Reply(
            429,
            {
                "x-ratelimit-limit": "10",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(reset_ms),
            },
        ),
        Reply(200, body=b"through"),
    )
    response = fetch(
        server.url + "/limited",
        retry={
            "by_status": {
                "429": {
                    "strategy": "headers",
                    "limit_header": "x-ratelimit-limit",
                    "remaining_header": "x-ratelimit-remaining",
                    "reset_header": "x-ratelimit-reset",
                    "reset_format": "unix_timestamp_in_ms",
                }
            }
        },
        allow_private=True,
        sleep=sleeps,
    )
    assert response.status_code == 200 and response.text == "through"
    assert server.paths() == ["/limited", "/limited"]
    (waited,) = sleeps.ms
    assert 0 < waited <= 3000  # until the reset time the server gave


def test_fetch_503_503_200_with_backoff(server: Script, sleeps: Sleeps) -> None:
    server.on("/flaky", Reply(503), Reply(503), Reply(200, body=b"finally"))
    response = fetch(
        server.url + "/flaky",
        retry={"by_status": {"500-599": {"strategy": "backoff", "max_attempts": 5, **NO_JITTER}}},
        allow_private=True,
        sleep=sleeps,
    )
    assert response.text == "finally"
    assert len(server.hits) == 3
    assert sleeps.ms == [1000, 2000]


def test_fetch_returns_the_last_response_when_attempts_run_out(
    server: Script, sleeps: Sleeps
) -> None:
    server.on("/down", Reply(500, body=b"still down"))
    response = fetch(
        server.url + "/down",
        retry={"by_status": {"500-599": {"max_attempts": 4, **NO_JITTER}}},
        allow_private=True,
        sleep=sleeps,
    )
    assert response.status_code == 500 and response.text == "still down"
    assert len(server.hits) == 4
    assert sleeps.ms == [1000, 2000, 4000]


def test_fetch_unmatched_status_is_returned_at_once(server: Script, sleeps: Sleeps) -> None:
    server.on("/missing", Reply(404, body=b"nope"))
    response = fetch(
        server.url + "/missing",
        retry={"by_status": {"500-599": {"max_attempts": 5}}},
        allow_private=True,
        sleep=sleeps,
    )
    assert response.status_code == 404 and response.text == "nope"
    assert len(server.hits) == 1 and sleeps.ms == []


def test_fetch_default_retry_and_retry_false(server: Script, sleeps: Sleeps) -> None:
    server.on("/busy", Reply(503))
    assert fetch(server.url + "/busy", allow_private=True, sleep=sleeps).status_code == 503
    assert len(server.hits) == 3  # the reference default: 3 attempts for 5xx
    assert len(sleeps.ms) == 2 and 1000 <= sleeps.ms[0] < 2000  # randomized by default
    fetch(server.url + "/busy", retry=False, allow_private=True, sleep=sleeps)
    assert len(server.hits) == 4 and len(sleeps.ms) == 2


def test_fetch_retry_after_seconds(server: Script, sleeps: Sleeps) -> None:
    server.on("/later", Reply(503, {"Retry-After": "7"}), Reply(200, body=b"now"))
    response = fetch(
        server.url + "/later",
        retry={"by_status": {"503": {"strategy": "headers"}}},
        allow_private=True,
        sleep=sleeps,
    )
    assert response.text == "now"
    assert sleeps.ms == [7000]


def test_fetch_timeout_is_retried_then_succeeds(server: Script, sleeps: Sleeps) -> None:
    server.on("/slow", Reply(hang=True), Reply(200, body=b"fast now"))
    response = fetch(
        server.url + "/slow",
        timeout_in_ms=200,
        retry={"timeout": {"max_attempts": 3, "min_timeout_in_ms": 250, **NO_JITTER}},
        allow_private=True,
        sleep=sleeps,
    )
    assert response.text == "fast now"
    assert len(server.hits) == 2
    assert sleeps.ms == [250]


def test_fetch_timeout_exhausted_raises_the_timeout(server: Script, sleeps: Sleeps) -> None:
    server.on("/slow", Reply(hang=True))
    with pytest.raises(httpx.TimeoutException):
        fetch(
            server.url + "/slow",
            timeout_in_ms=100,
            retry={"timeout": {"max_attempts": 2, **NO_JITTER}},
            allow_private=True,
            sleep=sleeps,
        )
    assert len(server.hits) == 2 and sleeps.ms == [1000]


def test_fetch_connection_errors_are_retried_then_raised(sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(httpx.ConnectError):
        fetch(
            url,
            retry={"connection_error": {"max_attempts": 3, "min_timeout_in_ms": 10, **NO_JITTER}},
            allow_private=True,
            sleep=sleeps,
        )
    assert sleeps.ms == [10, 20]


def test_fetch_with_a_given_client(server: Script, sleeps: Sleeps) -> None:
    server.on("/x", Reply(503), Reply(200, body=b"via client"))
    with httpx.Client(headers={"X-Client": "mine"}, follow_redirects=True) as client:
        response = fetch(
            server.url + "/x",
            retry={"by_status": {"503": NO_JITTER}},
            client=client,
            allow_private=True,
            sleep=sleeps,
        )
        assert not client.is_closed
    assert response.text == "via client"
    assert all(hit.headers["x-client"] == "mine" for hit in server.hits)
    with pytest.raises(InvalidOptionError):
        fetch(server.url, client="a client", allow_private=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"timeout_in_ms": 0}, "timeout_in_ms"),
        ({"timeout_in_ms": "1s"}, "timeout_in_ms"),
        ({"method": ""}, "method"),
    ],
)
def test_fetch_validates_arguments(server: Script, kwargs: dict, option: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        fetch(server.url, allow_private=True, **kwargs)
    assert info.value.option == option
    assert server.hits == []


# ---------------------------------------------------------------------------------------------
# redirects and address checks
# ---------------------------------------------------------------------------------------------


def test_fetch_follows_redirects_on_allowed_hosts(server: Script, sleeps: Sleeps) -> None:
    server.on("/a", Reply(302, {"Location": "/b"}))
    server.on("/b", Reply(200, body=b"B"))
    response = fetch(server.url + "/a", allow_private=True, sleep=sleeps)
    assert response.text == "B" and str(response.url).endswith("/b")
    assert [r.status_code for r in response.history] == [302]
    assert server.paths() == ["/a", "/b"]


def test_client_auth_is_not_sent_to_another_origin(server: Script) -> None:
    port = server.url.rsplit(":", 1)[1]
    server.on("/start", Reply(302, {"Location": f"http://localhost:{port}/end"}))
    server.on("/end", Reply(200, body=b"end"))
    with httpx.Client(auth=("user", "secret")) as client:
        response = fetch(server.url + "/start", client=client, allow_private=True)
    assert response.text == "end"
    start, end = server.hits
    assert start.headers["authorization"].startswith("Basic ")
    assert "authorization" not in end.headers


def test_fetch_stops_after_too_many_redirects(server: Script) -> None:
    server.on("/loop", Reply(302, {"Location": "/loop"}))
    with pytest.raises(httpx.TooManyRedirects):
        fetch(server.url + "/loop", allow_private=True)
    assert len(server.hits) == retry_mod.MAX_REDIRECTS + 1


class _RecordingTransport(httpx.MockTransport):
    """Answers 200 and remembers every request that reached it (none should, when refused)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        super().__init__(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, text="public")


REFUSED = [
    ("http://127.0.0.1:{port}/", "loopback"),
    ("http://localhost:{port}/", "loopback"),
    ("http://[::1]:{port}/", "loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/", "loopback"),
    ("http://0.0.0.0:{port}/", "unspecified"),
    ("http://2130706433:{port}/", "loopback"),  # 127.0.0.1 as one number
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://100.64.0.1/", "not publicly routable"),
    ("https://240.0.0.1/", "reserved"),
]


@pytest.mark.parametrize(("template", "reason"), REFUSED)
def test_non_public_addresses_are_refused_before_sending(
    server: Script, template: str, reason: str
) -> None:
    url = template.format(port=server.url.rsplit(":", 1)[1])
    transport = _RecordingTransport()
    with httpx.Client(transport=transport) as client, pytest.raises(InvalidOptionError) as info:
        fetch(url, client=client)
    assert info.value.option == "url" and reason in info.value.reason
    assert "allow_private=True" in info.value.reason
    assert transport.requests == [] and server.hits == []
    # and without a client, nothing reaches the real server either
    with pytest.raises(InvalidOptionError):
        fetch(url, retry=False)
    assert server.hits == []


@pytest.mark.parametrize("url", ["ftp://example.com/f", "file:///etc/passwd", "http:///nohost"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        fetch(url, allow_private=True)
    assert info.value.option == "url"


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"mixed.test": ["93.184.216.34", "10.1.2.3"], "public.test": ["93.184.216.34"]}
    monkeypatch.setattr(retry_mod, "_resolve", lambda host, port: answers[host])
    transport = _RecordingTransport()
    with httpx.Client(transport=transport) as client:
        with pytest.raises(
            InvalidOptionError, match=r"mixed\.test resolves to 10\.1\.2\.3, which is private"
        ):
            fetch("http://mixed.test/", client=client)
        assert transport.requests == []
        assert fetch("http://public.test/", client=client).text == "public"
    assert [str(r.url) for r in transport.requests] == ["http://public.test/"]


def test_a_name_that_does_not_resolve_is_a_connection_error(
    monkeypatch: pytest.MonkeyPatch, sleeps: Sleeps
) -> None:
    def no_dns(*args: object, **kwargs: object) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(httpx.ConnectError, match="could not resolve"):
        fetch("http://nowhere.test/", retry={"connection_error": NO_JITTER}, sleep=sleeps)
    assert sleeps.ms == [1000, 2000]


def _treat_loopback_as_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hop 1 goes to the local server as if it were public; everything else is checked."""
    original = retry_mod._blocked_reason
    monkeypatch.setattr(
        retry_mod,
        "_blocked_reason",
        lambda ip: None if ip == ip_address("127.0.0.1") else original(ip),
    )


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/admin", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/"],
)
def test_a_redirect_to_a_refused_address_is_refused(
    server: Script, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    _treat_loopback_as_public(monkeypatch)
    server.on("/start", Reply(302, {"Location": target}))
    with pytest.raises(InvalidOptionError) as info:
        fetch(server.url + "/start", retry=False)
    assert info.value.option == "url" and info.value.value == target
    assert server.paths() == ["/start"]  # the first hop only; the target was never contacted


def test_a_redirect_within_public_hosts_is_followed(
    server: Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    _treat_loopback_as_public(monkeypatch)
    server.on("/start", Reply(307, {"Location": "/end"}))
    server.on("/end", Reply(200, body=b"end"))
    assert fetch(server.url + "/start", method="PUT", content=b"x").text == "end"
    assert [(h.method, h.path, h.body) for h in server.hits] == [
        ("PUT", "/start", b"x"),
        ("PUT", "/end", b"x"),
    ]


# ---------------------------------------------------------------------------------------------
# aio_fetch
# ---------------------------------------------------------------------------------------------


async def test_aio_fetch_503_503_200(server: Script, sleeps: Sleeps) -> None:
    server.on("/flaky", Reply(503), Reply(503), Reply(200, body=b"async ok"))
    response = await aio_fetch(
        server.url + "/flaky",
        retry={"by_status": {"5xx": NO_JITTER}, "timeout": None},
        allow_private=True,
        sleep=sleeps.aio,
    )
    assert response.text == "async ok"
    assert len(server.hits) == 3 and sleeps.ms == [1000, 2000]


async def test_aio_fetch_returns_last_response_and_headers_strategy(
    server: Script, sleeps: Sleeps
) -> None:
    server.on("/limited", Reply(429, {"Retry-After": "2"}), Reply(429, {"Retry-After": "1"}))
    response = await aio_fetch(
        server.url + "/limited",
        retry={"by_status": {"429": {"strategy": "headers"}}},
        allow_private=True,
        sleep=sleeps.aio,
    )
    assert response.status_code == 429
    assert len(server.hits) == MAX_FETCH_ATTEMPTS
    assert sleeps.ms == [2000] + [1000] * (MAX_FETCH_ATTEMPTS - 2)


async def test_aio_fetch_timeout_retry(server: Script, sleeps: Sleeps) -> None:
    server.on("/slow", Reply(hang=True), Reply(200, body=b"done"))
    response = await aio_fetch(
        server.url + "/slow",
        timeout_in_ms=200,
        retry={"timeout": NO_JITTER},
        allow_private=True,
        sleep=sleeps.aio,
    )
    assert response.text == "done" and sleeps.ms == [1000]


async def test_aio_fetch_refuses_private_addresses_and_redirects(
    server: Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidOptionError, match="loopback"):
        await aio_fetch(f"http://localhost:{server.url.rsplit(':', 1)[1]}/")
    assert server.hits == []
    _treat_loopback_as_public(monkeypatch)
    server.on("/start", Reply(301, {"Location": "http://169.254.169.254/"}))
    with pytest.raises(InvalidOptionError, match="link-local"):
        await aio_fetch(server.url + "/start")
    assert server.paths() == ["/start"]


async def test_aio_fetch_with_a_given_client(server: Script, sleeps: Sleeps) -> None:
    server.on("/x", Reply(200, body=b"mine"))
    async with httpx.AsyncClient() as client:
        response = await aio_fetch(
            server.url + "/x", client=client, allow_private=True, sleep=sleeps.aio
        )
        assert not client.is_closed
    assert response.text == "mine"
    with pytest.raises(InvalidOptionError):
        await aio_fetch(server.url, client="a client", allow_private=True)  # type: ignore[arg-type]
