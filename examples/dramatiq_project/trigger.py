"""Trigger the example's runs from any process and print the results.

    python -m examples.dramatiq_project.trigger [--corpora N]

Exits 0 when every run completed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import runlane
from examples.dramatiq_project.tasks import ping, score_corpus

TEXTS = ["the quick brown fox", "jumps over the lazy dog", "the dog sleeps"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpora", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    ping.send(1)  # plain Dramatiq, next to runlane
    handles = [
        score_corpus.trigger({"texts": TEXTS[: 1 + i % len(TEXTS)]}, tags=["corpus"])
        for i in range(args.corpora)
    ]
    deadline = time.monotonic() + args.timeout
    runs = [runlane.runs.retrieve(h) for h in handles]
    while not all(r.is_completed for r in runs) and time.monotonic() < deadline:
        time.sleep(0.2)
        runs = [runlane.runs.retrieve(h) for h in handles]
    print(json.dumps([{"id": r.id, "status": r.status, "output": r.output} for r in runs]))
    return 0 if all(r.status == "COMPLETED" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
