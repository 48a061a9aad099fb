"""Supervision of the attempts executing in one process, whoever delivers them.

A ``Host`` runs one housekeeping thread that (while it holds the store's "engine" lease, so one
process at a time does it) promotes delayed runs, expires TTLs and redelivers lost dispatches,
and that, for the attempts running in this process, flushes metadata and logs, renews their
leases (the heartbeat), and interrupts those canceled or past their max duration.

``runlane.Worker`` pairs a Host with its own executor threads; the Celery and Dramatiq adapters
pair one with the worker pool of their framework (one Host per worker process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from runlane.core import runtime
from runlane.core.context import ActiveRun
from runlane.core.executor import ActiveRuns, Executor, flush_active, timed_out_error
from runlane.core.interrupt import CANCEL, TIMEOUT
from runlane.core.models import AttemptStatus, RunStatus
from runlane.core.storecalls import backoff, describe_wait
from runlane.core.types import AttemptOutcome
from runlane.errors import StoreUnavailableError

log = logging.getLogger("runlane.worker")

ENGINE_LEASE = "engine"
REDELIVER_EVERY = 30.0
STATUS_CHECK_EVERY = 0.5  # how often executing runs are checked for a cancel
INTERRUPT_GRACE = 2.0  # seconds an interrupted attempt gets before its slot is replaced


class Host:
    """Housekeeping for the attempts executing in this process (see the module docstring).

    ``on_tick()`` runs on every turn of the loop (the Worker refreshes its broker heartbeat).
    ``on_abandon(thread_id)`` is called when an interrupted attempt stays blocked in a call for
    ``INTERRUPT_GRACE`` seconds: the run has been ended in the store by then, and the pool may
    replace the blocked thread.
    """

    def __init__(
        self,
        worker_id: str,
        runtime_: runtime.Runtime | None = None,
        *,
        on_abandon: Callable[[int], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        engine: bool = True,
    ) -> None:
        self.id = worker_id
        self._rt = runtime_
        self.active = ActiveRuns()
        self.abandoned: set[int] = set()
        self.is_leader = False
        self.engine = engine
        self._on_abandon = on_abandon
        self._on_tick = on_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renewal = time.time()
        self._last_outage = -float("inf")  # time.monotonic() of the last unavailable store

    @property
    def runtime(self) -> runtime.Runtime:
        return self._rt or runtime.get()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def executor(self, busy: Callable[[], bool] | None = None) -> Executor:
        """An executor whose attempts this host supervises."""
        return Executor(self.runtime, self.id, self.active, busy=busy)

    def start(self) -> Host:
        if self.running:
            return self
        self._rt = self.runtime
        self._stop.clear()
        self._last_renewal = time.time()
        self._thread = threading.Thread(
            target=self._loop, name=f"runlane-engine-{self.id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop housekeeping and give up the engine lease (attempts should have ended)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(max(1.0, timeout))
        self._thread = None
        self.is_leader = False
        if self.engine:
            try:
                self.runtime.store.release_lease(ENGINE_LEASE, self.id)
            except Exception:
                log.exception("could not release the engine lease")

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        rt = self.runtime
        interval = rt.settings.engine_interval
        # the engine lease: long enough for a slow tick, short enough that when its holder
        # dies another process reaps that holder's attempts within about a lease period
        lease_ttl = max(interval * 20, min(5.0, rt.settings.lease_timeout / 2))
        last_redeliver = time.monotonic()
        last_flush = last_status = 0.0
        # a process that is not the leader tries for the lease every lease_ttl / 5 seconds, not
        # every tick: a fleet of worker processes does not poll the store for it 4 times a second
        next_claim, claim_every = 0.0, lease_ttl / 5
        failures = 0
        # a wait after a failure: short enough that the leases of this process's attempts are
        # renewed soon after the store answers again
        max_wait = min(2.0, rt.settings.lease_timeout / 6)
        # runs sent and not started are looked for a few times a lease period (Engine.redeliver)
        redeliver_every = min(REDELIVER_EVERY, rt.settings.lease_timeout / 4)
        while not self._stop.is_set():
            wait = interval
            if self.engine and (self.is_leader or time.monotonic() >= next_claim):
                try:
                    self.is_leader = rt.store.acquire_lease(
                        ENGINE_LEASE, self.id, ttl=lease_ttl, now=rt.now()
                    )
                    if not self.is_leader:
                        next_claim = time.monotonic() + claim_every
                    else:
                        redeliver = time.monotonic() - last_redeliver >= redeliver_every
                        if redeliver:
                            last_redeliver = time.monotonic()
                        rt.engine.tick(redeliver=redeliver, reap=self._may_reap())
                    if failures:
                        log.info("store available again (engine loops)")
                    failures = 0
                except Exception as exc:  # back off; a line for each wait
                    failures += 1
                    wait = min(max_wait, backoff(failures, first=interval, cap=max_wait))
                    self._failed(exc, "engine loops", f"retrying in {describe_wait(wait)}")
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:
                    log.debug("housekeeping hook failed", exc_info=True)
            check_status = time.monotonic() - last_status >= STATUS_CHECK_EVERY
            if check_status:
                last_status = time.monotonic()
            try:
                self.supervise(check_status)
            except Exception as exc:
                self._failed(exc, "supervising attempts", "checked again shortly")
            if time.monotonic() - last_flush >= rt.settings.metadata_flush_interval:
                last_flush = time.monotonic()
                for active in self.active.snapshot():
                    try:
                        flush_active(rt, active)
                    except Exception as exc:  # kept: written by a later flush
                        self._failed(exc, f"flush of run {active.run_id}", "kept for later")
            self._stop.wait(wait)

    def _failed(self, exc: BaseException, what: str, then: str) -> None:
        """Log a failed store call: one line while the store is unavailable (and no reaping
        until the attempts of live workers have had a lease period to be renewed again), a
        traceback for anything else."""
        if isinstance(exc, StoreUnavailableError):
            self._last_outage = time.monotonic()
            log.warning("store unavailable (%s: %s); %s", what, exc, then)
        else:
            log.error("%s failed; %s", what, then, exc_info=exc)

    def _may_reap(self) -> bool:
        """Whether the reaper may take lapsed leases now. Right after the store was
        unavailable, not yet: every worker's renewals failed meanwhile, and a lease that
        lapsed during the outage belongs to a live worker as often as to a dead one. After a
        lease period, a live worker has renewed its leases."""
        return time.monotonic() - self._last_outage >= self.runtime.settings.lease_timeout

    def supervise(self, check_status: bool = True) -> None:
        """Interrupt attempts past their max duration or canceled; end the run of an attempt
        stuck in a blocking call after ``INTERRUPT_GRACE`` seconds."""
        rt = self.runtime
        actives = [a for a in self.active.snapshot() if a.control is not None]
        if not actives:
            self._last_renewal = time.time()
            return
        now = time.monotonic()
        for active in actives:
            control = active.control
            assert control is not None
            if control.past_deadline(now):
                control.interrupt(TIMEOUT)
        if check_status:  # canceled, or taken from this worker (lease lost): stop it
            statuses = rt.store.statuses([a.run_id for a in actives])
            for active in actives:
                status, attempt = statuses.get(active.run_id, (None, None))
                if status is not None and (
                    status is not RunStatus.EXECUTING or attempt != active.attempt_number
                ):
                    assert active.control is not None
                    active.control.interrupt(CANCEL)
        self._renew_leases(actives)
        for active in actives:
            control = active.control
            assert control is not None
            stuck = (
                control.interrupted_at is not None
                and not control.finished
                and now - control.interrupted_at >= INTERRUPT_GRACE
                and control.thread_id not in self.abandoned
            )
            if stuck:
                self._abandon(active)

    def _renew_leases(self, actives: list[ActiveRun]) -> None:
        """Heartbeat: renew the leases of the attempts running here. A worker that cannot renew
        for most of the lease stops its attempts itself (fencing), before the leader reaps."""
        rt = self.runtime
        timeout = rt.settings.lease_timeout
        now = time.time()
        if now - self._last_renewal < timeout / 6:
            return
        try:
            lost = rt.store.heartbeat(
                {a.run_id: a.attempt_number for a in actives},
                worker_id=self.id,
                lease_until=now + timeout,
                now=now,
            )
        except Exception as exc:
            self._failed(exc, "lease renewal", "renewed again shortly")
            if now - self._last_renewal > timeout * 0.8:
                for active in actives:
                    assert active.control is not None
                    active.control.interrupt(CANCEL)
            return
        self._last_renewal = now
        for active in actives:
            if active.run_id in lost:
                assert active.control is not None
                active.control.interrupt(CANCEL)
            else:
                active.lease_until = now + timeout

    def _abandon(self, active: ActiveRun) -> None:
        """The attempt does not return from a blocking call: end the run now (its thread stops
        when the call returns) and tell the pool, which may replace the thread."""
        rt = self.runtime
        control = active.control
        assert control is not None
        self.abandoned.add(control.thread_id)
        with rt.engine.sending() as ready:
            if control.reason == TIMEOUT:
                rt.store.finish_attempt(
                    active.run_id,
                    active.attempt_number,
                    AttemptOutcome(
                        attempt_status=AttemptStatus.TIMED_OUT.value,
                        run_status=RunStatus.TIMED_OUT,
                        error=timed_out_error(active.ctx.run.max_duration),
                        metadata_ops=active.metadata.take_pending(),
                    ),
                    now=rt.now(),
                    ready=ready,
                )
            else:  # canceled: stop waiting for the blocked call, give its slots back
                rt.store.release_canceled(
                    active.run_id, active.attempt_number, now=rt.now(), ready=ready
                )
        log.warning(
            "run %s is blocked after being interrupted (%s); its slot goes to a new thread",
            active.run_id,
            control.reason,
        )
        if self._on_abandon is not None:
            self._on_abandon(control.thread_id)
