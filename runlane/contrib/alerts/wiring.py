"""From a run's end to an alert run: signal receivers, and what ``configure(alerts=...)`` calls.

``runlane.config`` does not import contrib: it finds :data:`sender` as the ``runlane.alerts``
entry point, validates ``alerts`` with ``sender.parse`` before building anything, and hands the
built runtime to ``sender.install``. Installing registers ``runlane.alert`` (so a worker of
this process executes alert runs) and connects the receivers, which stay connected while an
open runtime of the process has alerts.

The receivers hear the runs of the runtimes that have alerts, in the process where each run
ended: FAILED and TIMED_OUT (``run_failed``) and COMPLETED (``run_succeeded``) in the worker,
CANCELED (``run_canceled``) where the cancel was made, EXPIRED (``run_expired``) in the engine
leader, and CRASHED (``run_failed`` too) in the leader whose reaper found the worker lost.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runlane.contrib.alerts import delivery
from runlane.contrib.alerts.events import build_event
from runlane.contrib.alerts.targets import (
    Alert,
    alerts_of,
    any_alerts,
    parse_alerts,
    runtimes_for,
    set_alerts,
)
from runlane.core import signals
from runlane.core.idempotency import create

if TYPE_CHECKING:
    from runlane.core.models import Run
    from runlane.core.runtime import Runtime

__all__ = ["alert", "alerts_of", "sender"]

log = logging.getLogger("runlane.alerts")


def alert(run: Run) -> None:
    """Trigger an alert run for each alert that hears ``run``'s end, in each runtime of its
    environment that has alerts. A second report of the same end (a redelivered signal, two
    processes) finds the first alert run by its idempotency key."""
    if run.task_identifier == delivery.TASK_ID:
        return  # an alert's own end is never alerted (a failing receiver would loop)
    for rt, alerts in runtimes_for(run.environment):
        hearing = [a for a in alerts if a.hears(run.task_identifier, run.status)]
        if not hearing:
            continue
        event = build_event(run, rt.now())
        for target in hearing:
            try:
                # in an empty context: the alert run is nobody's child, even when a run
                # ends inside another run's attempt
                contextvars.Context().run(_trigger, rt, target, run, event)
            except Exception as exc:
                log.warning(
                    "could not trigger the %s alert of run %s (%s): %s: %s",
                    target.name,
                    run.id,
                    run.status.value,
                    type(exc).__name__,
                    exc,
                )
        return  # one runtime per environment sends


def _trigger(rt: Runtime, target: Alert, run: Run, event: dict[str, Any]) -> None:
    key = create(["runlane.alert", target.name, run.id, run.status.value], scope="global")
    options = {
        "idempotency_key": key,
        "max_attempts": target.retry.get("max_attempts"),
    }
    rt.engine.trigger(delivery.TASK_ID, {"alert": target.name, "event": event}, options)


def _on_end(sender: Any, run: Run, **kwargs: Any) -> None:
    alert(run)


_RECEIVES = (signals.run_failed, signals.run_succeeded, signals.run_canceled, signals.run_expired)


def _connect() -> None:
    """Connect the receivers (again: connecting a receiver twice keeps one)."""
    for signal in _RECEIVES:
        signal.connect(_on_end)


def _disconnect_when_closed(rt: Runtime) -> None:
    """Once ``rt`` is closed and no open runtime has alerts, the receivers are disconnected:
    a process that no longer alerts pays nothing for signals (runlane's senders skip a signal
    nobody listens to)."""

    def forget() -> None:
        set_alerts(rt, ())
        if not any_alerts():
            for signal in _RECEIVES:
                signal.disconnect(_on_end)

    rt.on_close(forget)


class Sender:
    """What ``configure(alerts=...)`` calls (the ``runlane.alerts`` entry point)."""

    def parse(self, value: Any) -> tuple[Alert, ...]:
        return parse_alerts(value)

    def install(self, rt: Runtime, alerts: Sequence[Alert]) -> None:
        set_alerts(rt, tuple(alerts))
        if not alerts:
            return
        if rt.registry.get(delivery.TASK_ID) is None:
            rt.registry.add(delivery.TASK)
        _connect()
        _disconnect_when_closed(rt)


sender = Sender()
