"""``import_beat_schedule(app)``: a Celery app's beat_schedule as runlane schedules.

Unit level: crontab and interval schedules → cron expressions (and, for every crontab case,
the ticks Celery's own expanded fields give against the ticks of the cron expression), the app's
time zone, the errors (naming the entry) raised before anything is defined, task ids and their
collisions. On the embedded default with a fake clock: a tick calls the Celery task with the
entry's args and kwargs, or triggers the runlane task it names; ``expires``. End to end: a real
``celery -A examples.celery_beat worker`` (the docs' example) over Redis with the Redis store
fires its imported schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import celery
import pytest
from celery.schedules import crontab, schedule, solar

import runlane
from runlane.backends.celery import import_beat_schedule
from runlane.backends.celery.beat import beat_cron, beat_task_id
from runlane.core import cron, runtime
from runlane.core import schedules as ops
from runlane.core.registry import registry
from runlane.errors import ConfigurationError, InvalidOptionError
from runlane.testing import run_until_idle
from tests.adapters import FrameworkWorker, delete_redis_prefix, unique_prefix
from tests.helpers import wait_final, wait_for

pytestmark = pytest.mark.timeout(120)

UTC = timezone.utc


@pytest.fixture
def app(request: pytest.FixtureRequest) -> celery.Celery:
    """An app of its own per test (its name keys the once-per-app warning)."""
    return celery.Celery(f"beat-{request.node.name}", set_as_current=False)


def entry(task: str = "jobs.tick", schedule: Any = None, **more: Any) -> dict[str, Any]:
    return {"task": task, "schedule": crontab() if schedule is None else schedule, **more}


# ---------------------------------------------------------------------- crontab → cron
CRONTABS = [
    ({}, "* * * * *"),
    ({"minute": "*/15"}, "*/15 * * * *"),
    ({"minute": 0, "hour": "*/3"}, "0 */3 * * *"),
    ({"minute": 30, "hour": 7, "day_of_week": "mon-fri"}, "30 7 * * 1-5"),
    ({"minute": 0, "hour": 9, "day_of_week": "sunday"}, "0 9 * * 0"),
    ({"minute": 0, "hour": 10, "day_of_week": "sat,sun"}, "0 10 * * 0,6"),
    ({"minute": 30, "hour": 3, "day_of_week": "fri-mon"}, "30 3 * * 0,1,5,6"),  # wraps
    ({"minute": 0, "hour": 0, "day_of_week": "*/2"}, "0 0 * * */2"),  # Sun, Tue, Thu, Sat
    ({"minute": 0, "hour": 0, "day_of_week": [1, 3, 5]}, "0 0 * * 1-5/2"),
    ({"minute": 0, "hour": "8-17/2"}, "0 8-16/2 * * *"),
    ({"minute": "0,8-17/2"}, "0,8,10,12,14,16 * * * *"),
    ({"minute": [0, 30]}, "0,30 * * * *"),
    ({"minute": [0, 20, 40]}, "*/20 * * * *"),
    ({"minute": {5, 35}}, "5,35 * * * *"),
    ({"minute": "1-5,10,11"}, "1-5,10,11 * * * *"),
    ({"minute": list(range(60)), "hour": "0-23"}, "* * * * *"),
    ({"minute": 0, "hour": "23-2"}, "0 0-2,23 * * *"),  # wraps past midnight
    ({"minute": 0, "hour": 0, "day_of_month": 1}, "0 0 1 * *"),
    ({"minute": 0, "hour": 6, "day_of_month": "1,15", "month_of_year": "*/3"}, "0 6 1,15 */3 *"),
    ({"minute": 0, "hour": 12, "day_of_month": "2-30/2"}, "0 12 2-30/2 * *"),
    ({"minute": 0, "hour": 0, "day_of_month": 29, "month_of_year": 2}, "0 0 29 2 *"),
    ({"minute": 15, "hour": 4, "month_of_year": "6-8"}, "15 4 * 6-8 *"),
]


@pytest.mark.parametrize(("fields", "expected"), CRONTABS, ids=[e for _, e in CRONTABS])
def test_a_crontab_becomes_the_cron_expression_of_its_fields(
    app: celery.Celery, fields: dict[str, Any], expected: str
) -> None:
    spec = beat_cron(app, crontab(**fields))
    assert spec.pattern == expected and spec.timezone == "UTC"
    assert cron.parse_cron(spec.pattern) == spec.pattern


def celery_ticks(c: crontab, after: datetime, count: int) -> list[float]:
    """The next ``count`` minutes Celery's crontab matches after ``after`` (UTC), from the
    fields it expanded: a day in day_of_month AND month_of_year AND day_of_week."""
    out: list[float] = []
    day = after.date()
    for _ in range(9 * 366):
        if (
            day.day in c.day_of_month
            and day.month in c.month_of_year
            and day.isoweekday() % 7 in c.day_of_week
        ):
            for hour in sorted(c.hour):
                for minute in sorted(c.minute):
                    tick = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if tick > after:
                        out.append(tick.timestamp())
                        if len(out) == count:
                            return out
        day += timedelta(days=1)
    return out


@pytest.mark.parametrize(("fields", "expected"), CRONTABS, ids=[e for _, e in CRONTABS])
def test_the_cron_expression_ticks_when_celery_would(
    app: celery.Celery, fields: dict[str, Any], expected: str
) -> None:
    c = crontab(**fields)
    after = datetime(2026, 1, 30, 22, 7, tzinfo=UTC)
    wanted = celery_ticks(c, after, 60)  # fewer for Feb 29: the ones of 9 years
    assert len(wanted) >= 2
    pattern = beat_cron(app, c).pattern
    assert cron.next_ticks(pattern, "UTC", after.timestamp(), len(wanted)) == wanted


def test_from_string_and_days_in_both_fields(app: celery.Celery) -> None:
    assert beat_cron(app, crontab.from_string("15 */4 1-10 * *")).pattern == "15 */4 1-10 * *"
    with pytest.raises(InvalidOptionError) as err:  # Celery: both; cron: either
        beat_cron(app, crontab(minute=0, hour=9, day_of_week="mon", day_of_month="1-7"), entry="x")
    message = str(err.value)
    assert "beat_schedule['x'].schedule" in message
    assert "both day_of_month and day_of_week" in message


# ---------------------------------------------------------------------- time zones
def test_crontabs_are_read_in_the_apps_time_zone(app: celery.Celery) -> None:
    assert beat_cron(app, crontab(minute=0)).timezone == "UTC"  # enable_utc, no timezone
    app.conf.timezone = "Asia/Tokyo"
    spec = beat_cron(app, crontab(minute=0, hour=9))
    assert (spec.pattern, spec.timezone) == ("0 9 * * *", "Asia/Tokyo")
    first = cron.next_tick(
        spec.pattern, spec.timezone, datetime(2026, 4, 30, 12, tzinfo=UTC).timestamp()
    )
    assert datetime.fromtimestamp(first, UTC) == datetime(2026, 5, 1, 0, 0, tzinfo=UTC)  # 09:00 JST
    app.conf.timezone = ZoneInfo("America/New_York")  # a tzinfo works too
    assert beat_cron(app, crontab(minute=0)).timezone == "America/New_York"
    # intervals are clock-aligned in UTC, whatever the app's zone
    assert beat_cron(app, timedelta(hours=2)).timezone == "UTC"


def test_a_time_zone_runlane_cannot_read_is_an_error(app: celery.Celery) -> None:
    app.conf.timezone = "Mars/Olympus"
    with pytest.raises(InvalidOptionError, match=r"app\.conf\.timezone"):
        beat_cron(app, crontab())
    local = celery.Celery("beat-local", set_as_current=False)
    local.conf.enable_utc = False  # Celery reads crontabs in the machine's local time
    with pytest.raises(ConfigurationError, match=r"beat_schedule\['nightly'\].*set app.conf"):
        beat_cron(local, crontab(minute=0, hour=2), entry="nightly")
    assert beat_cron(local, 600).pattern == "*/10 * * * *"  # an interval needs no zone


# ---------------------------------------------------------------------- intervals → cron
INTERVALS = [
    (60, "* * * * *"),
    (120.0, "*/2 * * * *"),
    (timedelta(minutes=5), "*/5 * * * *"),
    (900, "*/15 * * * *"),
    (timedelta(seconds=1800), "*/30 * * * *"),
    (3600, "0 * * * *"),
    (timedelta(hours=2), "0 */2 * * *"),
    (timedelta(hours=6), "0 */6 * * *"),
    (timedelta(hours=12), "0 */12 * * *"),
    (timedelta(days=1), "0 0 * * *"),
    (schedule(run_every=timedelta(minutes=10)), "*/10 * * * *"),
    (schedule(run_every=timedelta(hours=8), relative=True), "0 */8 * * *"),
]


@pytest.mark.parametrize(("interval", "expected"), INTERVALS, ids=[e for _, e in INTERVALS])
def test_an_interval_that_divides_an_hour_or_a_day_becomes_cron(
    app: celery.Celery, interval: Any, expected: str
) -> None:
    spec = beat_cron(app, interval)
    assert (spec.pattern, spec.timezone) == (expected, "UTC")


@pytest.mark.parametrize(
    "interval",
    [
        30,  # sub-minute
        timedelta(seconds=90),
        timedelta(minutes=7),  # does not divide an hour
        45 * 60,
        timedelta(hours=5),  # does not divide a day
        timedelta(hours=36),
        timedelta(days=7),
        0,
        -60,
        float("inf"),
    ],
    ids=str,
)
def test_an_interval_cron_cannot_repeat_is_an_error(app: celery.Celery, interval: Any) -> None:
    with pytest.raises(InvalidOptionError) as err:
        beat_cron(app, interval, entry="poll")
    assert "beat_schedule['poll'].schedule" in str(err.value)


def test_the_interval_error_explains_cron(app: celery.Celery) -> None:
    with pytest.raises(InvalidOptionError) as err:
        beat_cron(app, timedelta(minutes=7), entry="poll")
    assert str(err.value) == (
        "invalid beat_schedule['poll'].schedule='420 seconds': runlane schedules are cron "
        "expressions (at most one tick a minute, aligned to the clock), so an interval must "
        "be a whole number of minutes dividing an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30), "
        "of hours dividing a day (1, 2, 3, 4, 6, 8, 12), or one day; use a crontab for any "
        "other times"
    )


def test_solar_and_custom_schedules_are_errors(app: celery.Celery) -> None:
    sunrise = solar.__new__(solar)  # (building one for real needs the ephem package)
    with pytest.raises(InvalidOptionError, match="solar schedules follow the sun"):
        beat_cron(app, sunrise, entry="dawn")

    class EveryOtherTick(crontab):
        def is_due(self, last_run_at: datetime) -> Any:
            return super().is_due(last_run_at)

    for custom in (EveryOtherTick(), "*/5 * * * *", True, None):
        with pytest.raises(InvalidOptionError, match="custom schedule classes"):
            beat_cron(app, custom, entry="odd")


# ---------------------------------------------------------------------- ids
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("expire-sessions", "beat/expire-sessions"),
        ("Send report every morning", "beat/Send-report-every-morning"),
        ("reports/daily:v2", "beat/reports/daily:v2"),
        ("  add (every 30s) !", "beat/add-every-30s"),
        ("é-ticket", "beat/ticket"),
    ],
)
def test_task_ids_of_entries(name: str, expected: str) -> None:
    assert beat_task_id(name) == expected


def test_task_id_edges() -> None:
    assert beat_task_id("x" * 300) == "beat/" + "x" * 123  # 128 characters
    assert beat_task_id("nightly", prefix="cron.") == "cron.nightly"
    with pytest.raises(InvalidOptionError, match="needs a letter or a digit"):
        beat_task_id("!!!")
    with pytest.raises(InvalidOptionError):
        beat_task_id("nightly", prefix="-bad/")


def test_entries_with_the_same_id_are_an_error_naming_both(app: celery.Celery) -> None:
    app.conf.beat_schedule = {"ok": entry(), "send report": entry(), "send-report": entry()}
    before = registry.ids()
    with pytest.raises(ConfigurationError) as err:
        import_beat_schedule(app)
    assert str(err.value) == (
        "beat_schedule entries 'send report' and 'send-report' both become the runlane task "
        "'beat/send-report': rename one of them"
    )
    assert registry.ids() == before  # nothing defined


def test_an_id_another_task_has_is_an_error(app: celery.Celery) -> None:
    @runlane.task(id="beat/nightly")
    def mine(payload: Any) -> None:
        return None

    app.conf.beat_schedule = {"nightly": entry()}
    with pytest.raises(
        ConfigurationError, match=r"beat_schedule\['nightly'\] becomes .* already has"
    ):
        import_beat_schedule(app)
    (task,) = import_beat_schedule(app, prefix="celery-beat/")
    assert task.id == "celery-beat/nightly"


# ---------------------------------------------------------------------- entries
def test_import_defines_a_scheduled_task_per_entry(
    app: celery.Celery, caplog: pytest.LogCaptureFixture
) -> None:
    app.conf.timezone = "Europe/Paris"
    app.conf.beat_schedule = {
        "digest": entry(
            "reports.send_digest",
            crontab(hour=7, minute=30, day_of_week="mon-fri"),
            kwargs={"audience": "staff"},
            options={"queue": "reports", "time_limit": 120, "expires": 3600},
        ),
        "poll": entry("jobs.poll", timedelta(minutes=5), args=[1, 2], relative=True),
    }
    with caplog.at_level(logging.WARNING, logger="runlane.celery"):
        digest, poll = import_beat_schedule(app, retry={"max_attempts": 1}, machine="micro")
        again = import_beat_schedule(app)  # the app module imported again: the same tasks
    assert [t.id for t in again] == ["beat/digest", "beat/poll"]
    assert digest.scheduled and digest.cron is not None
    assert (digest.cron.pattern, digest.cron.timezone) == ("30 7 * * 1-5", "Europe/Paris")
    assert (digest.queue_name, digest.max_duration, digest.machine) == ("reports", 120, "micro")
    assert poll.cron is not None and poll.cron.pattern == "*/5 * * * *"
    assert (poll.queue_name, poll.machine) == ("task/beat/poll", "micro")
    assert registry.get("beat/digest") is again[0]
    warnings = [r.getMessage() for r in caplog.records if r.name == "runlane.celery"]
    assert warnings == [
        f"runlane now fires the beat_schedule of Celery app {app.main!r} (tasks beat/digest, "
        "beat/poll): stop running `celery beat` for this app, or each tick runs twice"
    ]


def test_an_empty_schedule_defines_nothing(
    app: celery.Celery, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="runlane.celery"):
        assert import_beat_schedule(app) == []
    assert not caplog.records
    with pytest.raises(InvalidOptionError, match=r"celery\.Celery"):
        import_beat_schedule("proj")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("every minute", "invalid beat_schedule['bad']='every minute': an entry is a dict"),
        (entry(when="now"), "invalid beat_schedule['bad']=['when']: unknown key(s)"),
        ({"schedule": 60}, "invalid beat_schedule['bad'].task=None: must name a Celery task"),
        (entry("runlane.execute"), "is runlane's own task"),
        ({"task": "t"}, "has no schedule"),
        (entry(args="abc"), "invalid beat_schedule['bad'].args='abc': must be a list"),
        (entry(kwargs=[1]), "invalid beat_schedule['bad'].kwargs=[1]: must be a dict"),
        (entry(options=["queue"]), "invalid beat_schedule['bad'].options=['queue']"),
        (
            entry(options={"priority": 9}),
            "invalid beat_schedule['bad'].options.priority=9: runlane has no message priorities",
        ),
        (
            entry(options={"routing_key": "x"}),
            "invalid beat_schedule['bad'].options.routing_key='x': route runs with "
            "CeleryBroker(routes=...) instead",
        ),
        (
            entry(options={"headers": {}}),
            "invalid beat_schedule['bad'].options.headers={}: has no meaning in runlane "
            "(options it maps: ['expires', 'queue', 'time_limit'])",
        ),
        (
            entry(options={"expires": datetime(2030, 1, 1)}),
            "beat_schedule['bad'].options.expires=datetime.datetime(2030, 1, 1, 0, 0): must be "
            "a number of seconds",
        ),
        (entry(options={"expires": 0}), "options.expires=0: must be a number of seconds"),
        (entry(options={"queue": "no spaces"}), "invalid beat_schedule['bad']: queue='no spaces'"),
        (entry(options={"time_limit": 0}), "invalid beat_schedule['bad']: max_duration=0"),
        (entry(schedule=45), "invalid beat_schedule['bad'].schedule='45 seconds'"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, str) else None,
)
def test_an_entry_runlane_cannot_keep_is_an_error_and_nothing_is_defined(
    app: celery.Celery, value: Any, message: str
) -> None:
    app.conf.beat_schedule = {"good": entry(), "bad": value}
    before = registry.ids()
    with pytest.raises((InvalidOptionError, ConfigurationError)) as err:
        import_beat_schedule(app)
    assert message in str(err.value)
    assert registry.ids() == before


def test_task_options_are_checked_per_entry(app: celery.Celery) -> None:
    app.conf.beat_schedule = {"a": entry()}
    with pytest.raises(InvalidOptionError, match=r"beat_schedule\['a'\]: color"):
        import_beat_schedule(app, color="red")
    with pytest.raises(InvalidOptionError, match=r"beat_schedule\['a'\]: machine"):
        import_beat_schedule(app, machine="huge")
    assert registry.get("beat/a") is None


# ---------------------------------------------------------------------- runs (embedded)
@pytest.fixture
def clock(tmp_path: Path) -> Iterator[runlane.FakeClock]:
    fake = runlane.FakeClock(start=datetime(2026, 3, 6, 6, 55, tzinfo=UTC).timestamp())
    runlane.configure(store=f"sqlite:///{tmp_path}/runlane.db", clock=fake)
    yield fake
    old = runtime.install(None)
    if old is not None:
        old.close()


def fire_next(clock: runlane.FakeClock, task_id: str, late: float = 0.0) -> runlane.Run:
    """Move the clock ``late`` seconds past the next tick of ``task_id``'s schedule and run
    what is due; the run of that tick."""
    run_until_idle(timeout=30)  # as a starting worker: the declared schedules are written
    sched = runlane.schedules.retrieve(ops.declarative_id(task_id))
    assert sched.next_run is not None
    clock.set(sched.next_run.timestamp() + late)
    run_until_idle(timeout=30)
    (run,) = runlane.runs.list(schedule=sched.id).data
    return run


def test_a_tick_calls_the_celery_task_with_the_entrys_args_and_kwargs(
    app: celery.Celery, clock: runlane.FakeClock
) -> None:
    calls: list[Any] = []

    @app.task(name="reports.send_digest", bind=True, shared=False)
    def send_digest(self: celery.Task, audience: str, limit: int = 10) -> dict[str, Any]:
        calls.append((audience, limit, self.request.id, list(self.request.args)))
        return {"audience": audience, "limit": limit}

    app.conf.timezone = "Europe/Paris"
    app.conf.beat_schedule = {
        "digest": entry(
            "reports.send_digest", crontab(hour=8, minute=0), args=["staff"], kwargs={"limit": 5}
        )
    }
    import_beat_schedule(app)
    run = fire_next(clock, "beat/digest")
    assert run.status == "COMPLETED" and run.output == {"audience": "staff", "limit": 5}
    assert calls == [("staff", 5, run.id, ["staff"])]  # self.request describes the run
    assert run.payload["timestamp"] == "2026-03-06T07:00:00Z"  # 08:00 in Paris
    assert send_digest.delay  # the Celery task is unchanged


def test_a_tick_of_an_entry_naming_a_runlane_task_triggers_a_run_of_it(
    app: celery.Celery, clock: runlane.FakeClock
) -> None:
    @runlane.task(id="rebuild-search-index")
    def rebuild(payload: dict[str, Any]) -> dict[str, Any]:
        return {"rebuilt": payload}

    app.conf.beat_schedule = {
        "rebuild": entry(
            "rebuild-search-index", 3600, kwargs={"full": True}, options={"expires": 600}
        )
    }
    import_beat_schedule(app)
    run = fire_next(clock, "beat/rebuild")
    assert run.status == "COMPLETED" and run.output["task"] == "rebuild-search-index"
    child = runlane.runs.retrieve(run.output["triggered"])
    assert child.status == "COMPLETED" and child.output == {"rebuilt": {"full": True}}
    assert child.parent_id == run.id and child.ttl == "10m"  # expires


def test_expires_skips_a_run_that_starts_too_late(
    app: celery.Celery, clock: runlane.FakeClock
) -> None:
    calls: list[int] = []

    @app.task(name="jobs.poll", shared=False)
    def poll() -> None:
        calls.append(1)

    app.conf.beat_schedule = {
        "poll": entry("jobs.poll", crontab(minute=0), options={"expires": 600})
    }
    import_beat_schedule(app)
    run = fire_next(clock, "beat/poll", late=700)  # the workers were down for 700 s
    assert run.status == "COMPLETED" and run.output["expired"] is True
    assert calls == []


def test_a_target_that_is_nowhere_fails_the_run_without_retries(
    app: celery.Celery, clock: runlane.FakeClock
) -> None:
    app.conf.beat_schedule = {
        "ghost": entry("jobs.ghost"),
        "positional": entry("rebuild-search-index", args=[1]),
    }

    @runlane.task(id="rebuild-search-index")
    def rebuild(payload: Any) -> None:
        return None

    import_beat_schedule(app)
    ghost = fire_next(clock, "beat/ghost")
    assert ghost.status == "FAILED" and ghost.attempt_count == 1
    assert "'jobs.ghost' is neither a Celery task of this app nor a runlane task" in (
        ghost.error.message
    )
    positional = runlane.runs.list(schedule=ops.declarative_id("beat/positional")).data[0]
    assert positional.status == "FAILED"
    assert "takes one payload, the entry's kwargs; it cannot take args" in positional.error.message


# ---------------------------------------------------------------------- a real worker
def test_a_celery_worker_fires_the_imported_beat_schedule(tmp_path: Path, redis_url: str) -> None:
    """``celery -A examples.celery_beat worker`` syncs the imported schedules as it starts and
    its engine loop fires a due tick: the Celery task gets the entry's args and kwargs, and
    the runlane task an entry names gets a run."""
    prefix, store_prefix = unique_prefix(), unique_prefix()
    store_url = f"{redis_url}?prefix={store_prefix}"
    (tmp_path / "beat_test_celeryconfig.py").write_text(
        textwrap.dedent(
            f"""
            from examples.celery_beat.celeryconfig import *  # noqa: F403

            broker_url = {redis_url!r}
            broker_transport_options = {{"global_keyprefix": "{prefix}:", "polling_interval": 0.2}}
            task_default_queue = "{prefix}.celery"
            task_default_exchange = "{prefix}"
            control_exchange = "{prefix}"
            """
        )
    )
    repo = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "CELERY_CONFIG_MODULE": "beat_test_celeryconfig",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo)]),
        "RUNLANE_STORE_URL": store_url,
        "RUNLANE_CELERY_QUEUE": prefix,
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        sys.executable, "-m", "celery", "-A", "examples.celery_beat", "worker",
        "-P", "threads", "-c", "2", "--loglevel=INFO",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    worker = FrameworkWorker(
        argv,
        env,
        tmp_path / "worker.log",
    )
    rt = runlane.configure(store=store_url)
    try:
        store = rt.store
        ids = {
            task: ops.declarative_id(task)
            for task in ("beat/expire-sessions", "beat/rebuild-search-index")
        }

        def synced() -> bool:
            return all(store.get_schedule(sid) is not None for sid in ids.values())

        try:
            wait_for(synced, 60, 0.2, message="the worker to write the schedules")
        except AssertionError:
            raise AssertionError(f"no schedules:\n{worker.output()[-4000:]}") from None
        row = store.get_schedule(ids["beat/expire-sessions"])
        assert (row.cron, row.timezone) == ("* * * * *", "Europe/Paris")
        for sid in ids.values():  # due now rather than at the next minute
            row = store.get_schedule(sid)
            due = dataclasses.replace(row, next_at=time.time() - 1, generation=None)
            store.save_schedule(due, now=time.time())

        def completed(sid: str) -> runlane.Run | None:
            runs = runlane.runs.list(schedule=sid, status="COMPLETED").data
            return runs[-1] if runs else None

        try:
            run = wait_for(
                lambda: completed(ids["beat/expire-sessions"]), 60, 0.2, message="the tick"
            )
            rebuild = wait_for(lambda: completed(ids["beat/rebuild-search-index"]), 60, 0.2)
        except AssertionError:
            raise AssertionError(f"no run:\n{worker.output()[-4000:]}") from None
        assert run.output["older_than_days"] == 30 and run.output["dry_run"] is False
        assert run.output["pid"] == worker.proc.pid  # called in the worker, in the run
        child = wait_final(rebuild.output["triggered"], timeout=60)
        assert child.status == "COMPLETED" and child.output == {"rebuilt": True, "full": True}
        assert "stop running `celery beat` for this app" in worker.output()
    finally:
        worker.stop()
        old = runtime.install(None)
        if old is not None:
            old.close()
        delete_redis_prefix(redis_url, prefix)
        delete_redis_prefix(redis_url, store_prefix)
