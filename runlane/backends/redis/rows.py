"""Redis hashes ↔ runlane models."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from runlane.core.clock import to_datetime
from runlane.core.durations import format_duration
from runlane.core.models import Attempt, AttemptStatus, Run, RunStatus, TaskRunError
from runlane.core.types import GIVEN_FIELDS, Waitpoint


def _f(h: dict[str, str], name: str) -> float | None:
    v = h.get(name)
    return None if v is None or v == "" else float(v)


def _i(h: dict[str, str], name: str) -> int | None:
    v = h.get(name)
    return None if v is None or v == "" else int(float(v))


def _s(h: dict[str, str], name: str) -> str | None:
    v = h.get(name)
    return None if v is None or v == "" else v


def error_of(text: str | None) -> TaskRunError | None:
    if not text:
        return None
    data = json.loads(text)
    return TaskRunError(**{k: v for k, v in data.items() if k in TaskRunError.model_fields})


def attempts_of(raw: dict[str, str]) -> list[Attempt]:
    out = []
    for number in sorted(raw, key=int):
        a = json.loads(raw[number])
        err = a.get("error")
        out.append(
            Attempt(
                id=a["id"],
                number=int(a["number"]),
                status=AttemptStatus(a["status"]),
                started_at=to_datetime(a["started_at"]),
                finished_at=to_datetime(a.get("finished_at")),
                error=TaskRunError(
                    **{k: v for k, v in err.items() if k in TaskRunError.model_fields}
                )
                if isinstance(err, dict)
                else None,
                worker_id=a.get("worker_id"),
                machine=a.get("machine") if isinstance(a.get("machine"), str) else None,
            )
        )
    return out


def current_metadata(h: dict[str, str], md: str | None) -> str | None:
    """A run's metadata document: ``md:<id>`` once it was updated (``md``), else the
    ``seed_metadata`` it was created with."""
    return md if md is not None else h.get("seed_metadata")


def to_run(
    h: dict[str, str],
    environment: str,
    metadata: str | None,
    attempts: list[Attempt] | None,
    payload: str | None,
    output: str | None,
) -> Run:
    ttl = _f(h, "ttl")
    metadata = current_metadata(h, metadata)
    return Run(
        id=h["id"],
        task_identifier=h["task"],
        status=RunStatus(h["status"]),
        environment=environment,
        payload=json.loads(payload) if payload else None,
        output=json.loads(output) if output else None,
        error=error_of(h.get("error")),
        attempts=attempts or [],
        attempt_count=_i(h, "attempt_count") or 0,
        tags=json.loads(h.get("tags") or "[]") or [],
        metadata=json.loads(metadata) if metadata else {},  # see current_metadata
        ttl=format_duration(ttl) if ttl else None,
        delayed_until=to_datetime(_f(h, "delay_until")),
        created_at=to_datetime(_f(h, "created_at")),
        updated_at=to_datetime(_f(h, "updated_at")),
        queued_at=to_datetime(_f(h, "queued_at")),
        started_at=to_datetime(_f(h, "started_at")),
        finished_at=to_datetime(_f(h, "finished_at")),
        expired_at=to_datetime(_f(h, "expired_at")),
        duration_ms=_i(h, "duration_ms") or 0,
        queue=h["queue"],
        max_duration=_i(h, "max_duration") or None,
        retry_at=to_datetime(_f(h, "retry_at")),
        number=_i(h, "number") or 0,
        **{name: _GIVEN[kind](h, name) for name, kind in GIVEN_FIELDS.items()},
    )


def _flag(h: dict[str, str], name: str) -> bool:
    return h.get(name) == "1"


# how a GIVEN_FIELDS value is read from the run hash, by its type
_GIVEN: dict[type, Callable[[dict[str, str], str], Any]] = {str: _s, int: _i, bool: _flag}


def waitpoint_of(index: str, raw: str, resolved: bool) -> Waitpoint:
    w = json.loads(raw)
    run_ids = w.get("run_ids") or []
    return Waitpoint(
        index=int(index),
        kind=w["kind"],
        fingerprint=w["fingerprint"],
        run_ids=list(run_ids) if isinstance(run_ids, list) else [],
        batch_id=w.get("batch_id"),
        resume_at=w.get("resume_at"),
        resolved=resolved,
    )


def as_list(value: Any) -> list[Any]:
    """cjson encodes an empty Lua table as {}: a list result may come back as a dict."""
    return value if isinstance(value, list) else []
