"""Webhook receivers: verify a provider's signature, then trigger a task, once per event.

::

    from runlane.contrib.webhooks import verify, trigger_from, receive

    event = verify("stripe", body=raw_bytes, headers=request_headers, secret="whsec_...")
    handle = trigger_from(event, task="handle-stripe-event")   # a redelivery: the same run

    receiver = receive("stripe", secret="whsec_...", task="handle-stripe-event")
    app.add_url_rule("/webhooks/stripe", view_func=receiver.flask_view())        # Flask
    path("webhooks/stripe", receiver.django_view())                              # Django
    app.add_api_route("/webhooks/stripe", receiver.fastapi_endpoint(), methods=["POST"])

Schemes (``schemes.py``): "stripe", "github", "standard" (Standard Webhooks / Svix), "slack",
"runlane" (runlane's own alerts), "hmac" (configurable). Every comparison is constant time;
bodies over ``max_body`` (1 MiB by default) are refused before any work; signed timestamps
must be within ``tolerance`` (300 s) of now. Importing this package imports no web
framework. See docs/webhooks.md.
"""

from runlane.contrib.webhooks.events import REASONS, WebhookEvent, WebhookVerificationError
from runlane.contrib.webhooks.receiver import Receiver, receive
from runlane.contrib.webhooks.schemes import (
    DEFAULT_MAX_BODY,
    DEFAULT_TOLERANCE,
    SCHEMES,
    GitHub,
    Hmac,
    Runlane,
    Scheme,
    Slack,
    StandardWebhooks,
    Stripe,
    verify,
)
from runlane.contrib.webhooks.triggering import aio_trigger_from, idempotency_key, trigger_from

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_TOLERANCE",
    "REASONS",
    "SCHEMES",
    "GitHub",
    "Hmac",
    "Receiver",
    "Runlane",
    "Scheme",
    "Slack",
    "StandardWebhooks",
    "Stripe",
    "WebhookEvent",
    "WebhookVerificationError",
    "aio_trigger_from",
    "idempotency_key",
    "receive",
    "trigger_from",
    "verify",
]
