"""The FastAPI example: ``uvicorn examples.fastapi_app.main:app --port 8000``.

- ``/``: a form that triggers the ``build-report`` task; ``/reports/{run_id}``: its progress
  (the run's metadata), refreshed until the run is final.
- ``/runlane/...``: runlane's management API (Trigger.dev's routes; ``Authorization: Bearer
  <secret key>``), e.g. ``POST /runlane/api/v1/tasks/build-report/trigger``.
- ``POST /webhooks/github``: GitHub deliveries (``X-Hub-Signature-256`` checked with
  ``GITHUB_WEBHOOK_SECRET``) trigger ``handle-github-event``, keyed by the delivery's id: a
  redelivery answers the same run.
- The lifespan runs a runlane worker (4 runs at a time) in this process; the store comes from
  ``RUNLANE_STORE_URL`` (the SQLite default without it).
"""

from __future__ import annotations

import os
from html import escape
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from examples.fastapi_app import tasks
from runlane.contrib.webhooks import receive
from runlane.errors import InvalidOptionError, RunNotFoundError
from runlane.frameworks.fastapi import RunlaneDep, lifespan, router

app = FastAPI(title="runlane FastAPI example", lifespan=lifespan)
app.include_router(router, prefix="/runlane")
# a webhook endpoint: the signature is verified, then the task is triggered
github = receive(
    "github",
    secret=os.environ.get("GITHUB_WEBHOOK_SECRET", "example secret, change me"),
    task=tasks.handle_github_event.id,
)
app.add_api_route("/webhooks/github", github.fastapi_endpoint(), methods=["POST"])

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>{refresh}</head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">{body}</body></html>"""


def page(title: str, body: str, *, refresh: bool = False) -> HTMLResponse:
    meta = '<meta http-equiv="refresh" content="1">' if refresh else ""
    return HTMLResponse(_PAGE.format(title=escape(title), refresh=meta, body=body))


@app.get("/", response_class=HTMLResponse)
async def home() -> HTMLResponse:
    return page(
        "Reports",
        """<h1>Build a report</h1>
        <form method="post" action="/reports">
          <input name="title" placeholder="Title" required>
          <button type="submit">Build</button>
        </form>""",
    )


@app.post("/reports")
async def create_report(request: Request, rl: RunlaneDep) -> RedirectResponse:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    title = (form.get("title") or [""])[-1].strip()[:200] or "Untitled"
    handle = await rl.tasks.aio_trigger(tasks.build_report.id, {"title": title}, tags=["report"])
    return RedirectResponse(f"/reports/{handle.id}", status_code=303)


@app.get("/reports/{run_id}", response_class=HTMLResponse)
async def show_report(run_id: str, rl: RunlaneDep) -> HTMLResponse:
    try:
        run = await rl.runs.aio_retrieve(run_id)
    except (RunNotFoundError, InvalidOptionError):
        raise HTTPException(404, "no such report") from None
    progress = float(run.metadata.get("progress") or 0)
    step = escape(str(run.metadata.get("step") or "waiting for a worker"))
    body = f"""<h1>{escape(str(run.payload.get("title", "")))}</h1>
    <p>Run <code>{escape(run.id)}</code>: <strong id="status">{run.status}</strong></p>
    <progress max="1" value="{progress:.2f}"></progress> {progress:.0%} ({step})"""
    if run.is_success:
        body += f"<p>Done: {run.output['pages']} pages.</p>"
    elif run.is_completed:
        body += f"<p>Failed: {escape(str(run.error.message if run.error else run.status))}</p>"
    body += '<p><a href="/">Build another</a></p>'
    return page(f"Report {run.id}", body, refresh=not run.is_completed)
