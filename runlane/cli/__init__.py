"""The ``runlane`` command: ``dev``, ``worker``, ``engine``, ``trigger``, ``runs …``,
``schedules …`` and ``demo``.

Global options (``--store``, ``--env``) go before the command or after it: ``runlane --store
sqlite:///x.db runs list`` and ``runlane runs list --store sqlite:///x.db`` are the same. Errors
that runlane raises on purpose are shown as one clear line, never a traceback: a bad argument or
option exits with code 2, any other runlane error (an unknown run, a run in the wrong state)
with code 1.
"""

from __future__ import annotations

from typing import Any

import click

from runlane.cli._common import CliState
from runlane.core.options import ENVIRONMENTS
from runlane.errors import InvalidOptionError, RunlaneError

# runlane's option names → the flag or argument that carries them on the command line
_FLAGS = {
    "tags": "--tag",
    "tag": "--tag",
    "task_identifier": "--task",
    "task": "TASK_ID",
    "run": "RUN_ID",
    "batch": "--batch",
    "from_": "--from",
}


def _flag(option: str) -> str:
    head = option.split(".")[0].split("[")[0]
    return _FLAGS.get(head, "--" + head.replace("_", "-"))


class RunlaneGroup(click.Group):
    """Translates runlane's errors into click's, for every command below it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidOptionError as exc:
            shown = repr(exc.value)
            if len(shown) > 120:
                shown = shown[:117] + "..."
            raise click.BadParameter(
                f"{shown}: {exc.reason}", param_hint=_flag(exc.option)
            ) from None
        except RunlaneError as exc:
            raise click.ClickException(str(exc)) from None


_STORE_HELP = "Store URL (default: $RUNLANE_STORE_URL, else sqlite:///.runlane/runlane.db)."
_ENV_HELP = "Environment that scopes runs, keys and queues (default: $RUNLANE_ENV, else dev)."


@click.group(cls=RunlaneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", metavar="URL", envvar="RUNLANE_STORE_URL", default=None, help=_STORE_HELP)
# $RUNLANE_ENV is read (and checked) by CliState.environment, so a bad value names the variable
@click.option("--env", "environment", type=click.Choice(ENVIRONMENTS), default=None, help=_ENV_HELP)
@click.version_option(package_name="runlane", prog_name="runlane")
@click.pass_context
def main(ctx: click.Context, store: str | None, environment: str | None) -> None:
    """runlane: Trigger.dev's task model for Python.

    Start with `runlane demo`, then `runlane dev path/to/tasks.py`.
    """
    source = ctx.get_parameter_source("store")
    ctx.obj = CliState(
        store=store,
        env_option=environment,
        store_given=source is click.core.ParameterSource.COMMANDLINE,
    )


def _set_store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        st = ctx.ensure_object(CliState)
        st.store, st.store_given = value, True


def _set_env(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(CliState).env_option = value


def _add_global_options(command: click.Command) -> None:
    """``--store`` and ``--env`` on ``command`` (and the commands below it) too, so they can
    follow the command; given there, they win over the ones given before it."""
    names = {opt for param in command.params for opt in getattr(param, "opts", ())}
    if "--store" not in names:  # `runlane demo --store` is the demo's own option
        command.params.append(
            click.Option(
                ["--store"], metavar="URL", expose_value=False, callback=_set_store,
                help=_STORE_HELP,
            )
        )  # fmt: skip
    if "--env" not in names:
        command.params.append(
            click.Option(
                ["--env"], type=click.Choice(ENVIRONMENTS), expose_value=False,
                callback=_set_env, help=_ENV_HELP,
            )
        )  # fmt: skip
    for sub in getattr(command, "commands", {}).values():
        _add_global_options(sub)


def _register() -> None:
    from runlane.cli.demo import demo
    from runlane.cli.engine import engine
    from runlane.cli.runs import runs
    from runlane.cli.schedules import schedules
    from runlane.cli.serve import keys, serve
    from runlane.cli.trigger import trigger
    from runlane.cli.worker import dev, worker

    for command in (dev, worker, engine, serve, trigger, runs, schedules, keys, demo):
        _add_global_options(command)
        main.add_command(command)


_register()

__all__ = ["main"]
