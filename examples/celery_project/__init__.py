"""A Celery project whose workers execute runlane runs.

    celery -A examples.celery_project worker --loglevel=INFO     # executes runlane runs too
    python -m examples.celery_project.trigger                      # triggers runs, prints them

Pools per machine preset: ``celery -A examples.celery_project worker -Q runlane.large-1x``
runs only ``machine="large-1x"`` runs; start the others with ``-Q celery,runlane``.
"""

from examples.celery_project import tasks
from examples.celery_project.app import app

__all__ = ["app", "tasks"]
