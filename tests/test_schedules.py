"""Schedules through the public API, on a fake clock: the payload, DST, catch-up, clock jumps,
activation, declarative sync (add, change, remove; generations), imperative CRUD with
deduplication, validation before anything is written, and two schedulers on one store."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import runlane
from runlane.core import cron, runtime
from runlane.core import schedules as ops
from runlane.core.task import Task
from runlane.errors import InvalidOptionError, InvalidScheduleStateError, ScheduleNotFoundError
from runlane.testing import run_until_idle
from tests.helpers import wait_for

NY = ZoneInfo("America/New_York")


def at(*parts: int, tz: Any = timezone.utc) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def step_to(clock: runlane.FakeClock, when: float) -> None:
    """Move the clock to ``when`` and let the engine fire and execute what is due."""
    clock.set(when)
    run_until_idle(timeout=30)


@pytest.fixture
def seen() -> list[runlane.ScheduledPayload]:
    return []


def scheduled(seen: list[Any], id: str = "tick", cron_option: Any = None) -> Task[Any]:
    @runlane.schedules.task(id=id, cron=cron_option)
    def run(payload: runlane.ScheduledPayload, ctx: Any) -> str:
        assert isinstance(payload, runlane.ScheduledPayload)
        seen.append(payload)
        return payload.timestamp.isoformat()

    return run


def test_a_declarative_schedule_fires_each_tick_with_its_payload(
    clock: runlane.FakeClock, seen: list[Any]
) -> None:
    clock.set(at(2026, 6, 1, 9, 59, 30))
    scheduled(seen, cron_option={"pattern": "0 * * * *", "timezone": "Asia/Tokyo"})
    run_until_idle()  # as a worker does as it starts: the declared schedule is written
    (schedule,) = runlane.schedules.list(task="tick").data
    assert schedule.type is runlane.ScheduleType.DECLARATIVE
    assert schedule.id == ops.declarative_id("tick") and schedule.id.startswith("sched_")
    assert schedule.next_run == utc(at(2026, 6, 1, 10))
    assert schedule.description == "Every hour" and schedule.timezone == "Asia/Tokyo"
    step_to(clock, at(2026, 6, 1, 10, 0, 1))
    step_to(clock, at(2026, 6, 1, 11, 0, 1))
    first, second = seen
    assert first.timestamp == utc(at(2026, 6, 1, 10)) and first.last_timestamp is None
    assert second.timestamp == utc(at(2026, 6, 1, 11))
    assert second.last_timestamp == utc(at(2026, 6, 1, 10))
    assert second.timezone == "Asia/Tokyo" and second.schedule_id == schedule.id
    assert second.type is runlane.ScheduleType.DECLARATIVE and second.external_id is None
    assert second.upcoming == [utc(at(2026, 6, 1, 12 + i)) for i in range(5)]
    runs = list(runlane.runs.list(schedule=schedule.id))
    assert [r.status for r in runs] == ["COMPLETED", "COMPLETED"]
    assert {r.id for r in runs} == {
        ops.tick_run_id(schedule.id, at(2026, 6, 1, 10)),
        ops.tick_run_id(schedule.id, at(2026, 6, 1, 11)),
    }
    assert runlane.schedules.retrieve(schedule.id).last_run == utc(at(2026, 6, 1, 11))


def test_dst_days_fire_each_daily_tick_once(clock: runlane.FakeClock, seen: list[Any]) -> None:
    """02:30 New York does not exist on the spring-forward day: it fires once, at 03:00 EDT;
    01:30 happens twice on the fall-back day: it fires once, at the first."""
    clock.set(at(2026, 3, 7, 12))
    scheduled(seen, "at-0230", {"pattern": "30 2 * * *", "timezone": "America/New_York"})
    scheduled(seen, "at-0130", {"pattern": "30 1 * * *", "timezone": "America/New_York"})
    run_until_idle()
    for hour in range(0, 48):  # through 2026-03-09 12:00 UTC, an hour at a time
        step_to(clock, at(2026, 3, 7, 12) + 3600 * (hour + 1) + 1)
    spring = sorted(p.timestamp for p in seen if p.schedule_id == ops.declarative_id("at-0230"))
    assert spring == [
        datetime(2026, 3, 8, 3, 0, tzinfo=NY).astimezone(timezone.utc),
        datetime(2026, 3, 9, 2, 30, tzinfo=NY).astimezone(timezone.utc),
    ]
    clock.set(at(2026, 10, 31, 12))
    run_until_idle()  # each catches up once, on 31 October's tick
    caught = {p.schedule_id: p.timestamp for p in seen[-2:]}
    assert caught[ops.declarative_id("at-0130")] == utc(at(2026, 10, 31, 5, 30))
    assert caught[ops.declarative_id("at-0230")] == utc(at(2026, 10, 31, 6, 30))
    seen.clear()
    for quarter in range(0, 4 * 48):  # through 2026-11-02 12:00 UTC, 15 minutes at a time
        step_to(clock, at(2026, 10, 31, 12) + 900 * (quarter + 1) + 1)
    fall = sorted(p.timestamp for p in seen if p.schedule_id == ops.declarative_id("at-0130"))
    assert fall == [
        datetime(2026, 11, 1, 1, 30, tzinfo=NY).astimezone(timezone.utc),  # EDT, the first
        datetime(2026, 11, 2, 1, 30, tzinfo=NY).astimezone(timezone.utc),
    ]
    assert fall[0] == utc(at(2026, 11, 1, 5, 30))


def test_after_downtime_one_catch_up_run_then_back_on_the_clock(
    clock: runlane.FakeClock, seen: list[Any]
) -> None:
    clock.set(at(2026, 1, 5, 8, 0, 30))
    scheduled(seen, cron_option="*/10 * * * *")
    run_until_idle()
    step_to(clock, at(2026, 1, 5, 8, 10, 5))
    step_to(clock, at(2026, 1, 5, 11, 42))  # 20 ticks missed: one run, for the latest
    assert [p.timestamp for p in seen] == [utc(at(2026, 1, 5, 8, 10)), utc(at(2026, 1, 5, 11, 40))]
    assert seen[1].last_timestamp == utc(at(2026, 1, 5, 8, 10))
    assert runlane.schedules.list().data[0].next_run == utc(at(2026, 1, 5, 11, 50))
    step_to(clock, at(2026, 1, 5, 11, 30))  # the clock goes back: nothing fires again
    step_to(clock, at(2026, 1, 5, 11, 49))
    assert len(seen) == 2
    step_to(clock, at(2026, 1, 5, 11, 50))
    assert [p.timestamp for p in seen][-1] == utc(at(2026, 1, 5, 11, 50))


def test_imperative_schedules_crud_and_deduplication(
    clock: runlane.FakeClock, seen: list[Any]
) -> None:
    clock.set(at(2026, 2, 2, 7, 58))
    reminder = scheduled(seen, "reminder")
    run_until_idle()
    assert runlane.schedules.list().data == []  # no cron: no declarative schedule
    created = runlane.schedules.create(
        task=reminder,
        cron="0 8 * * 1",
        timezone="America/New_York",
        external_id="user_1",
        deduplication_key="user_1-reminder",
    )
    assert created.type is runlane.ScheduleType.IMPERATIVE and created.active
    assert created.description == "At 08:00 AM, only on Monday"
    assert created.next_run == datetime(2026, 2, 2, 8, 0, tzinfo=NY).astimezone(timezone.utc)
    again = runlane.schedules.create(
        task="reminder", cron="0 9 * * 1", deduplication_key="user_1-reminder"
    )
    assert again.id == created.id and again.cron == "0 9 * * 1"
    assert again.timezone == "UTC" and again.external_id is None  # as the create gave them
    other = runlane.schedules.create(task="reminder", cron="0 8 * * *", external_id="user_2")
    assert [s.id for s in runlane.schedules.list().data] == [other.id, created.id]
    page = runlane.schedules.list(limit=1)
    assert page.has_next_page() and [s.id for s in page] == [other.id, created.id]
    updated = runlane.schedules.update(created.id, timezone="Europe/Paris", external_id="u")
    assert updated.timezone == "Europe/Paris" and updated.external_id == "u"
    assert updated.cron == "0 9 * * 1" and updated.created_at == created.created_at
    assert updated.next_run == datetime(2026, 2, 2, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    off = runlane.schedules.deactivate(other.id)
    assert not off.active and off.next_run is None
    step_to(clock, at(2026, 2, 3, 8, 1))  # other's tick passes while it is inactive
    assert [(p.schedule_id, p.timezone) for p in seen] == [(created.id, "Europe/Paris")]
    on = runlane.schedules.activate(other.id)
    assert on.active and on.next_run == utc(at(2026, 2, 4, 8))
    step_to(clock, at(2026, 2, 4, 8, 0, 1))
    assert [(p.external_id, p.type) for p in seen[1:]] == [
        ("user_2", runlane.ScheduleType.IMPERATIVE)
    ]
    deleted = runlane.schedules.delete(other.id)
    assert deleted.id == other.id
    with pytest.raises(ScheduleNotFoundError):
        runlane.schedules.retrieve(other.id)
    assert len(list(runlane.runs.list(schedule=other.id))) == 1  # its runs stay
    step_to(clock, at(2026, 2, 5, 8, 0, 1))
    assert len(seen) == 2  # deleted: it fired no more


def test_declarative_schedules_are_refused_to_the_api(clock: runlane.FakeClock, seen: list[Any]):
    scheduled(seen, cron_option="0 0 * * *")
    run_until_idle()
    sid = ops.declarative_id("tick")
    for verb in (
        lambda: runlane.schedules.update(sid, cron="0 1 * * *"),
        lambda: runlane.schedules.deactivate(sid),
        lambda: runlane.schedules.activate(sid),
        lambda: runlane.schedules.delete(sid),
    ):
        with pytest.raises(InvalidScheduleStateError, match="DECLARATIVE"):
            verb()
    assert runlane.schedules.retrieve(sid).cron == "0 0 * * *"


def test_declarative_sync_adds_changes_and_removes_by_generation(
    clock: runlane.FakeClock, seen: list[Any]
) -> None:
    rt = runtime.get()
    clock.set(at(2026, 4, 1, 0, 0, 30))

    def version_of(cron_option: Any) -> Task[Any]:
        t = Task(lambda payload: None, id="report")
        t.scheduled, t.cron = True, ops.parse_cron_option(cron_option) if cron_option else None
        return t

    v1 = ops.generation("1.9", 100.0)
    v2 = ops.generation("1.10", 50.0)  # a later release, whatever the start times
    assert v2 > v1 and ops.generation(None, 10.0) < ops.generation("0", 1.0)
    ops.sync_declared(rt, [version_of("0 6 * * *")], v1)
    sid = ops.declarative_id("report")
    assert runlane.schedules.retrieve(sid).cron == "0 6 * * *"
    ops.sync_declared(rt, [version_of({"pattern": "0 7 * * *", "timezone": "Asia/Tokyo"})], v2)
    changed = runlane.schedules.retrieve(sid)
    assert (changed.cron, changed.timezone) == ("0 7 * * *", "Asia/Tokyo")
    ops.sync_declared(rt, [version_of("0 6 * * *")], v1)  # an older worker restarting
    ops.sync_declared(rt, [version_of(None)], v1)
    assert runlane.schedules.retrieve(sid).cron == "0 7 * * *"
    ops.sync_declared(rt, [version_of(None)], ops.generation("1.11", 0.0))
    with pytest.raises(ScheduleNotFoundError):
        runlane.schedules.retrieve(sid)


def test_a_worker_start_syncs_the_declared_schedule(clock: runlane.FakeClock, seen: list[Any]):
    scheduled(seen, cron_option="*/5 * * * *")
    with runlane.Worker(concurrency=1):
        wait_for(lambda: runlane.schedules.list().data, timeout=30)
    (schedule,) = runlane.schedules.list().data
    assert schedule.cron == "*/5 * * * *" and schedule.type is runlane.ScheduleType.DECLARATIVE


@pytest.mark.store_independent
def test_bad_input_names_the_problem_and_writes_nothing(clock: runlane.FakeClock) -> None:
    @runlane.task(id="plain")
    def plain(payload: Any) -> None:
        return None

    scheduled([], "sched")
    cases = [
        ({"cron": "* * * * * *"}, "CRON expressions with seconds are not allowed"),
        ({"cron": "60 * * * *"}, "the minute field '60' is not valid"),
        ({"cron": "0 25 * * *"}, "the hour field '25'"),
        ({"cron": "0 0 32 * *"}, "the day-of-month field '32'"),
        ({"cron": "0 0 * 13 *"}, "the month field '13'"),
        ({"cron": "0 0 * * MON-XYZ"}, "the day-of-week field"),
        ({"cron": "0 0 *"}, "has 3 field(s)"),
        ({"cron": ""}, "must be a cron expression"),
        ({"timezone": "Mars/Olympus"}, "is not a known IANA time zone"),
        ({"external_id": "x" * 200}, "1-128 characters"),
        ({"deduplication_key": ""}, "1-128 characters"),
        ({"task": "plain"}, "is not a scheduled task"),
        ({"task": "nobody-defines-this"}, "no such task"),
    ]
    for change, message in cases:
        kw: dict[str, Any] = {"task": "sched", "cron": "0 0 * * *", **change}
        with pytest.raises(InvalidOptionError) as info:
            runlane.schedules.create(**kw)
        assert message in str(info.value), (change, str(info.value))
    assert runlane.schedules.list().data == []
    with pytest.raises(InvalidOptionError, match="CRON expressions with seconds"):
        runlane.schedules.task(id="bad", cron="* * * * * *")
    with pytest.raises(InvalidOptionError, match=r"cron\.timezone"):
        runlane.schedules.task(id="bad", cron={"pattern": "* * * * *", "timezone": "Nowhere"})
    with pytest.raises(InvalidOptionError, match="unknown key"):
        runlane.schedules.task(id="bad", cron={"pattern": "* * * * *", "tz": "UTC"})
    assert runlane.tasks is not None and runtime.get().registry.get("bad") is None
    with pytest.raises(ScheduleNotFoundError):
        runlane.schedules.retrieve("sched_nope")


@pytest.mark.store_independent
def test_cron_features_of_the_reference() -> None:
    start = at(2026, 1, 1)
    # L: the last day of the month; 5L: the last Friday; names; 7 is Sunday
    assert utc(cron.next_tick("0 0 L * *", "UTC", start)) == utc(at(2026, 1, 31))
    assert utc(cron.next_tick("0 0 * * 5L", "UTC", start)) == utc(at(2026, 1, 30))
    assert utc(cron.next_tick("0 0 * * 7", "UTC", start)) == utc(at(2026, 1, 4))
    assert utc(cron.next_tick("0 12 * JAN-MAR MON-FRI", "UTC", start)) == utc(at(2026, 1, 1, 12))
    assert cron.next_ticks("*/20 9-10 * * *", "UTC", start, 3)[2] == at(2026, 1, 1, 9, 40)
    assert cron.parse_cron("  0   8 * * 1 ") == "0 8 * * 1"
    zones = runlane.schedules.timezones()
    assert "America/New_York" in zones and "UTC" in zones and zones == sorted(zones)
    assert asyncio.run(runlane.schedules.aio_timezones()) == zones


def test_two_schedulers_on_one_store_fire_a_tick_once(
    db_url: str, clock: runlane.FakeClock, seen: list[Any]
) -> None:
    clock.set(at(2026, 7, 1, 11, 59, 59))
    scheduled(seen, cron_option="0 12 * * *")
    run_until_idle()
    first = runtime.install(None)  # kept open: a second runtime stands for another process
    assert first is not None
    other = runlane.configure(store=db_url, clock=clock)
    try:
        clock.set(at(2026, 7, 1, 12, 0, 2))
        row = first.store.due_schedules(now=clock.now(), limit=10)[0]
        # both saw the tick due; each fires it
        assert ops.fire(first, row, clock.now()) is True
        assert ops.fire(other, row, clock.now()) is False
    finally:
        runtime.install(first)
        other.close()
    runs = list(runlane.runs.list(schedule=ops.declarative_id("tick")))
    assert len(runs) == 1


def test_aio_twins(clock: runlane.FakeClock, seen: list[Any]) -> None:
    scheduled(seen, "aio")
    run_until_idle()

    async def flow() -> None:
        made = await runlane.schedules.aio_create(task="aio", cron="0 * * * *")
        assert (await runlane.schedules.aio_retrieve(made.id)).id == made.id
        assert (await runlane.schedules.aio_update(made.id, cron="5 * * * *")).cron == "5 * * * *"
        assert not (await runlane.schedules.aio_deactivate(made.id)).active
        assert (await runlane.schedules.aio_activate(made.id)).active
        page = await runlane.schedules.aio_list(task="aio")
        assert [s.id async for s in page] == [made.id]
        assert (await runlane.schedules.aio_delete(made.id)).id == made.id

    asyncio.run(flow())
