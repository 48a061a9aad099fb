"""A verified delivery (``WebhookEvent``) and the error of a delivery that does not verify."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runlane.errors import RunlaneError

# reason -> the HTTP status a receiver answers with
REASONS: dict[str, int] = {
    "missing_header": 400,  # a header the scheme needs is absent (or empty)
    "malformed_header": 400,  # a header is there but does not parse
    "malformed_payload": 400,  # the signature is good but the body is not the expected JSON/form
    "bad_signature": 401,  # no signature matches any of the secrets
    "stale_timestamp": 401,  # signed longer ago than the tolerance (a replay, or a slow clock)
    "future_timestamp": 401,  # signed further ahead than the tolerance
    "body_too_large": 413,  # over max_body: refused before anything is computed
}


class WebhookVerificationError(RunlaneError):
    """A webhook did not verify. ``reason`` is one of ``REASONS`` (stable: branch on it),
    ``status`` the HTTP answer a receiver gives (400, 401 or 413), ``provider`` the scheme,
    ``header`` the header at fault, when one is."""

    def __init__(
        self, reason: str, message: str, *, provider: str, header: str | None = None
    ) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{provider} webhook: {message}")
        self.reason = reason
        self.provider = provider
        self.header = header
        self.status = REASONS[reason]


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery. ``id``: the provider's event or delivery id (the same on every
    redelivery); ``type``: the event type (``"invoice.paid"``, GitHub's ``X-GitHub-Event``,
    ...); ``payload``: the parsed body; ``timestamp``: when the provider signed it (schemes
    that sign a time); ``received_at``: when it was verified; ``headers``: lower-case names."""

    provider: str
    id: str
    type: str
    payload: Any
    received_at: datetime
    timestamp: datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def as_payload(self) -> dict[str, Any]:
        """What ``trigger_from`` gives the task by default."""
        return {
            "provider": self.provider,
            "id": self.id,
            "type": self.type,
            "payload": self.payload,
        }
