"""Chaos: riding through Redis outages, and kill -9 of workers, with real worker processes.

    python benchmarks/chaos_redis.py                                  # native, Redis restarts
    python benchmarks/chaos_redis.py --transport celery               # kill -9 of Celery workers
    python benchmarks/chaos_redis.py --transport dramatiq             # kill -9 of Dramatiq workers
    python benchmarks/chaos_redis.py --transport native --kill-workers
        [--runs N] [--restarts R] [--kills K] [--workers 2] [--concurrency 4]
        [--lease-timeout 5] [--pace S] [--deadline S] [--seed N] [--keep] [--quiet]

Native (default): runlane's store and its own Redis broker on a private redis-server
(append-only file, ``appendfsync always``), restarted ``--restarts`` times (default 5),
alternately after ``SHUTDOWN NOSAVE`` and ``kill -9``, down 0.8-3 s each, while this process
triggers ``--runs`` runs (default 5,000) one by one and ``--workers`` ``runlane worker``
processes drain them.

``--transport celery|dramatiq`` (or ``native --kill-workers``): the workers are started as their
users start them (``celery -A chaos_tasks worker``, ``dramatiq chaos_tasks``) on a private
redis-server (the framework's broker on database 1, runlane's store on database 0), and
``--kills`` of them (default 6) are killed with ``kill -9`` of their whole process group while
``--runs`` runs (default 2,000) are triggered; a replacement is started after each kill.

Every task body logs its start and end to a second Redis that is never restarted (``REDIS_URL``,
else 127.0.0.1:6379, else a private redis-server). At the end the script checks that every
acknowledged run is COMPLETED, that a trigger that raised raised ``StoreError`` and created at
most one run, that no attempt ran twice (unless its worker was killed) and no run's bodies
overlapped, that no run has two COMPLETED attempts, and, with kills, that every run held by a
killed worker started again within 2 x lease_timeout. It prints its figures and exits 1 when a
check fails.

Figures: ``raised`` counts triggers that raised, by exception type; ``repeated executions`` are
attempt ids whose body started more than once (a copy whose worker was killed before it ended
does not count; those are ``re-executions after a worker death``); ``concurrent copies`` are
two bodies of one run open at the same time; ``runs executed more than once`` counts runs with
several bodies (a new attempt after a crash is normal); ``run wait`` is the longest time from a
trigger's return to its run's first body start. Recovery, restarts: per restart, the time from
redis-server answering PING again (its file loaded) until the first body starts and until the
first run is COMPLETED in the store; the slowest of the latter is reported. Recovery, kills: for
each kill at time K, every run triggered before K, not finished by K, whose body started again
at or after K (a run a survivor was executing is left out) recovers at that start; a run that
never started again counts until the end; the slowest is compared with 2 x lease_timeout.
Right before each restart or kill the client triggers a burst of up to 50 runs with no pause,
so the workers hold a backlog (executing, or delivered and not started) when it happens.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos_support import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--transport", choices=["native", "celery", "dramatiq"], default="native")
    p.add_argument(
        "--kill-workers",
        action="store_true",
        help="native transport: kill -9 workers instead of restarting Redis",
    )
    p.add_argument("--runs", type=int, help="default 5000 (restarts), 2000 (kills)")
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--lease-timeout", type=float, default=5.0)
    p.add_argument(
        "--store-retry-timeout",
        type=float,
        default=10.0,
        help="the client's configure(store_retry_timeout=): short, and triggers give up",
    )
    p.add_argument("--pace", type=float, help="seconds between two triggers")
    p.add_argument(
        "--deadline",
        type=float,
        default=600.0,
        help="seconds to wait for every run to be final after the chaos",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines, and not the client's 'store unavailable; retrying' warnings",
    )
    args = p.parse_args(argv)
    if args.quiet:
        logging.getLogger("runlane.store").setLevel(logging.ERROR)
    mode = "kills" if args.kill_workers or args.transport != "native" else "restarts"
    cfg = ChaosConfig(
        transport=args.transport,
        mode=mode,
        runs=args.runs or (5000 if mode == "restarts" else 2000),
        restarts=args.restarts,
        kills=args.kills,
        workers=args.workers,
        concurrency=args.concurrency,
        lease_timeout=args.lease_timeout,
        store_retry_timeout=args.store_retry_timeout,
        pace=args.pace,
        deadline=args.deadline,
        seed=args.seed,
        verbose=not args.quiet,
    )
    workdir = Path(tempfile.mkdtemp(prefix="runlane-chaos-"))
    try:
        report = run_chaos(cfg, workdir)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.text(max_details=60))
    return 1 if report.defects else 0


if __name__ == "__main__":
    sys.exit(main())
