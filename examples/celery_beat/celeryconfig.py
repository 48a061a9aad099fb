"""Celery settings of the example (``CELERY_CONFIG_MODULE`` names another module), with the
``beat_schedule`` a ``celery beat`` process used to fire, unchanged."""

import os
from datetime import timedelta

from celery.schedules import crontab

broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
accept_content = ["json"]
task_serializer = "json"
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True
timezone = "Europe/Paris"  # the zone crontab entries are read in

beat_schedule = {
    "expire-sessions": {  # every minute
        "task": "accounts.expire_sessions",
        "schedule": crontab(),
        "args": (30,),
        "kwargs": {"dry_run": False},
    },
    "send-digest": {  # 07:30 Paris time, Monday to Friday
        "task": "reports.send_digest",
        "schedule": crontab(hour=7, minute=30, day_of_week="mon-fri"),
        "kwargs": {"audience": "staff"},
        "options": {"expires": 3600},  # skipped if it starts more than an hour late
    },
    "refresh-rates": {  # every 15 minutes, at :00, :15, :30 and :45
        "task": "rates.refresh",
        "schedule": timedelta(minutes=15),
        "options": {"time_limit": 120},  # the run's max_duration
    },
    "rebuild-search-index": {  # a runlane task: one run of it a night, kwargs as its payload
        "task": "rebuild-search-index",
        "schedule": crontab(hour=3, minute=0),
        "kwargs": {"full": True},
    },
}
