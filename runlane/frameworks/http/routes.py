"""Every router of the management API, in the order they are matched."""

from __future__ import annotations

from runlane.frameworks.http import native_routes, own_routes, realtime_routes, trigger_routes
from runlane.frameworks.http.dashboard import router as dashboard_router

# runlane's own first: "/api/v1/runs/{run_id}/logs" and the bulk routes before Trigger.dev's;
# the native routes (/api/runlane/v1/..., remote mode's) share no path with the others
ROUTERS = [
    own_routes.router,
    native_routes.router,
    trigger_routes.router,
    realtime_routes.router,
    dashboard_router,
]
