"""Calling user functions (tasks and hooks) with the arguments they accept."""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any


@functools.lru_cache(maxsize=1024)
def _shape(fn: Callable[..., Any]) -> tuple[int | None, frozenset[str] | None]:
    """(how many positionals it takes or None for *args, keyword names or None for **kw)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None, None
    params = sig.parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        positional: int | None = None
    else:
        positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        keywords: frozenset[str] | None = None
    else:
        keywords = frozenset(
            p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
    return positional, keywords


def accepts_positional(fn: Callable[..., Any], n: int) -> bool:
    """Whether ``fit_call`` would pass ``fn`` an ``n``-th positional argument (True when its
    signature cannot be read)."""
    try:
        positional, _ = _shape(fn)
    except TypeError:  # unhashable callable
        return True
    return positional is None or positional >= n


def fit_call(
    fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to call ``fn`` with: extra positionals and unknown keywords dropped, so
    ``def on_success(payload, output)`` works as well as ``(payload, output, ctx)``."""
    try:
        positional, keywords = _shape(fn)
    except TypeError:  # unhashable callable
        return args, kwargs
    if positional is not None:
        args = args[:positional]
    if keywords is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in keywords}
    return args, kwargs


# is_async of functions seen (asked on every attempt for the task and its hooks)
_async: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def is_async(fn: Callable[..., Any]) -> bool:
    try:
        return _async[fn]
    except (KeyError, TypeError):  # not seen yet, or not weakly referenceable
        pass
    found = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    )
    with contextlib.suppress(TypeError):
        _async[fn] = found
    return found
