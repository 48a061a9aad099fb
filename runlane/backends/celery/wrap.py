"""``wrap(celery_task)``: an existing Celery task, also as a runlane task.

The runlane task calls the Celery task's function (through the task object, as calling a Celery
task directly does), so one function serves both: ``send_email.delay(to="a@b")`` keeps working
for existing callers, and ``runlane_send_email.trigger({"to": "a@b"})`` gives the same work a
run with an id, a status, retries, idempotency and waits. The payload is the dict of keyword
arguments, checked against the function's signature at trigger time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import celery

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

    def run(payload: dict[str, Any]) -> Any:
        return celery_task(**payload)

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
