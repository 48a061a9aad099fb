"""``flask runlane ...``: the ``runlane`` commands, configured by the Flask app.

Flask finds this group through the ``flask.commands`` entry point (pyproject.toml). It loads
the app (``flask --app ...``), whose ``Runlane(app)`` / ``init_app`` configured runlane from
``app.config["RUNLANE_*"]``, and runs ``worker``, ``trigger``, ``runs ...``, ``schedules ...``,
``serve``, ``keys ...`` and ``engine`` inside the app's context, on that runtime: they have no
``--store`` / ``--env`` (the app's config chooses them). ``dev`` loads the app again in each
child it starts. ``worker`` needs no MODULE: the tasks the app imports are known already.

It lives in ``runlane.cli`` because it imports the CLI, which ``runlane.frameworks`` may not.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext

from runlane import cli as runlane_cli
from runlane.cli._common import CliState
from runlane.cli.worker import (
    _queues,
    dev_options,
    run_dev_child,
    watch_and_run,
)
from runlane.core import runtime
from runlane.frameworks.flask import EXTENSION, RunlaneState

COMMANDS = ("worker", "engine", "serve", "trigger", "runs", "schedules", "keys")


def app_state(app: Flask) -> RunlaneState:
    """The app's runlane state, its runtime installed as the process's (what the commands
    use)."""
    state: RunlaneState | None = app.extensions.get(EXTENSION)
    if state is None:
        raise click.UsageError(
            f"the Flask app {app.name!r} does not use runlane: add "
            "`Runlane(app)` (from runlane.frameworks.flask import Runlane) or call "
            "`init_app(app)` in its factory"
        )
    if state.runtime.closed:
        raise click.UsageError(f"the runlane runtime of the Flask app {app.name!r} is closed")
    if runtime.peek() is not state.runtime:
        runtime.install(state.runtime)
    return state


@click.group("runlane", cls=runlane_cli.RunlaneGroup)
@with_appcontext
@click.pass_context
def cli(ctx: click.Context) -> None:
    """runlane's commands (as `runlane ...`) on this app's runlane settings (RUNLANE_*).

    Tasks run inside the app's context.
    """
    app_state(current_app)
    ctx.obj = CliState(configured=True)  # the commands use the app's runtime as it is


def _is_global(param: click.Parameter) -> bool:
    """``--store`` / ``--env`` as added to every ``runlane`` command (not a command's own)."""
    callback = getattr(param, "callback", None)
    return callback in (runlane_cli._set_store, runlane_cli._set_env)


def _adapted(command: click.Command) -> click.Command:
    """A copy of a ``runlane`` command without the global options (the app's config chooses
    the store and environment), its subcommands too."""
    new = copy.copy(command)
    new.params = [p for p in command.params if not _is_global(p)]
    if isinstance(command, click.Group):
        assert isinstance(new, click.Group)
        new.commands = {name: _adapted(sub) for name, sub in command.commands.items()}
    return new


def _worker_modules_optional(command: click.Command) -> None:
    for i, param in enumerate(command.params):
        if isinstance(param, click.Argument) and param.name == "modules":
            arg = copy.copy(param)
            arg.required = False
            arg.metavar = "[MODULE ...]"
            command.params[i] = arg


def _one_process_serve(command: click.Command) -> None:
    callback = command.callback
    assert callback is not None

    def serve(*args: Any, workers: int, **kwargs: Any) -> Any:
        if workers > 1:
            raise click.BadParameter(
                "each server process would configure runlane from the environment, not from "
                "the app: serve the Flask app itself with several processes (gunicorn), its "
                "blueprint answers the API",
                param_hint="--workers",
            )
        return callback(*args, workers=workers, **kwargs)

    command.callback = serve


def _register() -> None:
    for name in COMMANDS:
        command = _adapted(runlane_cli.main.commands[name])
        if name == "worker":
            _worker_modules_optional(command)
        if name == "serve":
            _one_process_serve(command)
        cli.add_command(command)
    cli.add_command(dev)


# ---------------------------------------------------------------------- dev
def dev_child(
    app_import_path: str | None,
    create_app: Callable[..., Flask] | None,
    modules: list[str],
    concurrency: int,
    queues: list[str] | None,
    cwd: str,
    loglevel: str = "INFO",
    api_port: int = 0,
) -> None:
    """A child of ``flask runlane dev`` (started afresh on every reload): load the app (its
    ``init_app`` configures runlane), then as ``runlane dev``'s child, in the app's context."""
    contexts: list[Any] = []

    def setup() -> tuple[Any, dict[str, str]]:
        app = ScriptInfo(app_import_path=app_import_path, create_app=create_app).load_app()
        context = app.app_context()
        context.push()  # (popped as the process ends)
        contexts.append(context)
        return app_state(app).runtime, {"Flask app": app.name}

    run_dev_child(
        setup, modules, concurrency, queues, cwd, loglevel, api_port,
        title="flask runlane dev", keys_hint="flask runlane keys create",
    )  # fmt: skip


@click.command()
@dev_options
@click.pass_context
def dev(
    ctx: click.Context,
    modules: tuple[str, ...],
    concurrency: int,
    queues: str | None,
    port: int,
    loglevel: str,
) -> None:
    """Run the tasks of MODULE with this app's settings, and serve the management API; reload
    (the app too) when their files change."""
    info = ctx.find_object(ScriptInfo)
    args = (
        info.app_import_path if info is not None else None,
        info.create_app if info is not None else None,
        list(modules), concurrency, _queues(queues), os.getcwd(), loglevel.upper(), port,
    )  # fmt: skip
    watch_and_run("flask runlane dev", list(modules), dev_child, args)


_register()

__all__ = ["cli"]
