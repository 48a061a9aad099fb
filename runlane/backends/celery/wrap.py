"""``wrap(celery_task)``: an existing Celery task, also as a runlane task.

The runlane task calls the Celery task's function (through the task object, as calling a Celery
task directly does), so one function serves both: ``send_email.delay(to="a@b")`` keeps working
for existing callers, and ``runlane_send_email.trigger({"to": "a@b"})`` gives the same work a
run with an id, a status, retries, idempotency and waits. The payload is the dict of keyword
arguments, checked against the function's signature at trigger time.

In a run, ``self.request`` of a ``bind=True`` task describes the run as a Celery worker's
request describes a delivery (see :func:`_request`), so ``self.request.retries`` counts
attempts. ``self.retry()`` raises without sending a message: runlane retries the run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import celery
from celery.exceptions import Retry

from runlane.backends.celery.broker import TASK_NAME
from runlane.core.context import Context
from runlane.core.task import Task, define_task
from runlane.errors import InvalidOptionError, PayloadError


def _binder(signature: inspect.Signature | None, name: str) -> Callable[[Any], Any]:
    def bind(payload: Any) -> Any:
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise PayloadError(
                "payload",
                payload,
                f"a run of the Celery task {name!r} takes a dict of its keyword arguments",
            )
        if signature is not None:
            try:
                signature.bind(**payload)
            except TypeError as exc:
                raise PayloadError(
                    "payload", dict(payload), f"does not fit {name}{signature}: {exc}"
                ) from exc
        return dict(payload)

    return bind


def _request(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """``self.request`` for a run: ``id`` the run id, ``retries`` the attempts before this
    one, ``root_id``/``parent_id`` as triggered, ``timelimit`` the max duration, and from the
    Celery delivery of the run (in a Celery worker) ``hostname``, ``delivery_info`` and the log
    settings. ``is_eager`` is true because runlane, like ``apply()``, owns the retries:
    ``self.retry()`` then raises instead of sending a new Celery message."""
    delivery = celery.current_task  # runlane's execute task, when a Celery worker runs this
    outer = delivery.request if delivery and delivery.name == TASK_NAME else None
    return {
        "id": ctx.run.id,
        "correlation_id": ctx.run.id,
        "root_id": ctx.run.root_id or ctx.run.id,
        "parent_id": ctx.run.parent_id,
        "args": [],
        "kwargs": payload,
        "retries": ctx.attempt.number - 1,
        "called_directly": False,
        "is_eager": True,
        "timelimit": (ctx.run.max_duration, None),
        "hostname": outer.hostname if outer is not None else ctx.attempt.worker_id,
        "delivery_info": dict(outer.delivery_info or {})
        if outer is not None
        else {"exchange": "", "routing_key": ctx.queue.name, "priority": None},
        "loglevel": outer.loglevel if outer is not None else None,
        "logfile": outer.logfile if outer is not None else None,
    }


def wrap(celery_task: celery.Task, id: str | None = None, **options: Any) -> Task[Any]:
    """A runlane task running ``celery_task``'s function; ``id`` defaults to the Celery task's
    name. ``options`` are the options of ``@runlane.task`` (retry, queue, machine,
    max_duration, hooks). The Celery task is not changed."""
    if not isinstance(celery_task, celery.Task) or not callable(getattr(celery_task, "run", None)):
        raise InvalidOptionError(
            "celery_task", celery_task, "expected a Celery task (a function under @app.task)"
        )
    name = celery_task.name
    try:
        signature: inspect.Signature | None = inspect.signature(celery_task.run)
    except (TypeError, ValueError):
        signature = None

    def run(payload: dict[str, Any], ctx: Context) -> Any:
        celery_task.push_request(**_request(ctx, payload))
        try:
            return celery_task(**payload)
        except Retry as retry:  # self.retry(exc=...): the attempt failed with exc
            if isinstance(retry.exc, BaseException):
                raise retry.exc from None
            raise
        finally:
            celery_task.pop_request()

    original = getattr(celery_task, "__wrapped__", None) or celery_task.run
    # reloading the module that defines the Celery task redefines the same runlane task
    run.__module__ = getattr(original, "__module__", run.__module__)
    run.__qualname__ = f"{getattr(original, '__qualname__', name)}[runlane]"
    run.__name__ = getattr(original, "__name__", "run")
    run.__doc__ = getattr(original, "__doc__", None)
    task_id = id if id is not None else name
    task = define_task(run, task_id, options, parse_payload=_binder(signature, name))
    task.file_path = getattr(getattr(original, "__code__", None), "co_filename", task.file_path)
    return task
