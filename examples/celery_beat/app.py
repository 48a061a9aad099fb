"""The Celery app, runlane configured to send its runs through it, and the app's
``beat_schedule`` (in celeryconfig.py) imported as runlane schedules.

``RUNLANE_STORE_URL`` chooses the store (default: the SQLite file ``.runlane/runlane.db``; use
``redis://...`` for workers on several machines); ``RUNLANE_CELERY_QUEUE`` the base name of
runlane's Celery queues (default ``runlane``); ``CELERY_CONFIG_MODULE`` another settings module.
"""

import os

import celery

import runlane
from runlane.backends.celery import CeleryBroker, import_beat_schedule

app = celery.Celery("celery_beat")
app.config_from_object(os.environ.get("CELERY_CONFIG_MODULE", "examples.celery_beat.celeryconfig"))

runlane.configure(
    broker=CeleryBroker(app, queue=os.environ.get("RUNLANE_CELERY_QUEUE", "runlane")),
)

# Each beat_schedule entry becomes a runlane scheduled task (beat/<entry name>); the workers
# fire them. Stop running `celery beat` for this app: each tick would run twice.
beat_tasks = import_beat_schedule(app)
