"""The embedded default: a SQLite store (WAL, shareable by processes on one machine)."""

from runlane.backends.sqlite.store import SQLiteStore, path_from_url

__all__ = ["SQLiteStore", "path_from_url"]
