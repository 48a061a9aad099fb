"""The Dramatiq broker (also Dramatiq's global broker, for ``dramatiq proj``) and runlane
configured to send its runs through it."""

import os

import dramatiq

import runlane
from runlane.backends.dramatiq import DramatiqBroker

URL = os.environ.get("DRAMATIQ_BROKER_URL", "redis://127.0.0.1:6379/0")

if URL.startswith("amqp"):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker: dramatiq.Broker = RabbitmqBroker(url=URL)
else:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=URL, namespace=os.environ.get("DRAMATIQ_NAMESPACE", "dramatiq"))
dramatiq.set_broker(broker)

runlane.configure(
    broker=DramatiqBroker(broker, queue=os.environ.get("RUNLANE_DRAMATIQ_QUEUE", "runlane")),
)
