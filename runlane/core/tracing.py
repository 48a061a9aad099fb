"""The tracing seam. By default spans are recorded in the run log only. A Tracing that also
emits real spans (the attempt span, ``logger.trace`` spans and child trigger spans) and carries
the trace from a parent run to its children through ``trace_context`` (W3C headers stored on
the run) is either installed explicitly (:func:`install`) or found on first use among the
installed packages' ``runlane.tracing`` entry points: runlane's own is
``runlane.contrib.opentelemetry``, which offers one when ``opentelemetry-api`` is installed."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runlane.core.models import TaskRunError


# what a span that records nothing is: a context manager yielding None, shared (reusable)
NO_SPAN: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()


class Tracing:
    """No-op tracing: the interface every implementation provides."""

    def attempt_span(
        self, name: str, attributes: Mapping[str, Any], parent: Mapping[str, str] | None
    ) -> contextlib.AbstractContextManager[Any]:
        return NO_SPAN

    def span(
        self, name: str, attributes: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[Any]:
        return NO_SPAN

    def set_attribute(self, span: Any, key: str, value: Any) -> None:
        return None

    def record_exception(self, span: Any, exc: BaseException) -> None:
        return None

    def set_error(self, span: Any, error: TaskRunError) -> None:
        """Mark ``span`` failed with an error runlane caught (a failed attempt's)."""
        return None

    def inject(self) -> dict[str, str] | None:
        """The current trace context as W3C headers, for a child run (None: no trace)."""
        return None


ENTRY_POINTS = "runlane.tracing"
log = logging.getLogger("runlane.tracing")

_tracing: Tracing | None = None  # None: not chosen yet (discovered on first use)


def get() -> Tracing:
    return _tracing if _tracing is not None else _discover()


def install(tracing: Tracing | None) -> None:
    """Use ``tracing`` from now on (None: the no-op default, and no discovery)."""
    global _tracing
    _tracing = tracing or Tracing()


def _discover() -> Tracing:
    """The first Tracing an installed ``runlane.tracing`` entry point offers: each names a
    function of no arguments that returns a Tracing, or None when it has none to offer (its
    library is missing, or it was switched off)."""
    global _tracing
    found: Tracing | None = None
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        try:
            found = point.load()()
        except Exception:  # a broken plugin costs its spans, never a run
            log.exception("tracing entry point %r failed", point.name)
            continue
        if found is not None:
            break
    if _tracing is None:  # (unless one was installed meanwhile)
        _tracing = found or Tracing()
    return _tracing
