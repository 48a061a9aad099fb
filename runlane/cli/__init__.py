"""The ``runlane`` command: ``dev``, ``worker``, ``trigger``, ``runs …`` and ``demo``.

Global options come before the command (``runlane --store sqlite:///x.db runs list``). Errors
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


@click.group(cls=RunlaneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    metavar="URL",
    envvar="RUNLANE_STORE_URL",
    default=None,
    help="Store URL (default: $RUNLANE_STORE_URL, else sqlite:///.runlane/runlane.db).",
)
@click.option(
    "--env",
    "environment",
    type=click.Choice(ENVIRONMENTS),
    envvar="RUNLANE_ENV",
    default=None,
    help="Environment that scopes runs, keys and queues (default: $RUNLANE_ENV, else dev).",
)
@click.version_option(package_name="runlane", prog_name="runlane")
@click.pass_context
def main(ctx: click.Context, store: str | None, environment: str | None) -> None:
    """runlane: Trigger.dev's task model for Python.

    Start with `runlane demo`, then `runlane dev path/to/tasks.py`.
    """
    source = ctx.get_parameter_source("store")
    ctx.obj = CliState(
        store=store,
        environment=environment,
        store_given=source is click.core.ParameterSource.COMMANDLINE,
    )


def _register() -> None:
    from runlane.cli.demo import demo
    from runlane.cli.runs import runs
    from runlane.cli.trigger import trigger
    from runlane.cli.worker import dev, worker

    for command in (dev, worker, trigger, runs, demo):
        main.add_command(command)


_register()

__all__ = ["main"]
