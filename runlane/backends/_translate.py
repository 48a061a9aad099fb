"""Driver errors become runlane errors at one place per backend (users never catch
``sqlite3.Error`` or ``redis.ConnectionError`` from runlane)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from runlane.errors import StoreError

F = TypeVar("F", bound=Callable[..., Any])


def translating(
    errors: type[BaseException] | tuple[type[BaseException], ...],
    describe: Callable[[str, BaseException], str],
) -> Callable[[F], F]:
    """A decorator: ``errors`` raised by the wrapped store verb become ``StoreError`` with the
    message ``describe(verb name, error)``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except errors as exc:
                raise StoreError(describe(fn.__name__, exc)) from exc

        return wrapper  # type: ignore[return-value]

    return decorate
