"""``CeleryBroker(app)``: Celery carries "execute run X" to the workers you already run.

``configure(store=..., broker=CeleryBroker(app))`` registers one task, ``runlane.execute``, on
your Celery app. Sending a dispatch publishes that task with the run id (JSON, no ETA, no
countdown: delays, retries and concurrency stay in runlane's store) to the Celery queue of the
run (see :mod:`runlane.backends._routing`). ``celery -A proj worker`` executes it: the worker
hooks in :mod:`runlane.backends.celery.worker` start the per-process supervision and the
leader-elected engine loops inside the worker, so no other process is needed.
"""

from __future__ import annotations

import base64
import json
import logging
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import celery
from celery import signals
from kombu.common import Broadcast
from kombu.utils.uuid import uuid

from runlane.backends._hosting import sender_environment
from runlane.backends._pushing import RedisServer, server_of_kombu
from runlane.backends._routing import Routes
from runlane.core.types import Dispatch
from runlane.errors import ConfigurationError, InvalidOptionError

TASK_NAME = "runlane.execute"


@dataclass(frozen=True)
class _Publishing:
    """The app's settings a publish uses (``CeleryBroker._settings``)."""

    protocol: int
    sent_event: bool
    retry: bool
    retry_policy: dict[str, Any]
    compression: str | None
    delivery_mode: Any
    default_exchange: str | None
    default_routing_key: str | None


log = logging.getLogger("runlane.celery")

# the broker of each app (the latest one built for it), for the worker hooks
brokers: weakref.WeakKeyDictionary[celery.Celery, CeleryBroker] = weakref.WeakKeyDictionary()


class CeleryBroker:
    """Runs dispatched as Celery messages of one task registered on ``app``.

    - ``queue``: the Celery queue of runs that name no machine (default ``"runlane"``).
    - ``machines``: machine presets with a queue of their own, ``<queue>.<machine>``
      (default: every preset; ``[]`` sends every run to ``queue``).
    - ``routes``: ``{"runlane queue": "celery queue"}`` for runs of those runlane queues.

    Workers started without ``-Q`` consume all of these queues (besides your own);
    ``celery -A proj worker -Q runlane.large-1x`` runs a pool for one preset.
    """

    def __init__(
        self,
        app: celery.Celery,
        *,
        queue: str = "runlane",
        machines: Collection[str] | None = None,
        routes: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(app, celery.Celery):
            raise InvalidOptionError("app", app, "expected a celery.Celery application")
        self.app = app
        self.routing = Routes(queue, machines=machines, routes=routes)
        from runlane.backends.celery import worker

        self.task = worker.register(app)
        brokers[app] = self
        self._targets: dict[str, tuple[str, int] | bool] = {}  # queue → (list key, mode)
        self._publishing: _Publishing | None = None  # see _settings
        # queue → (exchange, routing key, delivery mode, queue to declare); queue → (channel,
        # the queue bound to it): see _publish
        self._publish_targets: dict[str, tuple[str, str, Any, Any]] = {}
        self._bound: dict[str, tuple[Any, Any]] = {}
        self._routes_checked = False

    @property
    def queues(self) -> list[str]:
        """The Celery queues runs may be sent to."""
        return self.routing.names

    def warn_ignored_route(self) -> None:
        """Log once if the app's ``task_routes`` routes runlane's task: each run goes to the
        Celery queue ``CeleryBroker`` chooses for it, so such a route is not used."""
        if self._routes_checked:
            return
        self._routes_checked = True
        try:
            route = self.app.amqp.router.lookup_route(TASK_NAME, (), {}, {}, None)
        except Exception:  # a router function that needs real arguments: nothing to say
            return
        if route:
            log.warning(
                "task_routes routes %r to %r, but runlane sends each run to the Celery queue "
                "of its runlane queue or machine preset (%s): that route is not used; route "
                "runs with CeleryBroker(queue=..., machines=..., routes=...)",
                TASK_NAME,
                route,
                ", ".join(self.queues),
            )

    def send(self, dispatches: Sequence[Dispatch]) -> None:
        if not dispatches:
            return
        self.warn_ignored_route()
        environment = sender_environment(self)
        conf = self.app.conf
        if conf.task_always_eager or self._settings().protocol != 2:
            # eager mode and the old task protocol: Celery's whole path
            with self.app.producer_or_acquire() as producer:
                for d in dispatches:
                    self.task.apply_async(
                        args=self._args(d, environment),
                        queue=self.routing.route(d),
                        producer=producer,
                        serializer="json",
                        shadow=f"runlane:{d.task_identifier}",
                    )
            return
        hooked = self._hooked()
        amqp = self.app.amqp
        with self.app.producer_or_acquire() as producer:
            for d in dispatches:
                name = self.routing.route(d)
                if hooked:  # send_task_message sends the signals and the sent event
                    message = self._message(d, environment, sent_event=True)
                    amqp.send_task_message(
                        producer, TASK_NAME, message, queue=name, serializer="json"
                    )
                else:
                    self._publish(producer, name, self._message(d, environment))

    def _settings(self) -> _Publishing:
        """The app's publishing settings, read once (Celery's own ``send_task_message``
        reads them once too): each read of ``app.conf`` costs several microseconds."""
        settings = self._publishing
        if settings is None:
            conf = self.app.conf
            settings = self._publishing = _Publishing(
                protocol=int(conf.task_protocol or 2),
                sent_event=bool(conf.task_send_sent_event),
                retry=bool(conf.task_publish_retry),
                retry_policy=dict(conf.task_publish_retry_policy or {}),
                compression=conf.task_compression,
                delivery_mode=conf.task_default_delivery_mode,
                default_exchange=conf.task_default_exchange,
                default_routing_key=conf.task_default_routing_key,
            )
        return settings

    def _hooked(self) -> bool:
        """Publish signals have receivers, or sent events are on: messages then go through
        Celery's ``send_task_message``, which sends them."""
        return bool(
            signals.before_task_publish.receivers
            or signals.after_task_publish.receivers
            or self._settings().sent_event
        )

    @staticmethod
    def _args(d: Dispatch, environment: str | None) -> tuple[Any, ...]:
        return (d.run_id, d.task_identifier, d.queue, d.machine, environment)

    def _message(
        self, d: Dispatch, environment: str | None, *, sent_event: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
        """The task message of a run (headers, properties, body, sent event), made by the
        app's own task protocol; shown as ``runlane:<task>`` in logs and monitors."""
        args = self._args(d, environment)
        return self.app.amqp.create_task_message(  # type: ignore[no-any-return]
            uuid(),
            TASK_NAME,
            args,
            {},
            create_sent_event=sent_event and self._settings().sent_event,
            shadow=f"runlane:{d.task_identifier}",
            ignore_result=True,
            argsrepr=repr(args),
            kwargsrepr="{}",
        )

    def _publish(
        self, producer: Any, name: str, message: tuple[dict[str, Any], dict[str, Any], Any, Any]
    ) -> None:
        """Publish a message to Celery queue ``name`` as ``send_task_message`` would with no
        publish signal and no sent event: the same exchange, routing key, delivery mode,
        serializer, compression, retry policy and queue declaration, worked out once per
        queue. The queue is declared through a copy bound to the producer's channel, kept
        while that channel lives (kombu binds a new copy at every publish otherwise: a third
        of its CPU), and declared once per connection as kombu's cache decides."""
        settings = self._settings()
        target = self._publish_targets.get(name)
        if target is None:
            queue = self.app.amqp.queues[name]  # what send_task_message resolves
            exchange = getattr(queue, "exchange", None)
            mode = getattr(exchange, "delivery_mode", None) or settings.delivery_mode
            if getattr(exchange, "type", "direct") == "direct":
                exchange_name, routing_key = "", name  # the default exchange, as Celery does
            else:
                exchange_name = exchange.name or settings.default_exchange
                routing_key = queue.routing_key or settings.default_routing_key
            declare = None if isinstance(queue, Broadcast) else queue
            target = self._publish_targets[name] = (exchange_name, routing_key, mode, declare)
        exchange_name, routing_key, mode, queue = target
        declare = []
        if queue is not None:
            channel = producer.channel
            bound = self._bound.get(name)
            if bound is None or bound[0] is not channel:
                bound = self._bound[name] = (channel, queue.bind(channel))
            declare.append(bound[1])
        headers, properties, body, _ = message
        producer.publish(
            body,
            exchange=exchange_name,
            routing_key=routing_key,
            serializer="json",
            compression=settings.compression,
            retry=settings.retry,
            retry_policy=settings.retry_policy,
            delivery_mode=mode,
            declare=declare,
            headers=headers,
            **properties,
        )

    # ---------------------------------------------------------------- pushed messages
    def redis_server(self) -> RedisServer | None:
        """The Redis server of the app's broker, when a Redis store on it may write runlane's
        messages itself (:class:`~runlane.core.types.Push`): Celery's task protocol 2,
        not eager, no message compression. Publish signals and sent events are checked at
        each send (``push_commands``)."""
        conf = self.app.conf
        if conf.task_always_eager or int(conf.task_protocol or 2) != 2 or conf.task_compression:
            return None
        with self.app.connection_for_write() as conn:
            server = server_of_kombu(conn)
            options = dict(conn.transport_options or {})
        steps = options.get("priority_steps")
        if server is None or (steps is not None and (not steps or steps[0] != 0)):
            return None  # a priority-0 message would not go to the queue's own list
        return server

    def _push_target(self, name: str) -> tuple[str, int] | None:
        """The Redis list of Celery queue ``name`` and its delivery mode, when a message
        sent to that queue is a plain push onto it (a direct exchange)."""
        target = self._targets.get(name)
        if target is None:
            try:
                queue = self.app.amqp.queues[name]  # what send_task_message resolves
            except KeyError:
                return None  # not a queue of the app: the usual send reports it
            exchange = queue.exchange
            arguments = queue.queue_arguments or {}
            if (
                getattr(exchange, "type", "direct") != "direct"
                or queue.expires is not None
                or "x-expires" in arguments
            ):  # kombu routes by bindings, or renews the list's expiry at every message
                self._targets[name] = False
                return None
            mode = getattr(exchange, "delivery_mode", None)
            mode = mode or self.app.conf.task_default_delivery_mode
            mode = {"persistent": 2, "transient": 1}.get(mode, mode) or 2
            # kombu's global_keyprefix, as its Redis transport applies it to the list's name
            options = self.app.conf.broker_transport_options or {}
            key = str(options.get("global_keyprefix") or "") + name
            target = self._targets[name] = (key, int(mode))
        return target or None

    def push_commands(self, dispatches: Sequence[Dispatch]) -> list[list[list[str]] | None]:
        """Each run's Celery message as kombu's Redis transport writes it (its JSON envelope
        with the base64 body, LPUSHed onto the queue's list), for the store to write. None
        (sent the usual way) while publish signals have receivers or sent events are on,
        and for queues whose exchange is not direct."""
        self.warn_ignored_route()
        if self._hooked():
            return [None] * len(dispatches)
        environment = sender_environment(self)
        out: list[list[list[str]] | None] = []
        for d in dispatches:
            name = self.routing.route(d)
            target = self._push_target(name)
            if target is None:
                out.append(None)
                continue
            key, mode = target
            headers, properties, body, _ = self._message(d, environment)
            properties.update(
                delivery_mode=mode,
                delivery_info={"exchange": "", "routing_key": name},
                priority=0,
                body_encoding="base64",
                delivery_tag=uuid(),
            )
            envelope = {
                "body": base64.b64encode(json.dumps(body).encode()).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": properties,
            }
            out.append([["LPUSH", key, json.dumps(envelope)]])
        return out

    def pending(self) -> int:
        """Messages waiting in runlane's Celery queues (not counting those a worker holds).
        Declares the queues as Celery does when it sends to them."""
        total = 0
        with self.app.connection_for_read() as conn, conn.channel() as channel:
            for name in self.queues:
                declared = self.app.amqp.queues[name].bind(channel).queue_declare()
                total += declared.message_count
        return total

    def check_app(self) -> None:
        """Refuse an app whose workers would not accept runlane's JSON messages."""
        accept = {str(a).lower() for a in (self.app.conf.accept_content or ())}
        if not accept & {"json", "application/json"}:
            raise ConfigurationError(
                f"the Celery app {self.app.main!r} does not accept JSON messages "
                f"(accept_content={sorted(accept)}); runlane sends JSON only: add 'json'"
            )

    def close(self) -> None:
        """Nothing to release: the Celery app (and its connections) belong to you."""

    def __repr__(self) -> str:
        return f"<CeleryBroker app={self.app.main!r} queues={self.queues}>"
