"""Redis backends: the store (runs in Redis, every transition one Lua call) and the native
broker (reliable fetch)."""

from runlane.backends.redis.broker import RedisBroker
from runlane.backends.redis.store import RedisStore

__all__ = ["RedisBroker", "RedisStore"]
