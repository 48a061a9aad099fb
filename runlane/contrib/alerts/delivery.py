"""Delivery: each alert is a run of the internal task ``runlane.alert``, so it is durable,
retried with backoff by runlane's own retries (the alert's ``retry`` options; a ``Retry-After``
is honoured) and deduplicated by an idempotency key of (alert, run, status).

The alert run's payload holds the alert's name and the event, never its URL or secret: the
worker that executes it reads them from its own ``configure(alerts=...)``.
"""

from __future__ import annotations

import email.utils
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from runlane.contrib.alerts.events import encode, signed_headers
from runlane.contrib.alerts.targets import find
from runlane.core.options import parse_retry
from runlane.core.task import HOOK_NAMES, Task
from runlane.errors import AbortTaskRunError, RunlaneError

TASK_ID = "runlane.alert"
QUEUE = {"name": "runlane-alerts", "concurrency_limit": 10}
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "runlane-alerts/1"


class AlertDeliveryError(RunlaneError):
    """A delivery failed in a way worth retrying (a 5xx, 408, 429, a network error).
    ``retry_after``: seconds the receiver asked to wait, if it did."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def deliver(payload: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
    """The body of ``runlane.alert``: POST the event, signed now, to the alert's URL."""
    name = payload["alert"]
    alert = find(name)
    if alert is None:
        raise AbortTaskRunError(
            f"this worker has no alert named {name!r}: give every worker the same "
            "configure(alerts=...)"
        )
    event = payload["event"]
    body = encode(event)
    headers = signed_headers(body, event["id"], alert.secret.get_secret_value(), int(time.time()))
    headers["User-Agent"] = USER_AGENT
    try:
        with httpx.Client(timeout=alert.timeout, follow_redirects=False) as client:
            response = client.post(alert.url, content=body, headers=headers)
    except httpx.HTTPError as exc:  # the URL is not repeated: it may hold a token
        raise AlertDeliveryError(f"{alert.where}: {type(exc).__name__}") from None
    status = response.status_code
    if 200 <= status < 300:
        return {"alert": name, "event": event["id"], "status_code": status}
    message = f"{alert.where} answered {status}"
    if status in RETRYABLE:
        raise AlertDeliveryError(message, _retry_after(response.headers.get("retry-after")))
    raise AbortTaskRunError(f"{message}: not retried (only 408, 425, 429 and 5xx are)")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(payload: dict[str, Any], error: BaseException, ctx: Any, retry: Any) -> Any:
    """handle_error of ``runlane.alert``: the alert's own backoff, or the receiver's
    ``Retry-After`` (within the backoff's maximum)."""
    alert = find(payload.get("alert", ""))
    if alert is None or ctx.attempt.number >= retry.max_attempts:
        return None  # the default: no attempt left (or retries off in dev)
    options = parse_retry(alert.retry)
    after = getattr(error, "retry_after", None)
    if after is not None:
        wait = min(after, options.max_timeout_in_ms / 1000)
        return {"retry_at": datetime.now(timezone.utc) + timedelta(seconds=wait)}
    return {"retry": alert.retry}


HOOKS = {name: backoff if name == "handle_error" else None for name in HOOK_NAMES}
# registered by wiring.install in each process whose runtime has alerts (not at import)
TASK: Task[Any] = Task(deliver, id=TASK_ID, queue=QUEUE, max_duration=300, hooks=HOOKS)
