"""The Celery app, and runlane configured to send its runs through it.

``RUNLANE_STORE_URL`` chooses the store (default: the SQLite file ``.runlane/runlane.db``; use
``redis://...`` for workers on several machines); ``RUNLANE_CELERY_QUEUE`` the base name of
runlane's Celery queues (default ``runlane``).
"""

import os

import celery

import runlane
from runlane.backends.celery import CeleryBroker

app = celery.Celery("celery_project")
app.config_from_object(
    os.environ.get("CELERY_CONFIG_MODULE", "examples.celery_project.celeryconfig")
)

runlane.configure(
    broker=CeleryBroker(app, queue=os.environ.get("RUNLANE_CELERY_QUEUE", "runlane")),
)
