"""A sign-up flow: a welcome email now, tips a day later. Tested in ``test_tasks.py``."""

from __future__ import annotations

import os

import httpx

import runlane

EMAIL_API_URL = os.environ.get("EMAIL_API_URL", "https://email.example.com/v1/send")


def deliver(to: str, template: str) -> None:
    """Hand one email to the email provider (the tests replace this function)."""
    response = httpx.post(EMAIL_API_URL, json={"to": to, "template": template}, timeout=10)
    response.raise_for_status()


@runlane.task(
    id="send-email",
    retry={"max_attempts": 3, "factor": 2, "min_timeout_in_ms": 1000, "randomize": False},
)
def send_email(payload: dict) -> dict:
    deliver(payload["to"], payload["template"])
    return {"sent": payload["template"]}


@runlane.task(id="onboard-user")
def onboard_user(payload: dict) -> dict:
    email = payload["email"]
    send_email.trigger_and_wait({"to": email, "template": "welcome"}).unwrap()
    runlane.wait.for_(days=1)
    tips = send_email.trigger_and_wait({"to": email, "template": "first-tips"})
    return {"tips_sent": tips.ok}
