"""Discovered by runlane's app (the `tasks` module of an installed app)."""

import time

import runlane
from orders.models import Order


@runlane.task(id="orders.fulfil", retry={"max_attempts": 3})
def fulfil(payload):
    # the row exists: the run was created when the transaction that saved it committed
    order = Order.objects.get(pk=payload["order_id"])
    for step in range(1, order.quantity + 1):
        time.sleep(payload.get("step_seconds", 0.2))
        runlane.metadata.set("progress", step / order.quantity)
    order.status = "fulfilled"
    order.save(update_fields=["status"])
    return {"order": order.pk, "items": order.quantity}


@runlane.task(id="orders.stripe-event")
def stripe_event(event):
    """A verified Stripe delivery (``event``: its provider, id, type and payload)."""
    return {"event": event["type"], "object": event["payload"]["data"]["object"]["id"]}
