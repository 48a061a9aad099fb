"""Celery settings of the example project (``CELERY_CONFIG_MODULE`` names another module).

runlane needs nothing special from Celery: its task sends JSON, acks late and never uses ETA.
``worker_prefetch_multiplier = 1`` is Celery's advice for late-acked tasks, so a worker does not
hold runs another worker could start now.
"""

import os

broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
result_backend = os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/0")
accept_content = ["json"]
task_serializer = "json"
result_serializer = "json"
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True
