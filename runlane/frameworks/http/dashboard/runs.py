"""The runs table: filters, pagination, live updates, and bulk cancel / replay of the runs the
filters match (after a confirmation page)."""

from __future__ import annotations

from typing import Any

from runlane.core import operations
from runlane.core.models import Run, RunStatus
from runlane.core.types import RunQuery
from runlane.errors import InvalidOptionError
from runlane.frameworks.http.api import Response
from runlane.frameworks.http.dashboard.html import (
    Html,
    duration,
    live_section,
    query,
    segment,
    status,
    table,
    tag,
    when,
)
from runlane.frameworks.http.dashboard.web import Ctx, html_response, view

FILTERS = ("status", "task", "tag", "batch", "schedule", "from", "to")
PAGE = 25
BULK_LIMIT = 1000  # runs one bulk action from the dashboard touches


def filters_of(values: Any) -> dict[str, str]:
    """The table's filters from a ``get(name)`` (query string or form), stripped."""
    return {name: (values(name) or "").strip() for name in FILTERS}


def run_query(filters: dict[str, str], *, limit: int = PAGE, after: str | None = None) -> RunQuery:
    return operations.run_query(
        status=filters["status"] or None,
        task_identifier=filters["task"] or None,
        tag=filters["tag"] or None,
        batch=filters["batch"] or None,
        schedule=filters["schedule"] or None,
        from_=filters["from"] or None,
        to=filters["to"] or None,
        limit=limit,
        after=after or None,
    )


def run_rows(runs: list[Run], root: str) -> Html:
    rows = []
    for run in runs:
        rows.append(
            tag(
                "tr",
                tag("td", tag("a", run.id, href=f"{root}/runs/{segment(run.id)}"), class_="id"),
                tag("td", run.task_identifier),
                tag("td", status(run.status)),
                tag("td", [tag("span", t, class_="tag") for t in run.tags]),
                tag("td", when(run.created_at)),
                tag("td", duration(run.duration_ms)),
                tag(
                    "td",
                    tag("a", "batch", href=f"{root}/batches/{segment(run.batch_id)}")
                    if run.batch_id
                    else None,
                    tag("span", "test", class_="flag") if run.is_test else None,
                ),
                data_run_id=run.id,
                data_status=run.status.value,
            )
        )
    return Html("".join(rows))


HEADERS = ["Run", "Task", "Status", "Tags", "Created (UTC)", "Duration", ""]


def runs_table(runs: list[Run], root: str, **attrs: Any) -> Html:
    return table(HEADERS, run_rows(runs, root), **attrs)


def live_source(filters: dict[str, str], root: str) -> str | None:
    """The realtime route whose changes cover the table: a batch's, a tag's, or every run's
    (of the task filtered). A status filter is not sent along: a run leaving that status
    must leave the table too. None: schedule and dates, which no route expresses; that
    table is refreshed every ``data-interval`` ms instead."""
    if filters["batch"]:
        return f"{root}/live{query({'batch': filters['batch']})}"
    if filters["tag"]:
        return f"{root}/live{query({'tags': filters['tag']})}"
    if filters["schedule"] or filters["from"] or filters["to"]:
        return None
    return f"{root}/live{query({'task': filters['task']})}"


def _table(ctx: Ctx, filters: dict[str, str], after: str | None) -> Html:
    page = operations.list_runs(ctx.rt, run_query(filters, after=after))
    rows = run_rows(page.data, ctx.root)
    if not page.data:
        rows = tag("tr", tag("td", "No runs match.", colspan="7", class_="empty"))
    pager = [tag("a", "First page", href=ctx.root + query(filters))] if after else []
    if page.next_cursor:
        href = ctx.root + query({**filters, "after": page.next_cursor})
        pager.append(tag("a", "Next page", href=href, rel="next"))
    return Html(table(HEADERS, rows, id="runs") + tag("p", pager, class_="pager"))


def _filter_form(ctx: Ctx, filters: dict[str, str]) -> Html:
    statuses = [tag("option", "any status", value="")] + [
        tag("option", s.value, value=s.value, selected=filters["status"] == s.value)
        for s in RunStatus
    ]

    def field(name: str, label: str, **attrs: Any) -> Html:
        return tag("label", label, tag("input", name=name, value=filters[name], **attrs))

    return tag(
        "form",
        tag("label", "Status", tag("select", statuses, name="status")),
        field("task", "Task"),
        field("tag", "Tag"),
        field("batch", "Batch"),
        field("schedule", "Schedule"),
        field("from", "From (UTC)", type="datetime-local", step="1"),
        field("to", "To (UTC)", type="datetime-local", step="1"),
        tag("button", "Filter", type="submit"),
        tag("a", "Clear", href=ctx.root),
        method="get",
        action=ctx.root,
        class_="filters",
    )


def _bulk_form(ctx: Ctx, filters: dict[str, str]) -> Html:
    hidden = [tag("input", type="hidden", name=k, value=v) for k, v in filters.items() if v]
    return tag(
        "form",
        hidden,
        tag("input", type="hidden", name="csrf", value=ctx.csrf),
        tag("span", "Every run these filters match:"),
        tag("button", "Cancel matching runs…", name="action", value="cancel", id="bulk-cancel"),
        tag("button", "Replay matching runs…", name="action", value="replay", id="bulk-replay"),
        method="post",
        action=f"{ctx.root}/bulk",
        class_="bulk",
    )


@view("GET", "/dashboard", name="dashboardRuns")
def runs_page(ctx: Ctx) -> Response:
    """The runs table (HTML)."""
    filters = filters_of(ctx.request.arg)
    after = ctx.request.arg("after")
    body = _table(ctx, filters, after)
    if ctx.fragment:
        return html_response(body)
    live = live_section(
        body,
        refresh=None if after else ctx.root + query({**filters, "fragment": "1"}),
        live=None if after else live_source(filters, ctx.root),
    )
    return ctx.page("Runs", [_filter_form(ctx, filters), _bulk_form(ctx, filters), live])


@view("POST", "/dashboard/bulk", name="dashboardBulk")
def bulk(ctx: Ctx) -> Response:
    """Bulk cancel or replay the runs matching the filters: a confirmation page first."""
    action = ctx.form("action")
    if action not in ("cancel", "replay"):
        raise InvalidOptionError("action", action, "must be cancel or replay")
    filters = filters_of(ctx.form)
    if not any(filters.values()):
        raise InvalidOptionError("filters", filters, "give at least one filter (status, tag, ...)")
    q = run_query(filters)
    if ctx.form("confirm") != "yes":
        page = operations.list_runs(ctx.rt, q)
        more = f" (and more: at most {BULK_LIMIT} are touched)" if page.next_cursor else ""
        hidden = [tag("input", type="hidden", name=k, value=v) for k, v in filters.items() if v]
        form = tag(
            "form",
            hidden,
            tag("input", type="hidden", name="csrf", value=ctx.csrf),
            tag("input", type="hidden", name="action", value=action),
            tag("button", f"Yes, {action} them", name="confirm", value="yes", id="confirm"),
            tag("a", "No, go back", href=ctx.root + query(filters)),
            method="post",
            action=f"{ctx.root}/bulk",
        )
        summary = ", ".join(f"{k} = {v}" for k, v in filters.items() if v)
        return ctx.page(
            f"{action.capitalize()} runs?",
            [
                tag(
                    "p",
                    f"{action.capitalize()} every run matching {summary}: "
                    f"{len(page.data)} shown below{more}.",
                ),
                form,
                runs_table(page.data, ctx.root),
            ],
        )
    verb = operations.bulk_cancel_runs if action == "cancel" else operations.bulk_replay_runs
    result = verb(ctx.rt, q, limit=BULK_LIMIT)
    done = "Canceled" if action == "cancel" else "Replayed"
    items = [tag("li", tag("a", i, href=f"{ctx.root}/runs/{segment(i)}")) for i in result.ids]
    return ctx.page(
        f"{done} {len(result.ids)} runs",
        [
            tag("p", f"{done} {len(result.ids)} runs; {result.skipped} skipped.", id="bulk-result"),
            tag("p", tag("a", "Back to the runs", href=ctx.root + query(filters))),
            tag("ul", items),
        ],
    )
