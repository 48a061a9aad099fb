"""``schema_task``: a task whose payload is parsed by a pydantic model or any parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from runlane.core.task import Task, define_task
from runlane.errors import InvalidOptionError

R = TypeVar("R")


def parser_for(schema: Any) -> Callable[[Any], Any]:
    """A pydantic model (``model_validate``), a TypeAdapter (``validate_python``), or any
    callable that returns the parsed value or raises."""
    validate = getattr(schema, "model_validate", None) or getattr(schema, "validate_python", None)
    if callable(validate):
        return validate
    if callable(schema):
        return schema
    raise InvalidOptionError(
        "schema", schema, "expected a pydantic model, a TypeAdapter or a parser callable"
    )


def schema_task(id: str, *, schema: Any, **options: Any) -> Callable[[Callable[..., R]], Task[R]]:
    """``@schema_task(id="signup", schema=SignupModel, **task_options)``.

    ``task.trigger`` validates the payload before anything is written (raising the parser's
    error, e.g. pydantic's ``ValidationError``); ``tasks.trigger`` by id does not. The run
    function receives the parsed value; an invalid payload at run start fails the run with
    ``TaskPayloadParsedError`` and no retry.
    """
    parse = parser_for(schema)

    def decorate(fn: Callable[..., R]) -> Task[R]:
        return define_task(fn, id, options, parse_payload=parse)

    return decorate
