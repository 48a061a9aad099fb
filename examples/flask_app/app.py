"""A Flask app with runlane.

    export RUNLANE_STORE_URL=redis://127.0.0.1:6379/0      # or leave the SQLite default
    gunicorn examples.flask_app.app:app                    # the web app (any WSGI server)
    flask --app examples.flask_app.app runlane worker      # executes the runs, in the app context

Open http://127.0.0.1:8000/, start a report and watch its progress. POST /webhooks/billing
takes signed Standard Webhooks deliveries (runlane.contrib.webhooks) and triggers a task. The
management API (Trigger.dev's routes) answers under /runlane: set RUNLANE_SECRET_KEY (or
`flask --app examples.flask_app.app runlane keys create`) and send `Authorization: Bearer
<key>`.
"""

import os

from flask import (
    Blueprint,
    Flask,
    abort,
    jsonify,
    redirect,
    render_template_string,
    request,
    url_for,
)

import runlane
from runlane.contrib.webhooks import receive
from runlane.errors import RunNotFoundError
from runlane.frameworks.flask import Runlane

from .tasks import build_report, handle_billing_event

# ---------------------------------------------------------------------- views
pages = Blueprint("reports", __name__)

INDEX = """<!doctype html>
<title>Reports</title>
<h1>Reports</h1>
<form method="post" action="{{ url_for('reports.start') }}">
  <input name="subject" value="sales" required> <button>Build a report</button>
</form>
<ul>{% for run in runs %}
  <li><a href="{{ url_for('reports.show', run_id=run.id) }}">{{ run.id }}</a>
      {{ run.payload.subject }}: {{ run.status }}</li>
{% endfor %}</ul>
"""

SHOW = """<!doctype html>
<title>Report {{ run_id }}</title>
<h1>Report {{ run_id }}</h1>
<progress id="bar" max="1" value="0"></progress> <span id="status">…</span>
<pre id="output"></pre>
<p><a href="{{ url_for('reports.index') }}">All reports</a></p>
<script>
async function poll() {
  const run = await (await fetch("{{ url_for('reports.progress', run_id=run_id) }}")).json();
  document.getElementById("bar").value = run.progress;
  document.getElementById("status").textContent = run.status + (run.step ? " · " + run.step : "");
  if (run.final) {
    const result = run.output || run.error;
    document.getElementById("output").textContent = JSON.stringify(result, null, 2);
  } else {
    setTimeout(poll, 500);
  }
}
poll();
</script>
"""


@pages.get("/")
def index():
    runs = runlane.runs.list(task_identifier=build_report.id, limit=10).data
    return render_template_string(INDEX, runs=runs)


@pages.post("/reports")
def start():
    subject = (request.get_json(silent=True) or request.form).get("subject", "").strip()
    if not subject:
        abort(400, "a subject is needed")
    handle = build_report.trigger({"subject": subject}, tags=["web"])
    if request.is_json:
        return jsonify(id=handle.id), 202
    return redirect(url_for("reports.show", run_id=handle.id), code=303)


@pages.get("/reports/<run_id>")
def show(run_id: str):
    return render_template_string(SHOW, run_id=run_id)


@pages.get("/reports/<run_id>/progress")
def progress(run_id: str):
    try:
        run = runlane.runs.retrieve(run_id)
    except RunNotFoundError:
        abort(404)
    final = run.status.is_final
    return jsonify(
        id=run.id,
        status=run.status.value,
        final=final,
        progress=1.0 if run.is_success else run.metadata.get("progress", 0),
        step=run.metadata.get("step"),
        output=run.output,
        error=run.error.message if run.error else None,
    )


ext = Runlane()


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        # runlane's settings: RUNLANE_* keys (one not set here falls back to the environment
        # variable of the same name)
        RUNLANE_STORE_URL=os.environ.get(
            "RUNLANE_STORE_URL", "sqlite:///.runlane/flask-example.db"
        ),
        RUNLANE_URL_PREFIX="/runlane",
        # the app's own settings, read by the task through current_app
        REPORT_TITLE="Quarterly report",
        REPORT_STEPS=5,
        REPORT_STEP_SECONDS=1.0,
        # the signing secret of the billing provider's webhooks (Standard Webhooks: whsec_...)
        BILLING_WEBHOOK_SECRET="whsec_ZXhhbXBsZSBzZWNyZXQsIGNoYW5nZSBtZQ==",
    )
    app.config.from_prefixed_env()  # FLASK_REPORT_STEPS=3 and the like
    app.config.update(config or {})
    ext.init_app(app)
    app.register_blueprint(pages)
    # a webhook endpoint: the signature is verified, then the task is triggered, keyed by the
    # delivery's id (a redelivery answers the same run)
    billing = receive(
        "standard", secret=app.config["BILLING_WEBHOOK_SECRET"], task=handle_billing_event
    )
    app.add_url_rule("/webhooks/billing", view_func=billing.flask_view())
    return app


app = create_app()
