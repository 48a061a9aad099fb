"""``runlane worker`` and ``runlane dev``: run the tasks of the user's modules.

``worker`` runs a ``runlane.Worker`` in this process until SIGINT or SIGTERM, then stops it
gracefully (running attempts finish). ``dev`` does the same in a child process and restarts the
child whenever a Python file next to the modules changes (watchfiles).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.panel import Panel
from rich.table import Table

import runlane
from runlane.cli._common import configure, console, load_modules, module_files, state
from runlane.core import runtime
from runlane.errors import RunlaneError


def _queues(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [q.strip() for q in value.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("expected queue names separated by commas", param_hint="--queues")
    return names


def _banner(title: str, worker: runlane.Worker, extra: dict[str, str] | None = None) -> Panel:
    rt = runtime.get()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    task_ids = rt.registry.ids()
    grid.add_row("Tasks", "\n".join(task_ids) if task_ids else "[yellow]none found[/]")
    grid.add_row("Store", rt.settings.store_url or "-")
    grid.add_row("Environment", rt.environment)
    grid.add_row("Concurrency", str(worker.concurrency))
    if worker.queues:
        grid.add_row("Queues", ", ".join(worker.queues))
    for key, value in (extra or {}).items():
        grid.add_row(key, value)
    return Panel(grid, title=title, title_align="left", border_style="cyan")


def serve_worker(
    worker: runlane.Worker, banner: Panel, *, restore_signals: bool = True, grace: float = 30.0
) -> None:
    """Start ``worker``, block until SIGINT/SIGTERM, then stop it gracefully: no new runs,
    running attempts get ``grace`` seconds to finish, the rest are handed back (retried on
    another worker at once).

    Further signals while stopping are ignored (``runlane dev``'s parent may send one more).
    """
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    out = console()
    try:
        worker.start()
        out.print(banner)
        out.print("[dim]Worker running. Press Ctrl-C to stop.[/]")
        while not stop.wait(0.5):
            pass
        running = len(worker.active)
        note = f" (waiting for {running} running attempt(s))" if running else ""
        out.print(f"Stopping worker{note}...")
        worker.stop(timeout=grace)
        out.print("Worker stopped.")
    finally:
        if restore_signals:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@click.command()
@click.argument("modules", nargs=-1, required=True, metavar="MODULE [MODULE ...]")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Runs executed at once by this worker.",
)
@click.option("--queues", metavar="A,B", help="Only run these queues (comma separated).")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running attempts get to finish on SIGTERM before they are handed back.",
)
def worker(modules: tuple[str, ...], concurrency: int, queues: str | None, grace: float) -> None:
    """Run the tasks of MODULE (dotted names or path/to/tasks.py) until SIGINT/SIGTERM."""
    names = _queues(queues)
    configure()
    load_modules(list(modules))
    w = runlane.Worker(concurrency=concurrency, queues=names)
    serve_worker(w, _banner("runlane worker", w), grace=grace)


# ---------------------------------------------------------------------- dev
def dev_child(
    modules: list[str],
    store: str | None,
    environment: str | None,
    concurrency: int,
    queues: list[str] | None,
    cwd: str,
) -> None:
    """The child process of ``runlane dev`` (spawned afresh on every reload)."""
    os.chdir(cwd)
    sys.dont_write_bytecode = True  # a quick edit must never be shadowed by a stale .pyc
    try:
        runlane.configure(store=store, environment=environment)
        load_modules(modules)
        w = runlane.Worker(concurrency=concurrency, queues=queues)
        extra = {"Reload": "on changes to " + ", ".join(modules)}
        serve_worker(w, _banner("runlane dev", w, extra), restore_signals=False)
    except KeyboardInterrupt:  # stopped while importing the modules
        sys.exit(0)
    except click.ClickException as exc:
        exc.show()
        console(stderr=True).print("[yellow]Waiting for a change to reload...[/]")
        sys.exit(exc.exit_code)
    except RunlaneError as exc:
        console(stderr=True).print(f"[red]Error:[/] {exc}")
        console(stderr=True).print("[yellow]Waiting for a change to reload...[/]")
        sys.exit(1)


class _QuietStop(logging.Filter):
    """Hide watchfiles' notes about the signal that stops ``runlane dev`` (expected)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not text.startswith(
            ("received signal", "KeyboardInterrupt caught", "process already dead")
        )


@click.command()
@click.argument("modules", nargs=-1, required=True, metavar="MODULE [MODULE ...]")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Runs executed at once.",
)
@click.option("--queues", metavar="A,B", help="Only run these queues (comma separated).")
def dev(modules: tuple[str, ...], concurrency: int, queues: str | None) -> None:
    """Run the tasks of MODULE on the embedded default; reload when their files change."""
    import watchfiles

    for name in ("watchfiles.main", "watchfiles.run"):
        logging.getLogger(name).addFilter(_QuietStop())
    names = _queues(queues)
    files = module_files(list(modules))
    watched = sorted({str(p.parent) for p in files})
    st = state()
    out = console()
    out.print(f"[cyan]runlane dev[/] watching {', '.join(watched)} for changes to *.py")

    def on_change(changes: set[tuple[Any, str]]) -> None:
        changed = sorted({Path(path).name for _, path in changes})
        out.print(f"[yellow]Changed: {', '.join(changed)} — reloading...[/]")

    watchfiles.run_process(
        *watched,
        target=dev_child,
        args=(list(modules), st.store, st.environment, concurrency, names, os.getcwd()),
        target_type="function",
        callback=on_change,
        watch_filter=watchfiles.PythonFilter(),
        sigint_timeout=30,
    )
    out.print("runlane dev stopped.")
