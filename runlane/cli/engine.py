"""``runlane engine``: the engine loops alone, executing no task.

Every ``runlane worker`` also runs the engine loops (promote delayed runs and retries, expire
TTLs, reap dead workers' leases, purge, fire schedules, redeliver) while it holds the store's
engine lease. ``runlane engine`` runs them in a process of their own, for deployments that want
them apart from the workers: it imports the modules given (their declarative schedules are
written, as a worker does), then runs a :class:`~runlane.core.host.Host`, with no executor,
until SIGINT or SIGTERM. Several may run: one at a time leads, the others stand by.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import click
from rich.panel import Panel
from rich.table import Table

from runlane.cli._common import configure, console, load_modules
from runlane.cli.worker import LOGLEVELS, _shared_dev, setup_logging
from runlane.core import runtime
from runlane.core.host import Host
from runlane.core.storecalls import backoff, describe_wait
from runlane.core.worker import default_worker_id
from runlane.errors import StoreUnavailableError

log = logging.getLogger("runlane.engine")

STANDBY_NOTE = 2.0  # seconds after starting: not leading by then is standing by


def _banner(rt: runtime.Runtime, host: Host) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    task_ids = rt.registry.ids()
    grid.add_row("Tasks", "\n".join(task_ids) if task_ids else "none (no MODULE given)")
    grid.add_row("Store", rt.settings.store_url or "-")
    environment = rt.environment
    if _shared_dev(rt):
        minutes = rt.settings.limits.dev_default_ttl_seconds / 60
        environment += (
            f"\n[yellow]Warning: the dev environment expires runs not started within "
            f"{minutes:g} minutes (its default TTL), e.g. while workers are down. "
            "For a deployment set RUNLANE_ENV=prod.[/]"
        )
    grid.add_row("Environment", environment)
    grid.add_row("Engine id", host.id)
    return Panel(grid, title="runlane engine", title_align="left", border_style="cyan")


def _deploy(rt: runtime.Runtime, stop: threading.Event) -> bool:
    """Register the modules' tasks and write their declarative schedules, waiting while the
    store cannot be reached (a line per try, with backoff) until it answers or ``stop`` is
    set (then False)."""
    failures = 0
    while True:
        try:
            rt.engine.deploy(rt.registry.all())
            if failures:
                log.info("store available: engine started")
            return True
        except StoreUnavailableError as exc:
            failures += 1
            wait = backoff(failures, first=1.0, cap=10.0)
            log.warning(
                "store unavailable (%s); the engine starts when it answers, retrying in %s",
                exc,
                describe_wait(wait),
            )
            if stop.wait(wait):
                return False


def serve_engine(rt: runtime.Runtime) -> None:
    """Run the engine loops until SIGINT/SIGTERM, then give up the engine lease."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    host = Host("engine-" + default_worker_id(), rt)
    out = console()
    try:
        out.print(_banner(rt, host))
        if not _deploy(rt, stop):
            out.print("Engine stopped (it had not started).")
            return
        host.start()
        out.print("[dim]Engine running (it executes no task). Press Ctrl-C to stop.[/]")
        # a line when this process starts leading, and when it stands by: on losing the
        # lease, or when a first try for it is long past
        leading = False
        note_standby_at: float | None = time.monotonic() + STANDBY_NOTE
        while not stop.wait(0.2):
            if host.is_leader and not leading:
                leading, note_standby_at = True, None
                log.info("leading: this process runs the engine loops")
            elif not host.is_leader and (
                leading or (note_standby_at is not None and time.monotonic() >= note_standby_at)
            ):
                leading, note_standby_at = False, None
                log.info("standing by: another process holds the engine lease")
        out.print("Stopping engine...")
        host.stop()
        out.print("Engine stopped.")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("modules", nargs=-1, metavar="[MODULE ...]")
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(LOGLEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log records at this level and above (INFO: a line when this process starts or "
    "stops leading, and the loops' notes).",
)
def engine(modules: tuple[str, ...], loglevel: str) -> None:
    """Run the engine loops alone, executing no task, until SIGINT/SIGTERM.

    The loops: promote delayed runs and retries, expire TTLs, reap dead workers' leases,
    purge, fire schedules, redeliver (one process at a time, workers included, runs them).
    The declarative schedules of MODULE's tasks (dotted names or path/to/tasks.py) are
    written as it starts, as a worker does.
    """
    setup_logging(loglevel.upper())
    rt = configure()
    load_modules(list(modules))
    serve_engine(rt)
