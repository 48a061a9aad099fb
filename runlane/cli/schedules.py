"""``runlane schedules list|show|create|update|activate|deactivate|delete|timezones``: the
schedules management API (``runlane.core.schedules``)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from runlane.cli._common import configure, console, plural, when
from runlane.cli._listing import Column, fitted_table
from runlane.core import cron
from runlane.core import schedules as ops
from runlane.core.options import UNSET
from runlane.core.schedules import Schedule
from runlane.errors import InvalidOptionError

UPCOMING = 5  # ticks `show` lists

# runlane's option names → this group's flag or argument, where they differ from the names
# the main group gives them (its TASK_ID is `trigger`'s argument)
_HINTS = {"task": "--task", "schedule_id": "SCHEDULE_ID"}


class _SchedulesGroup(click.Group):
    """Names this group's own flag or argument in an invalid option's message; every other
    runlane error is shown by the main group."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidOptionError as exc:
            hint = _HINTS.get(exc.option)
            if hint is None:
                raise
            shown = repr(exc.value)
            if len(shown) > 120:
                shown = shown[:117] + "..."
            raise click.BadParameter(f"{shown}: {exc.reason}", param_hint=hint) from None


@click.group(cls=_SchedulesGroup)
def schedules() -> None:
    """List, inspect, create, change and delete the schedules of scheduled tasks."""


def _json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# ---------------------------------------------------------------------- rendering
def _active_text(schedule: Schedule) -> Text:
    return Text("yes", style="green") if schedule.active else Text("no", style="bright_black")


def _next_text(schedule: Schedule) -> str:
    return when(schedule.next_run) if schedule.active else "-"


def _summary(schedule: Schedule) -> str:
    """``task 'daily' at '0 8 * * *' (At 08:00 AM) in Europe/Paris``."""
    return (
        f"task {schedule.task!r} at {schedule.cron!r} ({schedule.description}) in "
        f"{schedule.timezone}"
    )


_COLUMNS: list[Column[Schedule]] = [  # the order columns appear in
    Column("ID", lambda s: s.id),
    Column("Task", lambda s: s.task, shrink_to=12),
    Column("Cron", lambda s: s.cron, shrink_to=9),
    Column("Description", lambda s: s.description, shrink_to=12),
    Column("Timezone", lambda s: s.timezone, shrink_to=8),
    Column("Next run", _next_text),
    Column("Last run", lambda s: when(s.last_run)),
    Column("Active", _active_text),
    Column("Type", lambda s: s.type.value),
]
# the order columns are given room in: the first always
_PRIORITY = [
    "ID",
    "Active",
    "Task",
    "Cron",
    "Next run",
    "Timezone",
    "Type",
    "Last run",
    "Description",
]


def _table(found: list[Schedule], width: int) -> Table | None:
    """The table of ``found`` within ``width`` columns, fitted as ``runs list`` fits its own
    (ids whole). None when even the ids do not fit."""
    return fitted_table(found, width, _COLUMNS, _PRIORITY, ("ID",))


def _tick_text(dt: datetime) -> str:
    return dt.strftime("%a %Y-%m-%d %H:%M %Z")


def _upcoming(schedule: Schedule, now: float) -> list[tuple[datetime, datetime]]:
    """The ticks the schedule fires next, (in its time zone, in UTC): from its next run (a
    due one fires for the latest tick that has come); an inactive one's after ``now``."""
    expression, tz = schedule.cron, schedule.timezone
    if schedule.active and schedule.next_run is not None:
        first = schedule.next_run.timestamp()
        if first <= now:
            first = cron.last_tick_at_or_before(expression, tz, now)
        ticks = [first, *cron.next_ticks(expression, tz, first, UPCOMING - 1)]
    else:
        ticks = cron.next_ticks(expression, tz, now, UPCOMING)
    zone = ZoneInfo(tz)
    return [
        (datetime.fromtimestamp(t, zone), datetime.fromtimestamp(t, timezone.utc)) for t in ticks
    ]


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- commands
@schedules.command("list")
@click.option(
    "--task", "task_ids", metavar="T", multiple=True, help="Filter by task id (repeatable)."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many schedules to show (newest first).",
)
@click.option("--all", "show_all", is_flag=True, help="Show every schedule (no --limit).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_schedules(task_ids: tuple[str, ...], limit: int, show_all: bool, as_json: bool) -> None:
    """List schedules, newest first."""
    rt = configure(existing=True)
    found: list[Schedule] = []
    cursor: str | None = None
    while True:  # page by page; cursor: where the next page starts (None: no more)
        size = ops.MAX_PAGE if show_all else min(limit - len(found), ops.MAX_PAGE)
        page = rt.ops.list_schedules(task=list(task_ids) or None, limit=size, after=cursor)
        found.extend(page.data)
        cursor = page.next_cursor
        if cursor is None or (not show_all and len(found) >= limit):
            break
    if as_json:
        _print_json([s.model_dump(mode="json") for s in found])
        return
    out = console()
    if not found:
        if task_ids:
            out.print("No schedules match.")
        else:
            out.print(
                "No schedules yet: define a task with @schedules.task(cron=...) and start a "
                "worker, or create one with `runlane schedules create --task ID --cron EXPR`."
            )
        return
    table = _table(found, out.width)
    if table is not None:
        out.print(table)
    else:  # too narrow for a table: the ids stay whole
        for s in found:
            out.print(Text(f"{s.id} ").append_text(_active_text(s)), soft_wrap=True)
    more = " (more exist: raise --limit or use --all)" if cursor is not None else ""
    out.print(plural(len(found), "schedule") + more, style="dim")


@schedules.command("show")
@click.argument("schedule_id")
@_json_option
def show(schedule_id: str, as_json: bool) -> None:
    """Show every field of a schedule and its next ticks, in its time zone and in UTC."""
    rt = configure(existing=True)
    schedule = rt.ops.retrieve_schedule(schedule_id)
    upcoming = _upcoming(schedule, rt.now())
    if as_json:
        data = schedule.model_dump(mode="json")
        data["next_ticks"] = [{"local": _iso(local), "utc": _iso(utc)} for local, utc in upcoming]
        _print_json(data)
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    rows: list[tuple[str, str | Text | None]] = [
        ("Task", schedule.task),
        ("Type", schedule.type.value),
        ("Active", _active_text(schedule)),
        ("Cron", schedule.cron),
        ("Description", schedule.description),
        ("Timezone", schedule.timezone),
        ("External id", schedule.external_id),
        ("Deduplication key", schedule.deduplication_key),
        ("Environment", rt.environment),
        ("Next run", _next_text(schedule)),
        ("Last run", when(schedule.last_run)),
        ("Created", when(schedule.created_at)),
        ("Updated", when(schedule.updated_at)),
    ]
    for name, value in rows:
        if value is not None:
            fields.add_row(name, value)
    title = f"Next {UPCOMING} ticks" + ("" if schedule.active else " (if activated)")
    ticks = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold")
    in_utc = schedule.timezone == cron.DEFAULT_TIMEZONE
    if not in_utc:
        ticks.add_column(schedule.timezone, no_wrap=True)
    ticks.add_column("UTC", no_wrap=True)
    for local, utc in upcoming:
        ticks.add_row(*([] if in_utc else [_tick_text(local)]), _tick_text(utc))
    console().print(Panel(Group(fields, ticks), title=schedule.id, title_align="left"))


@schedules.command("create")
@click.option("--task", required=True, metavar="ID", help="The scheduled task to run.")
@click.option(
    "--cron", "cron_expression", required=True, metavar="EXPR", help="Five fields: '0 8 * * *'."
)
@click.option("--timezone", metavar="TZ", help="IANA time zone of the cron (default UTC).")
@click.option("--external-id", metavar="X", help="Your own id (a user's), given to each run.")
@click.option("--deduplication-key", metavar="K", help="Update the schedule with this key, if any.")
@_json_option
def create(
    task: str,
    cron_expression: str,
    timezone: str | None,
    external_id: str | None,
    deduplication_key: str | None,
    as_json: bool,
) -> None:
    """Create an IMPERATIVE schedule of a scheduled task and print its id.

    The task is one a worker has registered (its code need not be importable here). With
    --deduplication-key, the schedule that already has that key is updated instead.
    """
    rt = configure(existing=True)
    schedule = rt.ops.create_schedule(
        task=task,
        cron_expression=cron_expression,
        timezone=timezone,
        external_id=external_id,
        deduplication_key=deduplication_key,
    )
    if as_json:
        _print_json(schedule.model_dump(mode="json"))
        return
    click.echo(schedule.id)
    err = console(stderr=True)
    if schedule.created_at != schedule.updated_at:  # a schedule kept its creation time
        err.print("[yellow]updated:[/] the deduplication key matched this existing schedule")
    err.print(f"{_summary(schedule)}; next run {_next_text(schedule)}", markup=False)


@schedules.command("update")
@click.argument("schedule_id")
@click.option("--task", metavar="ID", help="Another scheduled task to run.")
@click.option("--cron", "cron_expression", metavar="EXPR", help="A new cron expression.")
@click.option("--timezone", metavar="TZ", help="A new IANA time zone.")
@click.option("--external-id", metavar="X", help="A new external id ('' clears it).")
@click.option("--deduplication-key", metavar="K", help="A new deduplication key ('' clears it).")
@_json_option
def update(
    schedule_id: str,
    task: str | None,
    cron_expression: str | None,
    timezone: str | None,
    external_id: str | None,
    deduplication_key: str | None,
    as_json: bool,
) -> None:
    """Change an IMPERATIVE schedule; what is not given stays. A new cron or time zone moves
    its next run."""
    given = (task, cron_expression, timezone, external_id, deduplication_key)
    if all(value is None for value in given):
        raise click.UsageError(
            "nothing to change: give --task, --cron, --timezone, --external-id or "
            "--deduplication-key"
        )
    rt = configure(existing=True)
    schedule = rt.ops.update_schedule(
        schedule_id,
        task=task,
        cron_expression=cron_expression,
        timezone=timezone,
        external_id=UNSET if external_id is None else external_id or None,
        deduplication_key=UNSET if deduplication_key is None else deduplication_key or None,
    )
    if as_json:
        _print_json(schedule.model_dump(mode="json"))
        return
    next_run = f"; next run {_next_text(schedule)}" if schedule.active else " (inactive)"
    console().print(f"{schedule.id} updated: {_summary(schedule)}{next_run}", markup=False)


def _set_active(schedule_id: str, active: bool, as_json: bool) -> None:
    rt = configure(existing=True)
    before = rt.ops.retrieve_schedule(schedule_id)
    schedule = rt.ops.set_schedule_active(schedule_id, active)
    if as_json:
        _print_json(schedule.model_dump(mode="json"))
        return
    state = "active" if active else "inactive"
    already = "was already " if before.active == active else ""
    line = f"{schedule.id} {already}{state}"
    if active:
        line += f": next run {_next_text(schedule)}"
    console().print(line, markup=False)


@schedules.command("activate")
@click.argument("schedule_id")
@_json_option
def activate(schedule_id: str, as_json: bool) -> None:
    """Activate an IMPERATIVE schedule: it fires again from its next tick on."""
    _set_active(schedule_id, True, as_json)


@schedules.command("deactivate")
@click.argument("schedule_id")
@_json_option
def deactivate(schedule_id: str, as_json: bool) -> None:
    """Deactivate an IMPERATIVE schedule: it is kept but does not fire."""
    _set_active(schedule_id, False, as_json)


@schedules.command("delete")
@click.argument("schedule_id")
@_json_option
def delete(schedule_id: str, as_json: bool) -> None:
    """Delete an IMPERATIVE schedule and print what it was (its runs stay)."""
    rt = configure(existing=True)
    schedule = rt.ops.delete_schedule(schedule_id)
    if as_json:
        _print_json(schedule.model_dump(mode="json"))
        return
    extra = f", external id {schedule.external_id!r}" if schedule.external_id else ""
    console().print(f"deleted {schedule.id}: {_summary(schedule)}{extra}", markup=False)


@schedules.command("timezones")
@_json_option
def timezones(as_json: bool) -> None:
    """Print every IANA time zone a schedule may use."""
    names = cron.timezones()
    if as_json:
        _print_json(names)
        return
    click.echo("\n".join(names))
