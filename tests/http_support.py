"""A real HTTP server for tests: uvicorn serving ``runlane serve``'s ASGI application in a
thread, on a free loopback port, over the test's runtime."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from runlane.cli.serve import asgi_app
from runlane.core.runtime import Runtime


@dataclass
class Server:
    url: str
    key: str  # a secret key of the runtime's environment

    def client(self, key: str | None = None, **kw: object) -> httpx.Client:
        headers = {"authorization": f"Bearer {key or self.key}"} if key != "" else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(rt: Runtime, key: str, *, with_worker: int = 0) -> Iterator[Server]:
    port = free_port()
    config = uvicorn.Config(
        asgi_app(rt, with_worker=with_worker),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,  # open realtime streams would hold the shutdown forever
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", key)
    finally:
        server.should_exit = True
        thread.join(30)
