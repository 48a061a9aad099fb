"""``schema_task``: a task whose payload is parsed by a pydantic model or any parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from runlane.core.task import Task, define_task
from runlane.errors import InvalidOptionError, TaskPayloadParsedError

R = TypeVar("R")


def parser_for(schema: Any) -> Callable[[Any], Any]:
    """A pydantic model (``model_validate``), a TypeAdapter (``validate_python``), or any
    callable that returns the parsed value or raises. The parser returned raises
    ``TaskPayloadParsedError`` (with pydantic's field errors in ``.errors``)."""
    validate = getattr(schema, "model_validate", None) or getattr(schema, "validate_python", None)
    if not callable(validate):
        validate = schema
    if not callable(validate):
        raise InvalidOptionError(
            "schema", schema, "expected a pydantic model, a TypeAdapter or a parser callable"
        )

    def parse(payload: Any) -> Any:
        try:
            return validate(payload)
        except Exception as exc:
            raise TaskPayloadParsedError(exc) from exc

    return parse


def schema_task(id: str, *, schema: Any, **options: Any) -> Callable[[Callable[..., R]], Task[R]]:
    """``@schema_task(id="signup", schema=SignupModel, **task_options)``.

    ``task.trigger`` parses the payload before anything is written, and raises
    ``TaskPayloadParsedError`` (``.errors``: pydantic's field errors) when it does not parse;
    ``tasks.trigger`` by id does not parse. The run function receives the parsed value; a
    payload that does not parse at run start fails the run with the same error, not retried.
    """
    parse = parser_for(schema)

    def decorate(fn: Callable[..., R]) -> Task[R]:
        return define_task(fn, id, options, parse_payload=parse)

    return decorate
