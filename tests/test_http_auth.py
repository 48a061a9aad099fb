"""The HTTP API's authentication and input limits, through a real server (uvicorn on a free
port): secret keys, the key in RUNLANE_SECRET_KEY, revocation, public tokens and the attacks on
them (alg none, RS/HS confusion, expiry, forged signature, scopes, one-time reuse, another
environment), missing or malformed credentials, oversized and malformed bodies, odd paths —
each refused with its status and nothing written."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

import runlane
from runlane.api import auth
from runlane.core import operations, runtime
from runlane.core.runtime import Runtime
from tests.http_support import Server, serving


@pytest.fixture
def rt() -> Iterator[Runtime]:
    r = runlane.configure(store="memory://")
    yield r
    old = runtime.install(None)
    if old is not None:
        old.close()


@pytest.fixture
def server(rt: Runtime) -> Iterator[Server]:
    key, _ = operations.create_key(rt, "tests")

    @runlane.task(id="hello")
    def hello(payload: Any) -> Any:
        return payload

    hello.trigger({"n": 1})
    with serving(rt, key) as s:
        yield s


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_secret_keys(server: Server, rt: Runtime) -> None:
    with server.client() as c:
        assert c.get("/api/v1/queues").status_code == 200
    for header in (None, "Basic abc", "Bearer", "Bearer rl_dev_short", "Bearer " + "x" * 9000):
        with server.client(key="") as c:
            r = c.get("/api/v1/queues", headers={"authorization": header} if header else {})
        assert r.status_code == 401, header
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    wrong = "rl_dev_" + "A" * 40
    with server.client(key=wrong) as c:
        assert c.get("/api/v1/queues").status_code == 401
    _, row = operations.list_keys(rt)[0], operations.list_keys(rt)[0]
    assert operations.revoke_key(rt, row.id)
    with server.client() as c:
        assert c.get("/api/v1/queues").status_code == 401  # revoked


def test_the_environment_key(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = "rl_dev_" + "k" * 40
    rt.settings.secret_key = env_key
    with serving(rt, "rl_dev_" + "z" * 40) as s:
        with s.client(key=env_key) as c:
            assert c.get("/api/v1/queues").status_code == 200
        with s.client() as c:  # a key that is neither the store's nor the environment's
            assert c.get("/api/v1/queues").status_code == 401


def test_public_tokens_read_only_what_they_name(server: Server, rt: Runtime) -> None:
    token = auth.create_public_token(scopes={"read": {"runs": True}}, secret_key=server.key)
    with server.client(key=token) as c:
        r = c.get("/api/v1/queues")  # a route for secret keys only
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = c.post("/api/v1/bulk/runs/cancel", json={"tag": "x"})
        assert r.status_code == 403
    assert runlane.runs.list(status="CANCELED").data == []


def test_token_attacks_are_refused(server: Server, rt: Runtime) -> None:
    digest = auth.key_digest(server.key)
    kid = auth.key_id(digest)
    now = int(time.time())
    claims = {"sub": "dev", "pub": True, "scopes": ["read:runs"], "iat": now, "exp": now + 60}
    secret = bytes.fromhex(digest)

    def sign(body: dict[str, Any], key: bytes = secret, alg: str = "HS256", **head: Any) -> str:
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, **head})

    def confused(alg: str) -> str:
        """A token whose header names ``alg`` but whose signature is HMAC-SHA256 with the
        key: what a verifier that trusts the header's algorithm would accept."""
        head = _b64({"alg": alg, "kid": kid, "typ": "JWT"}) + "." + _b64(claims)
        mac = hmac.new(secret, head.encode(), hashlib.sha256).digest()
        return head + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    good = sign(claims)
    assert confused("HS256").count(".") == 2
    forged = [
        _b64({"alg": "none", "typ": "JWT", "kid": kid}) + "." + _b64(claims) + ".",  # alg none
        # RS256 named over an HS256 signature with the key (algorithm confusion)
        confused("RS256"),
        confused("ES256"),
        sign(claims, secret * 2, "HS512"),  # another algorithm
        sign({**claims, "exp": now - 10}),  # expired
        sign(claims, b"guessed-secret-guessed-secret-32"),  # not the key's signature
        jwt.encode(claims, secret, algorithm="HS256"),  # no kid
        sign(claims, kid="key_nope"),  # an unknown key
        sign({**claims, "pub": False}),  # not a public token
        sign({**claims, "sub": "prod"}),  # another environment, with this key
        "not.a.jwt",
    ]
    with server.client(key=good) as c:
        assert c.get("/api/v1/queues").status_code == 403  # valid, but not for this route
    for token in forged:
        with server.client(key=token) as c:
            r = c.get("/api/v1/queues")
        assert r.status_code == 401, (token, r.text)


def test_one_time_tokens_work_once(server: Server, rt: Runtime) -> None:
    token = auth.create_public_token(scopes=["read:runs"], one_time=True, secret_key=server.key)
    with server.client(key=token) as c:
        assert c.get("/api/v1/queues").status_code == 403  # used (on a route it cannot use)
        r = c.get("/api/v1/queues")
        assert r.status_code == 401 and "used already" in r.json()["error"]["message"]


def test_bodies_and_paths(server: Server, rt: Runtime) -> None:
    with server.client() as c:
        r = c.post("/api/v1/queues/task%2Fhello/pause", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
        r = c.post("/api/v1/queues/task%2Fhello/pause", content=b"[1, 2]")
        assert r.status_code == 400
        r = c.post(
            "/api/v1/queues/task%2Fhello/pause",
            content=b'{"until": "' + b"x" * (7 * 1024 * 1024) + b'"}',
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        r = c.post("/api/v1/queues/task%2Fhello/pause", json={"colour": "red"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "colour"
        for path in (
            "/api/v1/queues/..%2F..%2Fetc%2Fpasswd",
            "/api/v1/queues/%00",
            "/api/v1/runs/..%2Frun_x/logs",
        ):
            r = c.get(path)
            assert r.status_code in (404, 422), path  # unknown, or not a valid name
            assert r.json()["error"]["code"] in ("not_found", "invalid_option")
        assert c.get("/api/v1/queues/" + "a" * 600).status_code == 404
        assert c.get("/" + "a" * 3000).status_code == 414
        assert c.delete("/api/v1/queues").status_code == 405
    assert not runlane.queues.retrieve("task/hello").paused  # nothing written
    with server.client(key="") as c:
        assert c.get("/healthz").json() == {"ok": True}
        doc = c.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/queues" in doc["paths"]


def test_tokens_the_node_sdk_signs_with_the_key_itself(rt: Runtime) -> None:
    """The Trigger.dev Node SDK signs tokens with the secret key itself (no kid) and adds iss
    and aud: accepted when the server holds that key (RUNLANE_SECRET_KEY), not otherwise."""
    env_key = "rl_dev_" + "n" * 40
    now = int(time.time())
    claims = {
        "sub": "dev", "pub": True, "scopes": ["read:runs"], "iat": now, "exp": now + 60,
        "iss": "https://id.trigger.dev", "aud": "https://api.trigger.dev",
    }  # fmt: skip
    token = jwt.encode(claims, env_key.encode(), algorithm="HS256")
    other = jwt.encode(claims, ("rl_dev_" + "o" * 40).encode(), algorithm="HS256")
    rt.settings.secret_key = env_key

    @runlane.task(id="read-me")
    def read_me(payload: Any) -> Any:
        return payload

    run_id = read_me.trigger({"n": 1}).id
    with serving(rt, env_key) as s:
        with s.client(key=token) as c:
            r = c.get(f"/api/v1/runs/{run_id}/metadata")
            assert r.status_code == 200, r.text
        with s.client(key=other) as c:
            assert c.get(f"/api/v1/runs/{run_id}/metadata").status_code == 401


def test_a_key_with_a_rate_limit_gets_429_with_retry_after(rt: Runtime) -> None:
    key, _ = operations.create_key(rt, "limited", rate_limit=3)
    token = auth.create_public_token(scopes=["read:all"], secret_key=key)
    with serving(rt, key) as s:
        minute = time.time() // 60
        with s.client() as c:
            codes = [c.get("/api/v1/queues").status_code for _ in range(3)]
            refused = c.get("/api/v1/queues")
        in_one_minute = time.time() // 60 == minute
        with s.client(key=token) as c:  # its tokens count against the key
            by_token = c.get("/api/v1/runs/run_x/metadata")
        other, _ = operations.create_key(rt, "unlimited")
        with s.client(key=other) as c:
            free = [c.get("/api/v1/queues").status_code for _ in range(5)]
    assert codes == [200, 200, 200]
    if in_one_minute:  # (across a minute boundary the count starts again)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert by_token.status_code == 429
    assert free == [200] * 5
    with pytest.raises(runlane.errors.InvalidOptionError):
        operations.create_key(rt, "bad", rate_limit=0)


def test_a_handle_carries_a_token_that_reads_its_run(rt: Runtime) -> None:
    @runlane.task(id="handled")
    def handled(payload: Any) -> Any:
        return payload

    assert handled.trigger(1).public_access_token is None  # no secret key configured
    key, _ = operations.create_key(rt, "handles")
    rt.settings.secret_key = key
    mine, other = handled.trigger({"n": 1}), handled.trigger({"n": 2})
    assert mine.public_access_token is not None
    with serving(rt, key) as s, s.client(key=mine.public_access_token) as c:
        seen = c.get(f"/api/v3/runs/{mine.id}")
        assert seen.status_code == 200 and "payload" not in seen.json()
        assert c.get(f"/api/v3/runs/{other.id}").status_code == 404  # not its run
