"""Which framework queue (Celery or Dramatiq) carries the dispatch of a run.

Shared by the Celery and Dramatiq adapters. By default a run goes to the base queue
(``runlane``), and a run whose machine preset has a dedicated queue goes to
``<base>.<machine>`` (``runlane.large-1x``), so worker pools can be sized per preset. ``routes``
sends the runs of chosen runlane queues to framework queues of their own, whatever the machine.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from runlane.core.options import MACHINES
from runlane.core.types import Dispatch
from runlane.errors import InvalidOptionError

# the names both Celery (AMQP/Redis) and Dramatiq accept
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,199}")


def _queue_name(value: object, option: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidOptionError(
            option,
            value,
            "a queue name is 1-200 letters, digits, '.', '_' or '-', starting with a letter or '_'",
        )
    if value.endswith((".DQ", ".XQ")):  # Dramatiq's delay and dead-letter queues
        raise InvalidOptionError(option, value, "a queue name may not end with .DQ or .XQ")
    return value


class Routes:
    """``route(dispatch)`` names the framework queue of a run; ``names`` lists every queue
    that may receive runs (workers consume them all unless told otherwise)."""

    def __init__(
        self,
        queue: str = "runlane",
        *,
        machines: Collection[str] | None = None,
        routes: Mapping[str, str] | None = None,
    ) -> None:
        self.queue = _queue_name(queue, "queue")
        if machines is None:
            machines = list(MACHINES)
        if isinstance(machines, str) or not isinstance(machines, Collection):
            raise InvalidOptionError("machines", machines, "expected a list of machine presets")
        for machine in machines:
            if machine not in MACHINES:
                raise InvalidOptionError(
                    "machines", machine, f"unknown machine preset; one of {list(MACHINES)}"
                )
        self.machines: dict[str, str] = {m: f"{self.queue}.{m}" for m in machines}
        if routes is not None and not isinstance(routes, Mapping):
            raise InvalidOptionError(
                "routes", routes, 'expected a mapping {"runlane queue": "framework queue"}'
            )
        self.routes: dict[str, str] = {
            str(k): _queue_name(v, f"routes[{k!r}]") for k, v in (routes or {}).items()
        }

    def route(self, dispatch: Dispatch) -> str:
        routed = self.routes.get(dispatch.queue)
        if routed is not None:
            return routed
        if dispatch.machine is not None:
            return self.machines.get(dispatch.machine, self.queue)
        return self.queue

    @property
    def names(self) -> list[str]:
        """Every framework queue this routing may use, the base queue first."""
        out = [self.queue, *self.machines.values()]
        out += [q for q in self.routes.values() if q not in out]
        return out
