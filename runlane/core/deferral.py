"""Deferring the creation of triggered runs: the extension point a framework integration uses
to hold a trigger's runs until later, e.g. until the database transaction around the trigger
commits (``runlane.frameworks.django`` defers with ``transaction.on_commit``).

A trigger validates its options and payload and chooses its runs' ids at once; then each
installed deferrer is asked, in order, whether it takes the creation. A deferrer that returns
True has taken it and must call ``create()`` later exactly once (or never, e.g. on a rollback);
the trigger then returns handles on ids whose runs do not exist yet. The per-trigger option
``on_commit=False`` skips the deferrers. ``trigger_and_wait`` and schedules are never deferred.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runlane.core.types import NewRun
from runlane.errors import InvalidOptionError

OPTION = "on_commit"

Deferrer = Callable[[Sequence[NewRun], Callable[[], object]], bool]
"""``deferrer(runs, create) -> bool``: True when it will call ``create()`` itself later."""

_deferrers: list[Deferrer] = []


def add_deferrer(deferrer: Deferrer) -> None:
    """Install a deferrer (once: adding it again does nothing)."""
    if deferrer not in _deferrers:
        _deferrers.append(deferrer)


def remove_deferrer(deferrer: Deferrer) -> None:
    if deferrer in _deferrers:
        _deferrers.remove(deferrer)


def take_option(options: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, bool]:
    """(the trigger options without ``on_commit``, whether the trigger may be deferred)."""
    if not options or OPTION not in options:
        return options, True
    value = options[OPTION]
    if not isinstance(value, bool):
        raise InvalidOptionError(OPTION, value, "must be True or False")
    rest = {k: v for k, v in options.items() if k != OPTION}
    return rest, value


def defer(runs: Sequence[NewRun], create: Callable[[], object]) -> bool:
    """Whether an installed deferrer took the creation of ``runs``."""
    return any(deferrer(runs, create) for deferrer in tuple(_deferrers))
