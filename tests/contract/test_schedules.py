"""Schedule verbs on both stores: save (create, deduplicate, replace, declarative generations),
delete, read, list, the due index, and a tick fired through ``create_runs(fire=)``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import runlane
from runlane.core.models import RunStatus
from runlane.core.types import ScheduleFire, ScheduleQuery, ScheduleRow
from tests.contract.support import create, make

MINUTE = 60.0


def row(clock: runlane.FakeClock, sid: str, **fields: Any) -> ScheduleRow:
    now = clock.now()
    values: dict[str, Any] = {
        "id": sid,
        "task": "t",
        "cron": "* * * * *",
        "timezone": "UTC",
        "type": "IMPERATIVE",
        "active": True,
        "created_at": now,
        "updated_at": now,
        "next_at": now + MINUTE,
    }
    values.update(fields)
    return ScheduleRow(**values)


def test_save_creates_then_replaces_keeping_identity(store: Any, clock: runlane.FakeClock) -> None:
    first, written = store.save_schedule(row(clock, "sched_a", external_id="u1"), now=clock.now())
    assert written and first.id == "sched_a" and first.external_id == "u1"
    assert store.get_schedule("sched_a") == first
    clock.advance(10)
    changed = row(clock, "sched_a", cron="*/5 * * * *", created_at=clock.now(), last_at=1.0)
    stored, written = store.save_schedule(changed, now=clock.now())
    assert written
    assert stored.cron == "*/5 * * * *"
    assert stored.created_at == first.created_at  # kept
    assert stored.last_at is None  # kept (never fired), not taken from the row
    assert store.get_schedule("sched_a") == stored
    assert store.get_schedule("sched_missing") is None


def test_a_deduplication_key_updates_the_schedule_that_has_it(
    store: Any, clock: runlane.FakeClock
) -> None:
    store.save_schedule(row(clock, "sched_a", deduplication_key="k"), now=clock.now())
    again, written = store.save_schedule(
        row(clock, "sched_b", deduplication_key="k", cron="0 * * * *"), now=clock.now()
    )
    assert written and again.id == "sched_a" and again.cron == "0 * * * *"
    assert store.get_schedule("sched_b") is None
    page, _ = store.list_schedules(ScheduleQuery())
    assert [s.id for s in page] == ["sched_a"]
    # the key moves with an update; the old key is free again
    store.save_schedule(replace(again, deduplication_key="k2"), now=clock.now())
    fresh, _ = store.save_schedule(row(clock, "sched_c", deduplication_key="k"), now=clock.now())
    assert fresh.id == "sched_c"


def test_declarative_generations_never_go_back(store: Any, clock: runlane.FakeClock) -> None:
    declared = row(clock, "sched_d", type="DECLARATIVE", generation="b")
    store.save_schedule(declared, now=clock.now())
    older = replace(declared, cron="0 0 * * *", generation="a")
    stored, written = store.save_schedule(older, now=clock.now())
    assert not written and stored.cron == "* * * * *" and stored.generation == "b"
    assert not store.delete_schedule("sched_d", generation="a")  # an older worker
    assert store.get_schedule("sched_d") is not None
    # the same declaration from a newer worker keeps its next tick
    clock.advance(30)
    same = replace(declared, generation="c", next_at=clock.now() + 999)
    stored, written = store.save_schedule(same, now=clock.now())
    assert written and stored.next_at == declared.next_at and stored.generation == "c"
    assert store.delete_schedule("sched_d", generation="c")
    assert store.get_schedule("sched_d") is None
    assert not store.delete_schedule("sched_d")


def test_due_index_holds_active_schedules_by_next_tick(
    store: Any, clock: runlane.FakeClock
) -> None:
    now = clock.now()
    store.save_schedule(row(clock, "sched_late", next_at=now + 120), now=now)
    store.save_schedule(row(clock, "sched_soon", next_at=now + 60), now=now)
    store.save_schedule(row(clock, "sched_off", next_at=now + 30, active=False), now=now)
    assert store.due_schedules(now=now + 59, limit=10) == []
    assert [s.id for s in store.due_schedules(now=now + 60, limit=10)] == ["sched_soon"]
    due = store.due_schedules(now=now + 500, limit=10)
    assert [s.id for s in due] == ["sched_soon", "sched_late"]
    assert [s.id for s in store.due_schedules(now=now + 500, limit=1)] == ["sched_soon"]
    # deactivated: out of the index; reactivated: back in
    soon = store.get_schedule("sched_soon")
    store.save_schedule(replace(soon, active=False), now=now)
    assert [s.id for s in store.due_schedules(now=now + 500, limit=10)] == ["sched_late"]
    store.save_schedule(replace(soon, active=True), now=now)
    assert len(store.due_schedules(now=now + 500, limit=10)) == 2
    store.delete_schedule("sched_late")
    assert [s.id for s in store.due_schedules(now=now + 500, limit=10)] == ["sched_soon"]


def test_list_newest_first_by_task_with_a_cursor(store: Any, clock: runlane.FakeClock) -> None:
    for i in range(5):
        store.save_schedule(row(clock, f"sched_{i}", task="t" if i % 2 else "u"), now=clock.now())
        clock.advance(1)
    page, cursor = store.list_schedules(ScheduleQuery(limit=2))
    assert [s.id for s in page] == ["sched_4", "sched_3"] and cursor == "sched_3"
    page, cursor = store.list_schedules(ScheduleQuery(limit=2, after=cursor))
    assert [s.id for s in page] == ["sched_2", "sched_1"]
    page, cursor = store.list_schedules(ScheduleQuery(limit=2, after=cursor))
    assert [s.id for s in page] == ["sched_0"] and cursor is None
    page, _ = store.list_schedules(ScheduleQuery(task=("t",)))
    assert [s.id for s in page] == ["sched_3", "sched_1"]
    page, _ = store.list_schedules(ScheduleQuery(task=("t", "u"), limit=10))
    assert len(page) == 5
    # a task that moves leaves its old task's list
    moved = store.get_schedule("sched_3")
    store.save_schedule(replace(moved, task="u"), now=clock.now())
    page, _ = store.list_schedules(ScheduleQuery(task=("t",)))
    assert [s.id for s in page] == ["sched_1"]


def test_a_tick_is_fired_once(store: Any, clock: runlane.FakeClock) -> None:
    now = clock.now()
    tick = now + MINUTE
    store.save_schedule(row(clock, "sched_f", next_at=tick), now=now)
    clock.set(tick + 1)
    fire = ScheduleFire("sched_f", expect=tick, tick=tick, next_at=tick + MINUTE)
    first = make(clock, schedule_id="sched_f")
    created = create(store, clock, first, fires=[fire])
    assert [c.run_id for c in created] == [first.id]
    run = store.get_run(first.id)
    assert run.status is RunStatus.QUEUED and run.schedule_id == "sched_f"
    after = store.get_schedule("sched_f")
    assert after.last_at == tick and after.next_at == tick + MINUTE
    # a second scheduler with the same view: nothing written
    second = make(clock, schedule_id="sched_f")
    assert create(store, clock, second, fires=[fire]) == []
    assert store.get_run(second.id) is None
    # an inactive schedule does not fire
    store.save_schedule(replace(after, active=False), now=clock.now())
    late = ScheduleFire("sched_f", expect=tick + MINUTE, tick=tick + MINUTE, next_at=tick + 120)
    third = make(clock, schedule_id="sched_f")
    assert create(store, clock, third, fires=[late]) == []
    # nor does a deleted one
    store.delete_schedule("sched_f")
    assert create(store, clock, make(clock), fires=[late]) == []


def test_many_ticks_in_one_call_skip_only_those_fired(store: Any, clock: runlane.FakeClock):
    now = clock.now()
    tick = now + MINUTE
    for sid in ("sched_1", "sched_2", "sched_3"):
        store.save_schedule(row(clock, sid, next_at=tick), now=now)
    clock.set(tick)
    fires = [
        ScheduleFire(s, expect=tick, tick=tick, next_at=tick + MINUTE)
        for s in ("sched_1", "sched_2", "sched_3")
    ]
    # sched_2 fired by another scheduler first
    assert len(create(store, clock, make(clock, schedule_id="sched_2"), fires=[fires[1]])) == 1
    news = [make(clock, schedule_id=f.schedule_id) for f in fires]
    created = create(store, clock, *news, fires=fires)
    assert [c.run_id for c in created] == [news[0].id, news[2].id]
    assert store.get_run(news[1].id) is None
    assert {store.get_schedule(s).next_at for s in ("sched_1", "sched_2", "sched_3")} == {
        tick + MINUTE
    }


def test_a_schedules_fields_are_declared_once() -> None:
    """Both stores (and the Redis Lua, through scripts.py) take the list from SCHEDULE_FIELDS:
    it must name every field of ScheduleRow."""
    import dataclasses

    from runlane.core.types import SCHEDULE_FIELDS

    assert set(SCHEDULE_FIELDS) == {f.name for f in dataclasses.fields(ScheduleRow)}
    assert len(SCHEDULE_FIELDS) == len(set(SCHEDULE_FIELDS))
