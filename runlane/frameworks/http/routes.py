"""Every router of the management API, in the order they are matched."""

from __future__ import annotations

from runlane.frameworks.http import own_routes

ROUTERS = [own_routes.router]
