"""Celery as runlane's transport: ``configure(store=..., broker=CeleryBroker(app))`` and
``celery -A proj worker`` executes runlane runs; ``wrap(celery_task)`` adopts an existing task.
"""

from runlane.backends.celery.broker import TASK_NAME, CeleryBroker
from runlane.backends.celery.wrap import wrap

__all__ = ["TASK_NAME", "CeleryBroker", "wrap"]
