"""redis-py's errors as runlane's: ``StoreUnavailableError`` for what passes with time (the
server unreachable, restarting, loading its data, a replica during a failover), else
``StoreRejectedError``. Every Redis verb of the store and the native broker goes through
``translate``, so no redis-py exception (and no reply mistaken for data) reaches a caller."""

from __future__ import annotations

import redis

from runlane.backends._translate import translated, translating
from runlane.errors import StoreError

_E = redis.exceptions
# replies of a server that is not serving (yet): LOADING after a restart is BusyLoadingError,
# a ConnectionError; READONLY from a primary that became a replica in a failover; others
# during a failover or a resharding. redis-py names each by its class (the message loses the
# code); the codes are also looked for, for a reply passed on as a plain ResponseError
_TRANSIENT_CLASSES = tuple(
    getattr(_E, name)
    for name in ("ReadOnlyError", "MasterDownError", "TryAgainError", "ClusterDownError")
    if hasattr(_E, name)
)
_TRANSIENT_REPLIES = ("READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "LOADING")


def transient(exc: BaseException) -> bool:
    """True for errors that a later try may not meet: connection refused, reset or timed out,
    LOADING after a restart, READONLY from a failed-over primary. A refused password is not."""
    if isinstance(exc, (_E.AuthenticationError, _E.AuthorizationError)):
        return False
    if isinstance(exc, (_E.ConnectionError, _E.TimeoutError, OSError, *_TRANSIENT_CLASSES)):
        return True
    if isinstance(exc, _E.ResponseError):
        return str(exc).lstrip().upper().startswith(_TRANSIENT_REPLIES)
    return False


def describe(verb: str, exc: BaseException) -> str:
    if transient(exc):
        return f"Redis unavailable ({verb}): {exc}"
    return f"Redis refused {verb}: {exc}"


translate = translating((redis.exceptions.RedisError, OSError), describe, transient)


def as_store_error(exc: BaseException, verb: str) -> StoreError:
    """``exc`` (from redis-py) as the runlane error ``translate`` would raise."""
    if isinstance(exc, StoreError):
        return exc
    return translated(exc, verb, describe, transient)
