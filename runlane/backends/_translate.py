"""Driver errors become runlane errors at one place per backend (users never catch
``sqlite3.Error`` or ``redis.ConnectionError`` from runlane).

Each backend says which of its errors mean "unavailable" (transient: the store could not be
reached or is not serving yet) and which mean "rejected" (the store answered with an error);
callers retry the first kind only (``runlane.core.storecalls``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from runlane.errors import StoreError, StoreRejectedError, StoreUnavailableError

F = TypeVar("F", bound=Callable[..., Any])


def translating(
    errors: type[BaseException] | tuple[type[BaseException], ...],
    describe: Callable[[str, BaseException], str],
    transient: Callable[[BaseException], bool],
) -> Callable[[F], F]:
    """A decorator: ``errors`` raised by the wrapped store verb become
    ``StoreUnavailableError`` (where ``transient(error)``) or ``StoreRejectedError``, with
    the message ``describe(verb name, error)``. A ``StoreError`` passes through as it is."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except StoreError:
                raise
            except errors as exc:
                raise translated(exc, fn.__name__, describe, transient) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def translated(
    exc: BaseException,
    verb: str,
    describe: Callable[[str, BaseException], str],
    transient: Callable[[BaseException], bool],
) -> StoreError:
    """The runlane error for the driver's ``exc`` raised in ``verb``."""
    kind = StoreUnavailableError if transient(exc) else StoreRejectedError
    return kind(describe(verb, exc))
