"""One attempt, as the reference runs it: init → middleware(on_start → run) → cleanup, then
on_success, or the retry decision (handle_error) and on_failure.

The pipeline is written once, as a coroutine. When the task and every hook are plain ``def``
functions it is driven synchronously (no event loop, no overhead); otherwise it runs under
``asyncio.run`` on the executor thread. Every user call goes through
``AttemptControl.call`` so max duration and cancel can interrupt it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from runlane.core import jsonvalue
from runlane.core.clock import to_timestamp
from runlane.core.context import ActiveRun
from runlane.core.errors_ser import serialize_exception
from runlane.core.hooks import accepts_positional, fit_call, is_async
from runlane.core.interrupt import AttemptControl, AttemptInterrupted
from runlane.core.models import TaskRunError
from runlane.core.options import RetryOptions, parse_retry
from runlane.core.retrying import backoff_delay_ms
from runlane.core.task import Task
from runlane.errors import (
    AbortTaskRunError,
    OutOfMemoryError,
    RunlaneError,
    TaskPayloadParsedError,
)

log = logging.getLogger("runlane.executor")


@dataclass
class AttemptSpec:
    task: Task[Any]
    payload: Any
    active: ActiveRun
    control: AttemptControl
    global_hooks: Mapping[str, Callable[..., Any]]
    retry: RetryOptions
    output_limit: int
    now: Callable[[], float]


@dataclass
class AttemptEnd:
    output: str | None = None  # encoded JSON when the attempt succeeded
    error: TaskRunError | None = None
    retry_at: float | None = None  # set when another attempt follows
    machine: str | None = None  # the machine of the next attempt (out of memory)


def _hooks(spec: AttemptSpec, name: str, *, task_first: bool = False) -> list[Callable[..., Any]]:
    pair = [spec.global_hooks.get(name), spec.task.hooks.get(name)]
    if task_first:
        pair.reverse()
    return [fn for fn in pair if fn is not None]


def needs_event_loop(task: Task[Any], global_hooks: Mapping[str, Callable[..., Any]]) -> bool:
    fns = [task.fn, *task.hooks.values(), *global_hooks.values()]
    return any(is_async(fn) for fn in fns)


def _invoke(control: AttemptControl, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Call user code with the arguments its signature takes, interruptibly."""
    a, k = fit_call(fn, *args, **kw)
    return control.call(fn, *a, **k)


def _task_args(spec: AttemptSpec) -> tuple[Any, ...]:
    """The task function's arguments: ``def task(payload)`` never has its context built."""
    if accepts_positional(spec.task.fn, 2):
        return (spec.payload, spec.active.ctx)
    return (spec.payload,)


SYNC_AWAITABLE = (
    "a sync function returned an awaitable; declare it with `async def` so runlane runs "
    "the attempt on an event loop"
)


async def _call(control: AttemptControl, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    result = _invoke(control, fn, *args, **kw)
    if inspect.isawaitable(result):
        result = await result
    control.check()
    return result


T = TypeVar("T")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never really suspends (every function it calls is sync)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        value: T = stop.value
        return value
    coro.close()
    raise RunlaneError(SYNC_AWAITABLE)


def _as_task_error(value: Any, fallback: TaskRunError) -> TaskRunError:
    if value is None:
        return fallback
    if isinstance(value, BaseException):
        return serialize_exception(value)
    if isinstance(value, TaskRunError):
        return value
    if isinstance(value, Mapping):
        return TaskRunError(
            name=str(value.get("name", "Error")),
            message=str(value.get("message", "")),
            stack_trace=value.get("stack_trace"),
        )
    return TaskRunError(name="Error", message=str(value))


async def _run_body(spec: AttemptSpec) -> Any:
    """middleware(… on_start → run …); returns the task's result."""
    control, active = spec.control, spec.active

    async def inner() -> Any:
        resumed = active.waits is not None and active.waits.last_recorded >= 0
        if active.attempt_number == 1 and not resumed:  # once per run: not per retry,
            # and not again when a suspended attempt resumes
            for fn in _hooks(spec, "on_start"):
                await _call(control, fn, spec.payload, active.ctx)
        return await _call(control, spec.task.fn, *_task_args(spec))

    chain: Callable[[], Coroutine[Any, Any, Any]] = inner
    for mw in reversed(_hooks(spec, "middleware")):  # the global middleware is outermost
        chain = _wrap(spec, mw, chain)
    return await chain()


def _wrap(
    spec: AttemptSpec, mw: Callable[..., Any], rest: Callable[[], Coroutine[Any, Any, Any]]
) -> Callable[[], Coroutine[Any, Any, Any]]:
    async def wrapped() -> Any:
        if is_async(mw):
            return await _call(spec.control, mw, spec.payload, spec.active.ctx, rest)
        if needs_event_loop(spec.task, spec.global_hooks):
            raise RunlaneError(
                f"middleware {getattr(mw, '__qualname__', mw)!r} is a plain function but the "
                "task or a hook is async: declare the middleware with `async def`"
            )
        return await _call(spec.control, mw, spec.payload, spec.active.ctx, lambda: drive(rest()))

    return wrapped


async def run_pipeline(spec: AttemptSpec) -> AttemptEnd:
    control, active = spec.control, spec.active
    init_value = None
    for fn in _hooks(spec, "init"):
        try:
            value = await _call(control, fn, spec.payload, active.ctx)
        except AttemptInterrupted:
            raise
        except Exception:  # the reference ignores init errors
            log.warning("init hook of %s failed (ignored)", spec.task.id, exc_info=True)
            continue
        if value is not None:
            init_value = value
    if init_value is not None:
        active.ctx = active.ctx.model_copy(update={"init": init_value})

    error: BaseException | None = None
    output: str | None = None
    try:
        if spec.task.parse_payload is not None:
            try:
                spec.payload = spec.task.parse_payload(spec.payload)
            except Exception as exc:
                raise TaskPayloadParsedError(exc) from exc
        result = await _run_body(spec)
        output = jsonvalue.encode(result, "output", spec.output_limit)
    except AttemptInterrupted:
        raise
    except Exception as exc:
        error = exc

    for fn in _hooks(spec, "cleanup", task_first=True):
        try:
            await _call(control, fn, spec.payload, active.ctx)
        except AttemptInterrupted:
            raise
        except Exception as exc:  # cleanup errors fail the attempt
            if error is None:
                error, output = exc, None

    if error is None:
        for fn in _hooks(spec, "on_success"):
            await _quiet(spec, "on_success", fn, spec.payload, jsonvalue.loads(output), active.ctx)
        return AttemptEnd(output=output)

    end = await _decide(spec, error)
    if end.retry_at is None:
        for fn in _hooks(spec, "on_failure"):
            await _quiet(spec, "on_failure", fn, spec.payload, error, active.ctx)
    return end


async def _quiet(spec: AttemptSpec, name: str, fn: Callable[..., Any], *args: Any) -> None:
    try:
        await _call(spec.control, fn, *args)
    except AttemptInterrupted:
        raise
    except Exception:
        log.warning("%s hook of %s failed (ignored)", name, spec.task.id, exc_info=True)


async def _decide(spec: AttemptSpec, error: BaseException) -> AttemptEnd:
    """The retry decision of SEMANTICS.md: abort → none; default backoff; then handle_error
    (the task's, then the global one; the first non-empty answer wins)."""
    recorded = serialize_exception(error)
    if isinstance(error, (AbortTaskRunError, TaskPayloadParsedError)):
        return AttemptEnd(error=recorded)
    attempt = spec.active.attempt_number
    options = spec.retry
    delay = backoff_delay_ms(options, attempt)
    now = spec.now()
    machine = None
    if isinstance(error, OutOfMemoryError) and options.out_of_memory_machine and delay is not None:
        machine = options.out_of_memory_machine

    for fn in _hooks(spec, "handle_error", task_first=True):
        try:
            answer = await _call(
                spec.control,
                fn,
                spec.payload,
                error,
                spec.active.ctx,
                retry_at=None
                if delay is None
                else datetime.fromtimestamp(now + delay / 1000, tz=timezone.utc),
                retry_delay_in_ms=delay,
                retry=options,
            )
        except AttemptInterrupted:
            raise
        except Exception as exc:
            return AttemptEnd(error=serialize_exception(exc, code="HANDLE_ERROR_ERROR"))
        if answer is None:
            continue
        if not isinstance(answer, Mapping):
            return AttemptEnd(
                error=TaskRunError(
                    name="TypeError",
                    code="HANDLE_ERROR_ERROR",
                    message=f"handle_error must return None or a dict, not {type(answer).__name__}",
                )
            )
        recorded = _as_task_error(answer.get("error"), recorded)
        if answer.get("skip_retrying"):
            return AttemptEnd(error=recorded)
        if attempt >= options.max_attempts and answer.get("retry") is None:
            return AttemptEnd(error=recorded)
        if answer.get("retry_at") is not None:
            at = answer["retry_at"]
            at_ts = to_timestamp(at) if isinstance(at, datetime) else float(at)
            return AttemptEnd(error=recorded, retry_at=max(now, at_ts), machine=machine)
        if answer.get("retry_delay_in_ms") is not None:
            ms = max(0, int(answer["retry_delay_in_ms"]))
            return AttemptEnd(error=recorded, retry_at=now + ms / 1000, machine=machine)
        if answer.get("retry") is not None:
            custom = parse_retry(answer["retry"], options, option="handle_error retry")
            custom_delay = backoff_delay_ms(custom, attempt)
            if custom_delay is None:
                return AttemptEnd(error=recorded)
            return AttemptEnd(error=recorded, retry_at=now + custom_delay / 1000, machine=machine)
        return AttemptEnd(error=recorded)  # only "error": no retry
    if delay is None:
        return AttemptEnd(error=recorded)
    return AttemptEnd(error=recorded, retry_at=now + delay / 1000, machine=machine)


class _Suspended(Exception):
    """A sync task's awaitable result suspended (it needs an event loop)."""


def _settle(result: Any) -> Any:
    """The value of an awaitable a sync function returned, as ``await`` in a driven
    pipeline gives it; ``_Suspended`` if it would wait."""

    async def wait() -> Any:
        return await result

    coro = wait()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise _Suspended


# what most tasks return: never awaitable (inspect.isawaitable asks the Awaitable ABC)
_PLAIN_VALUES = frozenset({type(None), dict, list, str, int, float, bool})


def _run_plain(spec: AttemptSpec) -> AttemptEnd:
    """``run_pipeline`` for a sync task with no hook and no payload schema (most attempts),
    without its coroutines: the same calls, the same outcome."""
    control = spec.control
    try:
        try:
            result = _invoke(control, spec.task.fn, *_task_args(spec))
            if type(result) not in _PLAIN_VALUES and inspect.isawaitable(result):
                result = _settle(result)
            control.check()
            output = jsonvalue.encode(result, "output", spec.output_limit)
        except (AttemptInterrupted, _Suspended):
            raise
        except Exception as exc:
            return drive(_decide(spec, exc))  # no handle_error hook: never awaits
    except _Suspended:
        raise RunlaneError(SYNC_AWAITABLE) from None
    return AttemptEnd(output=output)


def run_attempt(spec: AttemptSpec) -> AttemptEnd:
    """Run the pipeline on this thread: synchronously, or on an event loop when needed."""
    task = spec.task
    if (
        not task.hooks
        and not spec.global_hooks
        and task.parse_payload is None
        and not is_async(task.fn)
    ):
        return _run_plain(spec)
    if not needs_event_loop(task, spec.global_hooks):
        return drive(run_pipeline(spec))

    async def main() -> AttemptEnd:
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None
        spec.control.bind_task(loop, current)
        try:
            return await run_pipeline(spec)
        except asyncio.CancelledError:
            spec.control.check()  # an interrupt: raise it as such
            raise
        finally:
            spec.control.unbind_task()

    return asyncio.run(main())
