"""OpenTelemetry for runlane: real spans, and one trace from a trigger to every run it causes.

When ``opentelemetry-api`` is installed (and ``RUNLANE_OTEL`` is not ``0``), runlane finds this
module's tracing on first use (it is the ``runlane.tracing`` entry point :func:`offered`) and
emits

- an attempt span (kind CONSUMER) around every attempt, named ``"<task> attempt <n>"``, with the
  attributes ``runlane.run_id``, ``runlane.task`` and ``runlane.attempt``; its parent is the span
  that triggered the run, read from the W3C headers stored on the run (``trace_context``);
- a ``"trigger <task>"`` span around every trigger, whose context is stored on the new run, so a
  run triggered inside an HTTP request or inside another run continues that trace;
- a span for every ``logger.trace(...)`` block, a child of the current span.

Spans go to the global tracer provider (configure the OpenTelemetry SDK as usual); without an
SDK they are no-ops that still carry an incoming trace to the runs. OpenTelemetry is imported
on first use, not when runlane is imported. To use an explicit provider::

    from runlane.contrib.opentelemetry import OpenTelemetryTracing
    from runlane.core import tracing

    tracing.install(OpenTelemetryTracing(tracer_provider=provider))
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runlane.core import tracing
from runlane.core.interrupt import TIMEOUT, AttemptInterrupted

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OpenTelemetryTracing", "install_if_available", "offered", "uninstall"]

log = logging.getLogger("runlane.opentelemetry")

TRACER_NAME = "runlane"
_PRIMITIVES = (bool, str, int, float)
_OFF = {"0", "false", "no", "off"}


def attribute_value(value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute value: primitives and homogeneous sequences of
    one primitive type pass; anything else becomes a string (JSON where it can be)."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds.pop() in _PRIMITIVES:
            return tuple(value)
        if not value:
            return ()
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def attributes_of(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OpenTelemetry-compatible attributes (``None`` values are left out: OTel has no null)."""
    return {str(k): attribute_value(v) for k, v in attributes.items() if v is not None}


class OpenTelemetryTracing(tracing.Tracing):
    """A :class:`runlane.core.tracing.Tracing` that emits OpenTelemetry spans and propagates
    the trace through the global propagator (W3C ``traceparent`` by default).

    ``tracer_provider``: the provider to create spans with (default: the global one, looked up
    at each span so a provider set later is used)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from runlane import __version__

        self._context = context
        self._propagate = propagate
        self._trace = trace
        self._kind = SpanKind
        self._status = Status
        self._code = StatusCode
        self._global = tracer_provider is None
        # a provider the API loads from the environment on first lookup (read once: the
        # variable configures the process at its start)
        self._env_provider = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
        if tracer_provider is None:  # a proxy: follows trace.set_tracer_provider() done later
            self._tracer = trace.get_tracer(TRACER_NAME, __version__)
        else:
            self._tracer = tracer_provider.get_tracer(TRACER_NAME, __version__)
        # spans whose exception was recorded explicitly (logger.trace), not to record it twice
        self._recorded: weakref.WeakKeyDictionary[Any, BaseException] = weakref.WeakKeyDictionary()

    def attempt_span(
        self, name: str, attributes: Mapping[str, Any], parent: Mapping[str, str] | None
    ) -> contextlib.AbstractContextManager[Any]:
        # The parent is the run's stored context only: an attempt never joins whatever span
        # happens to be current on the worker thread; without a stored context it starts a trace.
        if not parent and self._inert():  # no SDK and no trace to carry: nothing to record
            return tracing.NO_SPAN
        return self._attempt_span(name, attributes, parent)

    @contextlib.contextmanager
    def _attempt_span(
        self, name: str, attributes: Mapping[str, Any], parent: Mapping[str, str] | None
    ) -> Iterator[Span]:
        parent_ctx = self._propagate.extract(dict(parent or {}), context=self._context.Context())
        span = self._tracer.start_span(
            name,
            context=parent_ctx,
            kind=self._kind.CONSUMER,
            attributes=attributes_of(attributes),
        )
        with self._use(span):
            try:
                yield span
            except AttemptInterrupted as exc:
                self._interrupted(span, exc)
                raise
            except Exception as exc:
                self.record_exception(span, exc)
                raise

    def span(
        self, name: str, attributes: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[Any]:
        if self._inert():
            # without an SDK the span would be a non-recording copy of the current one, which
            # stays current instead: inject() carries the same trace to a triggered run
            return tracing.NO_SPAN
        return self._span(name, attributes)

    @contextlib.contextmanager
    def _span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Span | None]:
        span = self._tracer.start_span(str(name), attributes=attributes_of(attributes))
        with self._use(span):
            try:
                yield span
            except Exception as exc:
                if self._recorded.get(span) is not exc:
                    self.record_exception(span, exc)
                raise

    def set_attribute(self, span: Any, key: str, value: Any) -> None:
        if span is not None and value is not None:
            span.set_attribute(str(key), attribute_value(value))

    def record_exception(self, span: Any, exc: BaseException) -> None:
        if span is None:
            return
        span.record_exception(exc)
        span.set_status(self._status(self._code.ERROR, f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(TypeError):
            self._recorded[span] = exc

    def set_error(self, span: Any, error: Any) -> None:
        """Mark ``span`` failed with an error runlane caught and serialized (a
        :class:`runlane.TaskRunError`: ``name``, ``message``, ``stack_trace``, ``code``), such
        as a failed attempt's, which never propagates through the attempt span."""
        if span is None or error is None:
            return
        event = {
            "exception.type": str(getattr(error, "name", type(error).__name__)),
            "exception.message": str(getattr(error, "message", error)),
        }
        stack = getattr(error, "stack_trace", None)
        if stack:
            event["exception.stacktrace"] = str(stack)
        span.add_event("exception", attributes=event)
        code = getattr(error, "code", None)
        if code:
            span.set_attribute("runlane.error.code", str(code))
        span.set_status(
            self._status(
                self._code.ERROR, f"{event['exception.type']}: {event['exception.message']}"
            )
        )

    def inject(self) -> dict[str, str] | None:
        if not self._trace.get_current_span().get_span_context().is_valid:
            return None
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier)
        return carrier or None

    # -- internals
    def _inert(self) -> bool:
        """No tracer provider is set (no SDK): every span would be a no-op. Checked at each
        span, so a provider set later is used from then on: first the API's own global (one
        attribute read), then, once a provider may be there, the API's lookup."""
        if not self._global:
            return False
        if getattr(self._trace, "_TRACER_PROVIDER", False) is None and not self._env_provider:
            return True  # nothing set, and none named in the environment to load
        return isinstance(self._trace.get_tracer_provider(), self._trace.ProxyTracerProvider)

    @contextlib.contextmanager
    def _use(self, span: Span) -> Iterator[None]:
        """Make ``span`` current and end it; exceptions are recorded by the callers."""
        with self._trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            yield

    def _interrupted(self, span: Span, exc: AttemptInterrupted) -> None:
        span.set_attribute("runlane.interrupted", exc.reason)
        if exc.reason == TIMEOUT:
            span.set_status(self._status(self._code.ERROR, "the attempt exceeded max_duration"))


class _LazyOpenTelemetry(tracing.Tracing):
    """What :func:`install_if_available` installs: creates the :class:`OpenTelemetryTracing`
    (importing OpenTelemetry) on first use, or stays a no-op if that import fails."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._impl: tracing.Tracing | None = None

    def _real(self) -> tracing.Tracing:
        impl = self._impl
        if impl is None:
            with self._lock:
                impl = self._impl
                if impl is None:
                    try:
                        impl = OpenTelemetryTracing()
                    except ImportError:
                        log.warning("OpenTelemetry could not be imported; no spans", exc_info=True)
                        impl = tracing.Tracing()
                    self._impl = impl
        return impl

    def attempt_span(
        self, name: str, attributes: Mapping[str, Any], parent: Mapping[str, str] | None
    ) -> contextlib.AbstractContextManager[Any]:
        return self._real().attempt_span(name, attributes, parent)

    def span(
        self, name: str, attributes: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[Any]:
        return self._real().span(name, attributes)

    def set_attribute(self, span: Any, key: str, value: Any) -> None:
        self._real().set_attribute(span, key, value)

    def record_exception(self, span: Any, exc: BaseException) -> None:
        self._real().record_exception(span, exc)

    def set_error(self, span: Any, error: Any) -> None:
        set_error = getattr(self._real(), "set_error", None)
        if set_error is not None:
            set_error(span, error)

    def inject(self) -> dict[str, str] | None:
        return self._real().inject()


def _api_available() -> bool:
    """Whether ``opentelemetry-api`` is installed, without importing it."""
    try:
        spec = importlib.util.find_spec("opentelemetry")
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    # a namespace package: other distributions (opentelemetry-proto, ...) may provide it alone
    paths = spec.submodule_search_locations
    if not paths:
        return True
    return any(os.path.isdir(os.path.join(p, "trace")) for p in paths)


def offered() -> tracing.Tracing | None:
    """The ``runlane.tracing`` entry point: lazy OpenTelemetry tracing when
    ``opentelemetry-api`` is installed, unless ``RUNLANE_OTEL=0``."""
    if os.environ.get("RUNLANE_OTEL", "").strip().lower() in _OFF or not _api_available():
        return None
    return _LazyOpenTelemetry()


def install_if_available() -> bool:
    """Install lazy OpenTelemetry tracing when ``opentelemetry-api`` is installed, unless
    ``RUNLANE_OTEL=0`` or another Tracing was installed already. True if installed."""
    if os.environ.get("RUNLANE_OTEL", "").strip().lower() in _OFF:
        return False
    if type(tracing.get()) is not tracing.Tracing:  # already installed (ours or the user's)
        return isinstance(tracing.get(), (OpenTelemetryTracing, _LazyOpenTelemetry))
    found = offered()
    if found is None:
        return False
    tracing.install(found)
    return True


def uninstall() -> None:
    """Back to runlane's no-op tracing, if OpenTelemetry tracing is installed."""
    if isinstance(tracing.get(), (OpenTelemetryTracing, _LazyOpenTelemetry)):
        tracing.install(None)
