"""The FastAPI example's task: a report built in steps, its progress in the run's metadata."""

from __future__ import annotations

import time

import runlane


@runlane.task(id="build-report", retry={"max_attempts": 2})
def build_report(payload: dict, ctx: runlane.Context) -> dict:
    steps = int(payload.get("steps", 5))
    for step in range(1, steps + 1):
        time.sleep(float(payload.get("step_seconds", 0.3)))  # the work of one step
        runlane.metadata.set("progress", step / steps)
        runlane.metadata.set("step", f"section {step} of {steps}")
    runlane.logger.info("report built", title=payload["title"], pages=steps)
    return {"title": payload["title"], "pages": steps}


@runlane.task(id="handle-github-event")
def handle_github_event(event: dict) -> dict:
    """Triggered by a verified GitHub delivery: ``event`` is its provider, id, type and payload."""
    return {
        "event": event["type"],
        "repository": event["payload"].get("repository", {}).get("name"),
    }
