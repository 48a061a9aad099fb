"""Secret keys of the HTTP API: their form (``rl_<environment>_<40 letters and digits>``), the
SHA-256 digest a store keeps instead of them, and the id derived from that digest."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

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
