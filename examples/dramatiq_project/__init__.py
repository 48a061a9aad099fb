"""A Dramatiq project whose workers execute runlane runs.

    dramatiq examples.dramatiq_project                       # executes runlane runs too
    python -m examples.dramatiq_project.trigger              # triggers runs, prints them

``DRAMATIQ_BROKER_URL`` picks the broker: ``redis://...`` (the default,
``redis://127.0.0.1:6379/0``) or ``amqp://...`` (RabbitMQ; the default vhost is ``/%2F``).
``RUNLANE_STORE_URL`` picks runlane's store (default: ``.runlane/runlane.db``).
"""

from examples.dramatiq_project import tasks
from examples.dramatiq_project.broker import broker

__all__ = ["broker", "tasks"]
