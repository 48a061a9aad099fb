"""One SQLite file shared by threads (a connection each) and processes (WAL + busy timeout),
or an in-memory database (``memory://``) that lives in one connection shared by this
process's threads, one transaction at a time, until its last holder releases it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from runlane.errors import StoreError, StoreRejectedError, StoreUnavailableError

_SCHEMA = resources.files(__package__).joinpath("schema.sql").read_text()
_BUSY_TIMEOUT_MS = 60_000
_MEMORY_PREFIX = "file:runlane-mem-"


def memory_path() -> str:
    """The name of a new in-memory database, unique in this process: the store and the local
    broker built for one ``configure(store="memory://")`` share it, and nothing else does."""
    return f"{_MEMORY_PREFIX}{uuid.uuid4().hex}?mode=memory"


def is_memory(path: str | Path) -> bool:
    return str(path).startswith(_MEMORY_PREFIX)


def transient(exc: BaseException) -> bool:
    """A write that waited its busy timeout for another writer, or a disk briefly full: a
    later try may succeed. Other SQLite errors are refusals."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text or "disk is full" in text or "unable to open" in text
    )


def as_store_error(exc: BaseException, where: str) -> StoreError:
    kind = StoreUnavailableError if transient(exc) else StoreRejectedError
    return kind(f"{where}: {exc}")


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.memory = is_memory(self.path)
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._refs = 0
        # notified after each write transaction commits: this process's readers of the change
        # feed wake at once (other processes' writes are found by polling)
        self.committed = threading.Condition()
        self.feed_readers = 0
        # in memory: the one connection (the database lives as long as it is open), and the
        # lock that gives it to one transaction at a time
        self._single: sqlite3.Connection | None = None
        self._serial: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if self.memory:
            self._serial = threading.RLock()
            self._single = self._connect()
        _instances.add(self)
        self.conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nCOMMIT;")

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the SQLite store {self.path} is closed")
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            uri=self.memory,
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        if not self.memory:  # (an in-memory database keeps its journal in memory)
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        with self._lock:
            self._all.append(conn)
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._single is not None:
            if self._closed:
                raise StoreError("the in-memory store is closed")
            return self._single
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @staticmethod
    def _settle(conn: sqlite3.Connection) -> None:
        """Roll back whatever transaction is open: an exception (even one raised into this
        thread between two statements, like a max-duration interrupt) never leaves the
        connection inside a transaction."""
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: one writer at a time, across processes)."""
        with self._serial:
            conn = self.conn
            try:
                self._settle(conn)
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._settle(conn)
                raise as_store_error(exc, f"SQLite store {self.path}") from exc
            except BaseException:
                self._settle(conn)
                raise
        if self.feed_readers:
            with self.committed:
                self.committed.notify_all()

    def wait_commit(self, timeout: float) -> None:
        """Block until a write transaction of this process commits, or ``timeout``."""
        with self.committed:
            self.feed_readers += 1
            try:
                self.committed.wait(timeout)
            finally:
                self.feed_readers -= 1

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs."""
        with self._serial:
            conn = self.conn
            try:
                self._settle(conn)
                conn.execute("BEGIN")
                yield conn
            finally:
                self._settle(conn)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


_registry: dict[str, Database] = {}
_registry_lock = threading.Lock()
_instances: weakref.WeakSet[Database] = weakref.WeakSet()
_inherited: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    """A forked child (Celery's prefork pool, a preloading web server) opens connections of its
    own: SQLite connections must not cross a fork. The inherited ones are kept referenced and
    never used nor closed here (closing them could drop the child's own file locks)."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for db in list(_instances):
        if db.memory:  # the child's own copy of the database, in its one connection
            db._serial = threading.RLock()
            continue
        _inherited.extend(db._all)
        db._all = []
        db._local = threading.local()
        db._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def shared_database(path: str | Path) -> Database:
    """One Database object per file and process, shared by the stores and local brokers that
    use the file; each holder gives it back with ``release_database``."""
    key = str(path) if is_memory(path) else str(Path(path).resolve())
    with _registry_lock:
        db = _registry.get(key)
        if db is None or db._closed:
            db = Database(key)
            _registry[key] = db
        db._refs += 1
        return db


def release_database(db: Database) -> None:
    """The last holder's release closes the file's connections."""
    with _registry_lock:
        db._refs -= 1
        if db._refs > 0:
            return
        if _registry.get(db.path) is db:
            del _registry[db.path]
    db.close()
