"""From a verified event to a run: ``trigger_from``, keyed by the provider's event id."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runlane.contrib.webhooks.events import WebhookEvent
from runlane.core import runtime as current
from runlane.core.aio import aio
from runlane.core.handles import RunHandle
from runlane.core.idempotency import IdempotencyKey, create

if TYPE_CHECKING:
    from runlane.core.runtime import Runtime


def idempotency_key(event: WebhookEvent) -> IdempotencyKey:
    """The key of an event's run: the provider and its event id, global scope (the same key
    inside and outside a run), so every redelivery of the event finds the first run."""
    return create(["webhook", event.provider, event.id], scope="global")


def trigger_from(
    event: WebhookEvent,
    task: Any,
    *,
    payload: Any = None,
    runtime: Runtime | None = None,
    **options: Any,
) -> RunHandle:
    """Trigger ``task`` (an id, or a Task) for a verified event. The run's payload is
    ``event.as_payload()`` (``{"provider", "id", "type", "payload"}``), or ``payload``: a value,
    or a function of the event. ``options``: trigger options; ``idempotency_key`` defaults to
    the event's (``idempotency_key(event)``), so a redelivery returns the first run with
    ``is_cached`` true. ``runtime``: the current one unless given."""
    if not isinstance(event, WebhookEvent):
        raise TypeError(f"trigger_from takes a WebhookEvent (from verify()), not {event!r}")
    task_id = task if isinstance(task, str) else getattr(task, "id", task)
    if callable(payload):
        data = payload(event)
    elif payload is None:
        data = event.as_payload()
    else:
        data = payload
    if options.get("idempotency_key") is None:
        options["idempotency_key"] = idempotency_key(event)
    rt = runtime if runtime is not None else current.get()
    return rt.engine.trigger(task_id, data, options)


aio_trigger_from: Callable[..., Any] = aio(trigger_from)
