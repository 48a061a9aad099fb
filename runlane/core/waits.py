"""Durable waits inside an attempt: the replay log, the in-place window, and suspension.

Each wait of an attempt takes the next index. A wait first looks in the attempt's replay log
(the waitpoints recorded so far): a resolved entry returns at once, so code before a wait may run
again after a resume but every wait already passed returns its recorded result. Otherwise the
waitpoint is recorded, the attempt waits in place for a short window, and if the waitpoint is
still open it raises ``Suspend``: the executor freezes the run and frees the worker; the store
queues the run again when the waitpoint resolves.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence

from runlane.core.context import ActiveRun
from runlane.core.types import Waitpoint
from runlane.errors import NonDeterminismError


class Suspend(BaseException):
    """Raised by a wait that did not resolve in place; never seen by task code that catches
    ``Exception``."""

    def __init__(self, index: int) -> None:
        self.index = index
        super().__init__(f"suspended on wait {index}")


class WaitState:
    """The replay log of one attempt and the index of its next wait."""

    def __init__(self, log: Sequence[Waitpoint] = ()) -> None:
        self.replay: dict[int, Waitpoint] = {w.index: w for w in log} if log else {}
        self.next_index = 0
        self.last_recorded = max(self.replay) if self.replay else -1
        self.suspended_index: int | None = None

    @property
    def replaying(self) -> bool:
        """True until the code has passed every wait recorded before the suspension: effects
        made meanwhile (metadata updates, logs, prints) already happened and are not repeated."""
        return self.next_index <= self.last_recorded

    def take(self, kind: str, fingerprint: str) -> tuple[int, Waitpoint | None]:
        """The index of this wait and its recorded waitpoint (checked to be the same wait)."""
        if self.suspended_index is not None:  # a Suspend was swallowed: keep suspending
            raise Suspend(self.suspended_index)
        index = self.next_index
        self.next_index += 1
        recorded = self.replay.get(index)
        if recorded is not None and (recorded.kind != kind or recorded.fingerprint != fingerprint):
            raise NonDeterminismError(
                f"wait #{index + 1} of this attempt differs from the one recorded before it was "
                f"suspended (recorded a {recorded.kind} wait, now a {kind} wait"
                f"{' on other runs or payloads' if recorded.kind == kind else ''}). Code before "
                "a wait must take the same path when the attempt resumes: move side effects "
                "that change it into child tasks or after the waits."
            )
        return index, recorded


def _suspend(active: ActiveRun, index: int) -> Suspend:
    """Remember the suspension on the attempt, so code that swallows ``Suspend`` (a bare
    ``except:``) cannot make the run complete early: the executor suspends it anyway."""
    assert active.waits is not None
    active.waits.suspended_index = index
    return Suspend(index)


def fingerprint(kind: str, parts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps([kind, list(parts)]).encode()).hexdigest()


def payload_digest(task_id: str, payload_json: str) -> str:
    return f"{task_id}:{hashlib.sha256(payload_json.encode()).hexdigest()}"


def await_waitpoint(active: ActiveRun, index: int, resume_at: float | None = None) -> None:
    """Return once waitpoint ``index`` resolves within the in-place window, else ``Suspend``.

    Time spent waiting does not count against the attempt's max duration; an interrupt (cancel,
    timeout) is noticed within 0.2 s.
    """
    rt = active.runtime
    store = rt.store
    control = active.control
    attempt = active.attempt_number
    window = rt.settings.wait_in_place
    if active.busy is not None and active.busy():
        window = 0.0  # every executor slot here is taken: free this one for the children now
    if resume_at is not None and resume_at - rt.now() > window:
        raise _suspend(active, index)
    deadline = time.monotonic() + window
    delay = 0.005
    if control is not None:
        control.pause()
    try:
        while True:
            if control is not None:
                control.check()
            now = rt.now()
            if resume_at is not None:
                if now >= resume_at:
                    return
            elif store.waitpoint_resolved(active.run_id, attempt, index, now=now):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise _suspend(active, index)
            if resume_at is not None:
                step = min(0.2, left, max(0.001, resume_at - now))
            else:
                step = min(delay, left)
                delay = min(delay * 2, 0.2)
            time.sleep(step)
    finally:
        if control is not None:
            control.resume()
