"""Tasks of the example: existing Celery tasks, unchanged, and one runlane task; the
beat_schedule names them all."""

from __future__ import annotations

import os

import runlane
from examples.celery_beat.app import app


@app.task(name="accounts.expire_sessions")
def expire_sessions(older_than_days: int, dry_run: bool = True) -> dict:
    """An existing Celery task: runlane calls it at every tick of its entry, with the entry's
    args and kwargs; what it returns is the run's output."""
    return {"older_than_days": older_than_days, "dry_run": dry_run, "pid": os.getpid()}


@app.task(name="reports.send_digest")
def send_digest(audience: str) -> dict:
    return {"sent_to": audience}


@app.task(name="rates.refresh")
def refresh_rates() -> dict:
    return {"refreshed": True}


@runlane.task(id="rebuild-search-index", retry={"max_attempts": 2})
def rebuild_search_index(payload: dict) -> dict:
    """A runlane task named by an entry: each tick triggers one run of it."""
    return {"rebuilt": True, "full": payload.get("full", False)}
