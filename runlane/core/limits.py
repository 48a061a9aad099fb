"""The documented limits (reference: Limits), all overridable through ``configure(limits=...)``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from runlane.errors import ConfigurationError


@dataclass(frozen=True)
class Limits:
    payload_bytes: int = 3 * 1024 * 1024
    batch_bytes: int = 5 * 1024 * 1024
    output_bytes: int = 10 * 1024 * 1024
    batch_items: int = 500
    metadata_bytes: int = 262_144
    stream_chunk_bytes: int = 65_536  # one metadata.stream chunk, as JSON
    stream_chunks_per_run: int = 20_000  # every stream of a run together
    tags_per_run: int = 5
    tag_length: int = 64
    idempotency_key_ttl_seconds: int = 30 * 24 * 3600
    min_max_duration_seconds: int = 5
    dev_default_ttl_seconds: int = 600

    def with_overrides(self, overrides: dict[str, Any] | None) -> Limits:
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigurationError(
                f"unknown limit(s) {sorted(unknown)}; known limits: {sorted(known)}"
            )
        for k, v in overrides.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigurationError(f"limit {k} must be a non-negative int, got {v!r}")
        return replace(self, **overrides)


DEFAULT_LIMITS = Limits()
