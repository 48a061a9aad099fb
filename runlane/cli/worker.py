"""``runlane worker`` and ``runlane dev``: run the tasks of the user's modules.

``worker`` runs a ``runlane.Worker`` in this process until SIGINT or SIGTERM, then stops it
gracefully (running attempts finish; a second Ctrl-C hands them back at once). It waits for a
store that cannot be reached yet, and logs a line per run at ``--loglevel`` (INFO: received and
ended; the runs' own ``runlane.logger`` and ``logging`` records). ``dev`` does the same in a
child process and restarts the child whenever a Python file next to the modules changes
(watchfiles).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.panel import Panel
from rich.table import Table

import runlane
from runlane.backends.local import LocalBroker
from runlane.backends.sqlite import SQLiteStore
from runlane.cli._common import configure, console, load_modules, module_files, stacked, state
from runlane.core import context, operations, runtime
from runlane.core.storecalls import backoff, describe_wait
from runlane.errors import RunlaneError, StoreUnavailableError

log = logging.getLogger("runlane.worker")

LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _ConsoleFormatter(logging.Formatter):
    """``[2025-01-31 12:00:00,123: INFO] run_… convert-video received``: the worker's lines
    per run as they are; other records name the run they were made in, else their logger."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s: %(levelname)s%(origin)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "runlane.worker.runs":
            record.origin = ""
        else:
            active = context.current()
            run_id = getattr(record, "run_id", None) or (active.run_id if active else None)
            record.origin = "/" + (run_id or record.name)
        return super().format(record)


class _Console(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record (inside a run, the stream that also
    records the line in the run's log, at the record's level)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        self.setFormatter(_ConsoleFormatter())

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def setup_logging(level: str) -> None:
    """Show runlane's records, the worker's lines per run and every other record at ``level``
    and above on stderr (Celery's ``--loglevel``)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Console)]:
        root.removeHandler(handler)
    root.addHandler(_Console())
    root.setLevel(level)


def _loglevel_option(fn: Any) -> Any:
    return click.option(
        "-l",
        "--loglevel",
        type=click.Choice(LOGLEVELS, case_sensitive=False),
        default="INFO",
        show_default=True,
        help="Log records at this level and above (INFO: a line as each run starts and ends).",
    )(fn)


def _shared_dev(rt: runtime.Runtime) -> bool:
    """The dev environment (whose runs expire after the dev TTL) on a store other processes
    share: a deployment that forgot RUNLANE_ENV."""
    if rt.environment != "dev" or not rt.settings.limits.dev_default_ttl_seconds:
        return False
    return not isinstance(rt.store, SQLiteStore) or not isinstance(rt.broker, LocalBroker)


def _queues(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [q.strip() for q in value.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("expected queue names separated by commas", param_hint="--queues")
    return names


def _banner(
    title: str,
    worker: runlane.Worker,
    extra: dict[str, str] | None = None,
    *,
    warn_dev: bool = False,
) -> Panel:
    """``warn_dev``: warn (in yellow) when the dev environment runs on a shared store."""
    rt = runtime.get()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    task_ids = rt.registry.ids()
    grid.add_row("Tasks", "\n".join(task_ids) if task_ids else "[yellow]none found[/]")
    grid.add_row("Store", rt.settings.store_url or "-")
    environment = rt.environment
    if warn_dev and _shared_dev(rt):
        minutes = rt.settings.limits.dev_default_ttl_seconds / 60
        environment += (
            f"\n[yellow]Warning: the dev environment expires runs not started within "
            f"{minutes:g} minutes (its default TTL), e.g. while workers are down. "
            "For a deployment set RUNLANE_ENV=prod.[/]"
        )
    grid.add_row("Environment", environment)
    grid.add_row("Concurrency", str(worker.concurrency))
    if worker.queues:
        grid.add_row("Queues", ", ".join(worker.queues))
    for key, value in (extra or {}).items():
        grid.add_row(key, value)
    return Panel(grid, title=title, title_align="left", border_style="cyan")


def _start(worker: runlane.Worker, stop: threading.Event) -> bool:
    """Start ``worker``, waiting while the store cannot be reached (Celery's
    ``broker_connection_retry_on_startup``): a line per try, tried again with backoff until
    it answers or ``stop`` is set (then False)."""
    failures = 0
    while True:
        try:
            rt = worker.runtime
            operations.registered_tasks(rt, rt.registry.ids())  # a quick try of the store
            worker.start()
            if failures:
                log.info("store available: worker started")
            return True
        except StoreUnavailableError as exc:
            failures += 1
            wait = backoff(failures, first=1.0, cap=10.0)
            log.warning(
                "store unavailable (%s); the worker starts when it answers, retrying in %s",
                exc,
                describe_wait(wait),
            )
            if stop.wait(wait):
                return False


def serve_worker(
    worker: runlane.Worker,
    banner: Panel,
    *,
    restore_signals: bool = True,
    grace: float = 30.0,
    force_on_second_sigint: bool = True,
) -> None:
    """Start ``worker``, block until SIGINT/SIGTERM, then stop it gracefully: no new runs,
    running attempts get ``grace`` seconds to finish, the rest are handed back (retried on
    another worker at once). A SIGINT while stopping (a second Ctrl-C) hands them back at once
    (Celery's cold shutdown), unless ``force_on_second_sigint`` is False (``runlane dev``,
    whose parent sends one more on a Ctrl-C); other signals while stopping are ignored.
    """
    stop = threading.Event()
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stopping.is_set() and signum == signal.SIGINT and force_on_second_sigint:
            worker.force_stop()
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    out = console()
    try:
        out.print(banner)
        if not _start(worker, stop):
            out.print("Worker stopped (it had not started).")
            return
        out.print("[dim]Worker running. Press Ctrl-C to stop.[/]")
        while not stop.wait(0.5):
            pass
        stopping.set()
        running = len(worker.active)
        note = f" (waiting up to {grace:g} s for {running} running attempt(s))" if running else ""
        again = (
            "; press Ctrl-C again to stop at once, handing runs in flight back"
            if force_on_second_sigint
            else ""
        )
        out.print(f"Stopping worker{note}{again}...")
        worker.stop(timeout=grace)
        out.print("Worker stopped.")
    finally:
        if restore_signals:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# The options of a worker command (``runlane worker``, ``manage.py runlane worker``):
# --concurrency, --queues, --grace, --loglevel.
worker_options = stacked(
    click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
        help="Runs executed at once by this worker.",
    ),
    click.option("--queues", metavar="A,B", help="Only run these queues (comma separated)."),
    click.option(
        "--grace",
        type=click.FloatRange(min=0),
        default=30.0,
        show_default=True,
        help="Seconds running attempts get to finish on SIGTERM or Ctrl-C before they are "
        "handed back (a second Ctrl-C hands them back at once).",
    ),
    _loglevel_option,
)


@click.command()
@click.argument("modules", nargs=-1, required=True, metavar="MODULE [MODULE ...]")
@worker_options
def worker(
    modules: tuple[str, ...], concurrency: int, queues: str | None, grace: float, loglevel: str
) -> None:
    """Run the tasks of MODULE (dotted names or path/to/tasks.py) until SIGINT/SIGTERM."""
    names = _queues(queues)
    setup_logging(loglevel.upper())
    configure()
    load_modules(list(modules))
    w = runlane.Worker(concurrency=concurrency, queues=names)
    serve_worker(w, _banner("runlane worker", w, warn_dev=True), grace=grace)


# ---------------------------------------------------------------------- dev
def _serve_api(rt: runtime.Runtime, port: int) -> Callable[[], None] | None:
    """The management API on 127.0.0.1:``port`` in a thread of ``runlane dev``; returns what
    stops it (None when the port cannot be had: dev goes on without it, saying so)."""
    import uvicorn

    from runlane.cli.serve import SHUTDOWN_GRACE, asgi_app, stopping_server

    server = stopping_server(
        uvicorn.Config(
            asgi_app(rt),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name="runlane-dev-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        log.warning(
            "the API could not listen on 127.0.0.1:%d; runlane dev goes on without it", port
        )
        return None

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop


def run_dev_child(
    setup: Callable[[], tuple[runtime.Runtime, dict[str, str]]],
    modules: list[str],
    concurrency: int,
    queues: list[str] | None,
    cwd: str,
    loglevel: str,
    api_port: int,
    title: str = "runlane dev",
    keys_hint: str = "runlane keys create",
) -> None:
    """The body of a ``dev`` child process (spawned afresh on every reload): ``setup()``
    configures runlane (and returns the runtime and banner lines of its own), then the modules
    are imported, the API served on ``api_port`` (0: not) and a worker runs until stopped."""
    os.chdir(cwd)
    sys.dont_write_bytecode = True  # a quick edit must never be shadowed by a stale .pyc
    setup_logging(loglevel)
    stop_api = None
    try:
        rt, extra = setup()
        load_modules(modules)
        w = runlane.Worker(concurrency=concurrency, queues=queues)
        extra = {**extra, "Reload": "on changes to " + ", ".join(modules)}
        if api_port:
            stop_api = _serve_api(rt, api_port)
            if stop_api is not None:
                url = f"http://127.0.0.1:{api_port}"
                extra["API"] = f"{url} ({keys_hint}: a key)"
                extra["Dashboard"] = (
                    f"{url}/dashboard (sign in with the key, or RUNLANE_SECRET_KEY)"
                )
        serve_worker(
            w, _banner(title, w, extra), restore_signals=False, force_on_second_sigint=False
        )
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
    finally:
        if stop_api is not None:
            stop_api()


def dev_child(
    modules: list[str],
    store: str | None,
    environment: str | None,
    concurrency: int,
    queues: list[str] | None,
    cwd: str,
    loglevel: str = "INFO",
    api_port: int = 0,
) -> None:
    """The child process of ``runlane dev``: runlane configured from its options."""

    def setup() -> tuple[runtime.Runtime, dict[str, str]]:
        return runlane.configure(store=store, environment=environment), {}

    run_dev_child(setup, modules, concurrency, queues, cwd, loglevel, api_port)


class _QuietStop(logging.Filter):
    """Hide watchfiles' notes about the signal that stops ``runlane dev`` (expected)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not text.startswith(
            ("received signal", "KeyboardInterrupt caught", "process already dead")
        )


# The arguments of a ``dev`` command (``runlane dev``, ``flask runlane dev``): MODULE ...,
# --concurrency, --queues, --port, --loglevel.
dev_options = stacked(
    click.argument("modules", nargs=-1, required=True, metavar="MODULE [MODULE ...]"),
    click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
        help="Runs executed at once.",
    ),
    click.option("--queues", metavar="A,B", help="Only run these queues (comma separated)."),
    click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=8030,
        show_default=True,
        help="Serve the management API on 127.0.0.1:PORT too (0: not at all).",
    ),
    _loglevel_option,
)


def watch_and_run(title: str, modules: list[str], target: Any, args: tuple[Any, ...]) -> None:
    """Run ``target(*args)`` in a child process, started afresh whenever a ``.py`` file next to
    ``modules`` changes, until Ctrl-C (the parent of ``runlane dev`` and its Flask twin)."""
    import watchfiles

    for name in ("watchfiles.main", "watchfiles.run"):
        logging.getLogger(name).addFilter(_QuietStop())
    watched = sorted({str(p.parent) for p in module_files(modules)})
    out = console()
    out.print(f"[cyan]{title}[/] watching {', '.join(watched)} for changes to *.py")

    def on_change(changes: set[tuple[Any, str]]) -> None:
        changed = sorted({Path(path).name for _, path in changes})
        out.print(f"[yellow]Changed: {', '.join(changed)} — reloading...[/]")

    watchfiles.run_process(
        *watched,
        target=target,
        args=args,
        target_type="function",
        callback=on_change,
        watch_filter=watchfiles.PythonFilter(),
        sigint_timeout=30,
    )
    out.print(f"{title} stopped.")


@click.command()
@dev_options
def dev(
    modules: tuple[str, ...], concurrency: int, queues: str | None, port: int, loglevel: str
) -> None:
    """Run the tasks of MODULE on the embedded default, and serve the management API; reload
    when their files change."""
    st = state()
    args = (
        list(modules), st.store, st.environment, concurrency, _queues(queues), os.getcwd(),
        loglevel.upper(), port,
    )  # fmt: skip
    watch_and_run("runlane dev", list(modules), dev_child, args)
