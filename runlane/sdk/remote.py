"""Remote mode: a runtime whose engine triggers and whose operations manage runs on a runlane
server (``runlane serve``), through its native routes (``frameworks/http/native_routes.py``).

``configure(api_url=..., secret_key=...)`` (or ``RUNLANE_API_URL`` + ``RUNLANE_SECRET_KEY``)
installs a :class:`RemoteRuntime`. The public API reads the same attributes of it as of a
local runtime (``engine.trigger`` / ``batch_trigger``, ``ops.<verb>``, ``settings``,
``environment``, ``registry``, ``now()``), so ``runlane.runs.retrieve`` or ``task.trigger``
neither know nor care which mode they are in. What needs a store in this process (a Worker,
``run_until_idle``, waits inside a task) raises a ``ConfigurationError`` that says so.

Arguments are checked here as far as a local call checks them without a store (ids, option
types, JSON), with the same errors; the server checks the rest and its errors come back as the
same exceptions (``client.error_of``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from runlane.core import cron, jsonvalue, keys, realtime, signals, tracing
from runlane.core import schedules as schedule_ops
from runlane.core.clock import Clock, SystemClock
from runlane.core.durations import parse_duration, parse_point_in_time
from runlane.core.engine import Engine
from runlane.core.handles import BatchHandle, RunHandle
from runlane.core.logs import LogEntry
from runlane.core.metadata import make_op
from runlane.core.models import Batch, QueueInfo, Run
from runlane.core.operations import MAX_LOG_PAGE, BulkResult, LocalOperations, RunList
from runlane.core.options import (
    ENVIRONMENTS,
    UNSET,
    RetryOptions,
    check_items,
    parse_retry,
    parse_trigger_options,
    validate_concurrency_key,
    validate_queue_name,
    validate_task_id,
)
from runlane.core.realtime import Subscription
from runlane.core.registry import Registry, registry
from runlane.core.runtime import Runtime, Settings
from runlane.core.schedules import Schedule, ScheduleList
from runlane.core.types import RunQuery
from runlane.errors import ConfigurationError, InvalidOptionError
from runlane.sdk import wire
from runlane.sdk.client import DEFAULT_RETRY, DEFAULT_TIMEOUT, Client
from runlane.sdk.realtime import RemoteSubscription
from runlane.sdk.wire import BASE

if TYPE_CHECKING:
    import httpx

    from runlane.core.broker import Broker
    from runlane.core.store import Store
    from runlane.core.task import Task


def _id(value: Any) -> str:
    """A path parameter, percent-encoded: a queue "task/x" is one segment."""
    return quote(str(value), safe="")


class RemoteRuntime(Runtime):
    """The runtime of remote mode: no store and no broker in this process, a :class:`Client`
    to a runlane server instead."""

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        *,
        environment: str | None = None,
        clock: Clock | None = None,
        tasks: Registry | None = None,
        request_options: Mapping[str, Any] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"api_url / RUNLANE_API_URL must be the http(s):// URL of a runlane server "
                f"(`runlane serve`), not {api_url!r}"
            )
        env = keys.environment_of(secret_key) if isinstance(secret_key, str) else None
        if env is None:
            raise ConfigurationError(
                "remote mode authenticates with a secret key: set RUNLANE_SECRET_KEY or "
                "configure(secret_key=...) to a key made by `runlane keys create` (rl_<env>_...)"
            )
        if environment is not None and environment != env:
            raise ConfigurationError(
                f"the secret key is a key of environment {env!r}, not {environment!r}: in remote "
                "mode the key chooses the environment"
            )
        retry, timeout = _request_options(request_options)
        self.settings = Settings(environment=env, secret_key=secret_key)
        self.settings.api_url = api_url.rstrip("/")
        self.clock = clock or SystemClock()
        self.registry = tasks or registry
        self.client = Client(api_url, secret_key, retry=retry, timeout=timeout, transport=transport)
        self.engine = RemoteEngine(self)
        self.ops = RemoteOperations(self)
        self.closed = False

    def __repr__(self) -> str:
        return f"<RemoteRuntime {self.settings.api_url} environment={self.environment!r}>"

    @property
    def store(self) -> Store:  # type: ignore[override]  # read-only: there is none to set
        refuse(self, "has no store")

    @property
    def broker(self) -> Broker:  # type: ignore[override]
        refuse(self, "has no broker")

    def with_token(self, handle: RunHandle) -> RunHandle:
        """A trigger's handle with the token that reads its run signed here, with this
        process's key, as a local trigger signs it."""
        token = keys.run_token(self.settings.secret_key, handle.id)
        return handle.model_copy(update={"public_access_token": token})

    def close(self) -> None:
        self.closed = True
        self.client.close()


def refuse(rt: Runtime, what: str) -> NoReturn:
    raise ConfigurationError(
        f"this process is in remote mode (RUNLANE_API_URL={rt.settings.api_url}): it {what}. "
        "Runs execute where the store is: start runlane.Worker / `runlane worker` (and use "
        "run_until_idle in tests) with RUNLANE_STORE_URL and without RUNLANE_API_URL; "
        "trigger_and_wait and waits work inside tasks, which run there"
    )


def _request_options(options: Mapping[str, Any] | None) -> tuple[RetryOptions, float]:
    """``request_options={"retry": {...}, "timeout": "30s"}`` (the reference's
    ``requestOptions``): the retry of every request (``max_attempts``, ``factor``,
    ``min_timeout_in_ms``, ``max_timeout_in_ms``, ``randomize``) and its timeout."""
    if options is None:
        return DEFAULT_RETRY, DEFAULT_TIMEOUT
    if not isinstance(options, Mapping) or set(options) - {"retry", "timeout"}:
        raise InvalidOptionError(
            "request_options", options, 'expected {"retry": {...}, "timeout": seconds}'
        )
    retry = parse_retry(options.get("retry"), DEFAULT_RETRY, option="request_options.retry")
    timeout = options.get("timeout")
    seconds = (
        DEFAULT_TIMEOUT if timeout is None else parse_duration(timeout, "request_options.timeout")
    )
    return retry, seconds


class RemoteEngine(Engine):
    """Triggers on the server. The engine's loops belong to the server's processes."""

    rt: RemoteRuntime

    def _client(self) -> Client:
        return self.rt.client

    # ------------------------------------------------------------------ trigger
    def _body(
        self, task_id: str, payload: Any, options: Any, task: Task[Any] | None, now: float
    ) -> dict[str, Any]:
        """What one trigger sends, checked as a local trigger checks it before the store:
        the options' types, a schema task's payload, JSON."""
        sent: Any = None
        if options is not None:
            if not isinstance(options, Mapping):
                parse_trigger_options(options, now, self.rt.settings.limits)  # raises its error
            sent = {}
            for name, value in options.items():
                try:
                    sent[name] = wire.encode_option(name, value)
                except InvalidOptionError:
                    # the error a local trigger gives for this value, if it has its own
                    parse_trigger_options({name: value}, now, self.rt.settings.limits)
                    raise
        if task is not None and task.parse_payload is not None:
            task.parse_payload(payload)  # schema tasks validate before anything is sent
        return {"payload": jsonvalue.to_json_value(payload, "payload"), "options": sent}

    def trigger(
        self,
        task_id: str,
        payload: Any,
        options: Mapping[str, Any] | None,
        task: Task[Any] | None = None,
    ) -> RunHandle:
        if task is None or task.id != task_id:
            validate_task_id(task_id, "task")
        with tracing.get().span(f"trigger {task_id}", {"runlane.task": task_id}):
            body = self._body(task_id, payload, options, task, self.rt.now())
            data = self._client().request(
                "POST", f"{BASE}/tasks/{_id(task_id)}/trigger", body=body, kind="task"
            )
        handle = self.rt.with_token(RunHandle.model_validate(data))
        if signals.run_triggered.receivers:
            signals.send_triggered([handle], None, None)
        return handle

    def batch_trigger(
        self,
        items: Sequence[tuple[str, Mapping[str, Any], Task[Any] | None]],
        *,
        option_name: str = "items",
    ) -> BatchHandle:
        check_items(items, option_name)
        for index, (task_id, _, _) in enumerate(items):
            validate_task_id(task_id, f"{option_name}[{index}].task")
        if not items:
            raise InvalidOptionError(option_name, items, "a batch needs at least one item")
        now = self.rt.now()
        sent = []
        for index, (task_id, item, task) in enumerate(items):
            if not isinstance(item, Mapping) or set(item) - {"payload", "options", "id"}:
                raise InvalidOptionError(
                    f"{option_name}[{index}]",
                    item,
                    'each item is a dict {"payload": ..., "options": {...}}',
                )
            try:
                body = self._body(task_id, item.get("payload"), item.get("options"), task, now)
            except InvalidOptionError as exc:
                raise type(exc)(
                    f"{option_name}[{index}].{exc.option}", exc.value, exc.reason
                ) from exc
            sent.append({"task": task_id, **body})
        data = self._client().request("POST", f"{BASE}/batches", body={"items": sent}, kind="task")
        batch = BatchHandle.model_validate(data)
        if signals.run_triggered.receivers:
            signals.send_triggered(batch.runs, batch.batch_id, None)
        return batch

    # ------------------------------------------------------------------ not here
    def trigger_and_wait(self, *args: Any, **kwargs: Any) -> NoReturn:
        refuse(
            self.rt, f"executes no task, so {kwargs.get('what', 'trigger_and_wait')} cannot wait"
        )

    def wait_until(self, when: float, what: str) -> NoReturn:
        refuse(self.rt, f"executes no task, so {what} cannot wait")

    def _refuse_loop(self, *args: Any, **kwargs: Any) -> NoReturn:
        refuse(self.rt, "runs no engine loop (the server's workers do)")

    send = send_ready = tick = tick_due = redeliver = fire_schedules = _refuse_loop
    deploy = register = _refuse_loop


class RemoteOperations(LocalOperations):
    """The management verbs as requests to the server: the same names, arguments, results and
    errors as :class:`LocalOperations`."""

    rt: RemoteRuntime

    def _call(self, method: str, path: str, kind: str | None, **kw: Any) -> Any:
        return self.rt.client.request(method, path, kind=kind, **kw)

    # ------------------------------------------------------------------ runs
    def retrieve_run(self, run_id: str) -> Run:
        return Run.model_validate(self._call("GET", f"{BASE}/runs/{_id(run_id)}", "run"))

    def list_runs(self, query: RunQuery) -> RunList:
        params: list[tuple[str, str]] = []
        for f in fields(query):
            value = getattr(query, f.name)
            name = {"created_from": "from", "created_to": "to"}.get(f.name, f.name)
            if value is None or value == ():
                continue
            if isinstance(value, bool):
                params.append((name, "true" if value else "false"))
            elif isinstance(value, (str, int, float)):
                params.append((name, repr(value) if isinstance(value, float) else str(value)))
            else:
                params.extend((name, str(v)) for v in value)
        return RunList.model_validate(self._call("GET", f"{BASE}/runs", "run", params=params))

    def cancel_run(self, run_id: str) -> Run:
        data = self._call("POST", f"{BASE}/runs/{_id(run_id)}/cancel", "run", safe=True)
        return Run.model_validate(data)

    def _bulk(self, verb: str, query: RunQuery, limit: int) -> BulkResult:
        if query.parent is not None:
            raise InvalidOptionError("parent", query.parent, "not a filter of bulk actions")
        body: dict[str, Any] = {
            "status": list(query.status) or None,
            "task_identifier": list(query.task_identifier) or None,
            "tag": list(query.tag) or None,
            "from": query.created_from,
            "to": query.created_to,
            "batch": query.batch,
            "schedule": query.schedule,
            "version": list(query.version) or None,
            "queue": list(query.queue) or None,
            "is_test": query.is_test,
        }
        body = {k: v for k, v in body.items() if v is not None}
        body["limit"] = limit
        data = self._call("POST", f"/api/v1/bulk/runs/{verb}", None, body=body)
        return BulkResult.model_validate(data)

    def bulk_cancel_runs(self, query: RunQuery, *, limit: int = 1000) -> BulkResult:
        return self._bulk("cancel", query, limit)

    def bulk_replay_runs(self, query: RunQuery, *, limit: int = 1000) -> BulkResult:
        return self._bulk("replay", query, limit)

    def replay_run(self, run_id: str) -> RunHandle:
        data = self._call("POST", f"{BASE}/runs/{_id(run_id)}/replay", "run")
        return self.rt.with_token(RunHandle.model_validate(data))

    def reschedule_run(self, run_id: str, delay: Any) -> Run:
        try:
            sent = wire.encode_option("delay", delay)
        except InvalidOptionError:
            parse_point_in_time(delay, "delay", self.rt.now())  # the local error, if its own
            raise
        data = self._call(
            "POST", f"{BASE}/runs/{_id(run_id)}/reschedule", "run", body={"delay": sent}, safe=True
        )
        return Run.model_validate(data)

    def update_run_metadata(self, run_id: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        value = make_op("replace", value=metadata)["value"]  # checked and made JSON here
        data = self._call(
            "PUT", f"{BASE}/runs/{_id(run_id)}/metadata", "run", body={"metadata": value}
        )
        return dict(data["metadata"])

    def apply_run_metadata(
        self,
        run_id: str,
        ops: Sequence[Mapping[str, Any]],
        *,
        parent_ops: Sequence[Mapping[str, Any]] = (),
        root_ops: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        body = {
            "operations": [dict(op) for op in ops],
            "parent_operations": [dict(op) for op in parent_ops],
            "root_operations": [dict(op) for op in root_ops],
        }
        data = self._call(
            "POST", f"{BASE}/runs/{_id(run_id)}/metadata/operations", "run", body=body
        )
        return dict(data["metadata"])

    def add_run_tags(self, run_id: str, tags: str | Sequence[str]) -> list[str]:
        sent = jsonvalue.to_json_value(tags, "tags")
        data = self._call(
            "POST", f"{BASE}/runs/{_id(run_id)}/tags", "run", body={"tags": sent}, safe=True
        )
        return list(data["tags"])

    def run_logs(self, run_id: str, *, after: int = 0, limit: int = 1000) -> list[LogEntry]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LOG_PAGE:
            raise InvalidOptionError("limit", limit, f"must be an integer from 1 to {MAX_LOG_PAGE}")
        if isinstance(after, bool) or not isinstance(after, int):
            raise InvalidOptionError("after", after, "must be the seq of a log entry (an int)")
        params = {"after": str(after), "limit": str(limit)}
        data = self._call("GET", f"/api/v1/runs/{_id(run_id)}/logs", "run", params=params)
        return [LogEntry.model_validate(e) for e in data["data"]]

    def registered_tasks(self, task_ids: Collection[str]) -> list[str]:
        params = [("id", str(t)) for t in task_ids]
        if not params:
            return []
        data = self._call("GET", f"{BASE}/tasks/registered", "task", params=params)
        return list(data["data"])

    def retrieve_runs(self, run_ids: Sequence[str]) -> list[Run]:
        data = self._call(
            "POST", f"{BASE}/runs/lookup", "run", body={"ids": list(run_ids)}, safe=True
        )
        return [Run.model_validate(r) for r in data["data"]]

    def retrieve_batch(self, batch_id: str) -> Batch:
        return Batch.model_validate(self._call("GET", f"{BASE}/batches/{_id(batch_id)}", "batch"))

    # ------------------------------------------------------------------ queues
    def list_queues(self) -> list[QueueInfo]:
        data = self._call("GET", "/api/v1/queues", "queue")
        return [QueueInfo.model_validate(q) for q in data["data"]]

    def retrieve_queue(self, name: str) -> QueueInfo:
        validate_queue_name(name, "name")
        return QueueInfo.model_validate(self._call("GET", f"/api/v1/queues/{_id(name)}", "queue"))

    def _set_paused(self, verb: str, name: str, body: dict[str, Any]) -> QueueInfo:
        validate_queue_name(name, "name")
        if body.get("concurrency_key") is not None:
            validate_concurrency_key(body["concurrency_key"])
        data = self._call(
            "POST", f"/api/v1/queues/{_id(name)}/{verb}", "queue", body=body, safe=True
        )
        return QueueInfo.model_validate(data)

    def pause_queue(
        self, name: str, concurrency_key: str | None = None, until: Any = None
    ) -> QueueInfo:
        body: dict[str, Any] = {"concurrency_key": concurrency_key}
        if until is not None:
            try:
                body["until"] = wire.plain_time(until, "until")
            except InvalidOptionError:
                parse_point_in_time(until, "until", self.rt.now())  # the local error
                raise
        return self._set_paused("pause", name, body)

    def resume_queue(self, name: str, concurrency_key: str | None = None) -> QueueInfo:
        return self._set_paused("resume", name, {"concurrency_key": concurrency_key})

    # ------------------------------------------------------------------ schedules
    def create_schedule(
        self,
        *,
        task: Any,
        cron_expression: Any,
        timezone: Any = None,
        external_id: Any = None,
        deduplication_key: Any = None,
    ) -> Schedule:
        body = _json_fields(
            task=task,
            cron=cron_expression,
            timezone=timezone,
            external_id=external_id,
            deduplication_key=deduplication_key,
        )
        return Schedule.model_validate(
            self._call("POST", f"{BASE}/schedules", "schedule", body=body)
        )

    def retrieve_schedule(self, schedule_id: Any) -> Schedule:
        return Schedule.model_validate(self._call("GET", _schedule(schedule_id), "schedule"))

    def list_schedules(
        self, *, task: Any = None, limit: int = 20, after: str | None = None
    ) -> ScheduleList:
        params: list[tuple[str, str]] = []
        if task is not None:
            for t in (task,) if isinstance(task, str) else tuple(task):
                params.append(("task", validate_task_id(t, "task")))
        top = schedule_ops.MAX_PAGE
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= top:
            raise InvalidOptionError("limit", limit, f"must be an integer from 1 to {top}")
        params.append(("limit", str(limit)))
        if after is not None:
            params.append(("after", str(after)))
        data = self._call("GET", f"{BASE}/schedules", "schedule", params=params)
        return ScheduleList.model_validate(data)

    def update_schedule(
        self,
        schedule_id: Any,
        *,
        task: Any = None,
        cron_expression: Any = None,
        timezone: Any = None,
        external_id: Any = UNSET,
        deduplication_key: Any = UNSET,
    ) -> Schedule:
        given: dict[str, Any] = {"task": task, "cron": cron_expression, "timezone": timezone}
        body = _json_fields(**{k: v for k, v in given.items() if v is not None})
        for name, value in (("external_id", external_id), ("deduplication_key", deduplication_key)):
            if value is not UNSET:
                body.update(_json_fields(**{name: value}) if value is not None else {name: None})
        return Schedule.model_validate(
            self._call("PUT", _schedule(schedule_id), "schedule", body=body)
        )

    def set_schedule_active(self, schedule_id: Any, active: bool) -> Schedule:
        verb = "activate" if active else "deactivate"
        data = self._call("POST", f"{_schedule(schedule_id)}/{verb}", "schedule", safe=True)
        return Schedule.model_validate(data)

    def delete_schedule(self, schedule_id: Any) -> Schedule:
        return Schedule.model_validate(self._call("DELETE", _schedule(schedule_id), "schedule"))

    # ------------------------------------------------------------------ realtime
    def subscribe(
        self, kind: str, target: str | Sequence[str] | RunQuery, *, cursor: int | None = None
    ) -> Subscription:
        """The server's Server-Sent Events route for the subscription (checked here first)."""
        checked = realtime.subscribe(self.rt, kind, target, cursor=cursor)
        if isinstance(checked, realtime.AllRunsSubscription):
            return RemoteSubscription(self.rt, "all", checked.query, cursor=cursor)
        return RemoteSubscription(self.rt, checked.kind, checked.target, cursor=cursor)

    # ------------------------------------------------------------------ the server's own
    def _keys(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ConfigurationError(
            "secret keys are kept in the server's store: manage them where it is configured "
            "(`runlane keys create | list | revoke` with its RUNLANE_STORE_URL), not in remote mode"
        )

    create_key = list_keys = revoke_key = find_key = _keys

    def _server_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        refuse(self.rt, "has no store (request counts and one-time marks are the server's)")

    count_request = use_once = _server_only


def _schedule(schedule_id: Any) -> str:
    if not isinstance(schedule_id, str) or not schedule_id:
        raise InvalidOptionError("schedule_id", schedule_id, "must be a schedule id (sched_...)")
    return f"{BASE}/schedules/{_id(schedule_id)}"


_FIELD_CHECKS = {
    "task": lambda v: validate_task_id(v, "task"),
    "cron": cron.parse_cron,
    "timezone": cron.parse_timezone,
}


def _json_fields(**values: Any) -> dict[str, Any]:
    """A schedule's fields as JSON; one with no JSON form is refused with the error a local
    call gives for it."""
    out = {}
    for name, value in values.items():
        try:
            out[name] = jsonvalue.to_json_value(value, name)
        except InvalidOptionError:
            check = _FIELD_CHECKS.get(name)
            if check is not None:
                check(value)
            limit = schedule_ops.MAX_TEXT
            raise InvalidOptionError(
                name, value, f"must be a string of 1-{limit} characters"
            ) from None
    return out


def remote_runtime(
    api_url: str,
    secret_key: str | None,
    *,
    environment: str | None = None,
    clock: Clock | None = None,
    request_options: Mapping[str, Any] | None = None,
) -> RemoteRuntime:
    """What ``configure(api_url=...)`` builds (``config`` fills in the environment)."""
    if environment is not None and environment not in ENVIRONMENTS:
        raise InvalidOptionError("environment", environment, f"must be one of {ENVIRONMENTS}")
    return RemoteRuntime(
        api_url,
        secret_key or "",
        environment=environment,
        clock=clock,
        request_options=request_options,
    )
