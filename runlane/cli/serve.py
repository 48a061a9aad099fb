"""``runlane serve``: the management API on uvicorn; ``runlane keys``: its secret keys.

``runlane serve`` serves Trigger.dev's management routes (and runlane's own) for the configured
store, authenticated by the store's secret keys (``runlane keys create``) and the key in
``RUNLANE_SECRET_KEY``. ``--with-worker`` also executes runs in the same process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import click
from rich.table import Table

import runlane
from runlane.api import auth
from runlane.cli._common import configure, console, load_modules
from runlane.cli.worker import LOGLEVELS, setup_logging
from runlane.core import runtime
from runlane.frameworks.http.app import build_api
from runlane.frameworks.http.servers import AsgiApp

log = logging.getLogger("runlane.serve")


def asgi_app(rt: runtime.Runtime, *, with_worker: int = 0) -> AsgiApp:
    """The ASGI application ``runlane serve`` runs: the API over ``rt``; with ``with_worker``,
    a worker of that concurrency runs beside it from startup to shutdown."""
    api = build_api(rt)
    worker: runlane.Worker | None = None

    def lifespan(event: str) -> None:
        nonlocal worker
        if event == "startup" and with_worker:
            worker = runlane.Worker(concurrency=with_worker, runtime_=rt)
            worker.start()
        elif event == "shutdown":
            if worker is not None:
                worker.stop()
            api.environments.close()

    return AsgiApp(api, lifespan)


@click.command()
@click.argument("modules", nargs=-1, metavar="[MODULE ...]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8030, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--with-worker",
    "with_worker",
    default=0,
    type=click.IntRange(0, 256),
    show_default=True,
    metavar="N",
    help="Also execute runs in this process, N at a time (0: the API only).",
)
@click.option(
    "--workers",
    default=1,
    type=click.IntRange(1, 64),
    show_default=True,
    help="Server processes answering requests (uvicorn's workers).",
)
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(LOGLEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log records at this level and above.",
)
def serve(
    modules: tuple[str, ...], host: str, port: int, with_worker: int, workers: int, loglevel: str
) -> None:
    """Serve the management API over HTTP until SIGINT/SIGTERM.

    MODULE (dotted names or path/to/tasks.py): tasks to know by their definitions (a trigger
    validates their payloads; with --with-worker, executes them). Callers authenticate with
    `Authorization: Bearer <secret key>` (`runlane keys create`) or a public access token.
    """
    import uvicorn

    setup_logging(loglevel.upper())
    if os.environ.get("RUNLANE_API_URL"):
        raise click.UsageError(
            "RUNLANE_API_URL is set: this process is a client of another runlane server "
            "(remote mode). Unset it to serve a store."
        )
    rt = configure()
    load_modules(list(modules))
    app = asgi_app(rt, with_worker=with_worker) if workers == 1 else None
    out = console(stderr=True)
    url = f"http://{host}:{port}"
    out.print(
        f"[bold]runlane serve[/] on {url} (store {rt.settings.store_url}, "
        f"environment {rt.environment}); OpenAPI at /api/openapi.json"
    )
    out.print(
        f"Dashboard at {url}/dashboard: sign in with a secret key (`runlane keys create`, "
        "or RUNLANE_SECRET_KEY)"
    )
    if not rt.settings.secret_key and not auth.list_keys():
        out.print(
            "[yellow]No secret key yet: every request will be refused (401). Make one with "
            "`runlane keys create`, or set RUNLANE_SECRET_KEY.[/]"
        )
    if workers > 1:
        # each process builds its own runtime from what this one was given
        os.environ.update(
            RUNLANE_SERVE_MODULES=json.dumps(list(modules)),
            RUNLANE_SERVE_WITH_WORKER=str(with_worker),
            RUNLANE_STORE_URL=rt.settings.store_url or "",
            RUNLANE_ENV=rt.environment,
        )
        rt.close()
        uvicorn.run(
            "runlane.cli.serve:app_from_environment",
            factory=True, host=host, port=port, workers=workers, log_level=loglevel.lower(),
            lifespan="on", access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )  # fmt: skip
        out.print("runlane serve stopped.")
        return
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=loglevel.lower(),
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    _quiet_exit_server(config).run()
    out.print("runlane serve stopped.")


# seconds the requests under way get to finish when the server stops; past them they are
# cancelled: a realtime stream (SSE) never finishes by itself, so uvicorn would wait forever
SHUTDOWN_GRACE = 3.0


def app_from_environment() -> AsgiApp:
    """The ASGI application of one of ``runlane serve --workers N``'s processes, configured
    from the environment the parent set (RUNLANE_STORE_URL, RUNLANE_ENV, the modules)."""
    rt = runlane.configure()
    load_modules(json.loads(os.environ.get("RUNLANE_SERVE_MODULES") or "[]"))
    return asgi_app(rt, with_worker=int(os.environ.get("RUNLANE_SERVE_WITH_WORKER") or 0))


def stopping_server(config: Any) -> Any:
    """uvicorn's server for runlane's ASGI app: when it stops, the app's streams (realtime SSE,
    which never end by themselves) are ended once it accepts no more connections, rather than
    waited for until ``SHUTDOWN_GRACE`` runs out."""
    return _stopping_server_class()(config)


def _stopping_server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            for server in self.servers:  # no new connection (a client would reconnect here)
                server.close()
            end_streams = getattr(self.config.app, "end_streams", None)
            if end_streams is not None:
                end_streams()
            await super().shutdown(sockets)

    return Server


def _quiet_exit_server(config: Any) -> Any:
    """``stopping_server``, stopping gracefully on SIGINT/SIGTERM and then returning
    (uvicorn's own raises the signal again once it has shut down, so the process would end
    killed by it instead of with status 0)."""

    class Server(_stopping_server_class()):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)


# ---------------------------------------------------------------------- keys
@click.group()
def keys() -> None:
    """Secret keys of the HTTP API (the store keeps only their digests)."""


@keys.command("create")
@click.option("--name", default="", help="A note to tell the key apart (e.g. 'web app').")
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Requests a minute the API takes from this key and its tokens (429 past it).",
)
def keys_create(name: str, rate_limit: int | None) -> None:
    """Make a secret key for the environment (--env) and print it, once."""
    configure()
    key, row = auth.create_key(name, rate_limit=rate_limit)
    click.echo(key)
    console(stderr=True).print(
        f"[dim]{row.id} ({row.name or 'no name'}): shown once, kept only as a digest. Send it "
        "as `Authorization: Bearer <key>`, or set RUNLANE_SECRET_KEY.[/]"
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """The environment's keys (never the keys themselves)."""
    configure(existing=True)
    rows = auth.list_keys()
    if as_json:
        click.echo(json.dumps([_key_json(r) for r in rows], indent=2))
        return
    if not rows:
        console().print("No keys yet: `runlane keys create`.")
        return
    table = Table()
    for column in ("ID", "Name", "Ends with", "Requests/min", "Created", "Revoked"):
        table.add_column(column)
    for r in rows:
        limit = str(r.rate_limit) if r.rate_limit else "-"
        table.add_row(r.id, r.name, "…" + r.hint, limit, _when(r.created_at), _when(r.revoked_at))
    console().print(table)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: it (and every public token it signed) authenticates nothing more."""
    configure(existing=True)
    if not auth.revoke_key(key_id):
        raise click.ClickException(
            f"no key {key_id!r} in environment {runtime.get().environment!r}"
        )
    click.echo(f"revoked {key_id}")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _key_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "hint": row.hint,
        "rate_limit": row.rate_limit,
        "created_at": _when(row.created_at),
        "revoked_at": _when(row.revoked_at) if row.revoked_at is not None else None,
    }
