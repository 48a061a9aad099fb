"""The current runtime of this process: what every call that names no runtime uses.

Kept apart from :mod:`runlane.core.runtime` (which builds the engine) so that the parts the
engine itself uses (tasks, handles) can reach the current runtime without importing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from runlane.errors import ConfigurationError

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime

_lock = threading.RLock()
_current: Runtime | None = None
_factory: Callable[[], Runtime] | None = None


def set_default_factory(factory: Callable[[], Runtime]) -> None:
    global _factory
    _factory = factory


def install(rt: Runtime | None) -> Runtime | None:
    """Make ``rt`` the current runtime; return the previous one (the caller may close it)."""
    global _current
    with _lock:
        old, _current = _current, rt
    return old


def get() -> Runtime:
    global _current
    rt = _current
    if rt is not None:
        return rt
    with _lock:
        if _current is None:
            if _factory is None:
                raise ConfigurationError("runlane is not configured: call runlane.configure()")
            _current = _factory()
        return _current


def peek() -> Runtime | None:
    return _current
