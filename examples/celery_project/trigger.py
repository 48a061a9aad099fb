"""Trigger the example's runs from any process (a web view, a script) and print the results.

    python -m examples.celery_project.trigger [--users N]

Exits 0 when every run completed and the plain Celery call worked too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import runlane
from examples.celery_project.tasks import onboard_user, send_welcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    handles = [
        onboard_user.trigger({"user_id": i}, tags=[f"user_{i}"], idempotency_key=f"onboard-{i}")
        for i in range(args.users)
    ]
    legacy = send_welcome.delay(99, template="legacy")  # plain Celery, no runlane involved

    deadline = time.monotonic() + args.timeout
    runs = [runlane.runs.retrieve(h) for h in handles]
    while not all(r.is_completed for r in runs) and time.monotonic() < deadline:
        time.sleep(0.2)
        runs = [runlane.runs.retrieve(h) for h in handles]
    report = {
        "runs": [
            {"id": r.id, "status": r.status, "output": r.output, "metadata": r.metadata}
            for r in runs
        ],
        "legacy": legacy.get(timeout=max(1.0, deadline - time.monotonic())),
    }
    print(json.dumps(report, default=str))
    return 0 if all(r.status == "COMPLETED" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
