"""Celery as runlane's transport: ``configure(store=..., broker=CeleryBroker(app))`` and
``celery -A proj worker`` executes runlane runs; ``wrap(celery_task)`` adopts an existing task;
``import_beat_schedule(app)`` fires the app's ``beat_schedule`` without ``celery beat``.
"""

from runlane.backends.celery.beat import import_beat_schedule
from runlane.backends.celery.broker import TASK_NAME, CeleryBroker
from runlane.backends.celery.wrap import wrap

__all__ = ["TASK_NAME", "CeleryBroker", "import_beat_schedule", "wrap"]
