"""Secret keys of the HTTP API: their form (``rl_<environment>_<40 letters and digits>``), the
SHA-256 digest a store keeps instead of them, the id derived from that digest, and the public
access tokens signed with it (HS256 over the digest; ``kid`` names the key)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
import uuid
from typing import Any

import jwt

from runlane.core.options import ENVIRONMENTS

_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(r"rl_(?P<env>[a-z]+)_[A-Za-z0-9]{40}")


def new_key(environment: str) -> str:
    return f"rl_{environment}_" + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def environment_of(key: object) -> str | None:
    """The environment a secret key is for (None: not a secret key)."""
    found = _KEY.fullmatch(key) if isinstance(key, str) else None
    if found is None or found.group("env") not in ENVIRONMENTS:
        return None
    return found.group("env")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(digest: str) -> str:
    """A key's id, derived from its digest: ``key_`` + 24 hex characters."""
    return "key_" + hashlib.sha256(digest.encode()).hexdigest()[:24]


def same_key(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets (or digests)."""
    return hmac.compare_digest(a.encode(), b.encode())


ALGORITHM = "HS256"  # the only algorithm a public token may use (never "none", never RS*)
RUN_TOKEN_LIFETIME = 3600.0  # seconds the token a trigger hands back reads its run


def sign_token(
    digest: str, environment: str, scopes: list[str], lifetime: float, *, one_time: bool = False
) -> str:
    """A public token signed with the key whose digest is ``digest`` (what a server signs
    with: it keeps digests, not keys)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": environment,
        "pub": True,
        "scopes": scopes,
        "iat": now,
        "exp": now + max(1, int(lifetime)),
    }
    if one_time:
        claims["jti"] = uuid.uuid4().hex
        claims["otu"] = True
    return jwt.encode(
        claims, bytes.fromhex(digest), algorithm=ALGORITHM, headers={"kid": key_id(digest)}
    )


def run_token(secret_key: str | None, run_id: str) -> str | None:
    """A token that reads one run, signed with ``secret_key`` (None without a key)."""
    env = environment_of(secret_key)
    if secret_key is None or env is None:
        return None
    return sign_token(key_digest(secret_key), env, [f"read:runs:{run_id}"], RUN_TOKEN_LIFETIME)
