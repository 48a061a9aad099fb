"""runlane's exceptions.

One root, so ``except RunlaneError`` catches everything runlane raises on purpose::

    RunlaneError
    ├── ConfigurationError          bad configure() / environment settings
    ├── AuthenticationError         remote mode: the server refused the secret key (401/403)
    ├── InvalidOptionError          (also ValueError) a trigger option or argument is invalid
    │   ├── PayloadError            payload/output/metadata not JSON or over a size limit
    │   └── LimitExceededError      a documented limit (tags, batch size, metadata size) exceeded
    ├── TaskNotFoundError           no task with that id in this process
    ├── DuplicateTaskError          two tasks share one id
    ├── RunNotFoundError            no run (or batch) with that id in this environment
    ├── InvalidRunStateError        the run's status does not allow the operation
    ├── NotInRunError               a run-only call made outside a run
    ├── RunTimeoutError             (also TimeoutError) runs.poll / handle.wait gave up
    ├── NonDeterminismError         a replayed attempt took another path at a wait
    ├── StoreError                  the store could not be read or written
    │   ├── StoreUnavailableError   not reachable or not serving yet (transient: retried)
    │   └── StoreRejectedError      the store answered the call with an error
    ├── AbortTaskRunError           raised by a task: fail the run, no retry
    ├── SubtaskUnwrapError          TaskRunResult.unwrap() of a failed child
    ├── TaskPayloadParsedError      (also ValueError) schema_task payload did not parse
    └── OutOfMemoryError            raised by a task to ask for a larger machine
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class RunlaneError(Exception):
    """Root of every error runlane raises on purpose."""


class ConfigurationError(RunlaneError):
    pass


class AuthenticationError(RunlaneError):
    """Remote mode: the runlane server refused this process's secret key (HTTP 401: unknown,
    revoked or malformed; 403: not allowed here, e.g. another environment)."""


class InvalidOptionError(RunlaneError, ValueError):
    """An option or argument is invalid. ``option`` names it, ``value`` is what was given."""

    def __init__(self, option: str, value: Any, reason: str) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"invalid {option}={shown}: {reason}")


class PayloadError(InvalidOptionError):
    pass


class LimitExceededError(InvalidOptionError):
    pass


class TaskNotFoundError(RunlaneError, LookupError):
    pass


class DuplicateTaskError(RunlaneError):
    pass


class RunNotFoundError(RunlaneError, LookupError):
    pass


class InvalidRunStateError(RunlaneError):
    """The run's current status does not allow this operation (HTTP 422 in the API)."""

    def __init__(self, message: str, *, run_id: str | None = None, status: str | None = None):
        self.run_id = run_id
        self.status = status
        super().__init__(message)


class ScheduleNotFoundError(RunlaneError, LookupError):
    pass


class InvalidScheduleStateError(RunlaneError):
    """The schedule does not allow this operation: a DECLARATIVE schedule is changed only by
    the code that declares it (HTTP 422 in the API)."""

    def __init__(self, message: str, *, schedule_id: str | None = None) -> None:
        self.schedule_id = schedule_id
        super().__init__(message)


class NotInRunError(RunlaneError):
    pass


class RunTimeoutError(RunlaneError, TimeoutError):
    """``runs.poll`` / ``handle.wait`` timed out before the run was final (the run goes on)."""

    def __init__(self, run_id: str, status: str, timeout: float) -> None:
        self.run_id = run_id
        self.status = status
        self.timeout = timeout
        super().__init__(f"run {run_id} was still {status} after {timeout:g}s")


class NonDeterminismError(RunlaneError):
    """On replay after a wait, the code reached a wait that differs from the recorded one."""


class StoreError(RunlaneError):
    """The store could not be read or written (see the two subclasses for why)."""


class StoreUnavailableError(StoreError):
    """The store could not be reached, or is not serving yet: connection refused, reset or
    timed out, Redis loading its data after a restart (LOADING), a replica during a failover
    (READONLY), SQLite locked by another writer. Transient: triggers are retried for
    ``configure(store_retry_timeout=...)`` seconds, a finished attempt's result is kept and
    recorded when the store answers again."""


class StoreRejectedError(StoreError):
    """The store answered, with an error: the call was refused (a script error, a key of the
    wrong type, out of memory, no permission). Retrying the same call does not help."""


class AbortTaskRunError(RunlaneError):
    """Raise inside a task to fail the run at once, without retrying."""


class TaskPayloadParsedError(RunlaneError, ValueError):
    """A schema_task payload did not parse: raised by ``trigger`` before anything is written,
    or at run start (the run fails, never retried). ``errors``: the field errors, as pydantic's
    ``ValidationError.errors()`` gives them (empty for another parser); ``cause``: the
    parser's exception. Wrapping one of these again gives the same error."""

    def __init__(self, cause: BaseException) -> None:
        if isinstance(cause, TaskPayloadParsedError):
            cause = cause.cause
        self.cause = cause
        self.errors: list[dict[str, Any]] = (
            list(cause.errors()) if isinstance(cause, ValidationError) else []
        )
        if self.errors:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ())) or 'payload'}: {e.get('msg')}"
                for e in self.errors
            )
            n = len(self.errors)
            detail = f"{n} error{'s' if n > 1 else ''}: {fields}"
        else:
            detail = str(cause) or type(cause).__name__
        super().__init__(f"payload failed to parse: {detail}")


class OutOfMemoryError(RunlaneError):
    """Raise inside a task to report it ran out of memory (retried on a larger machine)."""


class SubtaskUnwrapError(RunlaneError):
    def __init__(self, run_id: str, task_id: str, cause: Any) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.cause = cause
        message = getattr(cause, "message", None) or str(cause)
        super().__init__(f"Error in {task_id}: {message}")
