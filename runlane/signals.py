"""Signals (blinker) sent as runs are triggered, start, end, are canceled or expire.

::

    from runlane.signals import run_failed

    @run_failed.connect
    def alert(sender, run, error, **kwargs):  # sender: the task id
        ...

Each signal's docstring says when and in which process it is sent and what keyword
arguments its receivers get; see docs/signals.md.
"""

from runlane.core.signals import (
    attempt_started,
    namespace,
    run_canceled,
    run_expired,
    run_failed,
    run_retrying,
    run_succeeded,
    run_triggered,
)

__all__ = [
    "attempt_started",
    "namespace",
    "run_canceled",
    "run_expired",
    "run_failed",
    "run_retrying",
    "run_succeeded",
    "run_triggered",
]
