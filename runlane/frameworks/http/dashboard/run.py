"""A run's page (status timeline, attempts, payload, output, error, metadata, logs and spans as
a tree, streams, related runs; cancel and replay) and a batch's page.

A public access token sees the runs its scopes name, without payload, output or logs (as the
API shows them to it)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runlane.core import operations
from runlane.core.logs import LogEntry
from runlane.core.models import Run
from runlane.frameworks.http.api import ApiError, Response
from runlane.frameworks.http.auth import require_run
from runlane.frameworks.http.dashboard.html import (
    Html,
    duration,
    live_section,
    pretty,
    query,
    segment,
    status,
    table,
    tag,
    when,
)
from runlane.frameworks.http.dashboard.runs import runs_table
from runlane.frameworks.http.dashboard.web import Ctx, html_response, view

MAX_LOGS = 2000  # entries shown on a run's page


def _timeline(run: Run) -> Html:
    moments = [
        ("Created", run.created_at),
        ("Delayed until", run.delayed_until),
        ("Queued", run.queued_at),
        ("Started", run.started_at),
        ("Retry at", run.retry_at),
        ("Finished", run.finished_at),
        ("Expired", run.expired_at),
    ]
    items = [tag("li", tag("b", label), " ", when(at)) for label, at in moments if at is not None]
    if run.duration_ms:
        items.append(tag("li", tag("b", "Duration"), " ", duration(run.duration_ms)))
    return tag("ol", items, class_="timeline")


def _attempts(run: Run) -> Html:
    if not run.attempts:
        return tag("p", "No attempt yet.", class_="empty")
    rows = [
        tag(
            "tr",
            tag("td", a.number),
            tag("td", status(a.status)),
            tag("td", when(a.started_at)),
            tag("td", when(a.finished_at)),
            tag("td", f"{a.error.name}: {a.error.message}" if a.error else ""),
            tag("td", a.worker_id or ""),
        )
        for a in run.attempts
    ]
    return table(["#", "Status", "Started", "Finished", "Error", "Worker"], rows, class_="attempts")


def log_tree(entries: list[LogEntry]) -> list[tuple[LogEntry, list[Any]]]:
    """Entries nested under the spans that enclose them (same attempt, inside the span's
    start and end; the innermost span wins), each level in time order."""
    ordered = sorted(entries, key=lambda e: (e.attempt, e.time, -(e.duration_ms or 0), e.seq))
    roots: list[tuple[LogEntry, list[Any]]] = []
    open_spans: list[tuple[LogEntry, list[Any], float]] = []  # (span, children, end)
    for entry in ordered:
        start = entry.time.timestamp()
        while open_spans and (
            open_spans[-1][0].attempt != entry.attempt or start > open_spans[-1][2]
        ):
            open_spans.pop()
        node: tuple[LogEntry, list[Any]] = (entry, [])
        (open_spans[-1][1] if open_spans else roots).append(node)
        if entry.kind == "span":
            open_spans.append((entry, node[1], start + (entry.duration_ms or 0) / 1000))
    return roots


def _log_nodes(nodes: list[tuple[LogEntry, list[Any]]]) -> Html:
    items = []
    for entry, children in nodes:
        attrs = tag("code", " ".join(f"{k}={v}" for k, v in entry.attributes.items()))
        line = [
            tag("span", entry.time.strftime("%H:%M:%S.%f")[:-3], class_="at"),
            tag("span", entry.level, class_=f"level level-{entry.level}"),
            tag("span", entry.kind, class_="kind") if entry.kind != "log" else None,
            tag("span", entry.message, class_="message"),
            tag("span", duration(entry.duration_ms), class_="took") if entry.duration_ms else None,
            attrs if entry.attributes else None,
        ]
        if entry.kind == "span":
            inner = _log_nodes(children) if children else Html("")
            items.append(
                tag(
                    "li",
                    tag("details", tag("summary", line), inner, open=True),
                    class_="span",
                    data_kind="span",
                )
            )
        else:
            items.append(tag("li", line, class_=f"entry entry-{entry.kind}", data_kind=entry.kind))
    return tag("ul", items, class_="logs")


def _related(ctx: Ctx, run: Run) -> Html:
    link = ctx.root + "/runs/"
    items = []
    if run.parent_id:
        href = link + segment(run.parent_id)
        items.append(tag("li", "Parent ", tag("a", run.parent_id, href=href)))
    if run.root_id and run.root_id != run.parent_id:
        items.append(tag("li", "Root ", tag("a", run.root_id, href=link + segment(run.root_id))))
    if run.batch_id:
        href = f"{ctx.root}/batches/{segment(run.batch_id)}"
        items.append(tag("li", "Batch ", tag("a", run.batch_id, href=href)))
    if run.schedule_id:
        href = ctx.root + query({"schedule": run.schedule_id})
        items.append(tag("li", "Schedule ", tag("a", run.schedule_id, href=href)))
    out = [tag("ul", items, class_="related")] if items else []
    if ctx.is_secret:
        q = replace(operations.run_query(limit=50), parent=run.id)
        children = operations.list_runs(ctx.rt, q).data
        if children:
            out += [tag("h3", "Children"), runs_table(children, ctx.root)]
    return Html("".join(out)) if out else tag("p", "None.", class_="empty")


def _live_body(ctx: Ctx, run: Run) -> Html:
    secret = ctx.is_secret
    parts: list[Any] = [
        _actions(ctx, run),
        tag(
            "p",
            status(run.status),
            " ",
            tag("b", run.task_identifier),
            [tag("span", t, class_="tag") for t in run.tags],
            tag("span", "test", class_="flag") if run.is_test else None,
            f" queue {run.queue} · attempt {run.attempt_count}",
            class_="summary",
            data_final="true" if run.is_completed else None,
        ),
        tag("h2", "Timeline"),
        _timeline(run),
        tag("h2", "Attempts"),
        _attempts(run),
    ]
    if run.error is not None:
        message = f"{run.error.name}: {run.error.message}"
        parts += [tag("h2", "Error"), tag("p", message, class_="error")]
        if run.error.stack_trace and secret:
            parts.append(tag("pre", run.error.stack_trace, class_="stack"))
    if secret:
        parts += [tag("h2", "Payload"), pretty(run.payload)]
        parts += [tag("h2", "Output"), pretty(run.output)]
    parts += [tag("h2", "Metadata"), tag("div", pretty(run.metadata), id="metadata")]
    if secret:
        entries = operations.run_logs(ctx.rt, run.id, limit=MAX_LOGS)
        parts.append(tag("h2", "Logs and spans"))
        empty = tag("p", "No logs.", class_="empty")
        parts.append(_log_nodes(log_tree(entries)) if entries else empty)
    parts += [tag("h2", "Related runs"), _related(ctx, run)]
    return Html("".join(parts))


def _actions(ctx: Ctx, run: Run) -> Html:
    if not ctx.is_secret:
        return Html("")
    base = f"{ctx.root}/runs/{segment(run.id)}"
    csrf = tag("input", type="hidden", name="csrf", value=ctx.csrf)
    verbs = ["replay"] if run.is_completed else ["cancel", "replay"]
    forms = [
        tag(
            "form",
            csrf,
            tag("button", verb.capitalize(), id=verb),
            method="post",
            action=f"{base}/{verb}",
        )
        for verb in verbs
    ]
    return tag("div", forms, class_="actions")


@view("GET", "/dashboard/runs/{run_id}", name="dashboardRun", access="public")
def run_page(ctx: Ctx) -> Response:
    """A run's page (HTML)."""
    run = operations.retrieve_run(ctx.rt, ctx.request.params["run_id"])
    require_run(ctx.request, run)
    body = _live_body(ctx, run)
    if ctx.fragment:
        return html_response(body)
    rid = segment(run.id)
    streams = tag(
        "section",
        tag("h2", "Streams"),
        tag("div", tag("p", "No stream parts yet.", class_="empty"), id="streams"),
        data_live=f"{ctx.root}/live{query({'run': run.id, 'streams': 'true'})}",
    )
    live = live_section(body, refresh=f"{ctx.root}/runs/{rid}?fragment=1")
    return ctx.page(f"Run {run.id}", [live, streams])


@view("POST", "/dashboard/runs/{run_id}/cancel", name="dashboardCancelRun")
def cancel(ctx: Ctx) -> Response:
    """Cancel a run (and its unfinished descendants)."""
    run = operations.cancel_run(ctx.rt, ctx.request.params["run_id"])
    return ctx.redirect(f"/runs/{segment(run.id)}")


@view("POST", "/dashboard/runs/{run_id}/replay", name="dashboardReplayRun")
def replay(ctx: Ctx) -> Response:
    """Replay a run: its new run's page."""
    handle = operations.replay_run(ctx.rt, ctx.request.params["run_id"])
    return ctx.redirect(f"/runs/{segment(handle.id)}")


@view("GET", "/dashboard/batches/{batch_id}", name="dashboardBatch", access="public")
def batch_page(ctx: Ctx) -> Response:
    """A batch's runs (HTML)."""
    batch_id = ctx.request.params["batch_id"]
    if not ctx.principal.allows(["read:all", "read:runs", f"read:batch:{batch_id}"]):
        raise ApiError(404, "not_found", f"no batch {batch_id!r}")
    batch = operations.retrieve_batch(ctx.rt, batch_id)
    runs = operations.retrieve_runs(ctx.rt, batch.run_ids)
    body = runs_table(runs, ctx.root, id="runs")
    if ctx.fragment:
        return html_response(body)
    live = live_section(
        body,
        refresh=f"{ctx.root}/batches/{segment(batch_id)}?fragment=1",
        live=f"{ctx.root}/live{query({'batch': batch_id})}",
    )
    info = tag("p", f"{len(batch.run_ids)} runs, created ", when(batch.created_at))
    return ctx.page(f"Batch {batch.id}", [info, live])
