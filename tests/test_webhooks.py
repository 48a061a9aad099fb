"""Webhook receivers (runlane.contrib.webhooks): a signature matrix per provider, with
deliveries signed here the way each provider documents it (not by the verifier), then
``trigger_from`` (a redelivery is the same run), and ``receive`` behind a real server and
each framework's test client: an invalid delivery is refused and writes nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn

import runlane
from runlane.contrib.webhooks import (
    REASONS,
    WebhookEvent,
    WebhookVerificationError,
    receive,
    trigger_from,
    verify,
)
from runlane.errors import InvalidOptionError, RunlaneError
from runlane.testing import memory_runtime, run_until_idle
from tests.http_support import free_port

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent
NOW = 1_700_000_000
SECRET = "whsec_plain_test_secret"
OLD_SECRET = "whsec_the_previous_secret"
SVIX_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!").decode()
SVIX_OLD = "whsec_" + base64.b64encode(b"the-rotated-out-standard-key....").decode()


# ---------------------------------------------------------------------- signers
# Each builds the headers a provider sends, from its documentation.
def _hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_stripe(body: bytes, secrets: list[str], t: int, event_id: str) -> dict[str, str]:
    # https://docs.stripe.com/webhooks#verify-manually: v1 = HMAC-SHA256(secret, f"{t}.{body}")
    parts = [f"t={t}"] + [f"v1={_hmac_hex(s.encode(), f'{t}.'.encode() + body)}" for s in secrets]
    parts.append("v0=" + "0" * 64)  # test-mode scheme entries are ignored
    return {"Stripe-Signature": ",".join(parts)}


def sign_github(body: bytes, secrets: list[str], t: int, event_id: str) -> dict[str, str]:
    # https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
    return {
        "X-Hub-Signature-256": "sha256=" + _hmac_hex(secrets[0].encode(), body),
        "X-GitHub-Delivery": event_id,
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
    }


def sign_standard(body: bytes, secrets: list[str], t: int, event_id: str) -> dict[str, str]:
    # https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    sigs = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{event_id}.{t}.".encode() + body, hashlib.sha256).digest()
        sigs.append("v1," + base64.b64encode(mac).decode())
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(t),
        "webhook-signature": " ".join(["v1a,bm90LWFuLWVkMjU1MTk=", *sigs]),
    }


def sign_slack(body: bytes, secrets: list[str], t: int, event_id: str) -> dict[str, str]:
    # https://api.slack.com/authentication/verifying-requests-from-slack
    return {
        "X-Slack-Signature": "v0=" + _hmac_hex(secrets[0].encode(), f"v0:{t}:".encode() + body),
        "X-Slack-Request-Timestamp": str(t),
        "Content-Type": "application/json",
    }


HMAC_OPTIONS = {
    "header": "X-Acme-Signature",
    "prefix": "sha512=",
    "algorithm": "sha512",
    "encoding": "base64",
    "signed": "{timestamp}:{body}",
    "timestamp_header": "X-Acme-Time",
    "id_header": "X-Acme-Delivery",
    "type_header": "X-Acme-Event",
    "separator": ",",
}


def sign_hmac(body: bytes, secrets: list[str], t: int, event_id: str) -> dict[str, str]:
    sigs = [
        "sha512=" + base64.b64encode(
            hmac.new(s.encode(), f"{t}:".encode() + body, hashlib.sha512).digest()
        ).decode()
        for s in secrets
    ]  # fmt: skip
    return {
        "X-Acme-Signature": ",".join(sigs),
        "X-Acme-Time": str(t),
        "X-Acme-Delivery": event_id,
        "X-Acme-Event": "order.created",
    }


@dataclass(frozen=True)
class Provider:
    name: str
    sign: Callable[[bytes, list[str], int, str], dict[str, str]]
    secret: str
    old_secret: str
    signature_header: str
    required: tuple[str, ...]  # headers whose absence is missing_header
    timed: bool  # signs a timestamp (stale/future are refused)
    rotates_in_header: bool  # several signatures in one header
    options: dict[str, object]

    def body(self, event_id: str) -> bytes:
        if self.name == "stripe":
            return json.dumps({"id": event_id, "type": "invoice.paid", "data": {}}).encode()
        if self.name == "slack":
            event = {"type": "app_mention", "text": "hi"}
            return json.dumps(
                {"type": "event_callback", "event_id": event_id, "event": event}
            ).encode()
        return json.dumps({"type": "order.created", "data": {"n": 1}}).encode()

    def signed(
        self, event_id: str = "evt_1", *, t: int = NOW, secrets: list[str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = self.body(event_id)
        return body, self.sign(body, secrets or [self.secret], t, event_id)

    def verify(self, body: bytes, headers: dict[str, str], **kw: object) -> WebhookEvent:
        kw.setdefault("secret", self.secret)
        kw.setdefault("now", NOW)
        return verify(self.name, body=body, headers=headers, **self.options, **kw)  # type: ignore[arg-type]


PROVIDERS = [
    Provider(
        "stripe", sign_stripe, SECRET, OLD_SECRET, "Stripe-Signature",
        ("Stripe-Signature",), True, True, {},
    ),
    Provider(
        "github", sign_github, SECRET, OLD_SECRET, "X-Hub-Signature-256",
        ("X-Hub-Signature-256", "X-GitHub-Delivery", "X-GitHub-Event"), False, False, {},
    ),
    Provider(
        "standard", sign_standard, SVIX_SECRET, SVIX_OLD, "webhook-signature",
        ("webhook-id", "webhook-timestamp", "webhook-signature"), True, True, {},
    ),
    Provider(
        "slack", sign_slack, SECRET, OLD_SECRET, "X-Slack-Signature",
        ("X-Slack-Signature", "X-Slack-Request-Timestamp"), True, False, {},
    ),
    Provider(
        "hmac", sign_hmac, SECRET, OLD_SECRET, "X-Acme-Signature",
        ("X-Acme-Signature", "X-Acme-Time", "X-Acme-Delivery"), True, True, HMAC_OPTIONS,
    ),
]  # fmt: skip
TYPES = {
    "stripe": "invoice.paid",
    "github": "push",
    "standard": "order.created",
    "slack": "app_mention",
    "hmac": "order.created",
}
by_provider = pytest.mark.parametrize("p", PROVIDERS, ids=[p.name for p in PROVIDERS])


def refused(reason: str, p: Provider, body: bytes, headers: dict[str, str], **kw) -> None:
    with pytest.raises(WebhookVerificationError) as info:
        p.verify(body, headers, **kw)
    assert info.value.reason == reason, str(info.value)
    assert info.value.provider in (p.name,)
    assert info.value.status == REASONS[reason]
    assert isinstance(info.value, RunlaneError)


# ---------------------------------------------------------------------- the matrix
@by_provider
def test_a_valid_delivery_verifies_and_parses(p: Provider):
    body, headers = p.signed("evt_valid")
    event = p.verify(body, headers)
    assert event.provider == p.name
    assert event.id == "evt_valid"
    assert event.type == TYPES[p.name]
    assert event.payload == json.loads(body)
    assert event.received_at.timestamp() == NOW
    assert (event.timestamp is not None) == p.timed
    # header names in any case
    upper = {k.upper(): v for k, v in headers.items()}
    assert p.verify(body, upper).id == "evt_valid"
    assert p.verify(body, list(headers.items())).id == "evt_valid"


@by_provider
def test_wrong_secret_and_tampered_body_are_bad_signatures(p: Provider):
    body, headers = p.signed()
    refused("bad_signature", p, body, headers, secret=p.old_secret)
    refused("bad_signature", p, body.replace(b"}", b" }", 1), headers)
    refused("bad_signature", p, body + b" ", headers)
    garbled = dict(headers)
    for junk in ("garbage", "v1=zz", "sha256=\u00e9", "v0=", ",,,", "v1,@@"):
        garbled[p.signature_header] = junk
        with pytest.raises(WebhookVerificationError) as info:
            p.verify(body, garbled)
        assert info.value.reason in ("bad_signature", "malformed_header")


@by_provider
def test_timestamps_outside_the_tolerance_are_refused(p: Provider):
    if not p.timed:
        body, headers = p.signed(t=NOW - 10_000)  # GitHub signs no time: idempotency only
        assert p.verify(body, headers).timestamp is None
        return
    body, headers = p.signed(t=NOW - 301)
    refused("stale_timestamp", p, body, headers)
    assert p.verify(body, headers, tolerance=600).id == "evt_1"
    assert p.verify(body, headers, tolerance=None).id == "evt_1"
    body, headers = p.signed(t=NOW + 301)
    refused("future_timestamp", p, body, headers)
    for inside in (NOW - 299, NOW + 299):
        body, headers = p.signed(t=inside)
        assert p.verify(body, headers).timestamp.timestamp() == inside
    # a stale delivery with a bad signature is a bad signature: the time is only trusted signed
    body, headers = p.signed(t=NOW - 10_000, secrets=[p.old_secret])
    refused("bad_signature", p, body, headers)


@by_provider
def test_missing_headers_are_named(p: Provider):
    body, headers = p.signed()
    for name in p.required:
        without = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(WebhookVerificationError) as info:
            p.verify(body, without)
        assert info.value.reason == "missing_header"
        assert info.value.header is not None
        assert info.value.header.lower() in (name.lower(), name.lower().replace("svix", "webhook"))
        assert name.lower() in str(info.value).lower()
    refused("missing_header", p, body, {})


@by_provider
def test_secret_rotation_and_several_signatures(p: Provider):
    body, headers = p.signed()
    # the receiver holds both secrets while it rotates: either signature passes
    assert p.verify(body, headers, secret=[p.old_secret, p.secret]).id == "evt_1"
    body, old_signed = p.signed(secrets=[p.old_secret])
    assert p.verify(body, old_signed, secret=[p.secret, p.old_secret]).id == "evt_1"
    if p.rotates_in_header:  # the provider signs with both while it rotates
        body, both = p.signed(secrets=[p.old_secret, p.secret])
        assert p.verify(body, both).id == "evt_1"
        assert p.verify(body, both, secret=p.old_secret).id == "evt_1"
    with pytest.raises(InvalidOptionError):
        p.verify(body, headers, secret=[])


@by_provider
def test_oversized_bodies_are_refused_before_anything_else(p: Provider):
    body, headers = p.signed()
    refused("body_too_large", p, body, headers, max_body=len(body) - 1)
    assert p.verify(body, headers, max_body=len(body)).id == "evt_1"
    big = b" " * (1024 * 1024 + 1)
    refused("body_too_large", p, big, {})  # the default limit: 1 MiB, no header needed


@by_provider
def test_a_malformed_payload_is_named_after_the_signature_passed(p: Provider):
    body = b"not json {"
    headers = p.sign(body, [p.secret], NOW, "evt_1")
    refused("malformed_payload", p, body, headers)


def test_body_must_be_bytes():
    with pytest.raises(TypeError, match="raw request body"):
        verify("github", body="{}", headers={}, secret=SECRET)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- provider details
def test_stripe_header_details():
    p = PROVIDERS[0]
    body, _ = p.signed()
    refused("malformed_header", p, body, {"Stripe-Signature": "v1=abc"})
    refused("malformed_header", p, body, {"Stripe-Signature": "t=soon,v1=abc"})
    refused("bad_signature", p, body, {"Stripe-Signature": f"t={NOW}"})
    refused("bad_signature", p, body, {"Stripe-Signature": f"t={NOW},v1=not-hex,v1=\u00e9"})
    # a Stripe body must be an event
    no_id = json.dumps({"object": "event"}).encode()
    refused("malformed_payload", p, no_id, sign_stripe(no_id, [SECRET], NOW, ""))


def test_github_form_content_and_no_sha1_fallback():
    payload = {"zen": "Keep it logically awesome.", "hook_id": 1}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = sign_github(body, [SECRET], NOW, "d-1")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers["X-GitHub-Event"] = "ping"
    event = verify("github", body=body, headers=headers, secret=SECRET)
    assert (event.id, event.type, event.payload) == ("d-1", "ping", payload)
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    with pytest.raises(WebhookVerificationError, match="X-Hub-Signature-256"):
        verify("github", body=body, headers={"X-Hub-Signature": sha1}, secret=SECRET)
    with pytest.raises(WebhookVerificationError) as info:
        verify("github", body=body, headers={"X-Hub-Signature-256": sha1}, secret=SECRET)
    assert info.value.reason == "malformed_header"


def test_standard_webhooks_svix_headers_and_secrets():
    body = b'{"type":"user.created","data":{}}'
    signed = sign_standard(body, [SVIX_SECRET], NOW, "m1")
    headers = {k.replace("webhook-", "svix-"): v for k, v in signed.items()}
    event = verify("svix", body=body, headers=headers, secret=SVIX_SECRET, now=NOW)
    assert (event.provider, event.id, event.type) == ("standard", "m1", "user.created")
    raw_key = base64.b64decode(SVIX_SECRET.removeprefix("whsec_"))
    assert verify("standard", body=body, headers=headers, secret=raw_key, now=NOW).id == "m1"
    with pytest.raises(InvalidOptionError, match="base64"):
        verify("standard", body=body, headers=headers, secret="whsec_not base64!", now=NOW)
    headers["svix-signature"] = "v1a,c2lnbmVk"  # only an asymmetric signature: none we check
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify("standard", body=body, headers=headers, secret=SVIX_SECRET, now=NOW)


def _slack_form(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    body = urlencode(fields).encode()
    headers = sign_slack(body, [SECRET], NOW, "")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return body, headers


def test_slack_slash_commands_interactions_and_url_verification():
    body, headers = _slack_form({"command": "/deploy", "text": "prod", "trigger_id": "13.5.ab"})
    event = verify("slack", body=body, headers=headers, secret=SECRET, now=NOW)
    assert (event.id, event.type) == ("13.5.ab", "slash_command")
    assert event.payload["text"] == "prod"
    interaction = {"type": "block_actions", "trigger_id": "99.1.x", "actions": []}
    body, headers = _slack_form({"payload": json.dumps(interaction)})
    event = verify("slack", body=body, headers=headers, secret=SECRET, now=NOW)
    assert (event.id, event.type, event.payload) == ("99.1.x", "block_actions", interaction)
    body = json.dumps({"type": "url_verification", "challenge": "c-1", "token": "t"}).encode()
    event = verify(
        "slack", body=body, headers=sign_slack(body, [SECRET], NOW, ""), secret=SECRET, now=NOW
    )
    assert event.type == "url_verification"
    assert event.id == "sha256:" + hashlib.sha256(body).hexdigest()  # no id: the body's hash


def test_generic_hmac_defaults_and_options():
    body = b'{"id": 42, "type": "ping"}'
    sig = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    event = verify("hmac", body=body, headers={"x-signature": sig}, secret="k")
    assert (event.id, event.type) == ("42", "ping")
    event = verify(
        "hmac", body=body, headers={"X-Sig": "sha256=" + sig.upper()}, secret="k",
        header="X-Sig", prefix="sha256=",
    )  # fmt: skip
    assert event.id == "42"
    with pytest.raises(WebhookVerificationError) as info:  # the prefix is required
        verify("hmac", body=body, headers={"X-Sig": sig}, secret="k", header="X-Sig", prefix="s=")
    assert info.value.reason == "bad_signature"
    for bad in (
        {"algorithm": "nope"},
        {"encoding": "base32"},
        {"signed": "{timestamp}.{body}"},
        {"signed": "no body"},
        {"colour": "blue"},
    ):
        with pytest.raises(InvalidOptionError):
            verify("hmac", body=body, headers={}, secret="k", **bad)
    with pytest.raises(InvalidOptionError):
        verify("stripe", body=body, headers={}, secret="k", header="X")
    with pytest.raises(InvalidOptionError):
        verify("paypal", body=body, headers={}, secret="k")


# ---------------------------------------------------------------------- trigger_from
@pytest.fixture
def rt() -> Iterator[runlane.Runtime]:
    with memory_runtime() as runtime:
        yield runtime


def count_runs() -> int:
    return len(list(runlane.runs.list()))


def test_trigger_from_is_once_per_event(rt):
    seen = []

    @runlane.task(id="handle-stripe-event")
    def handle(event):
        seen.append(event)
        return event["type"]

    p = PROVIDERS[0]
    body, headers = p.signed("evt_once")
    first = trigger_from(p.verify(body, headers), task="handle-stripe-event")
    # Stripe redelivers the same event, signed again later
    body, headers = p.signed("evt_once", t=NOW + 3600)
    again = trigger_from(p.verify(body, headers, now=NOW + 3600), task=handle)
    assert again.id == first.id
    assert (first.is_cached, again.is_cached) == (False, True)
    other = trigger_from(p.verify(*p.signed("evt_other")), task="handle-stripe-event")
    assert other.id != first.id
    run_until_idle()
    assert count_runs() == 2
    assert runlane.runs.retrieve(first).output == "invoice.paid"
    assert seen[0] == {
        "provider": "stripe",
        "id": "evt_once",
        "type": "invoice.paid",
        "payload": json.loads(p.body("evt_once")),
    }


def test_trigger_from_keys_by_provider_and_takes_options(rt):
    github, standard = PROVIDERS[1], PROVIDERS[2]
    a = trigger_from(github.verify(*github.signed("same-id")), task="hook")
    b = trigger_from(standard.verify(*standard.signed("same-id")), task="hook")
    assert a.id != b.id  # the same id from two providers: two events
    c = trigger_from(
        github.verify(*github.signed("d-2")), task="hook", payload=lambda e: {"only": e.id},
        tags=["github"],
    )  # fmt: skip
    run = runlane.runs.retrieve(c)
    assert run.payload == {"only": "d-2"}
    assert run.tags == ["github"]
    # an explicit key wins over the event's
    d = trigger_from(github.verify(*github.signed("d-3")), task="hook", idempotency_key="mine")
    e = trigger_from(github.verify(*github.signed("d-4")), task="hook", idempotency_key="mine")
    assert d.id == e.id
    with pytest.raises(TypeError):
        trigger_from({"id": "x"}, task="hook")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- receive: real server
@pytest.fixture
def served(rt) -> Iterator[str]:
    """Three receivers behind uvicorn (the bare ASGI adapter), over the test's runtime."""
    receivers = {
        "/stripe": receive("stripe", secret=[OLD_SECRET, SECRET], task="stripe-hook").asgi(),
        "/github": receive("github", secret=SECRET, task="gh-hook", types=["push"]).asgi(),
        "/slack": receive("slack", secret=SECRET, task="slack-hook", max_body=2048).asgi(),
    }

    async def app(scope, receive_, send):
        if scope["type"] == "lifespan":
            return await receivers["/stripe"](scope, receive_, send)
        return await receivers[scope["path"]](scope, receive_, send)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def test_receive_behind_a_real_server(served):
    now = int(time.time())
    stripe, github = PROVIDERS[0], PROVIDERS[1]
    with httpx.Client(base_url=served, timeout=20) as client:
        body, headers = stripe.signed("evt_http", t=now)
        first = client.post("/stripe", content=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["isCached"] is False
        again = client.post("/stripe", content=body, headers=headers)  # a redelivery
        assert again.json() == {"id": first.json()["id"], "isCached": True}
        assert count_runs() == 1

        refusals = [
            ("/stripe", body, stripe.sign(body, [SECRET + "!"], now, ""), 401, "bad_signature"),
            ("/stripe", body + b"\n", headers, 401, "bad_signature"),
            ("/stripe", body, stripe.sign(body, [SECRET], now - 400, ""), 401, "stale_timestamp"),
            ("/stripe", body, stripe.sign(body, [SECRET], now + 400, ""), 401, "future_timestamp"),
            ("/stripe", body, {}, 400, "missing_header"),
            ("/stripe", body, {"Stripe-Signature": "v1=00"}, 400, "malformed_header"),
            ("/slack", b"x" * 4096, {}, 413, "body_too_large"),
        ]
        for path, content, hdrs, status, code in refusals:
            answer = client.post(path, content=content, headers=hdrs)
            assert answer.status_code == status, (code, answer.text)
            assert answer.json()["error"]["code"] == code
        assert client.get("/stripe").status_code == 405
        assert count_runs() == 1  # nothing written by any refusal

        body, headers = github.signed("d-http")
        assert client.post("/github", content=body, headers=headers).status_code == 200
        headers["X-GitHub-Event"] = "ping"
        ignored = client.post("/github", content=body, headers=headers)
        assert ignored.json() == {"id": None, "ignored": True, "type": "ping"}

        challenge = json.dumps({"type": "url_verification", "challenge": "ch-9"}).encode()
        answer = client.post(
            "/slack", content=challenge, headers=sign_slack(challenge, [SECRET], now, "")
        )
        assert answer.json() == {"challenge": "ch-9"}
        assert count_runs() == 2


def test_receive_refuses_bad_configuration():
    with pytest.raises(InvalidOptionError):
        receive("stripe", secret="", task="t")
    with pytest.raises(InvalidOptionError):
        receive("standard", secret="whsec_!!", task="t")
    with pytest.raises(InvalidOptionError):
        receive("stripe", secret=SECRET, task="t", colour="blue")
    with pytest.raises(InvalidOptionError):
        receive("stripe", secret=SECRET, task=None)
    r = receive("hmac", secret="k", task="t", header="X-Sig", tags=["a"], max_attempts=2)
    assert r.options == {"tags": ["a"], "max_attempts": 2}
    assert r.route("/webhooks/acme").auth == "none"


# ---------------------------------------------------------------------- framework adapters
def test_flask_view(rt):
    import flask

    app = flask.Flask(__name__)
    app.add_url_rule(
        "/hooks/stripe", view_func=receive("stripe", secret=SECRET, task="fl").flask_view()
    )
    app.add_url_rule(
        "/hooks/github", view_func=receive("github", secret=SECRET, task="fl").flask_view()
    )
    client = app.test_client()
    body, headers = PROVIDERS[0].signed("evt_flask", t=int(time.time()))
    first = client.post("/hooks/stripe", data=body, headers=headers)
    assert first.status_code == 200 and first.json["isCached"] is False
    assert client.post("/hooks/stripe", data=body, headers=headers).json["isCached"] is True
    bad = client.post(
        "/hooks/stripe", data=body, headers={"Stripe-Signature": f"t={int(time.time())},v1=00"}
    )
    assert bad.status_code == 401 and bad.json["error"]["code"] == "bad_signature"
    assert client.post("/hooks/github", data=b"{}").status_code == 400
    assert client.post("/hooks/stripe", data=b"x" * (1024 * 1024 + 1)).status_code == 413
    assert client.get("/hooks/stripe").status_code == 405
    assert count_runs() == 1


def test_fastapi_endpoint(rt):
    from fastapi import APIRouter, FastAPI

    app = FastAPI()
    router = APIRouter()
    receiver = receive("standard", secret=SVIX_SECRET, task="fa")
    router.add_api_route("/hooks/standard", receiver.fastapi_endpoint(), methods=["POST"])
    app.include_router(router, prefix="/api")
    standard = PROVIDERS[2]
    body, headers = standard.signed("msg_fastapi", t=int(time.time()))

    async def exchange() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            url = "/api/hooks/standard"
            first = await client.post(url, content=body, headers=headers)
            again = await client.post(url, content=body, headers=headers)
            # the id is signed: changing it breaks the signature
            bad = await client.post(url, content=body, headers={**headers, "webhook-id": "m2"})
            big = await client.post(url, content=b"x" * (1024 * 1024 + 1))
            return [first, again, bad, big]

    first, again, bad, big = asyncio.run(exchange())
    assert first.status_code == 200, first.text
    assert again.json() == {"id": first.json()["id"], "isCached": True}
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "bad_signature")
    assert big.status_code == 413
    assert "/api/hooks/standard" in app.openapi()["paths"]
    assert count_runs() == 1


DJANGO_SCRIPT = """
import json, sys, time, hmac, hashlib
import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="x", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
)
django.setup()
from django.test import Client
from django.urls import path

import runlane
from runlane.contrib.webhooks import receive

runlane.configure(store="memory://")
urlpatterns = [path("hooks/github", receive("github", secret="s3", task="dj").django_view())]
body = json.dumps({"action": "opened"}).encode()
sig = "sha256=" + hmac.new(b"s3", body, hashlib.sha256).hexdigest()
client = Client(enforce_csrf_checks=True)
headers = {"HTTP_X_HUB_SIGNATURE_256": sig, "HTTP_X_GITHUB_DELIVERY": "dj-1",
           "HTTP_X_GITHUB_EVENT": "issues"}
first = client.post("/hooks/github", body, content_type="application/json", **headers)
again = client.post("/hooks/github", body, content_type="application/json", **headers)
headers["HTTP_X_HUB_SIGNATURE_256"] = "sha256=" + "0" * 64
bad = client.post("/hooks/github", body, content_type="application/json", **headers)
print(json.dumps({
    "first": [first.status_code, json.loads(first.content)],
    "again": json.loads(again.content),
    "bad": [bad.status_code, json.loads(bad.content)["error"]["code"]],
    "runs": len(list(runlane.runs.list())),
}))
"""


def test_django_view_in_a_django_process():
    """In a process of its own: Django's settings are process-wide."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DJANGO_SCRIPT)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"][0] == 200 and out["first"][1]["isCached"] is False
    assert out["again"] == {"id": out["first"][1]["id"], "isCached": True}
    assert out["bad"] == [401, "bad_signature"]
    assert out["runs"] == 1


def test_importing_webhooks_imports_no_framework():
    code = (
        "import sys, runlane.contrib.webhooks as w; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'flask', 'django', 'fastapi', 'starlette', 'uvicorn'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
