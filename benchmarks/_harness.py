"""Shared pieces of the runlane benchmarks: timing, a temporary store, waiting for runs,
machine information and the result table.

A benchmark script imports this module (``import _harness``: the script's folder is on the
import path), builds a list of ``Measurement`` and hands it to ``print_results``. To benchmark
another backend (the Redis store, raw Celery or Dramatiq for comparison), add a setup to
``STORES`` (a context manager factory yielding the configured ``Runtime``) or a new helper here,
so every script measures and reports the same way.

Nothing here imports pytest: the benchmarks are plain scripts.
"""

from __future__ import annotations

import collections
import contextlib
import cProfile
import os
import platform
import pstats
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runlane
from runlane.core import runtime as _runtime

# ---------------------------------------------------------------------------- measurements


@dataclass
class Measurement:
    """One line of the result table."""

    section: str
    name: str
    value: float
    unit: str
    detail: str = ""


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (monotonic, high resolution)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started

    @property
    def elapsed(self) -> float:
        """Seconds since the start, while still running."""
        return time.perf_counter() - self.started


def rate(count: int, seconds: float) -> float:
    """Items a second (0 when nothing was timed)."""
    return count / seconds if seconds > 0 else 0.0


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def stop_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """Stop a process started in its own group (``start_new_session``): SIGINT, as Ctrl-C,
    then the whole group killed if it has not stopped after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextlib.contextmanager
def profiled(path: str, *, top: int = 25) -> Iterator[None]:
    """Profile this thread and every thread started meanwhile (worker threads included) with
    cProfile; write the merged stats to ``path`` (open with ``python -m pstats PATH``) and print
    the ``top`` functions by own time. Timings under the profiler are slower than without."""
    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            original_run(thread)
        finally:
            profile.disable()

    main = cProfile.Profile()
    threading.Thread.run = run  # type: ignore[method-assign]
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        stats = pstats.Stats(main)
        for profile in profiles:
            stats.add(profile)
        stats.dump_stats(path)
        print(f"profile of {len(profiles) + 1} threads written to {path}; top {top} by own time:")
        stats.sort_stats("tottime").print_stats(top)


# ---------------------------------------------------------------------------- stores


@contextlib.contextmanager
def sqlite_store(**configure: Any) -> Iterator[_runtime.Runtime]:
    """The embedded default on a fresh SQLite file in a temporary folder, removed afterwards."""
    folder = tempfile.mkdtemp(prefix="runlane-bench-")
    rt = runlane.configure(store=f"sqlite:///{folder}/bench.db", **configure)
    try:
        yield rt
    finally:
        _runtime.install(None)
        rt.close()  # the last holder of the SQLite file closes it
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_store(**configure: Any) -> Iterator[_runtime.Runtime]:
    """The Redis store and broker on ``$REDIS_URL`` (default ``redis://127.0.0.1:6379/0``),
    under a private key prefix whose keys are deleted afterwards."""
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"rlbench-{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in url else "?"
    rt = runlane.configure(store=f"{url}{sep}prefix={prefix}", broker="redis", **configure)
    try:
        yield rt
    finally:
        _runtime.install(None)
        rt.close()
        client = redis.Redis.from_url(url)
        try:
            for keys in chunks(list(client.scan_iter(match=f"{prefix}:*", count=1000)), 1000):
                client.delete(*keys)
        finally:
            client.close()


#: ``setup(**configure_options)``: a context manager yielding a configured, empty runtime.
StoreSetup = Callable[..., contextlib.AbstractContextManager[_runtime.Runtime]]

#: Store setups by name (``--store``).
STORES: dict[str, StoreSetup] = {
    "sqlite": sqlite_store,
    "redis": redis_store,
}


def count_final(rt: _runtime.Runtime) -> tuple[int, int]:
    """(completed, other final) runs of the environment."""
    counts = rt.store.count_runs()
    final = {s.value for s in runlane.RunStatus if s.is_final}
    completed = counts.get(runlane.RunStatus.COMPLETED.value, 0)
    others = sum(n for status, n in counts.items() if status in final) - completed
    return completed, others


@dataclass
class Drain:
    """How far a drain got: ``completed`` runs ``seconds`` after the start."""

    completed: int
    expected: int
    seconds: float

    @property
    def finished(self) -> bool:
        return self.completed >= self.expected

    @property
    def rate(self) -> float:
        return rate(self.completed, self.seconds)

    def describe(self) -> str:
        if self.finished:
            return f"{self.expected:,} runs in {self.seconds:.2f} s"
        return (
            f"stopped at the {self.seconds:.0f} s budget: {self.completed:,} of "
            f"{self.expected:,} runs done"
        )


def drain(
    rt: _runtime.Runtime,
    expected: int,
    started: float,
    *,
    budget: float | None = None,
    interval: float = 0.02,
) -> Drain:
    """Poll the store until ``expected`` runs are COMPLETED, or until ``budget`` seconds after
    ``started`` (a ``time.perf_counter()`` value) have passed: then the rate so far is what is
    reported. Raises if a run ends in another final status (the benchmark would be wrong)."""
    while True:
        completed, others = count_final(rt)
        now = time.perf_counter()
        if others:
            raise RuntimeError(f"{others} run(s) ended in a status other than COMPLETED")
        if completed >= expected or (budget is not None and now - started >= budget):
            return Drain(completed, expected, now - started)
        time.sleep(interval)


# ---------------------------------------------------------------------------- reporting


def runlane_source() -> str:
    """Where the measured runlane comes from: its git commit (``+dirty`` with local changes)
    when it is imported from a git checkout, else its folder."""
    folder = Path(runlane.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(folder)
    return f"git {sha}{'+dirty' if dirty else ''}"


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
        "runlane": f"{runlane.__version__} ({runlane_source()})",
    }


def _format(value: float, unit: str) -> str:
    if unit in ("runs/s", "ops/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    if unit == "s":
        return f"{value:,.2f} s"
    return f"{value:,.4g} {unit}".rstrip()


def print_results(
    title: str, results: Sequence[Measurement], *, command: str, settings: dict[str, Any]
) -> None:
    """A rich table of the measurements, preceded by the machine and the settings."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped into a file: wide enough for one line a row
        console = Console(width=140)
    console.print(f"[bold]{title}[/bold]")
    console.print(f"  [dim]command:[/dim] {command}")
    machine = machine_info()
    hardware = {k: machine.pop(k) for k in ("cpus (nproc)", "cpu", "os")}
    for info in (hardware, machine, settings):
        console.print("  " + "  ".join(f"[dim]{k}:[/dim] {v}" for k, v in info.items()))
    table = Table(show_lines=False)
    table.add_column("section", style="cyan")
    table.add_column("measurement")
    table.add_column("result", justify="right", style="bold")
    table.add_column("detail", style="dim")
    last = None
    for m in results:
        if last is not None and m.section != last:
            table.add_section()
        table.add_row(
            m.section if m.section != last else "", m.name, _format(m.value, m.unit), m.detail
        )
        last = m.section
    console.print(table)


class Profiler:
    """py-spy attached to worker processes while they work (sampling, so they are barely
    slowed), twice per process: ``--gil`` (the thread holding the GIL: where the Python
    CPU goes) and wall-clock (every thread not idle, waiting for Redis included). The raw
    samples are summed into own-time and total-time tables."""

    MODES = {"cpu": ["--gil"], "wall": []}

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[tuple[str, str], list[Path]] = {}  # (label, mode) → raw files
        self.procs: list[subprocess.Popen[bytes]] = []

    @contextlib.contextmanager
    def attached(self, pids: list[int], label: str) -> Iterator[None]:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        for pid in pids:
            for mode, flags in self.MODES.items():
                path = self.folder / f"{label}-{pid}-{mode}.txt"
                self.files.setdefault((label, mode), []).append(path)
                argv = [py_spy, "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(path)]
                self.procs.append(
                    subprocess.Popen(
                        argv + flags, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                )
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            for proc in self.procs:
                proc.send_signal(signal.SIGINT)
            for proc in self.procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            self.procs = []

    def report(self, top: int = 25) -> None:
        for (label, mode), files in self.files.items():
            own: collections.Counter[str] = collections.Counter()
            total: collections.Counter[str] = collections.Counter()
            samples = 0
            for path in files:
                if not path.exists():
                    continue
                for line in path.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if not stack or not count.isdigit():
                        continue
                    n = int(count)
                    frames = [_frame(f) for f in stack.split(";")]
                    samples += n
                    own[frames[-1]] += n
                    for name in set(frames):
                        total[name] += n
            if not samples:
                print(f"no py-spy {mode} samples of {label} in {self.folder}")
                continue
            what = "holding the GIL" if mode == "cpu" else "wall clock, threads not idle"
            print(f"\npy-spy {mode} ({what}), {label} workers: {samples:,} samples")
            print(f"  files: {', '.join(str(p) for p in files)}")
            for title, counter in (("own time", own), ("total time (incl. callees)", total)):
                print(f"  top {top} by {title}:")
                for name, n in counter.most_common(top):
                    print(f"    {100 * n / samples:5.1f}%  {name}")


def _frame(text: str) -> str:
    """``func (path/file.py:123)`` → ``path/file.py:func`` shortened to the package path."""
    func, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.split("/work/main/", 1)[-1]
    return f"{path}:{func}"
