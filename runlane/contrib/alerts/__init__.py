"""Alerts: a signed webhook when a run ends FAILED (or any final status you choose).

::

    runlane.configure(alerts=[{"url": "https://ops.example.com/hooks/runlane",
                               "secret": os.environ["ALERT_SECRET"]}])

    # the receiving side
    from runlane.contrib.alerts import verify
    event = verify(raw_body, request_headers, secret=os.environ["ALERT_SECRET"])
    event.type, event.run.id, event.run.error          # "run.failed", ...

Each alert is a run of the internal task ``runlane.alert`` (registered wherever alerts are
configured), keyed by (alert, run, status): retried with backoff by runlane itself,
deduplicated per run, never alerted on itself. Workers need the same ``alerts`` as the
processes that trigger: the URL and secret stay in each process's configuration, never in the
store. See docs/alerts.md.
"""

from runlane.contrib.alerts.delivery import TASK_ID, AlertDeliveryError
from runlane.contrib.alerts.events import (
    EVENT_ID,
    SIGNATURE,
    TIMESTAMP,
    AlertEvent,
    build_event,
    encode,
    event_id,
    signed_headers,
    verify,
)
from runlane.contrib.alerts.targets import DEFAULT_RETRY, DEFAULT_STATUSES, Alert, parse_alerts
from runlane.contrib.webhooks import WebhookVerificationError

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_STATUSES",
    "EVENT_ID",
    "SIGNATURE",
    "TASK_ID",
    "TIMESTAMP",
    "Alert",
    "AlertDeliveryError",
    "AlertEvent",
    "WebhookVerificationError",
    "build_event",
    "encode",
    "event_id",
    "parse_alerts",
    "signed_headers",
    "verify",
]
