"""Trigger, dispatch and drain throughput of runlane, and round-trip latency.

    python benchmarks/bench_dispatch.py [--runs N] [--keys K] [--concurrency C]
        [--budget S] [--latency-samples N] [--cases trigger,drain,latency] [--profile FILE]
        [--store sqlite]

Every case uses a fresh store (by default a SQLite file in a temporary folder: the embedded
default) and an in-process ``runlane.Worker(concurrency=C)`` executing no-op tasks, so the
figures are runlane's own overhead: the store transactions (trigger, admission, start,
finish), the broker and the executor. See benchmarks/README.md for the measured figures.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

import runlane

BATCH_SIZE = 500  # the batch_trigger limit
LIMITED = runlane.queue(name="bench-limited", concurrency_limit=2)


@runlane.task(id="bench-noop", retry={"max_attempts": 1})
def noop(payload: dict) -> None:
    return None


@runlane.task(id="bench-noop-limited", queue=LIMITED, retry={"max_attempts": 1})
def noop_limited(payload: dict) -> None:
    return None


def _items(n: int, keys: int = 0) -> list[dict]:
    if not keys:
        return [{"payload": {"i": i}} for i in range(n)]
    return [
        {"payload": {"i": i}, "options": {"concurrency_key": f"key-{i % keys}"}} for i in range(n)
    ]


def _batch_trigger(task: runlane.Task, items: list[dict]) -> None:
    for chunk in h.chunks(items, BATCH_SIZE):
        task.batch_trigger(chunk)


# ---------------------------------------------------------------------------- cases


def bench_trigger(store: h.StoreSetup, runs: int) -> list[h.Measurement]:
    """Writing runs into the store, no worker running."""
    out = []
    with store():
        with h.Stopwatch() as sw:
            for i in range(runs):
                noop.trigger({"i": i})
        out.append(
            h.Measurement(
                "trigger",
                "trigger() one by one",
                h.rate(runs, sw.seconds),
                "runs/s",
                f"{runs:,} runs in {sw.seconds:.2f} s",
            )
        )
    with store():
        items = _items(runs)
        with h.Stopwatch() as sw:
            _batch_trigger(noop, items)
        out.append(
            h.Measurement(
                "trigger",
                f"batch_trigger() ({BATCH_SIZE} a call)",
                h.rate(runs, sw.seconds),
                "runs/s",
                f"{runs:,} runs in {sw.seconds:.2f} s",
            )
        )
    return out


def _drain(
    store: h.StoreSetup, task: runlane.Task, runs: int, keys: int, concurrency: int, budget: float
) -> h.Drain:
    """From the first trigger (``batch_trigger``, the worker already running) to every run
    COMPLETED, or the rate so far when ``budget`` seconds pass first."""
    items = _items(runs, keys)
    with store() as rt, runlane.Worker(concurrency=concurrency):
        started = time.perf_counter()
        _batch_trigger(task, items)
        return h.drain(rt, runs, started, budget=budget)


def bench_drain(
    store: h.StoreSetup, runs: int, keys: int, concurrency: int, budget: float
) -> list[h.Measurement]:
    """The default queue (no limit), then a queue with concurrency_limit=2 without keys and
    with ``keys`` keys (each key gets the limit)."""
    section = "drain: trigger → all COMPLETED"
    free = _drain(store, noop, runs, 0, concurrency, budget)
    no_key = _drain(store, noop_limited, runs, 0, concurrency, budget)
    keyed = _drain(store, noop_limited, runs, keys, concurrency, budget)
    return [
        h.Measurement(section, "task queue, no limit", free.rate, "runs/s", free.describe()),
        h.Measurement(
            section,
            "limit-2 queue, no concurrency key",
            no_key.rate,
            "runs/s",
            no_key.describe() + "; 2 at once",
        ),
        h.Measurement(
            section,
            f"limit-2 queue, {keys:,} concurrency keys",
            keyed.rate,
            "runs/s",
            keyed.describe() + f"; 2 a key, {concurrency} a worker",
        ),
        h.Measurement(
            section,
            f"{keys:,} keys / no key",
            h.ratio(keyed.rate, no_key.rate),
            "x",
            "ratio, > 1: keys are faster",
        ),
        h.Measurement(
            section,
            f"{keys:,} keys / no limit",
            h.ratio(keyed.rate, free.rate),
            "x",
            "ratio: the cost of keyed admission",
        ),
    ]


def bench_latency(store: h.StoreSetup, samples: int, concurrency: int) -> list[h.Measurement]:
    """One run at a time: trigger, then poll runs.retrieve until COMPLETED."""
    latencies = []
    with store(), runlane.Worker(concurrency=concurrency):
        for i in range(samples + 5):
            with h.Stopwatch() as sw:
                handle = noop.trigger({"i": i})
                while runlane.runs.retrieve(handle).status != runlane.RunStatus.COMPLETED:
                    time.sleep(0.0005)
            if i >= 5:  # warm-up
                latencies.append(sw.seconds * 1000)
    detail = f"{samples:,} runs in turn, polled every 0.5 ms"
    return [
        h.Measurement(
            "round trip", "trigger → COMPLETED p50", h.percentile(latencies, 50), "ms", detail
        ),
        h.Measurement(
            "round trip", "trigger → COMPLETED p99", h.percentile(latencies, 99), "ms", detail
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4000, help="runs per case (default 4000)")
    parser.add_argument("--keys", type=int, default=1000, help="concurrency keys (default 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument(
        "--budget",
        type=float,
        default=30.0,
        help="seconds a drain case may take; past it the rate so far is reported (default 30)",
    )
    parser.add_argument("--latency-samples", type=int, default=200, help="default 200")
    parser.add_argument(
        "--store", choices=sorted(h.STORES), default="sqlite", help="default sqlite"
    )
    parser.add_argument("--cases", help="comma-separated subset of: trigger,drain,latency")
    parser.add_argument(
        "--profile", metavar="FILE", help="profile every thread with cProfile into FILE"
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.keys < 1 or args.concurrency < 1 or args.latency_samples < 1:
        parser.error("--runs, --keys, --concurrency and --latency-samples must be >= 1")

    store = h.STORES[args.store]
    cases = {
        "trigger": lambda: bench_trigger(store, args.runs),
        "drain": lambda: bench_drain(store, args.runs, args.keys, args.concurrency, args.budget),
        "latency": lambda: bench_latency(store, args.latency_samples, args.concurrency),
    }
    chosen = args.cases.split(",") if args.cases else list(cases)
    unknown = set(chosen) - set(cases)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}: choose among {', '.join(cases)}")
    results: list[h.Measurement] = []
    profiling = h.profiled(args.profile) if args.profile else contextlib.nullcontext()
    with h.Stopwatch() as total, profiling:
        for name in chosen:
            results += cases[name]()
    results.append(h.Measurement("process", "peak RSS", h.peak_rss_mb(), "MiB", "getrusage"))
    h.print_results(
        f"runlane dispatch benchmark — {args.store} store, in-process worker",
        results,
        command=" ".join(
            ["python benchmarks/bench_dispatch.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        settings={
            "store": args.store,
            "runs": args.runs,
            "keys": args.keys,
            "worker concurrency": args.concurrency,
            "total time": f"{total.seconds:.0f} s",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
