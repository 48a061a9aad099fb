"""``runlane.configure()``: explicit arguments > ``RUNLANE_*`` environment > defaults.

With nothing set, the embedded default is used: a SQLite file store at
``.runlane/runlane.db`` and the ``local`` broker in the same file. ``memory://`` (or
``sqlite:///:memory:``) is the same pair in memory, for tests: nothing on disk, one process,
and a fresh database on every ``configure()``. Nothing connects at import.

``alerts`` are handed to the alert sender found as the ``runlane.alerts`` entry point (runlane's
own is ``runlane.contrib.alerts``: this layer does not import contrib), which validates them
before anything is built and installs them on the runtime once it is.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

from runlane.core import runtime
from runlane.core.broker import Broker
from runlane.core.clock import Clock
from runlane.core.durations import parse_duration
from runlane.core.options import (
    ENVIRONMENTS,
    UNSET,
    parse_retry,
    validate_machine,
    validate_max_duration,
    validate_positive_int,
)
from runlane.core.runtime import Runtime, Settings
from runlane.core.store import Store
from runlane.core.task import HOOK_NAMES
from runlane.errors import ConfigurationError, InvalidOptionError

DEFAULT_STORE_URL = "sqlite:///.runlane/runlane.db"
MEMORY_STORE_URLS = ("memory://", "sqlite:///:memory:", "sqlite://:memory:")
ALERTS_ENTRY_POINTS = "runlane.alerts"


class AlertSender(Protocol):
    """What ``configure(alerts=...)`` hands its alerts to (a ``runlane.alerts`` entry point)."""

    def parse(self, value: Any) -> Sequence[Any]:
        """The alerts, validated (InvalidOptionError naming the entry and field at fault)."""
        ...

    def install(self, rt: Runtime, alerts: Sequence[Any]) -> None:
        """Send ``alerts`` for the runs of ``rt`` from now on."""
        ...


@functools.cache
def alert_sender() -> AlertSender:
    points = sorted(entry_points(group=ALERTS_ENTRY_POINTS), key=lambda point: point.name)
    if not points:
        raise ConfigurationError(
            "configure(alerts=...) needs an alert sender, and no 'runlane.alerts' entry point "
            "is installed: runlane's own (runlane.contrib.alerts) comes with the runlane "
            "package: reinstall runlane (pip install -e . in a checkout) to install its entry "
            "points"
        )
    sender: AlertSender = points[0].load()
    return sender


def _alerts_from_env() -> list[dict[str, Any]] | None:
    """One alert from RUNLANE_ALERT_URL, RUNLANE_ALERT_SECRET and, optionally,
    RUNLANE_ALERT_STATUSES and RUNLANE_ALERT_TASKS (comma-separated)."""
    url = os.environ.get("RUNLANE_ALERT_URL") or None
    if url is None:
        return None
    secret = os.environ.get("RUNLANE_ALERT_SECRET") or None
    if secret is None:
        raise ConfigurationError("RUNLANE_ALERT_URL is set but RUNLANE_ALERT_SECRET is not")
    alert: dict[str, Any] = {"url": url, "secret": secret}
    for name, field in (("RUNLANE_ALERT_STATUSES", "statuses"), ("RUNLANE_ALERT_TASKS", "tasks")):
        listed = [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
        if listed:
            alert[field] = listed
    return [alert]


def _build_store(store: Any, environment: str, concurrency_limit: int | None) -> Store:
    if isinstance(store, Store):
        store.concurrency_limit = concurrency_limit
        return store
    if not isinstance(store, str):
        raise ConfigurationError(f"store must be a URL or a Store, not {type(store).__name__}")
    if store in MEMORY_STORE_URLS:
        from runlane.backends.sqlite import SQLiteStore
        from runlane.backends.sqlite.db import memory_path

        return SQLiteStore(memory_path(), environment, concurrency_limit=concurrency_limit)
    if store.startswith("sqlite:"):
        from runlane.backends.sqlite import SQLiteStore

        return SQLiteStore.from_url(store, environment, concurrency_limit=concurrency_limit)
    if store.startswith(("redis://", "rediss://", "unix://")):
        try:
            from runlane.backends.redis import RedisStore
        except ImportError as exc:  # the redis extra is not installed
            raise ConfigurationError(
                "the Redis store needs the redis package: pip install 'runlane[redis]'"
            ) from exc
        return RedisStore.from_url(store, environment, concurrency_limit=concurrency_limit)
    raise ConfigurationError(
        f"unknown store URL {store!r}: use sqlite:///path/to/file.db, redis://host:6379/0 "
        "or memory://"
    )


def _build_broker(broker: Any, store: Store, environment: str, heartbeat: float) -> Broker:
    if isinstance(broker, Broker):
        if store.native_broker == "redis":  # (so the redis package is installed)
            from runlane.backends.redis import RedisBroker

            if isinstance(broker, RedisBroker):  # built by hand: the same fast path as "redis"
                broker.pair(store)
        return broker
    if broker == "redis":
        from runlane.backends.redis import RedisBroker, RedisStore

        if not isinstance(store, RedisStore):
            raise ConfigurationError("the 'redis' broker needs the Redis store")
        return RedisBroker(
            store.client,
            environment,
            prefix=store.key_prefix,
            heartbeat_timeout=heartbeat,  # a worker's deliveries are recovered after this
            store=store,
        )
    if broker == "local":
        from runlane.backends.local import LocalBroker
        from runlane.backends.sqlite import SQLiteStore

        if not isinstance(store, SQLiteStore):
            raise ConfigurationError(
                "the 'local' broker needs the SQLite store; with a Redis store use broker='redis'"
            )
        return LocalBroker(store.path, environment)
    raise ConfigurationError(
        f"unknown broker {broker!r}: use 'local', 'redis' or a Broker instance"
    )


def _seconds(value: Any, option: str, least: float, most: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= least:
        raise InvalidOptionError(option, value, f"must be seconds >= {least:g}")
    if most is not None and value > most:
        raise InvalidOptionError(option, value, f"must be seconds <= {most:g}")
    return float(value)


def build_runtime(
    *,
    api_url: str | None = None,
    request_options: Mapping[str, Any] | None = None,
    store: str | Store | None = None,
    broker: str | Broker | None = None,
    environment: str | None = None,
    concurrency_limit: int | None = None,
    retries: Mapping[str, Any] | None = None,
    max_duration: Any = UNSET,
    machine: str | None = None,
    limits: Mapping[str, int] | None = None,
    secret_key: str | None = None,
    version: str | None = None,
    clock: Clock | None = None,
    metadata_flush_interval: float | None = None,
    engine_interval: float | None = None,
    wait_in_place: float | None = None,
    lease_timeout: float | None = None,
    store_retry_timeout: float | None = None,
    retention: Any = UNSET,
    alerts: Any = None,
    **hooks: Callable[..., Any],
) -> Runtime:
    """Build a runtime from these options (the ``RUNLANE_*`` environment fills in what is not
    given) without installing it: ``configure()`` installs one; an HTTP server builds one per
    environment it serves.

    ``api_url`` (or ``RUNLANE_API_URL``, unless a store or broker is given): remote mode, every
    call a request to the runlane server there, authenticated with ``secret_key``
    (``RUNLANE_SECRET_KEY``); ``request_options={"retry": {...}, "timeout": ...}`` tunes its
    requests. The other options are the server's and its workers' settings.

    ``alerts`` (or ``RUNLANE_ALERT_URL`` + ``RUNLANE_ALERT_SECRET``): signed webhooks sent when
    runs end, e.g. ``[{"url": "https://...", "secret": "...", "statuses": ["FAILED"]}]``
    (``runlane.contrib.alerts``; ``[]``: none)."""
    unknown = set(hooks) - set(HOOK_NAMES)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidOptionError(name, hooks[name], "unknown configure() option")
    if api_url is None and store is None and broker is None:
        api_url = os.environ.get("RUNLANE_API_URL") or None
    if api_url is not None:
        local_only = {
            "store": store,
            "broker": broker,
            "concurrency_limit": concurrency_limit,
            "retries": retries,
            "max_duration": None if max_duration is UNSET else max_duration,
            "machine": machine,
            "limits": limits,
            "version": version,
            "metadata_flush_interval": metadata_flush_interval,
            "engine_interval": engine_interval,
            "wait_in_place": wait_in_place,
            "lease_timeout": lease_timeout,
            "store_retry_timeout": store_retry_timeout,
            "retention": None if retention is UNSET else retention,
            "alerts": alerts,
            **hooks,
        }
        given = sorted(name for name, value in local_only.items() if value is not None)
        if given:
            raise ConfigurationError(
                f"configure(api_url=...) sends every call to a runlane server: {given[0]}= is a "
                "setting of that server and its workers, not of this process"
            )
        from runlane.sdk import remote_runtime

        return remote_runtime(
            api_url,
            secret_key or os.environ.get("RUNLANE_SECRET_KEY"),
            environment=environment or os.environ.get("RUNLANE_ENV") or None,
            clock=clock,
            request_options=request_options,
        )
    if request_options is not None:
        raise ConfigurationError(
            "request_options tunes the requests of remote mode: give api_url (RUNLANE_API_URL)"
        )
    env = environment or os.environ.get("RUNLANE_ENV") or "dev"
    if env not in ENVIRONMENTS:
        raise InvalidOptionError("environment", env, f"must be one of {ENVIRONMENTS}")
    settings = Settings(environment=env)
    settings.limits = settings.limits.with_overrides(dict(limits) if limits else None)
    if concurrency_limit is not None:
        settings.concurrency_limit = validate_positive_int(concurrency_limit, "concurrency_limit")
    if retries is not None:
        if not isinstance(retries, Mapping) or set(retries) - {"default", "enabled_in_dev"}:
            raise InvalidOptionError(
                "retries", retries, 'expected {"default": {...}, "enabled_in_dev": bool}'
            )
        settings.retry_default = parse_retry(retries.get("default"), option="retries.default")
        settings.retries_enabled_in_dev = bool(retries.get("enabled_in_dev", True))
    if max_duration is not UNSET:
        settings.max_duration = validate_max_duration(max_duration, "max_duration", settings.limits)
    if machine is not None:
        settings.machine = validate_machine(machine)
    for name, hook in hooks.items():
        if not callable(hook):
            raise InvalidOptionError(name, hook, "must be callable")
        settings.hooks[name] = hook
    if metadata_flush_interval is not None:
        settings.metadata_flush_interval = float(metadata_flush_interval)
    if engine_interval is not None:
        settings.engine_interval = float(engine_interval)
    if lease_timeout is not None:
        settings.lease_timeout = _seconds(lease_timeout, "lease_timeout", 1)
    if store_retry_timeout is not None:
        # at most a minute: a retried creation is recognised for two minutes (the Redis store)
        settings.store_retry_timeout = _seconds(store_retry_timeout, "store_retry_timeout", 0, 60)
    if retention is not UNSET:  # a duration ("30d"); None keeps finished runs forever
        settings.retention = None if retention is None else parse_duration(retention, "retention")
    if wait_in_place is not None:
        settings.wait_in_place = _seconds(wait_in_place, "wait_in_place", 0)
    if alerts is None:
        alerts = _alerts_from_env()
    sender = alert_sender() if alerts else None
    parsed_alerts = sender.parse(alerts) if sender is not None else ()
    settings.secret_key = secret_key or os.environ.get("RUNLANE_SECRET_KEY")
    deployed = version if version is not None else os.environ.get("RUNLANE_VERSION") or None
    if deployed is not None and (not isinstance(deployed, str) or not 1 <= len(deployed) <= 64):
        raise InvalidOptionError("version", deployed, "must be a string of 1-64 characters")
    settings.version = deployed
    store_url = (
        store if store is not None else os.environ.get("RUNLANE_STORE_URL", DEFAULT_STORE_URL)
    )
    built_store = _build_store(store_url, env, settings.concurrency_limit)
    built_store.retention = settings.retention
    broker_spec = (
        broker
        if broker is not None
        else os.environ.get("RUNLANE_BROKER", built_store.native_broker)
    )
    built_broker = _build_broker(broker_spec, built_store, env, settings.lease_timeout)
    settings.store_url = store_url if isinstance(store_url, str) else type(store_url).__name__
    settings.broker_name = (
        broker_spec if isinstance(broker_spec, str) else type(broker_spec).__name__
    )
    rt = Runtime(built_store, built_broker, settings, clock=clock)
    if sender is not None:
        sender.install(rt, parsed_alerts)
    return rt


@functools.wraps(build_runtime)
def configure(**options: Any) -> Runtime:
    rt = build_runtime(**options)
    old = runtime.install(rt)
    if old is not None:
        old.close()
    return rt


configure.__doc__ = (
    "Build and install the runtime. Calling it again replaces the previous configuration."
)


def _default_runtime() -> Runtime:
    runtime.install(None)
    return configure()


runtime.set_default_factory(_default_runtime)
