"""An alert on the wire: the event (JSON), its signature headers, and ``verify`` for receivers.

The body is the event, compact JSON::

    {"id": "evt_...", "type": "run.failed", "created_at": "...", "environment": "prod",
     "run": {"id": "run_...", "task_identifier": "...", "status": "FAILED", "error": {...}, ...}}

signed like Stripe's webhooks: ``X-Runlane-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` keyed by the alert's secret, with ``X-Runlane-Event-Id`` and
``X-Runlane-Timestamp``. The run is as it ended, without its payload, output and attempts
(read them with ``runs.retrieve``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from runlane.contrib.webhooks import (
    DEFAULT_MAX_BODY,
    DEFAULT_TOLERANCE,
    WebhookVerificationError,
)
from runlane.contrib.webhooks import verify as verify_webhook
from runlane.core.clock import to_datetime
from runlane.core.models import Run, RunStatus

SIGNATURE = "X-Runlane-Signature"
EVENT_ID = "X-Runlane-Event-Id"
TIMESTAMP = "X-Runlane-Timestamp"
MAX_STACK_TRACE = 16 * 1024  # characters of an error's stack trace an alert carries
_LEFT_OUT = {"payload", "output", "attempts"}


class AlertEvent(BaseModel):
    """A verified alert. ``id`` is the same on every delivery of it (deduplicate on it);
    ``type`` is ``"run."`` + the status in lower case (``"run.failed"``); ``run`` the
    :class:`Run` as it ended (``payload``, ``output`` and ``attempts`` left out);
    ``timestamp`` when this delivery was signed."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    created_at: datetime
    environment: str
    run: Run
    timestamp: datetime | None = None

    @property
    def status(self) -> RunStatus:
        return self.run.status


def event_id(environment: str, run_id: str, status: RunStatus) -> str:
    """The same for every report of a run ending with ``status``: receivers deduplicate on it."""
    digest = hashlib.sha256(f"{environment}:{run_id}:{status.value}".encode()).hexdigest()
    return f"evt_{digest[:26]}"


def build_event(run: Run, now: float) -> dict[str, Any]:
    """The event (JSON-ready) of ``run``'s end."""
    data = run.model_dump(mode="json", exclude=_LEFT_OUT)
    error = data.get("error")
    if error and error.get("stack_trace") and len(error["stack_trace"]) > MAX_STACK_TRACE:
        error["stack_trace"] = error["stack_trace"][-MAX_STACK_TRACE:]
    return {
        "id": event_id(run.environment, run.id, run.status),
        "type": f"run.{run.status.value.lower()}",
        "created_at": to_datetime(now).isoformat(),
        "environment": run.environment,
        "run": data,
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def signature(body: bytes, secret: str | bytes, timestamp: int) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, event: str, secret: str | bytes, timestamp: int) -> dict[str, str]:
    """The headers of one delivery of ``body`` (the event ``event``), signed now."""
    return {
        "Content-Type": "application/json",
        SIGNATURE: f"t={timestamp},v1={signature(body, secret, timestamp)}",
        EVENT_ID: event,
        TIMESTAMP: str(timestamp),
    }


def verify(
    body: bytes,
    headers: Any,
    secret: str | bytes | Sequence[str | bytes],
    *,
    tolerance: float | None = DEFAULT_TOLERANCE,
    now: float | datetime | None = None,
    max_body: int | None = DEFAULT_MAX_BODY,
) -> AlertEvent:
    """Verify one alert delivery and return its event, or raise ``WebhookVerificationError``
    (``reason``: ``bad_signature``, ``stale_timestamp``, ``missing_header``, ...).

    ``body``: the raw bytes received; ``headers``: any mapping or pairs, any case; ``secret``:
    the alert's secret, or a list (any may match: rotation); ``tolerance``: seconds the signed
    time may be off ``now`` (replay protection; None: unchecked); ``max_body``: bytes."""
    event = verify_webhook(
        "runlane",
        body=body,
        headers=headers,
        secret=secret,
        tolerance=tolerance,
        now=now,
        max_body=max_body,
    )
    try:
        return AlertEvent.model_validate({**event.payload, "timestamp": event.timestamp})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise WebhookVerificationError(
            "malformed_payload",
            f"the body is not a runlane alert ({where}: {first['msg']})",
            provider="runlane",
        ) from None
