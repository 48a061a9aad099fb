"""``runlane.idempotency_keys.create(key, scope="run")``."""

from runlane.core.idempotency import IdempotencyKey, create

__all__ = ["IdempotencyKey", "create"]
