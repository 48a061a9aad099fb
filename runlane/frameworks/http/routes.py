"""Every router of the management API, in the order they are matched."""

from __future__ import annotations

from runlane.frameworks.http import own_routes, trigger_routes

# runlane's own first: "/api/v1/runs/{run_id}/logs" and the bulk routes before Trigger.dev's
ROUTERS = [own_routes.router, trigger_routes.router]
