"""Requests → runlane: ``parse_*`` turn a request's body or query into what runlane's verbs take,
raising ``InvalidOptionError`` naming the request field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

from runlane.core.durations import parse_duration, parse_iso_datetime
from runlane.core.idempotency import IdempotencyKey
from runlane.core.metadata import make_op
from runlane.core.models import RunStatus
from runlane.core.operations import MAX_PAGE, run_query
from runlane.core.types import RunQuery
from runlane.errors import InvalidOptionError, PayloadError
from runlane.frameworks.http.shapes._wire import JSON_TYPE, _known, _object, _path, _string


# ---------------------------------------------------------------------- payloads
def decode_payload(
    payload: Any, payload_type: Any, option: str = "payload", type_option: str = "payloadType"
) -> Any:
    """The JSON value of a trigger's ``payload``, by its ``payloadType``.

    What SDK 3.3.17 sends (``stringifyIO``): a string as itself with ``text/plain``; no payload
    (``undefined``) with ``application/json``; any other value as a superjson string
    (``{"json": value}``) with ``application/super+json``. A superjson envelope is accepted
    when it holds JSON: its ``undefined`` object members are dropped (as JSON.stringify drops
    them); a Date, Map, Set, BigInt, RegExp, NaN... is refused, naming where it is.
    ``application/json`` (the default) is the value itself."""
    kind = JSON_TYPE if payload_type is None else payload_type
    if kind == JSON_TYPE:
        return payload
    if kind == "text/plain":
        if not isinstance(payload, str):
            raise PayloadError(option, payload, "a text/plain payload is a string")
        return payload
    if kind == "application/super+json":
        return _from_superjson(payload, option)
    raise PayloadError(
        type_option,
        kind,
        "runlane takes JSON payloads only: application/json, or the text/plain and "
        "application/super+json forms the Trigger.dev SDK gives JSON values",
    )


def _from_superjson(text: Any, option: str) -> Any:
    if not isinstance(text, str):
        raise PayloadError(option, text, "an application/super+json payload is a JSON string")
    try:
        envelope = json.loads(text)
    except ValueError:
        raise PayloadError(option, text, "is not valid superjson (not JSON)") from None
    if not isinstance(envelope, dict) or "json" not in envelope or set(envelope) - {"json", "meta"}:
        raise PayloadError(option, text, 'is not a superjson envelope {"json": ..., "meta": ...}')
    value = envelope["json"]
    meta = envelope.get("meta") or {}
    if not isinstance(meta, dict) or set(meta) - {"values", "referentialEqualities", "v"}:
        raise PayloadError(option, text, "has superjson annotations runlane does not know")
    # referentialEqualities only say two places held one object: the JSON has both copies
    values = meta.get("values")
    if values is None:
        return value
    if isinstance(values, list):  # the root value itself is annotated
        _check_annotation(values, [], option)
        return None  # only "undefined" passes the check
    if not isinstance(values, dict):
        raise PayloadError(option, text, "has malformed superjson annotations")
    drops: list[list[str]] = []
    for raw_path, annotation in values.items():
        path = _superjson_path(raw_path)
        _check_annotation(annotation, path, option)
        drops.append(path)
    for path in sorted(drops, key=len, reverse=True):
        _drop_undefined(value, path)
    return value


def _check_annotation(annotation: Any, path: list[str], option: str) -> None:
    kind = annotation[0] if isinstance(annotation, list) and annotation else annotation
    if kind == "undefined" and len(annotation) == 1:
        return
    name = "-".join(map(str, kind)) if isinstance(kind, list) else str(kind)
    where = "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path)
    raise PayloadError(
        option,
        f"<{name} at {where}>",
        f"{where} is a JavaScript {name}, which is not JSON: runlane takes JSON payloads only "
        "(send dates as ISO strings, maps as objects, sets as arrays, bigints as strings)",
    )


_PATH_PART = re.compile(r"((?:[^.\\]|\\.)*)(?:\.|$)")


def _superjson_path(raw: str) -> list[str]:
    """superjson's ``a.b\\.c`` (dots in keys escaped) → ``["a", "b.c"]``."""
    parts = [m.group(1) for m in _PATH_PART.finditer(raw)][:-1] if raw else []
    return [re.sub(r"\\(.)", r"\1", p) for p in parts]


def _drop_undefined(value: Any, path: list[str]) -> None:
    """Remove the object member at ``path`` (an array keeps its null, as JSON.stringify)."""
    parent = value
    for part in path[:-1]:
        if isinstance(parent, dict):
            parent = parent.get(part)
        elif isinstance(parent, list) and part.isdigit() and int(part) < len(parent):
            parent = parent[int(part)]
        else:
            return
    if isinstance(parent, dict) and path:
        parent.pop(path[-1], None)


# ---------------------------------------------------------------------- trigger requests
# wire option → (runlane option, what JSON types it takes); None = checked below
_OPTIONS: dict[str, tuple[str, tuple[type, ...]] | None] = {
    "concurrencyKey": ("concurrency_key", (str,)),
    "delay": ("delay", (str, int, float)),  # a duration, an ISO date; a number is seconds
    "idempotencyKey": None,
    "idempotencyKeyTTL": ("idempotency_key_ttl", (str, int, float)),
    "lockToVersion": ("version", (str,)),
    "machine": ("machine", (str,)),
    "maxAttempts": ("max_attempts", (int,)),
    "maxDuration": ("max_duration", (int, float)),
    "metadata": ("metadata", (dict,)),
    "metadataType": None,
    "payloadType": None,
    "queue": None,
    "tags": ("tags", (str, list)),
    "test": ("test", (bool,)),
    "ttl": ("ttl", (str, int, float)),
}
_JSON_NAMES = {str: "string", int: "number", float: "number", bool: "boolean", list: "array"}
_JSON_NAMES[dict] = "object"
# set by the SDK inside a Trigger.dev task (a Node run waiting on its child): runlane's tasks
# are Python, so a request carrying one comes from somewhere runlane cannot resume
_TASK_ONLY = ("dependentAttempt", "dependentBatch", "parentAttempt", "parentBatch")
_TASK_ONLY_REASON = (
    "is set by the Trigger.dev SDK inside a Trigger.dev task; runlane's tasks are Python and "
    "wait on their children with trigger_and_wait / batch_trigger_and_wait"
)
WIRE_OPTION_NAMES = {
    **{spec[0]: wire for wire, spec in _OPTIONS.items() if spec is not None},
    "idempotency_key": "idempotencyKey",
    "queue": "queue",
    "payload": "payload",
}
_WIRE_NAME = re.compile(r"^(items\[\d+\]\.)?([a-z_]+)(.*)$")


def wire_option_name(option: str) -> str:
    """The request field of an option named by runlane's trigger validation: ``max_attempts``
    → ``options.maxAttempts``, ``items[2].delay`` → ``items[2].options.delay``; for the
    ``param`` of an error answer."""
    found = _WIRE_NAME.match(option)
    if found is None or found.group(2) not in WIRE_OPTION_NAMES:
        return option
    prefix, name, rest = found.groups()
    where = "" if name == "payload" else "options."
    return f"{prefix or ''}{where}{WIRE_OPTION_NAMES[name]}{rest}"


def _trigger_options(options: Any, option: str) -> tuple[dict[str, Any], Any]:
    """``TriggerTaskRequestBody.options`` → (runlane trigger options, the payloadType).
    A null option counts as not given."""
    if options is None:
        return {}, None
    raw = _object(options, option)
    _known(raw, [*_OPTIONS, *_TASK_ONLY], option)
    out: dict[str, Any] = {}
    for wire, value in raw.items():
        where = f"{option}.{wire}"
        if value is None:
            continue
        if wire in _TASK_ONLY:
            raise InvalidOptionError(where, value, _TASK_ONLY_REASON)
        spec = _OPTIONS[wire]
        if spec is not None:
            name, types = spec
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                kinds = "/".join(sorted({_JSON_NAMES[t] for t in types}))
                raise InvalidOptionError(where, value, f"must be a JSON {kinds}")
            out[name] = value
        elif wire == "idempotencyKey":
            # the SDK sends the key already hashed (makeIdempotencyKey), as runlane's
            # idempotency_keys.create makes it: it is used as given, never hashed again
            if len(_string(value, where)) > 2048:
                raise InvalidOptionError(where, value, "must be at most 2048 characters")
            out["idempotency_key"] = IdempotencyKey(value)
        elif wire == "queue":
            out["queue"] = _queue(value, where)
        elif wire == "metadataType" and value != JSON_TYPE:
            raise InvalidOptionError(where, value, "runlane takes JSON metadata only")
    return out, raw.get("payloadType")


def _queue(value: Any, option: str) -> dict[str, Any]:
    raw = _object(value, option)
    _known(raw, ("name", "concurrencyLimit"), option)
    out: dict[str, Any] = {}
    if raw.get("name") is not None:
        out["name"] = _string(raw["name"], f"{option}.name")
    limit = raw.get("concurrencyLimit")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 1000:
            why = "must be an integer from 0 to 1000"
            raise InvalidOptionError(f"{option}.concurrencyLimit", limit, why)
        out["concurrency_limit"] = limit
    return out


def parse_trigger_body(body: Any, option: str = "") -> tuple[Any, dict[str, Any]]:
    """``TriggerTaskRequestBody`` (``POST /api/v1/tasks/{task_id}/trigger``) → (payload,
    options), the arguments of ``runlane.tasks.trigger(task_id, payload, **options)``; the
    options are named as ``runlane.core.options.parse_trigger_options`` takes them. ``context``
    (the caller's trace context) is ignored."""
    raw = _object(body, option or "body")
    _known(raw, ("payload", "context", "options"), option)
    options, payload_type = _trigger_options(raw.get("options"), _path(option, "options"))
    payload = decode_payload(
        raw.get("payload"),
        payload_type,
        _path(option, "payload"),
        _path(option, "options.payloadType"),
    )
    return payload, options


def parse_batch_trigger_body(body: Any) -> list[dict[str, Any]]:
    """``BatchTriggerTaskV2RequestBody`` (``POST /api/v1/tasks/batch``) → the items of
    ``runlane.batch.trigger``: ``[{"id": task id, "payload": ..., "options": {...}}]`` in
    item order."""
    raw = _object(body, "body")
    _known(raw, ("items", "dependentAttempt"), "")
    if raw.get("dependentAttempt") is not None:
        raise InvalidOptionError("dependentAttempt", raw["dependentAttempt"], _TASK_ONLY_REASON)
    items = raw.get("items")
    if not isinstance(items, list):
        raise InvalidOptionError("items", items, "must be an array of items")
    out = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        fields = _object(item, where)
        _known(fields, ("task", "payload", "context", "options"), where)
        task = _string(fields.get("task"), f"{where}.task")
        payload, options = parse_trigger_body(
            {k: v for k, v in fields.items() if k != "task"}, where
        )
        out.append({"id": task, "payload": payload, "options": options})
    return out


BATCH_STRATEGIES = ("sequential", "parallel")


def parse_batch_trigger_headers(headers: Mapping[str, str]) -> None:
    """Check the headers the SDK adds to a batch (names lower case): runlane has no
    batch-wide idempotency key (each item takes its own ``options.idempotencyKey``), and
    creates a batch's runs at once, in item order, whichever ``batch-processing-strategy``."""
    key, strategy = headers.get("idempotency-key"), headers.get("batch-processing-strategy")
    if key:
        why = "runlane has no batch-wide idempotency key: give each item options.idempotencyKey"
        raise InvalidOptionError("idempotency-key", key, why)
    if strategy and strategy not in BATCH_STRATEGIES:
        why = f"must be one of {list(BATCH_STRATEGIES)}"
        raise InvalidOptionError("batch-processing-strategy", strategy, why)


# ---------------------------------------------------------------------- other run requests
def parse_reschedule_body(body: Any) -> Any:
    """``RescheduleRunRequestBody`` → the ``delay`` of ``operations.reschedule_run``: a
    duration ("1h"), an ISO date (a JavaScript Date arrives as one), or seconds."""
    raw = _object(body, "body")
    _known(raw, ("delay",), "")
    delay = raw.get("delay")
    if not isinstance(delay, (str, int, float)) or isinstance(delay, bool):
        raise InvalidOptionError("delay", delay, "must be a duration string or an ISO date")
    return delay


def parse_add_tags_body(body: Any) -> list[str]:
    """``AddTagsRequestBody`` (``{"tags": "a" | ["a", "b"]}``) → the tags to add."""
    raw = _object(body, "body")
    _known(raw, ("tags",), "")
    tags = raw.get("tags")
    items = [tags] if isinstance(tags, str) else tags
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise InvalidOptionError("tags", tags, "must be a string or an array of strings")
    return list(items)


@dataclass(frozen=True)
class MetadataUpdate:
    """What ``PUT /api/v1/runs/{run_id}/metadata`` asks, as runlane's metadata operations
    (``runlane.core.metadata.make_op``) for the run, its parent and its root. As in the
    reference, ``operations`` when given (an empty list changes nothing), else ``metadata``
    replaces the run's metadata; parent and root operations apply only to a run that has one."""

    operations: list[dict[str, Any]] = field(default_factory=list)
    parent_operations: list[dict[str, Any]] = field(default_factory=list)
    root_operations: list[dict[str, Any]] = field(default_factory=list)


def parse_update_metadata_body(body: Any) -> MetadataUpdate:
    """``UpdateMetadataRequestBody`` (``FlushedRunMetadata``) → a :class:`MetadataUpdate`."""
    raw = _object(body, "body")
    _known(raw, ("metadata", "operations", "parentOperations", "rootOperations"), "")
    operations = raw.get("operations")
    if operations is not None:
        ops = _metadata_ops(operations, "operations")
    elif raw.get("metadata") is not None:
        value = _object(raw["metadata"], "metadata")
        ops = [_op("replace", None, dict(value), "metadata")]
    else:
        ops = []
    return MetadataUpdate(
        ops,
        _metadata_ops(raw.get("parentOperations") or [], "parentOperations"),
        _metadata_ops(raw.get("rootOperations") or [], "rootOperations"),
    )


_OP_FIELDS = {
    "set": ("key", "value"),
    "delete": ("key",),
    "append": ("key", "value"),
    "remove": ("key", "value"),
    "increment": ("key", "value"),
    "update": ("value",),  # 3.3.17 applies it as a replacement of the whole metadata
}


def _metadata_ops(value: Any, option: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidOptionError(option, value, "must be an array of operations")
    out = []
    for index, item in enumerate(value):
        where = f"{option}[{index}]"
        raw = _object(item, where)
        kind = raw.get("type")
        if kind not in _OP_FIELDS:
            raise InvalidOptionError(f"{where}.type", kind, f"must be one of {list(_OP_FIELDS)}")
        _known(raw, ("type", *_OP_FIELDS[kind]), where)
        for name in _OP_FIELDS[kind]:
            if name not in raw:
                raise InvalidOptionError(f"{where}.{name}", None, "is required")
        if kind == "update":
            out.append(_op("replace", None, dict(_object(raw["value"], f"{where}.value")), where))
            continue
        key = _string(raw["key"], f"{where}.key")
        if key.startswith("$."):
            raise InvalidOptionError(
                f"{where}.key", key, "runlane's metadata keys are top-level keys, not JSON paths"
            )
        out.append(_op(kind, key, raw.get("value"), where))
    return out


def _op(kind: str, key: str | None, value: Any, where: str) -> dict[str, Any]:
    try:
        return make_op(kind, key, value)
    except InvalidOptionError as exc:  # named after the request field
        name = where if where == "metadata" else f"{where}.value"
        if exc.option == "metadata key" and key is not None:
            name = f"{where}.key"
        raise type(exc)(name, exc.value, exc.reason) from exc


# ---------------------------------------------------------------------- query strings
def _arg(query: Mapping[str, Any], name: str) -> str | None:
    """The last value of a query parameter, from ``parse_qs`` lists or plain strings."""
    value = query.get(name)
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    return value


def _int_arg(query: Mapping[str, Any], name: str, maximum: int) -> int | None:
    text = _arg(query, name)
    if text is None or text == "":
        return None
    if not re.fullmatch(r"\+?\d+", text.strip()) or not 1 <= int(text) <= maximum:
        raise InvalidOptionError(name, text, f"must be an integer from 1 to {maximum}")
    return int(text)


def _list_arg(query: Mapping[str, Any], name: str) -> list[str] | None:
    text = _arg(query, name)
    return text.split(",") if text else None


def _date_arg(query: Mapping[str, Any], name: str) -> float | None:
    """Epoch milliseconds (what the SDK sends for a Date or a number), or an ISO date."""
    text = _arg(query, name)
    if not text:
        return None
    if re.fullmatch(r"-?\d+(\.\d+)?", text.strip()):
        return float(text) / 1000
    when = parse_iso_datetime(text, name)
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


_FILTERS = ("status", "env", "taskIdentifier", "version", "tag", "bulkAction", "schedule")
RUN_LIST_PARAMS = (
    *(f"page[{name}]" for name in ("size", "after", "before")),
    *(f"filter[{name}]" for name in (*_FILTERS, "isTest", "batch")),
    *(f"filter[createdAt][{name}]" for name in ("from", "to", "period")),
)


def parse_list_runs_query(query: Mapping[str, Any], *, now: float) -> RunQuery:
    """The query of ``GET /api/v1/runs`` as the SDK builds it (lists comma-separated, dates in
    epoch milliseconds) → the ``RunQuery`` of ``operations.list_runs``. ``now`` (the runtime's
    clock) anchors ``filter[createdAt][period]``. ``filter[env]`` is ignored: the environment
    is the caller's key's, as in the reference."""
    _known(query, RUN_LIST_PARAMS, "")
    for name, why in (
        ("page[before]", "runlane pages forward only: follow pagination.next with page[after]"),
        ("filter[bulkAction]", "runlane has no bulk actions"),
    ):
        if _arg(query, name):
            raise InvalidOptionError(name, _arg(query, name), why)
    statuses = _list_arg(query, "filter[status]") or []
    valid = {s.value for s in RunStatus}
    for status in statuses:
        if status not in valid:
            raise InvalidOptionError("filter[status]", status, f"must be one of {sorted(valid)}")
    is_test = _arg(query, "filter[isTest]")
    if is_test not in (None, "", "true", "false"):
        raise InvalidOptionError("filter[isTest]", is_test, 'must be "true" or "false"')
    created_from = _date_arg(query, "filter[createdAt][from]")
    period = _arg(query, "filter[createdAt][period]")
    if period:
        if created_from is not None:
            raise InvalidOptionError(
                "filter[createdAt][period]", period, "give a period or filter[createdAt][from]"
            )
        created_from = now - parse_duration(period, "filter[createdAt][period]")
    return run_query(
        status=list(dict.fromkeys(statuses)),
        task_identifier=_list_arg(query, "filter[taskIdentifier]"),
        tag=_list_arg(query, "filter[tag]"),
        version=_list_arg(query, "filter[version]"),
        from_=created_from,
        to=_date_arg(query, "filter[createdAt][to]"),
        batch=_arg(query, "filter[batch]") or None,
        schedule=_arg(query, "filter[schedule]") or None,
        is_test=None if not is_test else is_test == "true",
        limit=_int_arg(query, "page[size]", MAX_PAGE) or 20,
        after=_arg(query, "page[after]") or None,
    )


SCHEDULES_PER_PAGE = 20  # the reference's default page size


def parse_list_schedules_query(query: Mapping[str, Any]) -> tuple[int, int]:
    """The query of ``GET /api/v1/schedules`` (``page``, ``perPage``) → (page from 1, per
    page); see :func:`offset_page`."""
    _known(query, ("page", "perPage"), "")
    page = _int_arg(query, "page", 10**6) or 1
    per_page = _int_arg(query, "perPage", MAX_PAGE) or SCHEDULES_PER_PAGE
    return page, per_page


def parse_timezones_query(query: Mapping[str, Any]) -> bool:
    """The query of ``GET /api/v1/timezones`` → ``exclude_utc`` (``excludeUtc=true``)."""
    _known(query, ("excludeUtc",), "")
    return _arg(query, "excludeUtc") == "true"


# ---------------------------------------------------------------------- schedule requests
def parse_create_schedule_body(body: Any) -> dict[str, Any]:
    """``CreateScheduleOptions`` (``POST /api/v1/schedules``) → the keyword arguments of
    ``runlane.core.schedules.create_schedule`` (the reference requires ``deduplicationKey``;
    runlane, like its Python API, does not)."""
    raw = _object(body, "body")
    _known(raw, ("task", "cron", "deduplicationKey", "externalId", "timezone"), "")
    return {
        "task": _string(raw.get("task"), "task"),
        "cron_expression": _string(raw.get("cron"), "cron"),
        "timezone": _optional_string(raw, "timezone"),
        "external_id": _optional_string(raw, "externalId"),
        "deduplication_key": _optional_string(raw, "deduplicationKey"),
    }


def parse_update_schedule_body(body: Any, *, partial: bool = False) -> dict[str, Any]:
    """``UpdateScheduleOptions`` (``PUT /api/v1/schedules/{id}``) → the keyword arguments of
    ``runlane.core.schedules.update_schedule``. A PUT replaces the schedule as the reference
    does: ``task`` and ``cron`` are required, a missing ``timezone`` is UTC and a missing
    ``externalId`` clears it. ``partial=True``: what is not given stays."""
    raw = _object(body, "body")
    _known(raw, ("task", "cron", "externalId", "timezone"), "")
    out: dict[str, Any] = {}
    for wire, name in (("task", "task"), ("cron", "cron_expression")):
        if not partial or raw.get(wire) is not None:
            out[name] = _string(raw.get(wire), wire)
    if not partial or raw.get("timezone") is not None:
        out["timezone"] = _optional_string(raw, "timezone") or "UTC"
    if not partial or "externalId" in raw:
        out["external_id"] = _optional_string(raw, "externalId")
    return out


def _optional_string(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    return None if value is None else _string(value, name)
