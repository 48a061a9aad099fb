"""Tasks of the example: an existing Celery task adopted with ``wrap()``, and runlane tasks
that wait on each other and ask for a larger machine."""

from __future__ import annotations

import os

import runlane
from examples.celery_project.app import app
from runlane.backends.celery import wrap


@app.task(name="emails.send_welcome")
def send_welcome(user_id: int, template: str = "welcome") -> dict:
    """An existing Celery task: ``send_welcome.delay(42)`` keeps working as before."""
    return {"sent_to": user_id, "template": template}


# The same function as a runlane task: its runs have ids, statuses, retries and idempotency.
# The payload is the dict of keyword arguments: send_welcome_run.trigger({"user_id": 42}).
send_welcome_run = wrap(send_welcome, id="send-welcome", retry={"max_attempts": 3})


@runlane.task(id="resize-image", machine="large-1x")
def resize_image(payload: dict, ctx: runlane.Context) -> dict:
    """Runs on the Celery queue ``runlane.large-1x``: give it a worker pool of its own."""
    return {
        "image": payload["image"],
        "size": payload.get("size", 256),
        "machine": ctx.machine.name if ctx.machine else None,
        "pid": os.getpid(),
    }


@runlane.task(id="onboard-user", queue={"name": "onboarding", "concurrency_limit": 2})
def onboard_user(payload: dict) -> dict:
    """Two at a time across every worker; waits on child runs without holding a worker."""
    runlane.metadata.set("step", "welcome email")
    email = send_welcome_run.trigger_and_wait({"user_id": payload["user_id"]}).unwrap()
    runlane.metadata.set("step", "avatar")
    avatar = resize_image.trigger_and_wait({"image": f"avatars/{payload['user_id']}.png"}).unwrap()
    runlane.metadata.set("step", "done")
    return {"user_id": payload["user_id"], "email": email, "avatar": avatar, "pid": os.getpid()}
