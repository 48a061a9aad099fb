"""The engine lease: one process at a time runs the engine loops, the others only try for the
lease now and then, and one of them takes over when the leader stops (both stores)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import runlane
from runlane.core import runtime
from runlane.core.host import Host
from tests.helpers import wait_for, wait_status


def test_one_leader_the_others_claim_rarely_and_one_takes_over(db_url):
    rt = runlane.configure(store=db_url, engine_interval=0.05)

    @runlane.task(id="later")
    def later(payload):
        return payload

    claims: Counter[tuple[str, bool]] = Counter()
    lock = threading.Lock()
    real = rt.store.acquire_lease

    def counting(name, owner, **kw):  # the real store call, counted
        got = real(name, owner, **kw)
        with lock:
            claims[owner, got] += 1
        return got

    rt.store.acquire_lease = counting
    a = Host("host-a", rt).start()
    b = Host("host-b", rt).start()
    try:
        wait_for(lambda: a.is_leader or b.is_leader, message="a leader")
        leader, other = (a, b) if a.is_leader else (b, a)
        wait_for(lambda: claims[other.id, False] >= 1, message="the other host to try")
        started = time.monotonic()
        first = claims[other.id, False]
        wait_for(lambda: claims[leader.id, True] >= 40, message="the leader to renew 40 times")
        elapsed = time.monotonic() - started
        assert not other.is_leader
        # the leader renews every tick (0.05 s); the other tries once a second (lease 5 s / 5):
        # polling every tick would have made about as many calls as the leader
        assert claims[other.id, False] - first <= elapsed / 1.0 + 1

        leader.stop()  # gives the lease up: the other takes over and runs the engine loops
        wait_for(lambda: other.is_leader, timeout=30, message="the other host to lead")
        handle = later.trigger({}, delay=1)
        wait_status(handle, "QUEUED", timeout=30)  # promoted by the new leader's tick
    finally:
        a.stop()
        b.stop()
        runtime.install(None)
        rt.close()
