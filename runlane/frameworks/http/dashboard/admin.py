"""Queues (running, queued, paused; pause and resume), schedules (with their next runs) and a
form that triggers a test run of a task."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from runlane.core import cron, operations
from runlane.core import schedules as schedule_ops
from runlane.core.clock import to_timestamp
from runlane.core.schedules import Schedule
from runlane.errors import InvalidOptionError, RunlaneError
from runlane.frameworks.http.api import Response, error_of
from runlane.frameworks.http.dashboard.html import (
    Html,
    live_section,
    query,
    segment,
    table,
    tag,
    when,
)
from runlane.frameworks.http.dashboard.web import Ctx, html_response, view, wants_html

NEXT_RUNS = 3  # upcoming ticks shown for a schedule


# ---------------------------------------------------------------------- queues
def _queue_button(ctx: Ctx, name: str, action: str, key: str | None = None) -> Html:
    return tag(
        "form",
        tag("input", type="hidden", name="csrf", value=ctx.csrf),
        tag("input", type="hidden", name="concurrency_key", value=key) if key else None,
        tag("button", action.capitalize(), data_queue=name, data_action=action),
        method="post",
        action=f"{ctx.root}/queues/{segment(name)}/{action}",
        class_="inline",
    )


@view("GET", "/dashboard/queues", name="dashboardQueues")
def queues_page(ctx: Ctx) -> Response:
    """Every queue: running, queued, limits, pauses (HTML)."""
    rows = []
    for q in operations.list_queues(ctx.rt):
        paused = "paused" + (" until " if q.paused_until else "") if q.paused else ""
        keys = [
            tag(
                "li",
                f"{k.concurrency_key} paused ",
                when(k.paused_until),
                _queue_button(ctx, q.name, "resume", k.concurrency_key),
            )
            for k in q.paused_keys
        ]
        rows.append(
            tag(
                "tr",
                tag("td", q.name),
                tag("td", q.running),
                tag("td", q.queued),
                tag("td", q.concurrency_limit if q.concurrency_limit is not None else "—"),
                tag(
                    "td",
                    paused,
                    when(q.paused_until) if q.paused else None,
                    tag("ul", keys) if keys else None,
                    class_="paused",
                ),
                tag("td", _queue_button(ctx, q.name, "resume" if q.paused else "pause")),
                data_queue=q.name,
                data_paused="true" if q.paused else "false",
            )
        )
    if not rows:
        rows.append(tag("tr", tag("td", "No queue yet.", colspan="6", class_="empty")))
    body = table(["Queue", "Running", "Queued", "Limit", "Paused", ""], rows, id="queues")
    if ctx.fragment:
        return html_response(body)
    live = live_section(body, refresh=f"{ctx.root}/queues?fragment=1", interval=3000, keep="form")
    return ctx.page("Queues", live)


@view("POST", "/dashboard/queues/{name}/{action}", name="dashboardQueueAction")
def queue_action(ctx: Ctx) -> Response:
    """Pause or resume a queue (or one concurrency key of it)."""
    name, action = ctx.request.params["name"], ctx.request.params["action"]
    key = ctx.form("concurrency_key") or None
    if action == "pause":
        operations.pause_queue(ctx.rt, name, key)
    elif action == "resume":
        operations.resume_queue(ctx.rt, name, key)
    else:
        raise InvalidOptionError("action", action, "must be pause or resume")
    return ctx.redirect("/queues")


# ---------------------------------------------------------------------- schedules
def next_runs(schedule: Schedule) -> list[datetime]:
    if schedule.next_run is None:
        return []
    first = to_timestamp(schedule.next_run)
    later = cron.next_ticks(schedule.cron, schedule.timezone, first, NEXT_RUNS - 1)
    return [datetime.fromtimestamp(t, timezone.utc) for t in (first, *later)]


@view("GET", "/dashboard/schedules", name="dashboardSchedules")
def schedules_page(ctx: Ctx) -> Response:
    """Schedules with their next runs (HTML)."""
    after = ctx.request.arg("after")
    page = schedule_ops.list_schedules(ctx.rt, limit=50, after=after or None)
    rows = [
        tag(
            "tr",
            tag("td", tag("a", s.id, href=ctx.root + query({"schedule": s.id}))),
            tag("td", s.task),
            tag("td", s.type.value),
            tag("td", tag("code", s.cron), tag("div", s.description, class_="muted")),
            tag("td", s.timezone),
            tag("td", "active" if s.active else "inactive"),
            tag("td", tag("ol", [tag("li", when(t)) for t in next_runs(s)])),
            tag("td", when(s.last_run)),
            tag("td", s.external_id or ""),
            data_schedule=s.id,
        )
        for s in page.data
    ]
    if not rows:
        rows.append(tag("tr", tag("td", "No schedule yet.", colspan="9", class_="empty")))
    headers = ["Schedule", "Task", "Type", "Cron", "Time zone", "", "Next runs (UTC)", "Last run"]
    headers.append("External id")
    pager = []
    if page.next_cursor:
        href = f"{ctx.root}/schedules" + query({"after": page.next_cursor})
        pager.append(tag("a", "Next page", href=href, rel="next"))
    body = [table(headers, rows, id="schedules"), tag("p", pager, class_="pager")]
    return ctx.page("Schedules", body)


# ---------------------------------------------------------------------- a test run
def _trigger_form(
    ctx: Ctx, task: str = "", payload: str = "{}", tags: str = "", error: str | None = None
) -> Html:
    known = tag("datalist", [tag("option", value=t) for t in ctx.rt.registry.ids()], id="tasks")
    return tag(
        "form",
        tag("p", error, class_="error") if error else None,
        tag("input", type="hidden", name="csrf", value=ctx.csrf),
        tag("label", "Task", tag("input", name="task", value=task, list="tasks", required=True)),
        known,
        tag("label", "Payload (JSON)", tag("textarea", payload, name="payload", rows="10")),
        tag("label", "Tags (comma separated)", tag("input", name="tags", value=tags)),
        tag("button", "Trigger test run", type="submit", id="trigger"),
        method="post",
        action=f"{ctx.root}/trigger",
        class_="trigger",
    )


@view("GET", "/dashboard/trigger", name="dashboardTriggerForm")
def trigger_form(ctx: Ctx) -> Response:
    """The form that triggers a test run (HTML)."""
    return ctx.page("Trigger a test run", _trigger_form(ctx, task=ctx.request.arg("task") or ""))


@view("POST", "/dashboard/trigger", name="dashboardTrigger")
def trigger(ctx: Ctx) -> Response:
    """Trigger a test run (``is_test``) of a task with the form's JSON payload."""
    task_id, raw, tags = ctx.form("task").strip(), ctx.form("payload", "{}"), ctx.form("tags")
    try:
        try:
            payload = json.loads(raw or "null")
        except ValueError as exc:
            raise InvalidOptionError("payload", raw, f"is not JSON: {exc}") from None
        options = {"test": True, "tags": [t.strip() for t in tags.split(",") if t.strip()] or None}
        handle = ctx.rt.engine.trigger(task_id, payload, options, ctx.rt.registry.get(task_id))
    except RunlaneError as exc:
        if not wants_html(ctx.request):
            raise
        form = _trigger_form(ctx, task_id, raw, tags, str(exc))
        return ctx.page("Trigger a test run", form, error_of(exc).status)
    return ctx.redirect(f"/runs/{segment(handle.id)}")
