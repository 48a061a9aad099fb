"""``runlane runs list|show|cancel|replay|reschedule|logs``: the runs management API; ``tail``
and ``watch`` (runs as they change) are in ``live.py``."""

from __future__ import annotations

import json
from itertools import islice

import click
from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import runlane
from runlane.cli._common import (
    configure,
    console,
    dumps,
    duration_arg,
    duration_text,
    ms_text,
    plural,
    run_json,
    span_text,
    status_text,
    when,
)
from runlane.cli._listing import run_filters, runs_table
from runlane.cli.live import tail, watch
from runlane.core.models import Run


@click.group()
def runs() -> None:
    """List, inspect, follow (tail, watch), cancel, replay and reschedule runs."""


@runs.command("list")
@run_filters("Only the runs of this batch.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many runs to show (newest first).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_runs(
    statuses: tuple[str, ...],
    task_ids: tuple[str, ...],
    tags: tuple[str, ...],
    queues: tuple[str, ...],
    batch: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    configure(existing=True)
    page = runlane.runs.list(
        status=[s.strip().upper() for s in statuses] or None,
        task_identifier=list(task_ids) or None,
        tag=list(tags) or None,
        queue=list(queues) or None,
        batch=batch,
        limit=min(limit, 100),
    )
    found: list[Run] = list(islice(page, limit))
    if as_json:
        click.echo(json.dumps([run_json(r) for r in found], indent=2, default=str))
        return
    out = console()
    if not found:
        out.print("No runs match.")
        return
    table = runs_table(found, out.width)
    if table is not None:
        out.print(table)
    else:  # too narrow for a table: the ids stay whole
        for run in found:
            out.print(Text(run.id + " ").append_text(status_text(run.status)), soft_wrap=True)
    more = " (more exist: raise --limit)" if len(found) == limit and page.has_next_page() else ""
    out.print(plural(len(found), "run") + more, style="dim")


def _attempts_table(run: Run, width: int) -> Table:
    """One line an attempt, within ``width`` columns: the error (shown whole below the table)
    gets what the other columns leave. When that is too little, the worker column goes
    first, then the start's date (its time stays)."""
    attempts = Table(
        box=box.SIMPLE_HEAD,
        title=f"Attempts: {_attempts_text(run)}",
        title_justify="left",
        title_style="bold",
    )
    names = ["#", "Status", "Started", "Took", "Worker"]

    def cells(short: bool) -> list[list[str]]:
        rows = []
        for a in run.attempts:
            took = a.finished_at - a.started_at if a.finished_at else None
            started = (
                a.started_at.astimezone().strftime("%H:%M:%S") if short else when(a.started_at)
            )
            rows.append(
                [
                    str(a.number),
                    a.status.value,
                    started,
                    span_text(took.total_seconds() * 1000) if took is not None else "-",
                    a.worker_id or "-",
                ]
            )
        return rows

    def left(rows: list[list[str]], shown: list[int]) -> int:
        """Columns left for the error: each column's padding and rule (3), the table's
        edges and a margin taken."""
        used = sum(max(len(names[i]), *(len(r[i]) for r in rows)) for i in shown)
        return width - used - 3 * (len(shown) + 1) - 4

    rows, shown = cells(short=False), [0, 1, 2, 3, 4]
    for step in ("worker", "date"):
        if left(rows, shown) >= 12:  # the error keeps at least 12 columns
            break
        if step == "worker":
            shown.remove(4)
        else:
            rows = cells(short=True)
    room = max(12, left(rows, shown))
    for i in shown:
        attempts.add_column(names[i], no_wrap=True)
    attempts.add_column("Error", no_wrap=True)
    for a, r in zip(run.attempts, rows, strict=True):
        error = str(a.error).splitlines()[0] if a.error else "-"
        if len(error) > room:
            error = error[: room - 1] + "…"
        row: list[Text | str] = [r[i] for i in shown]
        row[1] = status_text(r[1])
        attempts.add_row(*row, error)
    return attempts


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def show(run_id: str, as_json: bool) -> None:
    """Show every field of a run: attempts, error, metadata, payload and output."""
    configure(existing=True)
    run = runlane.runs.retrieve(run_id)
    if as_json:
        click.echo(json.dumps(run_json(run), indent=2, default=str))
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    rows: list[tuple[str, object]] = [
        ("Status", status_text(run.status)),
        ("Task", run.task_identifier),
        ("Environment", run.environment),
        ("Queue", run.queue),
        ("Concurrency key", run.concurrency_key),
        ("Tags", ", ".join(run.tags) or None),
        ("Idempotency key", run.idempotency_key),
        ("TTL", run.ttl),
        ("Delayed until", when(run.delayed_until) if run.delayed_until else None),
        ("Created", when(run.created_at)),
        ("Queued", when(run.queued_at) if run.queued_at else None),
        ("Started", when(run.started_at) if run.started_at else None),
        ("Finished", when(run.finished_at) if run.finished_at else None),
        ("Expired", when(run.expired_at) if run.expired_at else None),
        ("Duration", duration_text(run)),
        ("Attempts", None if run.attempts else _attempts_text(run)),  # else the table's title
        ("Max duration", f"{run.max_duration}s" if run.max_duration else None),
        ("Machine", run.machine),
        ("Version", run.version),
        ("Batch", run.batch_id),
        ("Parent", run.parent_id),
        ("Root", run.root_id),
        ("Schedule", run.schedule_id),
        ("Test run", "yes" if run.is_test else None),
    ]
    for name, value in rows:
        if value is not None:
            fields.add_row(name, value if isinstance(value, Text) else str(value))
    parts: list[object] = [fields]
    if run.attempts:
        parts.append(_attempts_table(run, console().width - 6))  # (the panel's frame)
    if run.error is not None:
        body = str(run.error) + (f"\n\n{run.error.stack_trace}" if run.error.stack_trace else "")
        parts.append(Panel(Text(body, style="red"), title="Error", title_align="left"))
    for title, value in (
        ("Payload", run.payload),
        ("Metadata", run.metadata or None),
        ("Output", run.output),
    ):
        if value is not None:
            parts.append(Panel(Text(dumps(value)), title=title, title_align="left"))
    console().print(Panel(Group(*parts), title=run.id, title_align="left"))


def _attempts_text(run: Run) -> str:
    return f"{run.attempt_count}" + (f" of {run.max_attempts}" if run.max_attempts else "")


@runs.command("cancel")
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Cancel a run that has not finished: a queued, delayed or waiting run never starts, an
    executing run is stopped (its attempt is interrupted). A finished run is left as it is."""
    configure(existing=True)
    before = runlane.runs.retrieve(run_id)
    run = runlane.runs.cancel(run_id)
    out = console()
    if before.status.is_final:
        line = Text(f"{run.id} was already ").append_text(status_text(run.status))
        out.print(line.append(": nothing to cancel"))
    else:
        out.print(Text(f"{run.id} ").append_text(status_text(run.status)))


@runs.command("replay")
@click.argument("run_id")
def replay(run_id: str) -> None:
    """Trigger a new run with the same task, payload, tags, metadata and queue."""
    configure(existing=True)
    handle = runlane.runs.replay(run_id)
    click.echo(handle.id)


@runs.command("reschedule")
@click.argument("run_id")
@click.option(
    "--delay", required=True, metavar="WHEN", help="New delay: '1h', seconds or an ISO date."
)
def reschedule(run_id: str, delay: str) -> None:
    """Move a DELAYED run to a new time."""
    configure(existing=True)
    run = runlane.runs.reschedule(run_id, duration_arg(delay))
    when_text = when(run.delayed_until) if run.status == "DELAYED" else "now"
    line = Text(f"{run.id} ").append_text(status_text(run.status))
    console().print(line.append(f" until {when_text}"))


_LEVEL_STYLES = {"debug": "dim", "warn": "yellow", "error": "red"}


@runs.command("logs")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def logs(run_id: str, as_json: bool) -> None:
    """Print a run's log: logger calls, spans and captured prints, by attempt."""
    configure(existing=True)
    entries = runlane.runs.logs(run_id)
    if as_json:
        click.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    out = console()
    if not entries:
        out.print("No log entries.")
        return
    for entry in entries:
        line = Text(entry.time.astimezone().strftime("%H:%M:%S.%f")[:-3], style="dim")
        line.append(f"  #{entry.attempt}  ")
        line.append(f"{entry.level.upper():<5}", style=_LEVEL_STYLES.get(entry.level, ""))
        line.append(f"  {entry.message}")
        if entry.duration_ms is not None:
            line.append(f"  ({ms_text(entry.duration_ms)})", style="dim")
        if entry.attributes:
            line.append("  " + json.dumps(entry.attributes, default=str), style="cyan")
        out.print(line)


runs.add_command(tail)
runs.add_command(watch)
