"""A Celery project whose ``beat_schedule`` runlane fires: no ``celery beat`` process.

    celery -A examples.celery_beat worker --loglevel=INFO     # the workers, and the schedule

Every worker process runs runlane's engine loop; one at a time holds its lease and fires each
due tick exactly once, so losing a worker (or the machine it ran on) loses no tick.
"""

from examples.celery_beat import tasks
from examples.celery_beat.app import app, beat_tasks

__all__ = ["app", "beat_tasks", "tasks"]
