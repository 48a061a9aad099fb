"""``close_old_connections()`` before and after each run a worker executes (as Django does
around each request, and django_dramatiq's ``DbConnectionsMiddleware`` around each message):
a long-lived worker thread never uses a connection past ``CONN_MAX_AGE`` or one the database
closed. Installed as runlane's global ``init`` and ``cleanup`` hooks
(``RUNLANE["CLOSE_DB_CONNECTIONS"] = False`` turns it off)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.db import close_old_connections

from runlane.core import runtime

log = logging.getLogger("runlane.django")


def _close() -> None:
    from runlane.frameworks.django import conf

    if not conf.state["CLOSE_DB_CONNECTIONS"]:
        return
    try:
        close_old_connections()
    except SynchronousOnlyOperation:  # an async task's event loop: the ORM is not used there
        pass
    except Exception:
        log.warning("close_old_connections() failed", exc_info=True)


def init(payload: Any, ctx: Any) -> None:
    _close()


def cleanup(payload: Any, ctx: Any) -> None:
    _close()


def install() -> None:
    """Called after each configure from the settings: the hooks of the new runtime (a global
    ``init`` or ``cleanup`` hook set otherwise is left as it is)."""
    rt = runtime.peek()
    if rt is None or rt.settings.api_url is not None:
        return
    rt.settings.hooks.setdefault("init", init)
    rt.settings.hooks.setdefault("cleanup", cleanup)
