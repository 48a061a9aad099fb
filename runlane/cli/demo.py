"""``runlane demo``: the quick-start workload (``runlane.demo``) with a live progress bar and a
summary, in one process, on a fresh SQLite file under ``.runlane/``."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import runlane
from runlane.cli._common import configure, console, plural, state, status_text
from runlane.core.models import Run, RunStatus

if TYPE_CHECKING:
    from runlane.demo import DemoImport

POLL_SECONDS = 0.25


def fresh_store_url() -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(".runlane") / f"demo-{stamp}.db"
    n = 1
    while path.exists():
        n += 1
        path = Path(".runlane") / f"demo-{stamp}-{n}.db"
    return f"sqlite:///{path.as_posix()}"


def _counts_line(runs: list[Run]) -> Text:
    counts = Counter(r.status.value for r in runs)
    line = Text()
    for status in RunStatus:
        if counts[status.value]:
            if line:
                line.append("  ")
            line.append_text(status_text(status))
            line.append(f" {counts[status.value]}")
    return line or Text("waiting for the first runs...", style="dim")


@click.command()
@click.option(
    "--rows",
    type=click.IntRange(1, 20_000),
    default=300,
    show_default=True,
    help="Customer rows in the imported CSV.",
)
@click.option(
    "--store",
    metavar="URL",
    default=None,
    help="Store URL (default: a fresh .runlane/demo-<timestamp>.db).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Worker concurrency.",
)
def demo(rows: int, store: str | None, concurrency: int) -> None:
    """Import a CSV of customers: batches, delays, tags, idempotency keys, metadata, failures,
    cancel and reschedule, executed by an in-process Worker."""
    st = state()
    url = store or (st.store if st.store_given else None) or fresh_store_url()
    configure(store=url)
    from runlane.demo import DemoImport  # defines the demo's tasks: only for this command

    out = console()
    job = DemoImport(rows)
    out.print(
        Panel(
            f"Importing a CSV of [bold]{plural(rows, 'customer')}[/] as one run per row.\n"
            f"Store: {url}   Worker: runlane.Worker(concurrency={concurrency})",
            title="runlane demo",
            title_align="left",
            border_style="cyan",
        )
    )
    deadline = time.monotonic() + 60 + rows * 0.5
    with runlane.Worker(concurrency=concurrency):
        job.trigger_all()
        out.print(
            f"Triggered {plural(len(job.run_ids) - 2, 'row run')} in "
            f"{plural(job.batches, 'batch_trigger call')} and 2 delayed emails in "
            f"{job.trigger_seconds * 1000:.0f} ms; uploaded {plural(job.resubmitted, 'row')} "
            f"again: {plural(job.cached, 'cached handle')}."
        )
        runs = _follow(job, out, deadline)
    out.print()
    _report(out, job, runs, url, concurrency)


def _follow(job: DemoImport, out: Console, deadline: float) -> list[Run]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=out,
    )
    bar = progress.add_task("runs finished", total=job.total)
    runs: list[Run] = []
    with Live(Group(progress, Text()), console=out, refresh_per_second=8) as live:
        while True:
            runs = job.import_runs()
            finished = sum(1 for r in runs if r.is_completed)
            progress.update(bar, completed=finished, total=job.total)
            live.update(Group(progress, _counts_line(runs)))
            if job.summary_id is None and job.rows_done(runs):
                job.finished_at = time.monotonic()
                job.summarize()
            elif job.summary_id is not None and finished >= job.total:
                return runs
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"the demo did not finish in time: {finished} of {job.total} runs are final"
                )
            time.sleep(POLL_SECONDS)


def _report(out: Console, job: DemoImport, runs: list[Run], url: str, concurrency: int) -> None:
    by_task: dict[str, Counter[str]] = {}
    for run in runs:
        by_task.setdefault(run.task_identifier, Counter())[run.status.value] += 1
    tasks = sorted(by_task)
    table = Table(title="Runs by status", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("Status")
    for task_id in tasks:
        table.add_column(task_id.removeprefix("demo-"), justify="right")
    table.add_column("Total", justify="right", style="bold")
    statuses = [s for s in RunStatus if any(c[s.value] for c in by_task.values())]
    for status in statuses:
        cells = [str(by_task[t][status.value] or "-") for t in tasks]
        table.add_row(
            status_text(status), *cells, str(sum(c[status.value] for c in by_task.values()))
        )
    out.print(table)

    row_runs = [r for r in runs if r.task_identifier == "demo-import-row"]
    failed = [r for r in row_runs if r.status == "FAILED"]
    retried = [r for r in row_runs if r.status == "COMPLETED" and r.attempt_count > 1]
    seconds = max(job.finished_at - job.started_at, 1e-6)
    prompt = [r for r in row_runs if r.delayed_until is None and r.finished_at is not None]
    busy = 0.0
    if prompt:
        first = min(r.created_at for r in prompt)
        busy = (max(r.finished_at for r in prompt if r.finished_at) - first).total_seconds()
    summary = runlane.runs.retrieve(job.summary_id) if job.summary_id else None
    sample = next((r for r in row_runs if r.status == "COMPLETED" and r.concurrency_key), None)
    lines = [
        f"All {plural(len(row_runs), 'row run')} were final {seconds:.1f}s after the upload "
        f"({job.delayed} of them started 2-4s late on purpose)",
    ]
    if busy > 0:
        lines.append(
            f"Throughput: {len(prompt) / busy:.0f} row runs/s with Worker(concurrency="
            f"{concurrency}) on the embedded SQLite store"
        )
    lines += [
        f"Idempotency: {plural(job.resubmitted, 'row')} uploaded twice → "
        f"{plural(job.cached, 'cached handle')}, {plural(job.new_on_resubmit, 'new run')}",
        f"Retries: {plural(len(retried), 'row')} failed attempt 1 (a simulated CRM timeout) and "
        "COMPLETED on attempt 2",
        f"Failures on purpose: {plural(len(failed), 'row')} with an invalid email (no retry)"
        + (f", e.g. {failed[0].error.message}" if failed and failed[0].error else ""),
        f"Welcome emails delayed by 1h: {job.canceled_id} canceled"
        + (f", {job.rescheduled_id} rescheduled to now" if job.rescheduled_id else ""),
        f"Tags: every run has [bold]{job.tag}[/]; rows also plan_free or plan_paid",
    ]
    if sample is not None:
        lines.append(
            f"Queue and concurrency key of {sample.id}: {sample.queue} / {sample.concurrency_key}; "
            f"metadata {json.dumps(sample.metadata)}"
        )
    if summary is not None and summary.output is not None:
        lines.append(f"Summary task output: {json.dumps(summary.output)}")
    out.print(
        Panel(
            "\n".join(f"• {line}" for line in lines),
            title="Highlights",
            title_align="left",
            border_style="green",
        )
    )
    out.print(
        "Explore the runs:\n"
        f"  runlane --store {url} runs list --tag {job.tag} --status FAILED\n"
        f"  runlane --store {url} runs show {job.summary_id}\n"
        f"  runlane --store {url} runs logs {sample.id if sample else job.summary_id}",
        soft_wrap=True,
    )
