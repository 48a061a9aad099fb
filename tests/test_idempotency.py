"""Idempotency keys: same key → same run, scoped to task and environment, TTL, concurrency."""

from __future__ import annotations

import hashlib
import threading

import runlane
from runlane.core import runtime
from tests.helpers import wait_final


def test_same_key_returns_the_same_run(rt):
    @runlane.task(id="idem")
    def idem(payload):
        return payload

    first = idem.trigger({"n": 1}, idempotency_key="order-1")
    second = idem.trigger({"n": 2}, idempotency_key="order-1")
    assert second.id == first.id and second.is_cached and not first.is_cached
    assert rt.store.count_runs() == {"QUEUED": 1}
    run = runlane.runs.retrieve(first)
    # a raw string outside a run is hashed with the (global) scope
    assert run.idempotency_key == hashlib.sha256(b"order-1").hexdigest()


def test_keys_are_scoped_to_task_and_environment(db_url):
    @runlane.task(id="idem-a")
    def a(payload):
        return 1

    @runlane.task(id="idem-b")
    def b(payload):
        return 1

    runlane.configure(store=db_url, environment="dev")
    try:
        ha, hb = a.trigger({}, idempotency_key="k"), b.trigger({}, idempotency_key="k")
        assert ha.id != hb.id and not hb.is_cached
        runlane.configure(store=db_url, environment="prod")
        hp = a.trigger({}, idempotency_key="k")
        assert hp.id != ha.id and not hp.is_cached
        assert a.trigger({}, idempotency_key="k").id == hp.id
    finally:
        runtime.install(None).close()


def test_finished_run_is_returned_and_key_ttl_releases_it(clock):
    @runlane.task(id="idem-ttl")
    def idem_ttl(payload):
        return "out"

    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        h1 = idem_ttl.trigger({}, idempotency_key="k", idempotency_key_ttl="5m")
        assert wait_final(h1).output == "out"
        h2 = idem_ttl.trigger({}, idempotency_key="k")
        assert h2.id == h1.id and h2.is_cached  # finished: the same run (and its output)
        clock.advance(299)
        assert idem_ttl.trigger({}, idempotency_key="k").id == h1.id
        clock.advance(2)
        h3 = idem_ttl.trigger({}, idempotency_key="k")
        assert h3.id != h1.id and not h3.is_cached
        assert wait_final(h3).status == "COMPLETED"


def test_default_key_ttl_is_30_days(clock):
    @runlane.task(id="idem-30d")
    def idem_30d(payload):
        return 1

    h1 = idem_30d.trigger({}, idempotency_key="k", ttl=0)
    clock.advance(30 * 86400 - 10)
    assert idem_30d.trigger({}, idempotency_key="k", ttl=0).id == h1.id
    clock.advance(20)
    assert idem_30d.trigger({}, idempotency_key="k", ttl=0).id != h1.id


def test_sixteen_concurrent_triggers_make_exactly_one_run(rt):
    @runlane.task(id="idem-race")
    def idem_race(payload):
        return 1

    barrier = threading.Barrier(16)
    handles = []
    lock = threading.Lock()

    def fire(i: int) -> None:
        barrier.wait()
        h = idem_race.trigger({"i": i}, idempotency_key="the-one")
        with lock:
            handles.append(h)

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(handles) == 16
    assert len({h.id for h in handles}) == 1
    assert sum(not h.is_cached for h in handles) == 1
    assert sum(rt.store.count_runs().values()) == 1
    assert rt.broker.pending() == 1


def test_idempotency_keys_create_scopes(worker):
    @runlane.task(id="child-of-scopes")
    def child(payload):
        return payload

    @runlane.task(id="scopes", retry={"max_attempts": 1})
    def scopes(payload, ctx):
        run_key = runlane.idempotency_keys.create("child")
        attempt_key = runlane.idempotency_keys.create(["child", "x"], scope="attempt")
        global_key = runlane.idempotency_keys.create("child", scope="global")
        expected_run = hashlib.sha256(f"child-{ctx.run.id}".encode()).hexdigest()
        expected_attempt = hashlib.sha256(f"child-x-{ctx.run.id}-1".encode()).hexdigest()
        assert run_key == expected_run and attempt_key == expected_attempt
        assert global_key == hashlib.sha256(b"child").hexdigest()
        # a raw string inside a run is hashed with the run scope
        raw = child.trigger(1, idempotency_key="child")
        again = child.trigger(2, idempotency_key=run_key)
        assert again.id == raw.id and again.is_cached
        return {"global": child.trigger(3, idempotency_key=global_key).id}

    r1 = wait_final(scopes.trigger({}))
    r2 = wait_final(scopes.trigger({}))
    assert r1.status == r2.status == "COMPLETED"
    assert r1.output["global"] == r2.output["global"]  # global: one child for both parents
    children = list(runlane.runs.list(task_identifier="child-of-scopes"))
    assert len(children) == 3  # one run-scoped child per parent + one global
    for c in children:
        assert c.parent_id in (r1.id, r2.id)
        assert c.root_id == c.parent_id and c.depth == 1


def test_idempotent_batch_items(rt):
    @runlane.task(id="idem-batch")
    def idem_batch(payload):
        return 1

    first = idem_batch.batch_trigger(
        [{"payload": 1, "options": {"idempotency_key": "a"}}, {"payload": 2}]
    )
    second = idem_batch.batch_trigger(
        [
            {"payload": 1, "options": {"idempotency_key": "a"}},
            {"payload": 3, "options": {"idempotency_key": "b"}},
            {"payload": 4, "options": {"idempotency_key": "b"}},
        ]
    )
    assert second.runs[0].id == first.runs[0].id and second.runs[0].is_cached
    assert not second.runs[1].is_cached and second.runs[2].is_cached
    assert second.runs[2].id == second.runs[1].id
    assert sum(rt.store.count_runs().values()) == 3
    batch = runlane.batch.retrieve(second)
    assert batch.run_ids == [h.id for h in second.runs]
