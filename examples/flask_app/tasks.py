"""The example's task: a report built in steps, its progress in the run's metadata.

It runs inside the Flask app's context (the extension's middleware pushes it), so it reads
the app's config through ``current_app`` as a view would.
"""

import time

from flask import current_app

import runlane


@runlane.task(id="build-report", retry={"max_attempts": 2})
def build_report(payload: dict) -> dict:
    steps = current_app.config["REPORT_STEPS"]
    for step in range(1, steps + 1):
        time.sleep(current_app.config["REPORT_STEP_SECONDS"])  # the work of one step
        runlane.metadata.set("progress", step / steps)
        runlane.metadata.set("step", f"section {step} of {steps}")
    return {
        "title": f"{current_app.config['REPORT_TITLE']}: {payload['subject']}",
        "sections": steps,
        "app": current_app.name,
    }


@runlane.task(id="handle-billing-event")
def handle_billing_event(event: dict) -> dict:
    """Triggered by the webhook endpoint (a Standard Webhooks delivery, signature checked)."""
    return {"handled": event["type"], "shop": current_app.config["REPORT_TITLE"]}
