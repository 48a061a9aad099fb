"""Retry arithmetic, as the reference implements it (pure functions, no I/O).

Delay after failed attempt ``n`` (1-based): none when ``n >= max_attempts``; otherwise
``round(min(max_timeout_in_ms, r * min_timeout_in_ms * factor ** (n - 1)))`` with ``r`` uniform
in [1, 2) when ``randomize`` and 1 otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from runlane.core.options import RetryOptions

Random = Callable[[], float]


def backoff_delay_ms(
    options: RetryOptions, attempt: int, rand: Random = random.random
) -> int | None:
    """Milliseconds to wait before attempt ``attempt + 1``, or None when no attempt is left."""
    if attempt >= options.max_attempts:
        return None
    return backoff_ms(options, attempt, rand)


def backoff_ms(options: RetryOptions, attempt: int, rand: Random = random.random) -> int:
    """The backoff after attempt ``attempt`` regardless of the attempt limit."""
    r = 1.0 + rand() if options.randomize else 1.0
    raw = r * options.min_timeout_in_ms * options.factor ** (attempt - 1)
    return round(min(float(options.max_timeout_in_ms), raw))
