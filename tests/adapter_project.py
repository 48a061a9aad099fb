"""The project that tests/test_adapter_workers.py starts the way users start theirs:
``celery -A tests.adapter_project worker ...`` and ``dramatiq tests.adapter_project ...``.

Configured from the environment: ``RL_FRAMEWORK`` (celery | dramatiq), ``RL_BROKER_URL``,
``RL_PREFIX`` (queue/key prefix of the test), ``RUNLANE_STORE_URL`` and ``RL_JOURNAL`` (a
directory where every execution of a task body, and every delivery a worker finished, leaves
a line, so a test can count them).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import runlane
from tests.adapters import CeleryUnderTest, DramatiqUnderTest

FRAMEWORK = os.environ["RL_FRAMEWORK"]
JOURNAL = Path(os.environ["RL_JOURNAL"])
LEASE_TIMEOUT = 2  # seconds: a killed worker's run is recovered fast


def journal(name: str, line: str) -> None:
    with open(JOURNAL / name, "a") as f:
        f.write(line + "\n")


if FRAMEWORK == "celery":
    from celery import signals

    harness: CeleryUnderTest | DramatiqUnderTest = CeleryUnderTest(
        os.environ["RL_BROKER_URL"], prefix=os.environ["RL_PREFIX"], visibility_timeout=3
    )
    app = harness.app

    @signals.task_postrun.connect(weak=False)
    def _delivered(sender=None, args=None, **kwargs):  # type: ignore[no-untyped-def]
        if sender is not None and sender.name == "runlane.execute" and args:
            journal("deliveries", str(args[0]))

else:
    import dramatiq
    from dramatiq.middleware import Middleware

    harness = DramatiqUnderTest(
        os.environ["RL_BROKER_URL"], prefix=os.environ["RL_PREFIX"], heartbeat_timeout_ms=2000
    )
    broker = harness.dramatiq_broker
    dramatiq.set_broker(broker)

    class _Deliveries(Middleware):  # type: ignore[misc]
        def after_process_message(self, broker, message, *, result=None, exception=None):  # type: ignore[no-untyped-def]
            if message.actor_name == "runlane_execute" and message.args:
                journal("deliveries", str(message.args[0]))

    broker.add_middleware(_Deliveries())

runlane.configure(
    store=os.environ["RUNLANE_STORE_URL"],
    broker=harness.broker,
    engine_interval=0.05,
    lease_timeout=LEASE_TIMEOUT,
    limits={"min_max_duration_seconds": 1},
)

RETRY = {"max_attempts": 3, "min_timeout_in_ms": 0, "max_timeout_in_ms": 10}


@runlane.task(id="quick")
def quick(payload: object) -> dict:
    return {"pid": os.getpid(), "payload": payload}


@runlane.task(id="slow", retry=RETRY)
def slow(payload: dict, ctx: runlane.Context) -> dict:
    """Attempt 1 holds for ``payload["hold"]`` seconds (the test kills its worker then)."""
    journal(ctx.run.id, f"start {ctx.attempt.number} {os.getpid()}")
    if ctx.attempt.number == 1:
        time.sleep(payload["hold"])
    journal(ctx.run.id, f"end {ctx.attempt.number}")
    return {"attempt": ctx.attempt.number, "pid": os.getpid()}


@runlane.task(id="spin", retry={"max_attempts": 1})
def spin(payload: object, ctx: runlane.Context) -> str:
    """A busy loop: only an interrupt stops it."""
    journal(ctx.run.id, f"start {os.getpid()}")
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        sum(range(1000))
    journal(ctx.run.id, "end")
    return "spun"


@runlane.task(id="block", retry={"max_attempts": 1})
def block(payload: float, ctx: runlane.Context) -> str:
    """A blocking call that an interrupt cannot cut short."""
    journal(ctx.run.id, f"start {os.getpid()}")
    time.sleep(payload)
    journal(ctx.run.id, "end")
    return "woke"


@runlane.task(id="nap", retry={"max_attempts": 1})
async def nap(payload: float) -> str:
    await asyncio.sleep(payload)
    return "rested"
