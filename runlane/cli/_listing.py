"""The table of ``runlane runs list``, fitted to the terminal: run ids and statuses are always
whole; the other columns shrink (with an ellipsis) or are left out, the least useful first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.table import Table
from rich.text import Text

from runlane.cli._common import duration_text, status_text, when
from runlane.core.models import Run

GAP = 3  # between two columns: a space of padding on each side of an (invisible) rule


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Run], str | Text]
    shrink_to: int | None = None  # None: shown whole or not at all
    justify: str = "left"


ID = Column("ID", lambda r: r.id)
STATUS = Column("Status", lambda r: status_text(r.status))
# the order columns appear in
COLUMNS = [
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


def fit(runs: list[Run], width: int) -> tuple[list[Column], dict[str, int]] | None:
    """The columns to show and their widths within ``width``; None when even the id and the
    status do not fit."""
    cells = {c.header: [c.cell(r) for r in runs] for c in COLUMNS}
    natural = {h: max([len(h), *(_width(v) for v in values)]) for h, values in cells.items()}
    by_header = {c.header: c for c in COLUMNS}
    widths: dict[str, int] = {}
    used = -GAP
    for header in PRIORITY:
        column = by_header[header]
        least = natural[header]
        if column.shrink_to is not None:
            least = min(least, column.shrink_to)
        if used + GAP + least <= width:
            widths[header] = least
            used += GAP + least
        elif header in ("ID", "Status"):
            return None
    spare = width - used
    for header in PRIORITY:  # the room left, to the shrunk columns in priority order
        if header in widths and spare > 0:
            grow = min(spare, natural[header] - widths[header])
            widths[header] += grow
            spare -= grow
    return [c for c in COLUMNS if c.header in widths], widths


def runs_table(runs: list[Run], width: int) -> Table | None:
    """The table of ``runs`` for a terminal ``width`` columns wide (None: too narrow)."""
    fitted = fit(runs, width)
    if fitted is None:
        return None
    columns, widths = fitted
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(
            column.header,
            width=widths[column.header],
            no_wrap=True,
            overflow="ellipsis",
            justify=column.justify,  # type: ignore[arg-type]
        )
    for run in runs:
        table.add_row(*(column.cell(run) for column in columns))
    return table
