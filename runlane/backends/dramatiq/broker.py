"""``DramatiqBroker(broker)``: Dramatiq carries "execute run X" to ``dramatiq proj`` workers.

``configure(store=..., broker=DramatiqBroker(broker))`` declares one actor, ``runlane_execute``,
on your Dramatiq broker (Redis or RabbitMQ), its queues (see
:mod:`runlane.backends._routing`), and :class:`~runlane.backends.dramatiq.middleware.
RunlaneMiddleware`, which hosts runlane in each worker process. Messages are JSON (Dramatiq's
default encoder; a pickle encoder is refused) and never delayed: delays, retries and concurrency
stay in runlane's store. The actor has no Dramatiq retries and no Dramatiq time limit: runlane
owns both.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import uuid4

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.encoder import JSONEncoder

from runlane.backends._hosting import sender_environment
from runlane.backends._pushing import RedisServer, server_of_client
from runlane.backends._routing import Routes
from runlane.core.types import Dispatch
from runlane.errors import ConfigurationError, InvalidOptionError

ACTOR_NAME = "runlane_execute"


def check_encoder() -> None:
    encoder = dramatiq.get_encoder()
    if not isinstance(encoder, JSONEncoder):
        raise ConfigurationError(
            f"Dramatiq's message encoder is {type(encoder).__name__}; runlane sends JSON only "
            "(dramatiq.set_encoder(dramatiq.JSONEncoder()), Dramatiq's default)"
        )


class DramatiqBroker:
    """Runs dispatched as messages of one actor declared on ``broker``.

    - ``queue``: the Dramatiq queue of runs that name no machine (default ``"runlane"``).
    - ``machines``: machine presets with a queue of their own, ``<queue>.<machine>``
      (default: every preset; ``[]`` sends every run to ``queue``).
    - ``routes``: ``{"runlane queue": "dramatiq queue"}`` for runs of those runlane queues.

    ``dramatiq proj`` consumes all of them; ``dramatiq proj -Q runlane.large-1x`` runs a
    pool for one preset.
    """

    def __init__(
        self,
        broker: dramatiq.Broker,
        *,
        queue: str = "runlane",
        machines: Collection[str] | None = None,
        routes: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(broker, dramatiq.Broker):
            raise InvalidOptionError("broker", broker, "expected a dramatiq.Broker")
        check_encoder()
        from runlane.backends.dramatiq.middleware import RunlaneMiddleware, execute

        self.broker = broker
        self.routing = Routes(queue, machines=machines, routes=routes)
        options: dict[str, Any] = {}
        if "max_retries" in broker.actor_options:
            options["max_retries"] = 0  # runlane retries, as new attempts
        if "time_limit" in broker.actor_options:
            options["time_limit"] = float("inf")  # runlane's max_duration applies
        self.actor = dramatiq.actor(
            actor_name=ACTOR_NAME, queue_name=self.routing.queue, broker=broker, **options
        )(execute)
        for name in self.routing.names:
            broker.declare_queue(name)
        if not any(isinstance(m, RunlaneMiddleware) for m in broker.middleware):
            broker.add_middleware(RunlaneMiddleware())

    @property
    def queues(self) -> list[str]:
        """The Dramatiq queues runs may be sent to."""
        return self.routing.names

    def send(self, dispatches: Sequence[Dispatch]) -> None:
        environment = sender_environment(self)
        for d in dispatches:
            message = self.actor.message(
                d.run_id, d.task_identifier, d.queue, d.machine, environment
            )
            queue = self.routing.route(d)
            if queue != message.queue_name:
                message = message.copy(queue_name=queue)
            self.broker.enqueue(message)

    # ---------------------------------------------------------------- pushed messages
    def redis_server(self) -> RedisServer | None:
        """The Redis server of a Dramatiq ``RedisBroker``, whose messages a Redis store on
        it may write itself (:class:`~runlane.core.types.Push`)."""
        if type(self.broker).__module__ != "dramatiq.brokers.redis":
            return None
        return server_of_client(getattr(self.broker, "client", None))

    def push_commands(self, dispatches: Sequence[Dispatch]) -> list[list[list[str]] | None]:
        """Each run's message as ``RedisBroker.enqueue`` writes it (into the queue's
        messages hash, its id onto the queue's list). None (sent with ``enqueue``) while a
        middleware of the broker has ``before_enqueue``/``after_enqueue`` hooks: those see
        every message enqueued, exactly once, as with any other actor."""
        if any(
            type(m).before_enqueue is not dramatiq.Middleware.before_enqueue
            or type(m).after_enqueue is not dramatiq.Middleware.after_enqueue
            for m in self.broker.middleware
        ):
            return [None] * len(dispatches)
        environment = sender_environment(self)
        namespace = self.broker.namespace  # type: ignore[attr-defined]
        out: list[list[list[str]] | None] = []
        for d in dispatches:
            queue = self.routing.route(d)
            redis_id = str(uuid4())
            message = self.actor.message(
                d.run_id, d.task_identifier, d.queue, d.machine, environment
            ).copy(queue_name=queue, options={"redis_message_id": redis_id})
            key = f"{namespace}:{queue}"
            data = message.encode().decode()
            out.append([["HSET", key + ".msgs", redis_id, data], ["RPUSH", key, redis_id]])
        return out

    def pending(self) -> int:
        """Messages waiting in runlane's Dramatiq queues (RabbitMQ, Redis and stub brokers)."""
        return sum(self._size(name) for name in self.queues)

    def _size(self, queue: str) -> int:
        broker = self.broker
        if isinstance(broker, StubBroker):
            return broker.queues[queue].qsize() if queue in broker.queues else 0
        if hasattr(broker, "get_queue_message_counts"):  # RabbitmqBroker
            return int(broker.get_queue_message_counts(queue)[0])
        if type(broker).__module__ == "dramatiq.brokers.redis":
            return int(broker.do_qsize(queue))  # type: ignore[attr-defined]
        raise ConfigurationError(
            "pending() counts the messages of RabbitMQ, Redis and stub brokers, not of "
            f"{type(broker).__name__}"
        )

    def close(self) -> None:
        """Nothing to release: the Dramatiq broker (and its connections) belong to you."""

    def __repr__(self) -> str:
        return f"<DramatiqBroker {type(self.broker).__name__} queues={self.queues}>"
