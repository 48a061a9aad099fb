"""The web dashboard under ``/dashboard``: server-rendered pages over the management verbs
(``runlane.core.operations``), served wherever the HTTP API is, behind the same keys.

- ``web``: the router, sessions (cookie, CSRF) and the Content-Security-Policy;
- ``runs``: the runs table and bulk actions; ``run``: a run's page and a batch's;
- ``admin``: queues, schedules, a test run; ``entry``: sign in, static files, the live feed;
- ``html``: escaping and markup; ``static/``: the one script and the one stylesheet.
"""

from runlane.frameworks.http.dashboard import admin, entry, run, runs
from runlane.frameworks.http.dashboard.web import router

__all__ = ["admin", "entry", "router", "run", "runs"]
