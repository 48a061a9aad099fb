"""Where alerts go: :class:`Alert` (a URL, its secret, the statuses and tasks it hears), and
``parse_alerts`` that turns ``configure(alerts=...)`` into them or names what is wrong."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from runlane.core import current
from runlane.core.models import FAILED_STATUSES, FINAL_STATUSES, RunStatus
from runlane.core.options import parse_retry, validate_task_id
from runlane.errors import InvalidOptionError

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime

# every way a run that started can fail; EXPIRED (never started within its TTL) is opt-in
DEFAULT_STATUSES = frozenset(FAILED_STATUSES - {RunStatus.EXPIRED})
# about 1 s, 2 s, 4 s, ... 5 min apart: 10 attempts span about 15 minutes
DEFAULT_RETRY: Mapping[str, Any] = {
    "max_attempts": 10,
    "factor": 2,
    "min_timeout_in_ms": 1000,
    "max_timeout_in_ms": 300_000,
    "randomize": True,
}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class Alert(BaseModel):
    """One alert target: runs of ``tasks`` (None: every task) that end in one of ``statuses``
    are POSTed to ``url``, signed with ``secret``. ``name`` identifies the target in the alert
    runs (which never hold the URL or the secret: the worker that sends reads them from its own
    configuration); by default it is derived from the URL. ``retry``: the delivery's retry
    options (``DEFAULT_RETRY``); ``timeout``: seconds per request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    secret: SecretStr
    statuses: frozenset[RunStatus] = DEFAULT_STATUSES
    tasks: frozenset[str] | None = None
    name: str = ""
    retry: Mapping[str, Any] = Field(default_factory=lambda: dict(DEFAULT_RETRY))
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. secrets.token_urlsafe(32))")
        return value

    @field_validator("statuses", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (Sequence, frozenset, set)) or not value:
            raise ValueError("must be a non-empty list of final run statuses")
        final = sorted(s.value for s in FINAL_STATUSES)
        statuses = set()
        for status in value:
            text = str(getattr(status, "value", status)).upper()
            if text not in final:
                raise ValueError(
                    f"{status!r} is not a final run status: alerts are sent when a run ends "
                    f"({', '.join(final)})"
                )
            statuses.add(RunStatus(text))
        return frozenset(statuses)

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, (Sequence, frozenset, set)):
            raise ValueError("must be a list of task ids (or None for every task)")
        return frozenset(validate_task_id(t, "tasks") for t in value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and (len(value) > 64 or not set(value) <= _NAME_CHARS):
            raise ValueError("must be 1-64 letters, digits and - _ .")
        return value

    @field_validator("retry", mode="before")
    @classmethod
    def _retry(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            value = {**DEFAULT_RETRY, **value}
        try:
            parse_retry(value, option="retry")
        except InvalidOptionError as exc:
            raise ValueError(f"{exc.option} {exc.reason}") from None
        return value

    def model_post_init(self, context: Any) -> None:
        if not self.name:  # the same URL names the same target in every process
            digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
            object.__setattr__(self, "name", f"{urlsplit(self.url).hostname}-{digest}"[-64:])

    def hears(self, task_id: str, status: RunStatus) -> bool:
        return status in self.statuses and (self.tasks is None or task_id in self.tasks)

    @property
    def where(self) -> str:
        """The URL's scheme and host only, for messages and logs (a URL may hold a token)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def parse_alerts(value: Any, option: str = "alerts") -> tuple[Alert, ...]:
    """``configure(alerts=...)``: an Alert, a dict of its fields, or a list of them (names
    unique) -> Alerts; else InvalidOptionError naming the entry and field (never the secret)."""
    if isinstance(value, (Alert, Mapping)):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidOptionError(
            option, _masked(value), 'expected a list of {"url": ..., "secret": ...} or Alert'
        )
    alerts: list[Alert] = []
    for i, item in enumerate(value):
        where = f"{option}[{i}]"
        if isinstance(item, Alert):
            alerts.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InvalidOptionError(
                where, _masked(item), 'expected {"url": ..., "secret": ...} or an Alert'
            )
        unknown = sorted(set(item) - set(Alert.model_fields))
        if unknown:
            known = ", ".join(Alert.model_fields)
            raise InvalidOptionError(
                f"{where}.{unknown[0]}", item[unknown[0]], f"not an alert option ({known})"
            )
        missing = [key for key in ("url", "secret") if not item.get(key)]
        if missing:
            raise InvalidOptionError(where, _masked(item), f"{missing[0]} is required")
        try:
            alerts.append(Alert.model_validate(dict(item)))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            head = str(error["loc"][0]) if error["loc"] else ""
            given = "***" if head == "secret" else item.get(head, _masked(item))
            reason = str(error["msg"]).removeprefix("Value error, ")
            raise InvalidOptionError(f"{where}.{field}", given, reason) from None
    names = [alert.name for alert in alerts]
    for name in names:
        if names.count(name) > 1:
            raise InvalidOptionError(
                option, name, "two alerts have this name (the same URL?): give each a name"
            )
    return tuple(alerts)


def _masked(value: Any) -> Any:
    """``value`` with any secret replaced, for an error message."""
    if isinstance(value, Mapping):
        return {k: "***" if k == "secret" else v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


# the alerts each runtime of this process was configured with (``configure()`` installs one;
# ``runlane serve`` builds one per environment it serves)
_configured: weakref.WeakKeyDictionary[Runtime, tuple[Alert, ...]] = weakref.WeakKeyDictionary()


def set_alerts(rt: Runtime, alerts: tuple[Alert, ...]) -> None:
    if alerts:
        _configured[rt] = alerts
    else:
        _configured.pop(rt, None)


def alerts_of(rt: Runtime) -> tuple[Alert, ...]:
    """The alerts ``rt`` was configured with."""
    return _configured.get(rt, ())


def any_alerts() -> bool:
    """Whether an open runtime of this process has alerts."""
    return any(not rt.closed for rt in list(_configured))


def runtimes_for(environment: str) -> list[tuple[Runtime, tuple[Alert, ...]]]:
    """The open runtimes of ``environment`` that have alerts, the installed one first."""
    installed = current.peek()
    found = [
        (rt, alerts)
        for rt, alerts in list(_configured.items())
        if not rt.closed and rt.environment == environment
    ]
    found.sort(key=lambda pair: pair[0] is not installed)
    return found


def find(name: str) -> Alert | None:
    """The alert called ``name`` in this process's configuration (the installed runtime's
    first)."""
    installed = current.peek()
    pairs = [(installed, _configured.get(installed, ()))] if installed is not None else []
    pairs += [(rt, alerts) for rt, alerts in list(_configured.items()) if rt is not installed]
    for rt, alerts in pairs:
        if rt is not None and not rt.closed:
            for alert in alerts:
                if alert.name == name:
                    return alert
    return None
