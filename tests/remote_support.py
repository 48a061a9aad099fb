"""A runlane server for remote-mode tests, apart from the test's own runtime: the server has a
runtime of its own (built, never installed) on its own SQLite file and a Worker on it, while
the test process is configured with ``api_url``; they share only the task registry (the tasks
the test defines, which the server's worker executes). Also: any ASGI app served on a free port
(a wrapper that fails on purpose in front of the API)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

import runlane
from runlane import config
from runlane.cli.serve import asgi_app
from runlane.core import operations, runtime
from runlane.core.runtime import Runtime
from tests.http_support import free_port


@dataclass
class RemoteServer:
    url: str
    key: str  # a secret key of the server's store (environment dev)
    rt: Runtime  # the server's runtime: never the one the test process has installed


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """uvicorn serving ``app`` in a thread on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-remote", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def remote_server(folder: Path, *, concurrency: int = 4) -> Iterator[RemoteServer]:
    """``runlane serve`` over a runtime of its own (a SQLite file in ``folder``) with a worker
    on that runtime. (``serving(rt, key, with_worker=N)`` is not used: its worker takes the
    process's installed runtime, which in these tests is the remote one.)"""
    rt = config.build_runtime(store=f"sqlite:///{folder / 'server.db'}", environment="dev")
    key, _ = operations.create_key(rt, "remote-sdk tests")
    worker = runlane.Worker(concurrency=concurrency, runtime_=rt, fetch_timeout=0.1)
    try:
        with serving_app(asgi_app(rt)) as url:
            worker.start()
            try:
                yield RemoteServer(url, key, rt)
            finally:
                worker.stop(timeout=5)
    finally:
        rt.close()


@contextmanager
def remote_client(
    server: RemoteServer, *, url: str | None = None, key: str | None = None, **options: Any
) -> Iterator[Runtime]:
    """The test process in remote mode against ``server`` (or ``url``, a proxy in front of
    it) for the block; the runtime installed before comes back afterwards."""
    previous = runtime.install(None)
    try:
        yield runlane.configure(api_url=url or server.url, secret_key=key or server.key, **options)
    finally:
        current = runtime.install(previous)
        if current is not None and current is not previous:
            current.close()
