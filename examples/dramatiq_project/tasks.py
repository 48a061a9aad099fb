"""Tasks of the example: a plain Dramatiq actor next to runlane tasks (a fan-out that waits on
a batch of children, with retries and a machine preset)."""

from __future__ import annotations

import os

import dramatiq

import runlane
from examples.dramatiq_project.broker import broker


@dramatiq.actor(broker=broker, queue_name=os.environ.get("RUNLANE_DRAMATIQ_QUEUE", "runlane"))
def ping(n: int) -> None:
    """An ordinary Dramatiq actor: runlane changes nothing about it."""
    print(f"pong {n}")


@runlane.task(id="score-document", retry={"max_attempts": 3, "min_timeout_in_ms": 100})
def score_document(payload: dict, ctx: runlane.Context) -> dict:
    words = payload["text"].split()
    runlane.metadata.set("words", len(words))
    return {"doc": payload["doc"], "score": len(set(words)), "attempt": ctx.attempt.number}


@runlane.task(id="score-corpus", machine="medium-1x")
def score_corpus(payload: dict) -> dict:
    """Fans out one child run per document and waits for all of them (durably)."""
    results = score_document.batch_trigger_and_wait(
        [{"payload": {"doc": i, "text": text}} for i, text in enumerate(payload["texts"])]
    )
    scores = [r.output["score"] for r in results if r.ok]
    return {"documents": len(scores), "total": sum(scores), "pid": os.getpid()}
