"""A TCP proxy in front of a real Redis server, for outage tests: it can go down (every
connection closed, new ones refused, as a stopped server does) and come back on the same
port, or lose the reply to the next command that contains some bytes (the command reaches
Redis and is executed; the client's connection is then closed before the reply reaches it).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from urllib.parse import urlsplit


class RedisProxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.db = (parts.path or "/0").lstrip("/") or "0"
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._lose: list[bytes] = []
        self.lost = 0  # replies lost so far
        self._closed = False

    def url(self, query: str = "") -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}" + (f"?{query}" if query else "")

    def start(self) -> RedisProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        """Refuse new connections and close every open one."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def up(self) -> None:
        if self._listener is None:
            self.start()

    def lose_reply(self, containing: bytes) -> None:
        """The next command whose bytes contain ``containing`` is executed by Redis, and its
        reply is lost with the connection."""
        with self._lock:
            self._lose.append(containing)

    def close(self) -> None:
        self._closed = True
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self._conns.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        losing = False
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [], 1.0)
                if self._closed:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        with self._lock:
                            hit = next((p for p in self._lose if p in data), None)
                            if hit is not None:
                                self._lose.remove(hit)
                                losing = True
                        server.sendall(data)
                    elif losing:  # Redis has answered: the command ran; its reply is lost
                        self.lost += 1
                        return
                    else:
                        client.sendall(data)
        except (OSError, ValueError):  # closed by down() (ValueError: select on a closed one)
            return
        finally:
            with self._lock:
                self._conns.discard(client)
                self._conns.discard(server)
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
