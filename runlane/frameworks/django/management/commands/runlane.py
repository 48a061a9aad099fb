"""``python manage.py runlane worker|trigger|runs …|schedules …``: the ``runlane`` command
with runlane configured from ``settings.RUNLANE`` and the tasks of the installed apps.

``trigger``, ``runs`` and ``schedules`` are the ``runlane`` CLI's own commands, run against the
runtime the app configured; ``worker`` runs a ``runlane.Worker`` on the tasks autodiscovered
(no module arguments: they are the apps' ``tasks`` modules). This module is the one place the
Django app imports ``runlane.cli`` (the ignore in pyproject.toml's import-linter contract): a
management command must live in the app's package.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError

import runlane
from runlane.cli import RunlaneGroup
from runlane.cli._common import CliState
from runlane.cli.runs import runs
from runlane.cli.schedules import schedules
from runlane.cli.trigger import trigger
from runlane.cli.worker import _banner, _queues, serve_worker, setup_logging, worker_options


@click.command()
@worker_options
def worker(concurrency: int, queues: str | None, grace: float, loglevel: str) -> None:
    """Run the tasks of the installed apps until SIGINT/SIGTERM."""
    names = _queues(queues)
    setup_logging(loglevel.upper())
    w = runlane.Worker(concurrency=concurrency, queues=names)
    serve_worker(w, _banner("runlane worker (Django)", w, warn_dev=True), grace=grace)


@click.group(cls=RunlaneGroup, context_settings={"help_option_names": ["-h", "--help"]})
def group() -> None:
    """runlane, configured from settings.RUNLANE."""


for _command in (worker, trigger, runs, schedules):
    group.add_command(_command)


class Command(BaseCommand):
    help = "runlane: worker | trigger | runs ... | schedules ... (configured from settings.RUNLANE)"

    def run_from_argv(self, argv: list[str]) -> None:
        # click parses everything after `manage.py runlane`, its --help included
        self._run(argv[2:], f"{os.path.basename(argv[0])} {argv[1]}", standalone=True)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER)

    def handle(self, *args: str, **options: Any) -> None:  # call_command("runlane", ...)
        self._run(list(args), "manage.py runlane", standalone=False)

    def _run(self, args: list[str], prog: str, *, standalone: bool) -> None:
        from runlane.core import runtime

        runtime.get()  # a bad settings.RUNLANE raises ImproperlyConfigured here, naming the key
        state = CliState(configured=True)  # the runtime the app configured, not --store
        if standalone:
            group.main(args=args, prog_name=prog, obj=state, standalone_mode=True)
            return
        try:
            group.main(args=args, prog_name=prog, obj=state, standalone_mode=False)
        except click.ClickException as exc:
            raise CommandError(exc.format_message()) from None
        finally:
            sys.stdout.flush()
