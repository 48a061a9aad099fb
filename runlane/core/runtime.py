"""The runtime: what ``configure()`` builds (store, broker, clock, settings, engine).

Nothing connects at import. The current runtime is kept by :mod:`runlane.core.current`
(re-exported here: ``runtime.get()`` returns it, building the default one through the factory
installed by ``runlane.config`` on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runlane.core.broker import Broker
from runlane.core.clock import Clock, SystemClock
from runlane.core.current import get, install, peek, set_default_factory
from runlane.core.engine import Engine
from runlane.core.hub import Hub
from runlane.core.limits import DEFAULT_LIMITS, Limits
from runlane.core.operations import LocalOperations
from runlane.core.options import RetryOptions
from runlane.core.registry import Registry, registry
from runlane.core.store import Store

__all__ = ["Runtime", "Settings", "get", "install", "peek", "set_default_factory", "settings_from"]


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
    api_url: str | None = None  # remote mode (RUNLANE_API_URL): the runlane server called
    broker_name: str | None = None
    secret_key: str | None = None
    # the release of the code this process runs (RUNLANE_VERSION): a worker never changes a
    # declarative schedule that a worker of a later version wrote
    version: str | None = None


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
        self.store = store
        self.broker = broker
        self.settings = settings or Settings()
        self.clock: Clock = clock or SystemClock()
        self.registry = tasks or registry
        self.engine: Engine = Engine(self)
        # the management verbs (retrieve, list, cancel, ... schedules): what the public API
        # calls; in remote mode (runlane.sdk) they are requests to a runlane server
        self.ops: LocalOperations = LocalOperations(self)
        self.closed = False
        self._on_close: list[Callable[[], None]] = []
        # realtime subscriptions' feed follower (core/realtime.py), made on first use
        self.realtime_hub: Hub | None = None

    @property
    def environment(self) -> str:
        return self.settings.environment

    def now(self) -> float:
        return self.clock.now()

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this runtime is closed (what an extension set up for it
        is undone there)."""
        self._on_close.append(callback)

    def close(self) -> None:
        self.closed = True
        if self.realtime_hub is not None:  # its thread reads the store: ended first
            self.realtime_hub.stop()
        try:
            self.broker.close()
            self.store.close()
        finally:
            callbacks, self._on_close = self._on_close, []
            for callback in callbacks:
                callback()


def settings_from(options: Mapping[str, Any]) -> Settings:
    return Settings(**options)
