"""The runtime: what ``configure()`` builds (store, broker, clock, settings, engine).

Nothing connects at import. ``get()`` returns the configured runtime, building the default one
(through the factory installed by ``runlane.config``) on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runlane.core.clock import Clock, SystemClock
from runlane.core.limits import DEFAULT_LIMITS, Limits
from runlane.core.options import RetryOptions
from runlane.core.task import Registry, registry
from runlane.core.types import Broker, Store
from runlane.errors import ConfigurationError

if TYPE_CHECKING:
    from runlane.core.engine import Engine


@dataclass
class Settings:
    environment: str = "dev"
    concurrency_limit: int | None = None
    retry_default: RetryOptions = field(default_factory=RetryOptions)
    retries_enabled_in_dev: bool = True
    max_duration: int | None = None
    machine: str | None = None
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS
    metadata_flush_interval: float = 1.0
    engine_interval: float = 0.25
    wait_in_place: float = 2.0  # seconds a wait may block its worker before suspending
    retention: float | None = 30 * 86400.0  # finished runs are deleted after this (seconds)
    lease_timeout: float = 30.0  # an executing run whose worker is silent this long crashed
    # seconds a trigger keeps trying while the store is unavailable (StoreUnavailableError;
    # at most 60)
    store_retry_timeout: float = 10.0
    # seconds a worker keeps a finished attempt's result while the store is unavailable
    result_retry_timeout: float = 600.0
    store_url: str | None = None
    broker_name: str | None = None
    secret_key: str | None = None


class Runtime:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        tasks: Registry | None = None,
    ) -> None:
        from runlane.core.engine import Engine

        self.store = store
        self.broker = broker
        self.settings = settings or Settings()
        self.clock: Clock = clock or SystemClock()
        self.registry = tasks or registry
        self.engine: Engine = Engine(self)
        self.closed = False

    @property
    def environment(self) -> str:
        return self.settings.environment

    def now(self) -> float:
        return self.clock.now()

    def close(self) -> None:
        self.closed = True
        self.broker.close()
        self.store.close()


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


def settings_from(options: Mapping[str, Any]) -> Settings:
    return Settings(**options)
