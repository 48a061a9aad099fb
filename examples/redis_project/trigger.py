"""Trigger the Redis example's runs from any process and wait for them.

    python -m examples.redis_project.trigger [--images N] [--timeout S]

Exits 0 when every run completed with the expected output.
"""

from __future__ import annotations

import argparse
import json
import sys

import runlane
from examples.redis_project.tasks import resize_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    handles = [
        resize_image.trigger({"image": f"img-{i}.png", "width": 800}, tags=[f"image_{i}"])
        for i in range(args.images)
    ]
    runs = [runlane.runs.poll(h, timeout=args.timeout) for h in handles]
    report = [{"id": r.id, "status": r.status, "output": r.output} for r in runs]
    print(json.dumps(report, indent=2))
    ok = all(r.status == "COMPLETED" and r.output["width"] == 400 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
