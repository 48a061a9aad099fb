"""Secret keys on both stores: saved as digests, read by id, listed, revoked once."""

from __future__ import annotations

from typing import Any

import runlane
from runlane.core.types import KeyRow


def test_keys_are_saved_listed_and_revoked(store: Any, clock: runlane.FakeClock) -> None:
    first = KeyRow("key_a", "d" * 64, "ci", clock.now(), "wxyz")
    clock.advance(1)
    second = KeyRow("key_b", "e" * 64, "web", clock.now(), "abcd")
    store.save_key(second)
    store.save_key(first)
    assert store.get_key("key_a") == first
    assert store.get_key("key_missing") is None
    assert [k.id for k in store.list_keys()] == ["key_a", "key_b"]  # oldest first
    clock.advance(5)
    assert store.revoke_key("key_b", now=clock.now())
    revoked_at = store.get_key("key_b").revoked_at
    assert revoked_at == clock.now()
    clock.advance(5)
    assert store.revoke_key("key_b", now=clock.now())  # again: the first time stays
    assert store.get_key("key_b").revoked_at == revoked_at
    assert not store.revoke_key("key_missing", now=clock.now())
    assert store.get_key("key_missing") is None
    assert store.get_key("key_a").revoked_at is None


def test_requests_are_counted_by_window(store: Any) -> None:
    assert [store.count_request("key_a", window_start=600.0, window=60.0) for _ in range(3)] == [
        1,
        2,
        3,
    ]
    assert store.count_request("key_b", window_start=600.0, window=60.0) == 1  # its own count
    assert store.count_request("key_a", window_start=660.0, window=60.0) == 1  # a new window
