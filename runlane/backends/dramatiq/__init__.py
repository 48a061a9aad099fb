"""Dramatiq as runlane's transport: ``configure(store=..., broker=DramatiqBroker(broker))`` and
``dramatiq proj`` executes runlane runs."""

from runlane.backends.dramatiq.broker import ACTOR_NAME, DramatiqBroker
from runlane.backends.dramatiq.middleware import RunlaneMiddleware

__all__ = ["ACTOR_NAME", "DramatiqBroker", "RunlaneMiddleware"]
