"""Task definitions: the ``@task`` decorator and what a task can do (trigger, and wait)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from runlane.core import current
from runlane.core.aio import run_sync
from runlane.core.handles import BatchHandle, RunHandle
from runlane.core.limits import DEFAULT_LIMITS
from runlane.core.models import BatchResult, TaskRunResult
from runlane.core.options import (
    UNSET,
    QueueSpec,
    RetryOptions,
    check_items,
    parse_queue,
    parse_retry,
    validate_machine,
    validate_max_duration,
    validate_task_id,
)
from runlane.core.registry import default_queue_name, registry
from runlane.errors import InvalidOptionError

if TYPE_CHECKING:
    from runlane.core.engine import Engine
    from runlane.core.schedules import CronSpec

P = ParamSpec("P")
R = TypeVar("R")

HOOK_NAMES = (
    "init",
    "cleanup",
    "middleware",
    "on_start",
    "on_success",
    "on_failure",
    "handle_error",
)


def _engine() -> Engine:
    engine: Engine = current.get().engine
    return engine


def _accepts_ctx(fn: Callable[..., Any]) -> bool:
    """True when ``fn(payload, ctx)`` is its shape (a second positional or a ``ctx`` keyword)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params) or "ctx" in sig.parameters:
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


class Task(Generic[R]):
    """A task: its function, its options, and the trigger methods."""

    def __init__(
        self,
        fn: Callable[..., R],
        *,
        id: str,
        retry: Mapping[str, Any] | RetryOptions | None = None,
        queue: Any = None,
        max_duration: Any = UNSET,
        machine: str | None = None,
        hooks: Mapping[str, Callable[..., Any] | None] | None = None,
        parse_payload: Callable[[Any], Any] | None = None,
    ) -> None:
        self.fn = fn
        self.id = validate_task_id(id)
        self.retry_options = retry  # resolved against the configured default at run time
        # (options, default, resolved) of the last resolution (runlane.core.executor)
        self.resolved_retry: tuple[Any, Any, RetryOptions] | None = None
        if retry is not None:
            parse_retry(retry)  # validate now
        self.queue_spec: QueueSpec = parse_queue(queue) if queue is not None else QueueSpec()
        self.queue_name = self.queue_spec.name or default_queue_name(self.id)
        self.max_duration = (
            UNSET
            if max_duration is UNSET
            else validate_max_duration(max_duration, "max_duration", DEFAULT_LIMITS)
        )
        self.machine = validate_machine(machine) if machine is not None else None
        self.hooks: dict[str, Callable[..., Any]] = {}
        for name, hook in (hooks or {}).items():
            if name not in HOOK_NAMES:
                raise InvalidOptionError(name, hook, f"unknown hook; one of {HOOK_NAMES}")
            if hook is not None:
                if not callable(hook):
                    raise InvalidOptionError(name, hook, "must be callable")
                self.hooks[name] = hook
        self.parse_payload = parse_payload
        self.scheduled = False  # a schedules.task: runs on its schedules' ticks
        self.cron: CronSpec | None = None  # its declarative schedule
        self.is_async = inspect.iscoroutinefunction(fn)
        self.takes_ctx = _accepts_ctx(fn)
        self.__name__ = getattr(fn, "__name__", self.id)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn
        try:
            self.file_path: str | None = inspect.getsourcefile(fn)
        except TypeError:
            self.file_path = None

    def __repr__(self) -> str:
        return f"<runlane.Task {self.id!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        """Call the function directly, in this process, with no run (like Celery's tasks)."""
        return self.fn(*args, **kwargs)

    # -- triggering (delegated to the runtime's engine)
    def trigger(self, payload: Any = None, **options: Any) -> RunHandle:
        return _engine().trigger(self.id, payload, options, task=self)

    def batch_trigger(self, items: Sequence[Mapping[str, Any]]) -> BatchHandle:
        return _engine().batch_trigger(
            [(self.id, item, self) for item in check_items(items)], option_name="items"
        )

    def trigger_and_wait(self, payload: Any = None, **options: Any) -> TaskRunResult:
        """Trigger a child run and wait for it, durably (inside a task only): the worker is
        freed while waiting. Returns ``TaskRunResult(ok, id, task_identifier, output|error)``;
        ``.unwrap()`` returns the output or raises ``SubtaskUnwrapError``."""
        _, runs = _engine().trigger_and_wait(
            [(self.id, {"payload": payload, "options": options}, self)],
            kind="run",
            what=f"{self.id}.trigger_and_wait()",
            option_name="trigger_and_wait",
        )
        return TaskRunResult.of(runs[0])

    def batch_trigger_and_wait(self, items: Sequence[Mapping[str, Any]]) -> BatchResult:
        """Trigger up to 500 child runs and wait for all of them (inside a task only). Returns
        ``BatchResult(id, runs)`` with results in item order."""
        batch_id, runs = _engine().trigger_and_wait(
            [(self.id, item, self) for item in check_items(items)],
            kind="batch",
            what=f"{self.id}.batch_trigger_and_wait()",
        )
        assert batch_id is not None
        return BatchResult(id=batch_id, runs=[TaskRunResult.of(r) for r in runs])

    async def aio_trigger_and_wait(self, payload: Any = None, **options: Any) -> TaskRunResult:
        return await run_sync(self.trigger_and_wait, payload, **options)

    async def aio_batch_trigger_and_wait(self, items: Sequence[Mapping[str, Any]]) -> BatchResult:
        return await run_sync(self.batch_trigger_and_wait, items)

    async def aio_trigger(self, payload: Any = None, **options: Any) -> RunHandle:
        return await run_sync(self.trigger, payload, **options)

    async def aio_batch_trigger(self, items: Sequence[Mapping[str, Any]]) -> BatchHandle:
        return await run_sync(self.batch_trigger, items)


def define_task(
    fn: Callable[..., R],
    id: str | None,
    options: Mapping[str, Any],
    parse_payload: Callable[[Any], Any] | None = None,
    *,
    scheduled: bool = False,
    cron: CronSpec | None = None,
) -> Task[R]:
    """Build a Task from decorator options and register it (``scheduled``: a
    ``schedules.task``, with its declarative ``cron`` if any)."""
    unknown = set(options) - {"retry", "queue", "max_duration", "machine", *HOOK_NAMES}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidOptionError(name, options[name], "unknown task option")
    t = Task(
        fn,
        id=id if id is not None else fn.__name__.replace("_", "-"),
        retry=options.get("retry"),
        queue=options.get("queue"),
        max_duration=options.get("max_duration", UNSET),
        machine=options.get("machine"),
        hooks={name: options.get(name) for name in HOOK_NAMES},
        parse_payload=parse_payload,
    )
    t.scheduled, t.cron = scheduled, cron  # set before the registry's listeners see it
    registry.add(t)
    return t


def task(
    id: str | None = None,
    *,
    retry: Mapping[str, Any] | None = None,
    queue: Any = None,
    max_duration: Any = UNSET,
    machine: str | None = None,
    init: Callable[..., Any] | None = None,
    cleanup: Callable[..., Any] | None = None,
    middleware: Callable[..., Any] | None = None,
    on_start: Callable[..., Any] | None = None,
    on_success: Callable[..., Any] | None = None,
    on_failure: Callable[..., Any] | None = None,
    handle_error: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., R]], Task[R]]:
    """Define a task: ``@task(id="convert-video", retry={...}, queue={...})``.

    Hooks: ``init(payload, ctx)`` (per attempt; its return value is ``ctx.init``),
    ``cleanup(payload, ctx)``, ``middleware(payload, ctx, next)``, ``on_start(payload, ctx)``
    (once per run), ``on_success(payload, output, ctx)``, ``on_failure(payload, error, ctx)``,
    ``handle_error(payload, error, ctx, retry_at=..., retry_delay_in_ms=..., retry=...)``.
    Each may be ``def`` or ``async def`` and may take fewer arguments.
    """
    options = {
        "retry": retry,
        "queue": queue,
        "max_duration": max_duration,
        "machine": machine,
        "init": init,
        "cleanup": cleanup,
        "middleware": middleware,
        "on_start": on_start,
        "on_success": on_success,
        "on_failure": on_failure,
        "handle_error": handle_error,
    }

    def decorate(fn: Callable[..., R]) -> Task[R]:
        return define_task(fn, id, options)

    if callable(id):  # bare @task
        fn, id = id, None
        return decorate(fn)
    return decorate
