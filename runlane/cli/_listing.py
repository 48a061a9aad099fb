"""Listing tables fitted to the terminal (``runlane runs list``, ``runlane schedules list``): the
required columns (ids, statuses) are always whole; the others shrink (with an ellipsis) or are
left out, the least useful first."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import click
from rich import box
from rich.table import Table
from rich.text import Text

from runlane.cli._common import duration_text, stacked, status_text, when
from runlane.core.models import Run

GAP = 3  # between two columns: a space of padding on each side of an (invisible) rule
T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    header: str
    cell: Callable[[T], str | Text]
    shrink_to: int | None = None  # None: shown whole or not at all
    justify: str = "left"


ID: Column[Run] = Column("ID", lambda r: r.id)
STATUS: Column[Run] = Column("Status", lambda r: status_text(r.status))
# the order columns appear in
COLUMNS: list[Column[Run]] = [
    ID,
    Column("Task", lambda r: r.task_identifier, shrink_to=12),
    STATUS,
    Column("Queue", lambda r: r.queue, shrink_to=8),
    Column("Concurrency key", lambda r: r.concurrency_key or "-", shrink_to=8),
    Column("Tags", lambda r: ", ".join(r.tags) or "-", shrink_to=8),
    Column("Created", lambda r: when(r.created_at)),
    Column("Duration", duration_text, justify="right"),
]
# the order columns are given room in: the first two always
PRIORITY = ["ID", "Status", "Task", "Created", "Duration", "Tags", "Queue", "Concurrency key"]


def _width(value: str | Text) -> int:
    return value.cell_len if isinstance(value, Text) else Text(value).cell_len


def fit(
    rows: Sequence[Any],
    width: int,
    columns: Sequence[Column[Any]],
    priority: Sequence[str],
    required: Collection[str],
) -> tuple[list[Column[Any]], dict[str, int]] | None:
    """The columns to show and their widths within ``width``: given room in ``priority``
    order; None when a ``required`` one does not fit."""
    cells = {c.header: [c.cell(r) for r in rows] for c in columns}
    natural = {h: max([len(h), *(_width(v) for v in values)]) for h, values in cells.items()}
    by_header = {c.header: c for c in columns}
    widths: dict[str, int] = {}
    used = -GAP
    for header in priority:
        column = by_header[header]
        least = natural[header]
        if column.shrink_to is not None:
            least = min(least, column.shrink_to)
        if used + GAP + least <= width:
            widths[header] = least
            used += GAP + least
        elif header in required:
            return None
    spare = width - used
    for header in priority:  # the room left, to the shrunk columns in priority order
        if header in widths and spare > 0:
            grow = min(spare, natural[header] - widths[header])
            widths[header] += grow
            spare -= grow
    return [c for c in columns if c.header in widths], widths


def fitted_table(
    rows: Sequence[Any],
    width: int,
    columns: Sequence[Column[Any]],
    priority: Sequence[str],
    required: Collection[str],
    row_style: Callable[[Any], str] | None = None,
) -> Table | None:
    """The table of ``rows`` for a terminal ``width`` columns wide (None: too narrow);
    ``row_style``: a style for each row (``runs tail`` highlights the runs that changed)."""
    fitted = fit(rows, width, columns, priority, required)
    if fitted is None:
        return None
    shown, widths = fitted
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in shown:
        table.add_column(
            column.header,
            width=widths[column.header],
            no_wrap=True,
            overflow="ellipsis",
            justify=column.justify,  # type: ignore[arg-type]
        )
    for row in rows:
        style = row_style(row) if row_style is not None else None
        table.add_row(*(column.cell(row) for column in shown), style=style)
    return table


def runs_table(
    runs: list[Run], width: int, row_style: Callable[[Run], str] | None = None
) -> Table | None:
    """The table of ``runs list`` and ``runs tail`` (ids and statuses always whole)."""
    return fitted_table(runs, width, COLUMNS, PRIORITY, ("ID", "Status"), row_style)


def run_filters(batch_help: str) -> Callable[[Any], Any]:
    """The filters of ``runs list`` and ``runs tail``: --status, --task, --tag, --queue (each
    repeatable) and --batch (``batch_help`` says what it does in that command)."""
    return stacked(
        click.option(
            "--status",
            "statuses",
            metavar="S",
            multiple=True,
            help="Filter by status (repeatable).",
        ),
        click.option(
            "--task", "task_ids", metavar="T", multiple=True, help="Filter by task id (repeatable)."
        ),
        click.option(
            "--tag", "tags", metavar="T", multiple=True, help="Filter by tag (repeatable)."
        ),
        click.option(
            "--queue", "queues", metavar="Q", multiple=True, help="Filter by queue (repeatable)."
        ),
        click.option("--batch", metavar="ID", help=batch_help),
    )
