"""``runlane.auth``: secret keys for the HTTP API, and public access tokens.

A **secret key** (``rl_<environment>_<40 characters>``) authenticates a server-side caller for
one environment: ``runlane keys create --env prod`` prints one once; the store keeps only its
SHA-256 digest. A server also accepts the key in ``RUNLANE_SECRET_KEY`` for its environment.

A **public access token** is a JWT (HS256, signed with the digest of the secret key that made it,
named in its ``kid`` header) that reads only what its scopes name — ``read:runs:<id>``,
``read:tags:<tag>``, ``read:batch:<id>``, ``read:tasks:<id>``, or ``trigger:tasks:<id>`` to
trigger — for 15 minutes unless told otherwise, as in the reference. It can go to a browser.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from runlane.core import keys, runtime
from runlane.core.durations import parse_duration
from runlane.core.options import ENVIRONMENTS
from runlane.core.types import KeyRow
from runlane.errors import ConfigurationError, InvalidOptionError

__all__ = [
    "ALGORITHM",
    "DEFAULT_EXPIRATION",
    "TokenError",
    "create_key",
    "create_public_token",
    "create_trigger_public_token",
    "environment_of",
    "key_digest",
    "key_id",
    "list_keys",
    "revoke_key",
    "same_key",
    "scopes_of",
    "sign_token",
    "verify_public_token",
]

ALGORITHM = keys.ALGORITHM
DEFAULT_EXPIRATION = 15 * 60.0  # seconds a public token lives unless told
MAX_SCOPES = 100
_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(r"rl_(?P<env>[a-z]+)_[A-Za-z0-9]{40}")
_SCOPE = re.compile(r"(read|write|trigger):(runs|tags|batch|tasks|all)(:[^\s]{1,256})?")


class TokenError(Exception):
    """A public access token that does not verify (the reason is in the message)."""


# ---------------------------------------------------------------------- secret keys
environment_of = keys.environment_of
key_digest = keys.key_digest
key_id = keys.key_id
same_key = keys.same_key


def create_key(name: str = "", *, rate_limit: int | None = None) -> tuple[str, KeyRow]:
    """A new secret key for the configured environment: the key itself, shown once and never
    stored, and its record. ``rate_limit``: requests a minute the HTTP API takes from it."""
    return runtime.get().ops.create_key(name, rate_limit=rate_limit)


def list_keys() -> list[KeyRow]:
    return runtime.get().ops.list_keys()


def revoke_key(key_id_: str) -> bool:
    return runtime.get().ops.revoke_key(key_id_)


# ---------------------------------------------------------------------- public tokens
def scopes_of(scopes: Mapping[str, Any] | Iterable[str]) -> list[str]:
    """Scopes as strings, from the reference's nested form (``{"read": {"runs": ["run_1"],
    "tags": "user_1"}}``, ``{"read": {"runs": True}}`` for every run) or already flat."""
    flat: list[str] = []
    if isinstance(scopes, Mapping):
        for action, resources in scopes.items():
            if not isinstance(resources, Mapping):
                raise InvalidOptionError("scopes", scopes, f"{action}: expected a mapping")
            for kind, ids in resources.items():
                if ids is True:
                    flat.append(f"{action}:{kind}")
                    continue
                values = [ids] if isinstance(ids, str) else ids
                if not isinstance(values, (list, tuple)) or not values:
                    raise InvalidOptionError("scopes", scopes, f"{action}.{kind}: ids or True")
                flat.extend(f"{action}:{kind}:{value}" for value in values)
    else:
        flat = list(scopes)
    if not flat or len(flat) > MAX_SCOPES:
        raise InvalidOptionError("scopes", scopes, f"give 1-{MAX_SCOPES} scopes")
    for scope in flat:
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
            raise InvalidOptionError("scopes", scope, "not a scope such as 'read:runs:run_...'")
    return flat


def _secret() -> str:
    key = runtime.get().settings.secret_key
    if not key or environment_of(key) is None:
        raise ConfigurationError(
            "public access tokens are signed with a secret key: set RUNLANE_SECRET_KEY or "
            "configure(secret_key=...) to a key made by `runlane keys create`"
        )
    return key


def create_public_token(
    *,
    scopes: Mapping[str, Any] | Iterable[str],
    expiration_time: Any = None,
    one_time: bool = False,
    secret_key: str | None = None,
) -> str:
    """A JWT that reads what ``scopes`` name, for ``expiration_time`` (a duration such as
    ``"1h"``; 15 minutes by default). ``one_time``: it is accepted once."""
    key = secret_key or _secret()
    env = environment_of(key)
    if env is None:
        raise InvalidOptionError("secret_key", "rl_...", "not a runlane secret key")
    lifetime = (
        DEFAULT_EXPIRATION
        if expiration_time is None
        else parse_duration(expiration_time, "expiration_time")
    )
    return sign_token(key_digest(key), env, scopes_of(scopes), lifetime, one_time=one_time)


sign_token = keys.sign_token


def create_trigger_public_token(
    task: str | Iterable[str],
    *,
    expiration_time: Any = None,
    multiple_use: bool = False,
    secret_key: str | None = None,
) -> str:
    """A token that triggers runs of ``task`` (an id or several): once, unless
    ``multiple_use``, as in the reference."""
    tasks = [task] if isinstance(task, str) else list(task)
    return create_public_token(
        scopes=[f"trigger:tasks:{t}" for t in tasks],
        expiration_time=expiration_time,
        one_time=not multiple_use,
        secret_key=secret_key,
    )


def verify_public_token(token: str, digest_of: Any, raw_key_of: Any = None) -> dict[str, Any]:
    """The claims of a valid public token, or ``TokenError``. ``digest_of(environment,
    key_id)`` gives the digest of the key that signed it (None: unknown or revoked key).

    A token with no ``kid`` was signed with a secret key itself (the Trigger.dev Node SDK
    signs its own that way): it verifies only against a key the server holds in full,
    ``raw_key_of(environment)`` (the one in ``RUNLANE_SECRET_KEY``); the store keeps only
    digests, which cannot check such a signature."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError(f"malformed token: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"a public token is signed with {ALGORITHM}, not {header.get('alg')!r}")
    env = unverified.get("sub")
    kid = header.get("kid")
    if env not in ENVIRONMENTS:
        raise TokenError("the token names no environment")
    secret: bytes | None = None
    if isinstance(kid, str):
        digest = digest_of(env, kid)
        secret = bytes.fromhex(digest) if digest is not None else None
    elif kid is None and raw_key_of is not None:
        raw = raw_key_of(env)
        secret = raw.encode() if raw else None
    if secret is None:
        raise TokenError("the key that signed this token is unknown or revoked")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # the Node SDK adds iss and aud; what a token may do is in its scopes
            options={"require": ["exp", "iat", "sub"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"the token does not verify: {exc}") from None
    if claims.get("pub") is not True or not isinstance(claims.get("scopes"), list):
        raise TokenError("not a public access token")
    return claims
