"""``runlane.logger``: logs and spans recorded on the current run (and forwarded to logging)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from runlane.core import context, tracing
from runlane.core.logs import forwarding

_LEVELS = {
    "debug": logging.DEBUG,
    "log": logging.INFO,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_std = logging.getLogger("runlane.task")


class Span:
    """A ``logger.trace`` span: attributes can be added while it is open."""

    def __init__(self, name: str, attributes: dict[str, Any], otel: Any) -> None:
        self.name = name
        self.attributes = attributes
        self._otel = otel

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value
        tracing.get().set_attribute(self._otel, key, value)

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        for k, v in attributes.items():
            self.set_attribute(k, v)


class RunLogger:
    def _emit(self, level: str, message: str, attributes: dict[str, Any]) -> None:
        message = str(message)
        active = context.current()
        if active is not None and active.logs is not None and not active.replaying:
            active.logs.add(level, message, attributes)
        if _std.isEnabledFor(_LEVELS[level]):
            extra = {"runlane_attributes": attributes}
            if active is not None:
                extra["run_id"] = active.run_id
            forwarding.on = True
            try:
                if attributes:
                    _std.log(_LEVELS[level], "%s %s", message, attributes, extra=extra)
                else:
                    _std.log(_LEVELS[level], "%s", message, extra=extra)
            finally:
                forwarding.on = False

    def debug(self, message: str, **attributes: Any) -> None:
        self._emit("debug", message, attributes)

    def log(self, message: str, **attributes: Any) -> None:
        self._emit("log", message, attributes)

    def info(self, message: str, **attributes: Any) -> None:
        self._emit("info", message, attributes)

    def warn(self, message: str, **attributes: Any) -> None:
        self._emit("warn", message, attributes)

    warning = warn

    def error(self, message: str, **attributes: Any) -> None:
        self._emit("error", message, attributes)

    @contextlib.contextmanager
    def trace(self, name: str, **attributes: Any) -> Iterator[Span]:
        """``with logger.trace("ffmpeg") as span: span.set_attribute("frames", 10)``"""
        start = time.time()
        t0 = time.perf_counter()
        with tracing.get().span(name, attributes) as otel:
            span = Span(str(name), dict(attributes), otel)
            error: BaseException | None = None
            try:
                yield span
            except BaseException as exc:
                error = exc
                tracing.get().record_exception(otel, exc)
                raise
            finally:
                duration = (time.perf_counter() - t0) * 1000
                active = context.current()
                if active is not None and active.logs is not None and not active.replaying:
                    attrs = dict(span.attributes)
                    if error is not None:
                        attrs["error"] = f"{type(error).__name__}: {error}"
                    active.logs.add(
                        "error" if error is not None else "info",
                        span.name,
                        attrs,
                        kind="span",
                        duration_ms=duration,
                        at=start,
                    )

    def __repr__(self) -> str:
        return "<runlane.logger>"


logger = RunLogger()
