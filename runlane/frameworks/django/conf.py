"""The ``RUNLANE`` settings dict: its keys, their defaults, validation, and (re)configuring
runlane from it.

Most keys are ``runlane.configure()``'s options in upper case (``STORE_URL`` is ``store``);
a key left out falls back to the ``RUNLANE_*`` environment, then runlane's default. The rest
belong to the Django app (``AUTODISCOVER``, ``TASK_MODULES``, ``ON_COMMIT``,
``CLOSE_DB_CONNECTIONS``). Like DRF's ``api_settings``, the dict is read again whenever the
``RUNLANE`` setting changes (``override_settings``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# RUNLANE key → the configure() option it sets
CONFIGURE_KEYS: dict[str, str] = {
    "STORE_URL": "store",
    "BROKER": "broker",
    "ENVIRONMENT": "environment",
    "SECRET_KEY": "secret_key",
    "API_URL": "api_url",
    "CONCURRENCY_LIMIT": "concurrency_limit",
    "RETRIES": "retries",
    "MAX_DURATION": "max_duration",
    "MACHINE": "machine",
    "LIMITS": "limits",
    "VERSION": "version",
    "RETENTION": "retention",
    "LEASE_TIMEOUT": "lease_timeout",
    "ENGINE_INTERVAL": "engine_interval",
    "WAIT_IN_PLACE": "wait_in_place",
    "STORE_RETRY_TIMEOUT": "store_retry_timeout",
    "METADATA_FLUSH_INTERVAL": "metadata_flush_interval",
    "ALERTS": "alerts",  # [{"url": ..., "secret": ...}]: runlane.contrib.alerts
}

# the Django app's own keys and their defaults
APP_DEFAULTS: dict[str, Any] = {
    "AUTODISCOVER": True,  # import the `tasks` module of every installed app
    "TASK_MODULES": (),  # more modules to import (dotted names)
    "ON_COMMIT": True,  # triggers inside transaction.atomic() are created on commit
    "CLOSE_DB_CONNECTIONS": True,  # close_old_connections() around each run
}
_APP_TYPES: dict[str, tuple[type, ...]] = {
    "AUTODISCOVER": (bool,),
    "TASK_MODULES": (list, tuple),
    "ON_COMMIT": (bool,),
    "CLOSE_DB_CONNECTIONS": (bool,),
}
KEYS = (*CONFIGURE_KEYS, *APP_DEFAULTS)


@dataclass(frozen=True)
class Problem:
    """A bad setting: the key it is about (None: the dict itself), what is wrong, a hint."""

    id: str
    key: str | None
    message: str
    hint: str | None = None


@dataclass
class State:
    """The settings as last loaded, and what was wrong with them."""

    values: dict[str, Any] = field(default_factory=lambda: dict(APP_DEFAULTS))
    problems: list[Problem] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


state = State()


def raw() -> Any:
    from django.conf import settings

    return getattr(settings, "RUNLANE", {})


def validate(value: Any) -> list[Problem]:
    """The problems that can be seen without building anything."""
    if not isinstance(value, Mapping):
        return [
            Problem(
                "runlane.E001",
                None,
                f"settings.RUNLANE must be a dict, not {type(value).__name__}",
                'RUNLANE = {"STORE_URL": "redis://localhost:6379/0"}',
            )
        ]
    problems = []
    for key in value:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            problems.append(
                Problem(
                    "runlane.E002",
                    str(key),
                    f"settings.RUNLANE[{key!r}] is not a runlane setting",
                    f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(KEYS)}",
                )
            )
    for key, types in _APP_TYPES.items():
        if key in value and not isinstance(value[key], types):
            wanted = " or ".join(t.__name__ for t in types)
            problems.append(
                Problem(
                    "runlane.E003",
                    key,
                    f"settings.RUNLANE[{key!r}] must be a {wanted}, not {value[key]!r}",
                )
            )
    modules = value.get("TASK_MODULES")
    if isinstance(modules, (list, tuple)) and not all(isinstance(m, str) for m in modules):
        problems.append(
            Problem("runlane.E003", "TASK_MODULES", "RUNLANE['TASK_MODULES'] lists dotted names")
        )
    return problems


def configure_options(value: Mapping[str, Any]) -> dict[str, Any]:
    return {CONFIGURE_KEYS[k]: v for k, v in value.items() if k in CONFIGURE_KEYS}


def key_of(exc: Exception, given: Mapping[str, Any]) -> str | None:
    """The RUNLANE key a configure() error is about."""
    option = getattr(exc, "option", None)
    if isinstance(option, str):
        head = option.split(".")[0].split("[")[0]
        for key, name in CONFIGURE_KEYS.items():
            if name == head:
                return key
    text = str(exc).lower()
    for key, name in CONFIGURE_KEYS.items():  # a ConfigurationError names the option in words
        if key in given and (f"{name} " in text or f"{name}=" in text or f"{name}:" in text):
            return key
    return None


def load() -> None:
    """Read ``settings.RUNLANE`` and configure runlane from it. A bad value configures
    nothing: every use of runlane then raises ``ImproperlyConfigured`` naming it, and the
    system checks (``manage.py check``, ``runserver``) report it."""
    import runlane
    from runlane.core import runtime
    from runlane.errors import RunlaneError
    from runlane.frameworks.django import apps, connections

    value = raw()
    problems = validate(value)
    values = dict(APP_DEFAULTS)
    if not problems:
        values.update({k: v for k, v in value.items() if k in APP_DEFAULTS})
        try:
            runlane.configure(**configure_options(value))
            connections.install()
        except (RunlaneError, ValueError, TypeError) as exc:
            key = key_of(exc, value)
            where = f"settings.RUNLANE[{key!r}]" if key else "settings.RUNLANE"
            problems.append(Problem("runlane.E004", key, f"{where}: {exc}"))
    state.values, state.problems = values, problems
    if problems:
        old = runtime.install(None)
        if old is not None:
            old.close()
        runtime.set_default_factory(apps.refuse)
    else:
        apps.restore_default_factory()
