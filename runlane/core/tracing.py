"""The tracing seam. By default spans are recorded in the run log only; when OpenTelemetry is
available, ``runlane.contrib.opentelemetry`` installs a Tracing that also emits real spans (the
attempt span, ``logger.trace`` spans and child trigger spans) and carries the trace from a
parent run to its children through ``trace_context`` (W3C headers stored on the run)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
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


_tracing: Tracing = Tracing()


def get() -> Tracing:
    return _tracing


def install(tracing: Tracing | None) -> None:
    global _tracing
    _tracing = tracing or Tracing()
