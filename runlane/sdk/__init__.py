"""Remote mode: the public API over HTTP against a runlane server (``runlane serve``).

``runlane.configure(api_url=..., secret_key=...)``, or ``RUNLANE_API_URL`` and
``RUNLANE_SECRET_KEY``, installs a :class:`RemoteRuntime`: ``task.trigger``, ``runs``,
``schedules``, ``queues``, ``batch`` ... then work as in local mode, with the same results and
errors, from a process that shares no store with the workers.
"""

from runlane.sdk.client import Client
from runlane.sdk.remote import RemoteEngine, RemoteOperations, RemoteRuntime, remote_runtime

__all__ = ["Client", "RemoteEngine", "RemoteOperations", "RemoteRuntime", "remote_runtime"]
