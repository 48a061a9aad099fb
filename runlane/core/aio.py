"""The ``aio_`` twins: one sync implementation, awaited from a worker thread.

runlane's I/O (SQLite, the Redis client, httpx) is done once, synchronously; the async twin of
every call runs that same code in a thread so the event loop is never blocked. No logic is
written twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


async def run_sync(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    ctx = contextvars.copy_context()  # keep the current run visible in the thread
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(ctx.run, fn, *args, **kwargs))


def aio(fn: Callable[P, R]) -> Callable[P, Any]:
    """Build the awaitable twin of a sync function."""

    @functools.wraps(fn)
    async def twin(*args: P.args, **kwargs: P.kwargs) -> R:
        return await run_sync(fn, *args, **kwargs)

    twin.__name__ = f"aio_{fn.__name__}"
    twin.__qualname__ = twin.__name__
    twin.__doc__ = f"Awaitable twin of :func:`{fn.__name__}`."
    return twin
