"""Who is calling: ``Authorization: Bearer <secret key | public access token>`` → a Principal
(its environment, and for a public token its scopes), and the checks a route makes with it.

Secret keys are looked up by the id derived from their digest and compared in constant time;
the key in ``RUNLANE_SECRET_KEY`` (``env_key``) is accepted for its environment too. A public
token is verified with the digest of the key that signed it (HS256 only), must not have
expired, and a one-time token is accepted once (its ``jti`` marked used in the store until it
would have expired). A token reads what its scopes name and nothing else: a run's payload and
output are never shown to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runlane.api import auth as keys
from runlane.core import operations
from runlane.frameworks.http.api import ApiError, Request, Route

if TYPE_CHECKING:
    from runlane.core.models import Run
    from runlane.core.runtime import Runtime

_CHALLENGE = [("www-authenticate", 'Bearer realm="runlane"')]


@dataclass(frozen=True)
class Principal:
    environment: str
    kind: str  # "secret" | "public"
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_id: str | None = None
    digest: str | None = field(default=None, repr=False)  # of the key: signs run tokens
    rate_limit: int | None = None  # the key's requests a minute (None: no limit)

    @property
    def is_secret(self) -> bool:
        return self.kind == "secret"

    def allows(self, wanted: Iterable[str]) -> bool:
        """A secret key allows everything; a token, any of the scopes ``wanted``."""
        return self.is_secret or any(scope in self.scopes for scope in wanted)


class Authenticator:
    def __init__(self, runtime_for: Callable[[str], Runtime], env_key: str | None = None) -> None:
        self.runtime_for = runtime_for
        self.env_key = env_key if env_key and keys.environment_of(env_key) else None

    def authenticate(self, request: Request, route: Route) -> Principal:
        header = request.header("authorization")
        if not header:
            raise ApiError(401, "unauthorized", "missing Authorization header", headers=_CHALLENGE)
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential or len(credential) > 8192:
            raise ApiError(
                401, "unauthorized", "expected 'Authorization: Bearer <key or token>'",
                headers=_CHALLENGE,
            )  # fmt: skip
        if credential.startswith("rl_"):
            principal = self._secret(credential)
        elif credential.count(".") != 2:  # neither a key nor a JWT
            raise ApiError(
                401, "unauthorized",
                "not a runlane secret key (rl_<environment>_...) nor a public access token",
                headers=_CHALLENGE,
            )  # fmt: skip
        else:
            principal = self._public(credential)
            if route.auth == "secret":
                raise ApiError(
                    403, "forbidden", "this route needs a secret key, not a public token"
                )
            if route.scope is not None and not principal.allows(route.scope(request)):
                raise ApiError(403, "forbidden", "the token's scopes do not allow this")
        self._limit(principal)
        return principal

    def _limit(self, principal: Principal) -> None:
        """429 with Retry-After once a key (with its tokens) made its requests of the minute."""
        if principal.rate_limit is None or principal.key_id is None:
            return
        rt = self.runtime_for(principal.environment)
        count, left = operations.count_request(rt, principal.key_id)
        if count > principal.rate_limit:
            raise ApiError(
                429,
                "rate_limited",
                f"this key may make {principal.rate_limit} requests a minute",
                headers=[("retry-after", str(max(1, math.ceil(left))))],
            )

    def _secret(self, key: str) -> Principal:
        env = keys.environment_of(key)
        if env is None:
            raise ApiError(401, "unauthorized", "invalid secret key", headers=_CHALLENGE)
        if self.env_key is not None and keys.same_key(key, self.env_key):
            return Principal(env, "secret", key_id="env", digest=keys.key_digest(key))
        digest = keys.key_digest(key)
        row = operations.find_key(self.runtime_for(env), keys.key_id(digest))
        if row is None or row.revoked_at is not None or not keys.same_key(row.digest, digest):
            raise ApiError(401, "unauthorized", "invalid secret key", headers=_CHALLENGE)
        return Principal(env, "secret", key_id=row.id, digest=row.digest, rate_limit=row.rate_limit)

    def _public(self, token: str) -> Principal:
        signer: list[tuple[str, str, int | None]] = []  # (digest, key id, rate limit)

        def digest_of(env: str, kid: str) -> str | None:
            if self.env_key is not None and keys.environment_of(self.env_key) == env:
                own = keys.key_digest(self.env_key)
                if keys.same_key(keys.key_id(own), kid):
                    signer.append((own, "env", None))
                    return own
            row = operations.find_key(self.runtime_for(env), kid)
            if row is None or row.revoked_at is not None:
                return None
            signer.append((row.digest, row.id, row.rate_limit))
            return row.digest

        def raw_key_of(env: str) -> str | None:
            if self.env_key is not None and keys.environment_of(self.env_key) == env:
                signer.append((keys.key_digest(self.env_key), "env", None))
                return self.env_key
            return None

        try:
            claims = keys.verify_public_token(token, digest_of, raw_key_of)
        except keys.TokenError as exc:
            raise ApiError(401, "unauthorized", str(exc), headers=_CHALLENGE) from None
        env = claims["sub"]
        if claims.get("otu"):
            jti = claims.get("jti")
            rt = self.runtime_for(env)
            left = max(1.0, float(claims["exp"]) - time.time())
            if not isinstance(jti, str) or not operations.use_once(rt, f"token:{jti}", left):
                raise ApiError(401, "unauthorized", "this one-time token was used already")
        digest, key_id, rate_limit = signer[0]
        return Principal(env, "public", frozenset(claims["scopes"]), key_id, digest, rate_limit)


def run_scopes(run: Run) -> list[str]:
    """The read scopes any of which lets a public token see ``run``."""
    wanted = ["read:all", "read:runs", f"read:runs:{run.id}", f"read:tasks:{run.task_identifier}"]
    wanted += [f"read:tags:{tag}" for tag in run.tags]
    if run.batch_id:
        wanted.append(f"read:batch:{run.batch_id}")
    return wanted


def require_run(request: Request, run: Run) -> None:
    """404 (not 403: a token does not learn that a run it may not read exists) unless the
    caller may read ``run``."""
    principal = request.principal
    if principal is None or not principal.allows(run_scopes(run)):
        raise ApiError(404, "not_found", f"no run {run.id!r}")


def trigger_scopes(task_id: str) -> list[str]:
    return ["trigger:all", "trigger:tasks", f"trigger:tasks:{task_id}", "write:all"]
