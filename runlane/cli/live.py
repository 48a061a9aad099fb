"""``runlane runs tail`` and ``runlane runs watch``: runs as they change, read from the realtime
subscriptions (``runs.subscribe_to_*``; in remote mode, the server's SSE routes).

``tail`` follows a batch (``--batch``), the runs with tags (``--tag``) or every run of the
environment (the subscription kind "all"); its other filters are applied here, so a run leaves
the table when it stops matching (``--status EXECUTING``). ``watch`` follows one run with its
streams: a status line, a progress bar from the run's metadata (``progress_of``), the
metadata as it changes, and the streams' chunks as they come.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

import runlane
from runlane.cli._common import (
    configure,
    console,
    dumps,
    plural,
    run_json,
    status_text,
)
from runlane.cli._listing import run_filters, runs_table
from runlane.core import runtime
from runlane.core.models import Run
from runlane.core.realtime import RealtimePart, Subscription
from runlane.core.types import RunQuery
from runlane.errors import RunNotFoundError

HIGHLIGHT_SECONDS = 2.0  # a row whose status changed stands out this long
HIGHLIGHT = "reverse"
TRACKED = 1000  # runs `tail` remembers (its counts); the oldest go first
REFRESH = 4  # redraws a second (the clocks and highlights move without changes)


class RunGone(click.ClickException):
    """``watch`` of a run that does not exist: exit code 2, as a bad argument (1 means the
    run did not complete)."""

    exit_code = 2


def _line(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


@contextlib.contextmanager
def following(sub: Subscription) -> Iterator[Subscription]:
    """Iterate ``sub`` within: Ctrl-C ends the block quietly, and ``sub`` is closed."""
    try:
        yield sub
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()


# ---------------------------------------------------------------------- tail
@dataclass
class Filters:
    """``tail``'s filters, as ``runs list`` has them (any of the values of each)."""

    statuses: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    batch: str | None = None

    def matches(self, run: Run) -> bool:
        return (
            (not self.statuses or run.status in self.statuses)
            and (not self.tasks or run.task_identifier in self.tasks)
            and (not self.tags or any(t in run.tags for t in self.tags))
            and (not self.queues or run.queue in self.queues)
            and (self.batch is None or run.batch_id == self.batch)
        )

    def listed(self, limit: int) -> list[Run]:
        """The runs that match now, newest first (as ``runs list``)."""
        page = runlane.runs.list(
            status=list(self.statuses) or None,
            task_identifier=list(self.tasks) or None,
            tag=list(self.tags) or None,
            queue=list(self.queues) or None,
            batch=self.batch,
            limit=min(limit, 100),
        )
        return list(itertools.islice(page, limit))

    def subscribe(self, limit: int) -> Subscription:
        """A batch's subscription, a tag's, or every run's (of the tasks given)."""
        if self.batch is not None:
            return runlane.runs.subscribe_to_batch(self.batch)
        if self.tags:
            return runlane.runs.subscribe_to_runs_with_tag(list(self.tags))
        query = RunQuery(task_identifier=self.tasks, limit=min(limit, 100))
        return runtime.get().ops.subscribe("all", query)


def _signature(run: Run) -> tuple[Any, ...]:
    return (run.status, run.updated_at, run.attempt_count, _line(run.metadata))


@dataclass
class TailView:
    """The runs ``tail`` tracks, and the table drawn from them."""

    filters: Filters
    limit: int
    out: Console
    runs: dict[str, Run] = field(default_factory=dict)
    changed_at: dict[str, float] = field(default_factory=dict)  # monotonic time
    lock: threading.Lock = field(default_factory=threading.Lock)  # Live draws in its thread

    def update(self, run: Run) -> bool:
        """Take a run's new state; False when it is not news (already seen, or not matching)."""
        with self.lock:
            return self._update(run)

    def _update(self, run: Run) -> bool:
        seen = self.runs.get(run.id)
        if seen is not None and _signature(seen) == _signature(run):
            return False
        if not self.filters.matches(run):
            self.runs.pop(run.id, None)  # it left the filter
            self.changed_at.pop(run.id, None)
            return False
        if seen is not None and seen.status != run.status:
            self.changed_at[run.id] = time.monotonic()
        self.runs[run.id] = run
        if len(self.runs) > TRACKED:
            oldest = min(self.runs.values(), key=lambda r: (r.created_at, r.id))
            del self.runs[oldest.id]
            self.changed_at.pop(oldest.id, None)
        return True

    @property
    def idle(self) -> bool:
        return all(run.status.is_final for run in self.runs.values())

    def _style(self, run: Run) -> str:
        at = self.changed_at.get(run.id)
        return HIGHLIGHT if at is not None and time.monotonic() - at < HIGHLIGHT_SECONDS else ""

    def render(self) -> RenderableType:
        with self.lock:
            tracked = list(self.runs.values())
            newest = sorted(tracked, key=lambda r: (r.created_at, r.id), reverse=True)
            shown = newest[: self.limit]
            table = runs_table(shown, self.out.width, self._style) if shown else None
        counts = Counter(str(r.status) for r in tracked)
        title = Text(plural(len(tracked), "run"), style="bold")
        for status, n in sorted(counts.items()):
            title.append("  ").append_text(status_text(status)).append(f" {n}")
        if not shown:
            return Group(title, Text("No runs match yet: waiting for changes.", style="dim"))
        if table is None:  # too narrow for a table: the ids stay whole
            lines = [Text(r.id + " ").append_text(status_text(r.status)) for r in shown]
            return Group(title, *lines)
        more = len(newest) - len(shown)
        if not more:
            return Group(title, table)
        return Group(title, table, Text(f"and {plural(more, 'older run')} (--limit)", "dim"))


@click.command("tail")
@run_filters("Only the runs of this batch (ends when all are final).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="How many runs to show, newest first (default: what fits the terminal).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per change instead.")
@click.option("--until-idle", is_flag=True, help="Exit once every run shown is final.")
@click.option("--count", type=click.IntRange(min=1), help="Exit after N changes (or JSON lines).")
def tail(
    statuses: tuple[str, ...],
    task_ids: tuple[str, ...],
    tags: tuple[str, ...],
    queues: tuple[str, ...],
    batch: str | None,
    limit: int | None,
    as_json: bool,
    until_idle: bool,
    count: int | None,
) -> None:
    """Follow runs as they change: a live table, newest first, with the counts by status.

    First the runs that match now, then each change (the rows that changed are highlighted).
    Ctrl-C stops it (exit code 0)."""
    configure(existing=True)
    out = console()
    rows = limit if limit is not None else max(3, out.height - 6)  # title, header, foot
    filters = Filters(tuple(s.strip().upper() for s in statuses), task_ids, tags, queues, batch)
    view = TailView(filters, rows, out)
    changes = 0

    def done() -> bool:
        return (until_idle and view.idle) or (count is not None and changes >= count)

    def take(run: Run) -> None:
        nonlocal changes
        if view.update(run):
            changes += 1
            if as_json:
                click.echo(_line(run_json(run)))

    sub = filters.subscribe(rows)  # (it starts as it is iterated)
    with following(sub):
        for run in reversed(filters.listed(rows)):  # oldest first, as changes come
            take(run)
        if done():
            if not as_json:
                out.print(view.render())
            return
        if as_json:
            console(stderr=True).print(f"Following runs ({sub.kind}); Ctrl-C to stop.", style="dim")
        live = (
            contextlib.nullcontext()
            if as_json
            else Live(console=out, get_renderable=view.render, refresh_per_second=REFRESH)
        )
        with live:
            for run in sub:
                take(run)
                if done():
                    break


# ---------------------------------------------------------------------- watch
def progress_of(metadata: dict[str, Any]) -> tuple[float, str] | None:
    """The fraction done (0..1) and its label from a run's metadata: ``progress`` (0..1, or a
    percentage up to 100) or ``current`` and ``total``; None when it has neither."""
    value = _number(metadata.get("progress"))
    if value is not None:
        fraction = min(1.0, max(0.0, value / 100 if value > 1 else value))
        return fraction, f"{fraction:.0%}"
    current, total = _number(metadata.get("current")), _number(metadata.get("total"))
    if current is not None and total is not None and total > 0:
        fraction = min(1.0, max(0.0, current / total))
        return fraction, f"{current:g}/{total:g} ({fraction:.0%})"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def elapsed_text(run: Run, now: datetime | None = None) -> str:
    """How long the run has taken: since it started (or was created), until it finished."""
    start = run.started_at or run.created_at
    end = run.finished_at or now or datetime.now(timezone.utc)
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s"


@dataclass
class WatchView:
    """What ``watch`` shows of its run: the live part (status, progress, metadata, the text
    streams' unfinished lines) and the stream lines printed above it."""

    out: Console
    run: Run | None = None
    partial: dict[str, str] = field(default_factory=dict)  # stream key -> its unfinished line
    lock: threading.Lock = field(default_factory=threading.Lock)  # Live draws in its thread

    def take(self, part: RealtimePart, *, echo: bool) -> None:
        """A part of the subscription; ``echo``: print its chunks (not with ``--json``)."""
        with self.lock:
            if part.run is not None:
                self.run = part.run
            if part.type != "run" and echo:
                self._chunk(part.type, part.chunk)

    def _chunk(self, key: str, chunk: Any) -> None:
        """Text chunks are written inline (a line is printed once it ends); any other JSON
        value on a line of its own. Each line starts with the stream's key."""
        if not isinstance(chunk, str):
            self._print(key, _line(chunk))
            return
        *lines, rest = (self.partial.pop(key, "") + chunk).split("\n")
        for line in lines:
            self._print(key, line)
        if rest:
            self.partial[key] = rest

    def _print(self, key: str, line: str) -> None:
        self.out.print(Text(f"{key} ", style="cyan").append(line), soft_wrap=True)

    def flush(self) -> None:
        """Print the text streams' unfinished lines (the run ended)."""
        with self.lock:
            for key, rest in self.partial.items():
                self._print(key, rest)
            self.partial.clear()

    def render(self) -> RenderableType:
        with self.lock:
            run, partial = self.run, dict(self.partial)
        if run is None:
            return Text("Waiting for the run...", style="dim")
        status = Text(f"{run.id}  {run.task_identifier}  ").append_text(status_text(run.status))
        attempts = f"attempt {run.attempt_count}" + (
            f" of {run.max_attempts}" if run.max_attempts else ""
        )
        status.append(f"  {attempts}  {elapsed_text(run)}", style="dim")
        parts: list[RenderableType] = [status]
        progress = progress_of(run.metadata or {})
        if progress is not None:
            bar = Table.grid(padding=(0, 1))
            bar.add_row(ProgressBar(total=1.0, completed=progress[0], width=40), progress[1])
            parts.append(bar)
        if run.metadata:
            parts.append(Panel(Text(dumps(run.metadata)), title="Metadata", title_align="left"))
        for key, rest in partial.items():
            parts.append(Text(f"{key} ", style="cyan").append(rest))
        return Group(*parts)


def _part_json(part: RealtimePart) -> dict[str, Any]:
    if part.type == "run" and part.run is not None:
        return {"type": "run", "cursor": part.cursor, "run": run_json(part.run)}
    return {"type": part.type, "cursor": part.cursor, "run_id": part.run_id, "chunk": part.chunk}


@click.command("watch")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print each change and chunk as JSON.")
def watch(run_id: str, as_json: bool) -> None:
    """Follow one run until it is final: its status, attempt and elapsed time, a progress bar
    from its metadata (`progress`: 0..1 or 0..100, or `current` and `total`), the metadata as
    it changes, and its streams' chunks as they come.

    Exits 0 when the run completed, 1 when it ended otherwise, 2 when there is no such run;
    Ctrl-C stops watching (exit code 130: the run goes on)."""
    rt = configure(existing=True)
    sub = runlane.runs.subscribe_to_run(run_id).with_streams()
    out = console()
    view = WatchView(out)
    try:
        with following(sub):
            parts: Iterator[RealtimePart] = iter(sub)
            first = next(parts, None)  # the run as it is now (or no such run)
            live = (
                contextlib.nullcontext()
                if as_json
                else Live(console=out, get_renderable=view.render, refresh_per_second=REFRESH)
            )
            with live:
                for part in itertools.chain([first] if first else [], parts):
                    if as_json:
                        click.echo(_line(_part_json(part)))
                    view.take(part, echo=not as_json)
            view.flush()
    except RunNotFoundError:
        raise RunGone(f"no run {run_id!r} in environment {rt.environment!r}") from None
    run = view.run
    if run is None or not run.status.is_final:
        raise SystemExit(130)  # Ctrl-C
    if not as_json and run.error is not None:
        out.print(Text(str(run.error).splitlines()[0] if str(run.error) else "", style="red"))
    raise SystemExit(0 if run.status == "COMPLETED" else 1)
