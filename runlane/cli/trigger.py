"""``runlane trigger TASK_ID --payload JSON [options]``: trigger a run by task id."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.text import Text

import runlane
from runlane.cli._common import configure, console, dumps, duration_arg, parse_json, status_text
from runlane.core.options import MACHINES


@click.command()
@click.argument("task_id")
@click.option(
    "--payload", metavar="JSON", default=None, help="The payload, as JSON (default null)."
)
@click.option("--delay", metavar="WHEN", help="Run later: '1h', '90s', seconds or an ISO date.")
@click.option("--ttl", metavar="DURATION", help="Expire if not started within this ('10m').")
@click.option("--tag", "tags", metavar="TAG", multiple=True, help="A tag (repeatable, up to 5).")
@click.option("--idempotency-key", metavar="KEY", help="Return the existing run for this key.")
@click.option("--idempotency-key-ttl", metavar="DURATION", help="How long the key is kept ('5m').")
@click.option("--concurrency-key", metavar="KEY", help="Per-key concurrency within the queue.")
@click.option("--queue", metavar="NAME", help="Run on this queue instead of the task's.")
@click.option("--max-attempts", type=int, metavar="N", help="Attempts before the run fails.")
@click.option("--max-duration", metavar="SECONDS", help="Time limit of an attempt (>= 5s).")
@click.option("--metadata", metavar="JSON", help="Initial metadata, a JSON object.")
@click.option("--machine", type=click.Choice(list(MACHINES)), help="Machine preset.")
@click.option("--wait", is_flag=True, help="Poll until the run is final; print status and output.")
@click.option("--timeout", type=float, metavar="SECONDS", help="With --wait: give up after this.")
def trigger(
    task_id: str,
    payload: str | None,
    delay: str | None,
    ttl: str | None,
    tags: tuple[str, ...],
    idempotency_key: str | None,
    idempotency_key_ttl: str | None,
    concurrency_key: str | None,
    queue: str | None,
    max_attempts: int | None,
    max_duration: str | None,
    metadata: str | None,
    machine: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Trigger a run of TASK_ID and print its run id.

    The task's code need not be importable here: a worker that has the task runs it. With
    --wait the exit code is 0 only if the run COMPLETED.
    """
    body = parse_json(payload, "--payload")
    options: dict[str, Any] = {
        "delay": duration_arg(delay),
        "ttl": duration_arg(ttl),
        "tags": list(tags) or None,
        "idempotency_key": idempotency_key,
        "idempotency_key_ttl": duration_arg(idempotency_key_ttl),
        "concurrency_key": concurrency_key,
        "queue": queue,
        "max_attempts": max_attempts,
        "machine": machine,
        "metadata": parse_json(metadata, "--metadata"),
    }
    if max_duration is not None:
        options["max_duration"] = duration_arg(max_duration)
    if options["metadata"] is not None and not isinstance(options["metadata"], dict):
        raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    rt = configure()
    handle = runlane.tasks.trigger(
        task_id, body, **{k: v for k, v in options.items() if v is not None}
    )
    click.echo(handle.id)
    err = console(stderr=True)
    if handle.is_cached:
        err.print("[yellow]cached:[/] the idempotency key matched this existing run")
    if rt.registry.get(task_id) is None and not rt.ops.registered_tasks([task_id]):
        _warn_unknown_task(task_id, runlane.runs.retrieve(handle.id), err)
    if not wait:
        return
    run = _wait(handle.id, timeout, err)
    out = console()
    out.print(status_text(run.status))
    if run.error is not None:
        out.print(f"[red]{run.error}[/]")
    elif run.output is not None:
        out.print(dumps(run.output), markup=False)
    if run.status != "COMPLETED":
        raise SystemExit(1)


def _warn_unknown_task(task_id: str, run: runlane.Run, err: Any) -> None:
    """The run was created, but nothing has the task: a typo, or no worker started yet."""
    expiry = f"; it expires if none starts within its TTL ({run.ttl})" if run.ttl else ""
    err.print(
        Text.assemble(
            ("warning:", "yellow"),
            f" no worker has registered a task with id {task_id!r} (check the spelling). The "
            "run waits in WAITING_FOR_DEPLOY until a worker that has this task starts "
            f"(runlane worker path/to/tasks.py){expiry}.",
        )
    )


def _wait(run_id: str, timeout: float | None, err: Any) -> runlane.Run:
    deadline = None if timeout is None else time.monotonic() + timeout
    run = runlane.runs.retrieve(run_id)
    with err.status(f"waiting for {run_id} ({run.status})") as spinner:
        while not run.is_completed:
            if deadline is not None and time.monotonic() >= deadline:
                raise click.ClickException(
                    f"run {run_id} was still {run.status.value} after {timeout:g}s"
                )
            time.sleep(0.2)
            run = runlane.runs.retrieve(run_id)
            spinner.update(f"waiting for {run_id} ({run.status})")
    return run
