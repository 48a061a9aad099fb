"""Store calls that ride through an outage: tried again, with backoff, while the store is
unavailable (``StoreUnavailableError``: Redis restarting, loading its data, failing over).

Only calls that are safe to make twice go through here: reads, ``register_tasks``, a
``create_runs`` that carries a token (a second try returns the first one's runs), and the
transitions that record an attempt's result (guarded by the attempt: a second try of one
that was written is refused, never applied twice). Each wait is one line in the log, with
the time to the next try; no traceback.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from runlane.errors import StoreUnavailableError

T = TypeVar("T")

log = logging.getLogger("runlane.store")

FIRST_DELAY = 0.1  # seconds before the first retry; doubled after each, up to MAX_DELAY
MAX_DELAY = 2.0


def backoff(failures: int, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after ``failures`` failed tries in a row (from 1): doubling from
    ``first`` up to ``cap``, with up to a quarter of jitter so that many processes that lost
    the store together do not all call it again at the same instant."""
    delay = min(cap, first * 2.0 ** (failures - 1))
    return delay * (0.75 + random.random() / 4)


def describe_wait(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def retrying(
    call: Callable[[], T],
    what: str,
    timeout: float,
    *,
    sleep: Callable[[float], object] = time.sleep,
    keep_going: Callable[[], bool] | None = None,
    on_failure: Callable[[StoreUnavailableError, int], None] | None = None,
) -> T:
    """``call()``, tried again while it raises ``StoreUnavailableError``, for up to ``timeout``
    seconds in all (then the last error is raised). ``what`` names the call in the log.
    ``keep_going()``: False stops the retries early (the last error is raised).
    ``on_failure(error, failures)`` is told of each failed try."""
    deadline = time.monotonic() + timeout
    failures = 0
    while True:
        try:
            return call()
        except StoreUnavailableError as exc:
            failures += 1
            if on_failure is not None:
                on_failure(exc, failures)
            left = deadline - time.monotonic()
            if left <= 0 or (keep_going is not None and not keep_going()):
                raise
            wait = min(backoff(failures), left)
            log.warning(
                "store unavailable (%s: %s); retrying in %s", what, exc, describe_wait(wait)
            )
            sleep(wait)
