"""runlane on Redis against raw Celery, raw Dramatiq and raw huey on the same Redis.

    python benchmarks/bench_redis.py [--redis-url URL] [--runs N] [--workers 2] [--concurrency C]
        [--latency-samples N] [--idle-samples N] [--children N] [--systems runlane,celery,...]
        [--celery-pool threads|prefork] [--environment prod|dev] [--timeout S] [--profile DIR]

For every system: ``--workers`` worker processes started with the system's own command
(``runlane worker``, ``celery -A … worker``, ``dramatiq …``, ``huey_consumer …``) on no-op tasks,
then, with the workers up and idle:

- round trip: one task at a time, enqueue → completion observed (p50/p99), back to back and
  after 100 ms of idleness; a raw task RPUSHes a token the benchmark waits for in BLPOP, a
  runlane run is seen COMPLETED through ``runs.subscribe_to_run``: no polling delay;
- trigger: N enqueues one by one, then N in batches (runlane ``batch_trigger`` of 500, Celery
  ``group`` of 500, Dramatiq ``group`` of 500, huey has no batch API: an enqueue loop), into a
  staging list of the same Redis (the library's own enqueue path, through a second client whose
  key prefix differs);
- drain: the 2 x N staged tasks are moved onto the queue the workers consume in one atomic Lua
  call, and the clock runs until the last completion is counted (a raw task INCRs a Redis
  counter; runlane counts its COMPLETED runs in the store), with Redis's own counters over the
  drain (commands, Lua calls and CPU per task; server-wide);
- runlane only: ``batch_trigger_and_wait`` of ``--children`` no-op children from one parent
  task, from the parent's trigger to the parent COMPLETED.

A system whose package is not installed is skipped with a message. The ratios are runlane ÷ the
raw system, all measured in the same run. Keys live in their own prefixes (default database 15)
and are deleted afterwards (SCAN + DEL of this run's keys only). ``--profile DIR`` attaches
py-spy to the runlane workers during the drain. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
import redis

import runlane
from runlane.core import runtime as _runtime
from runlane.core.host import ENGINE_LEASE

BATCH = 500  # runlane's batch_trigger limit; the raw systems' groups use the same size
IDLE_GAP = 0.1  # seconds of idleness before each "after idle" round trip
SYSTEMS = ("runlane", "celery", "dramatiq", "huey")

# ---------------------------------------------------------------------------- task modules
# Written into a temporary folder, imported by the worker processes (their folder is the cwd
# and on PYTHONPATH) and by this process. Every setting comes from RLBENCH_* variables.

COMMON = '''"""Shared by the benchmark's task modules: what a raw no-op task records in Redis."""
import os

import redis

URL = os.environ["RLBENCH_REDIS_URL"]
CTL = os.environ["RLBENCH_CTL"]  # the benchmark's own keys
_client = redis.Redis.from_url(URL)


def record(token=None):
    """Count a completion (drain), say which worker process is up (token "ready"), or signal
    the end of one round trip to the benchmark blocked in BLPOP (any other token)."""
    if token is None:
        _client.incr(CTL + "done")
    elif token == "ready":
        _client.pipeline().sadd(CTL + "ready", os.environ.get("RLBENCH_WORKER", "?")).incr(
            CTL + "probes"
        ).execute()
    else:
        _client.rpush(CTL + "rt:" + token, 1)
'''

RUNLANE_MODULE = '''"""runlane tasks. Workers:
RUNLANE_STORE_URL=redis://...?prefix=... RUNLANE_BROKER=redis \\
    runlane worker rlbench_runlane --concurrency C"""
import runlane

from rlbench_common import record

# store and broker from RUNLANE_STORE_URL / RUNLANE_BROKER; one batch_trigger_and_wait call
# of 10,000 children needs a larger batch (the default limit is 500 items)
runlane.configure(limits={"batch_items": 100_000})


@runlane.task(id="rlbench-noop", retry={"max_attempts": 1})
def noop(payload):
    return None


@runlane.task(id="rlbench-ready", retry={"max_attempts": 1})
def ready(payload):
    record("ready")


@runlane.task(id="rlbench-fanout", retry={"max_attempts": 1})
def fanout(payload):
    result = noop.batch_trigger_and_wait([{"payload": i} for i in range(payload["children"])])
    return sum(1 for run in result.runs if run.ok)
'''

CELERY_MODULE = '''"""Celery tasks. Workers: celery -A rlbench_celery worker --pool threads -c C"""
import os

from celery import Celery

from rlbench_common import URL, record


def make(prefix, current=True):
    app = Celery("rlbench", broker=URL, set_as_current=current)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        task_default_queue="rlbench",
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="rlbench.noop", shared=False)
    def noop(token=None):
        record(token)

    return app, noop


app, noop = make(os.environ["RLBENCH_PREFIX"])
'''

DRAMATIQ_MODULE = '''"""Dramatiq actors. Workers: dramatiq rlbench_dramatiq -p 1 -t C"""
import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from rlbench_common import URL, record


def make(namespace):
    broker = RedisBroker(url=URL, namespace=namespace)

    @dramatiq.actor(actor_name="rlbench_noop", queue_name="rlbench", max_retries=0, broker=broker)
    def noop(token=None):
        record(token)

    return broker, noop


broker, noop = make(os.environ["RLBENCH_PREFIX"])
dramatiq.set_broker(broker)
'''

HUEY_MODULE = '''"""huey tasks. Workers: huey_consumer rlbench_huey.huey -w C -k thread -q"""
import os

from huey import RedisHuey

from rlbench_common import URL, record


def make(name):
    huey = RedisHuey(name, url=URL)

    @huey.task(name="rlbench.noop")
    def noop(token=None):
        record(token)

    return huey, noop


huey, noop = make(os.environ["RLBENCH_PREFIX"])
'''

MODULES = {
    "rlbench_common": COMMON,
    "rlbench_runlane": RUNLANE_MODULE,
    "rlbench_celery": CELERY_MODULE,
    "rlbench_dramatiq": DRAMATIQ_MODULE,
    "rlbench_huey": HUEY_MODULE,
}

# Moves staged tasks onto the live queue in one atomic call. KEYS: (staged, live) pairs. Hashes
# (Dramatiq's message bodies) are merged first, lists appended in order; the staged keys go.
RELEASE = """
local moved = 0
for pass = 1, 2 do
  for i = 1, #KEYS, 2 do
    local src, dst = KEYS[i], KEYS[i + 1]
    local kind = redis.call("TYPE", src).ok
    if pass == 1 and kind == "hash" then
      local flat = redis.call("HGETALL", src)
      for j = 1, #flat, 1000 do
        redis.call("HSET", dst, unpack(flat, j, math.min(j + 999, #flat)))
      end
      redis.call("DEL", src)
    elseif pass == 2 and kind == "list" then
      local items = redis.call("LRANGE", src, 0, -1)
      for j = 1, #items, 1000 do
        redis.call("RPUSH", dst, unpack(items, j, math.min(j + 999, #items)))
      end
      moved = moved + #items
      redis.call("DEL", src)
    end
  end
end
return moved
"""


# ---------------------------------------------------------------------------- plumbing


class BenchError(RuntimeError):
    """A system could not be measured (its workers did not start, a wait timed out...)."""


def executable(name: str) -> str:
    """A console script of this interpreter's environment (not a shim of another one)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.002
) -> float:
    """Poll ``check`` until true; returns the perf_counter() at which it was."""
    deadline = time.perf_counter() + timeout
    while True:
        if check():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def delete_keys(client: redis.Redis, pattern: str) -> int:
    """Delete the keys matching ``pattern`` (SCAN, never FLUSHDB)."""
    deleted = 0
    for batch in h.chunks(list(client.scan_iter(match=pattern, count=1000)), 1000):
        deleted += client.delete(*batch)
    return deleted


@dataclass
class Ctx:
    url: str
    folder: Path
    tag: str  # unique to this invocation: every key created contains "rlbench", then the tag
    client: redis.Redis
    args: argparse.Namespace

    def prefix(self, system: str, staging: bool = False) -> str:
        return f"rlbench-{self.tag}-{system}{'-staging' if staging else ''}"

    def ctl(self, system: str) -> str:
        return f"rlbench-{self.tag}-{system}-ctl:"

    def clean(self) -> None:
        """Delete every key this invocation created (huey strips the dashes of its name)."""
        for pattern in (f"*rlbench-{self.tag}*", f"*rlbench{self.tag}*"):
            delete_keys(self.client, pattern)


@dataclass
class Result:
    values: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None


# ---------------------------------------------------------------------------- systems


class System:
    """One queue system: its worker command, its enqueue paths, how completions are counted."""

    name = ""
    package = ""
    module = ""
    pip = ""  # the pip requirement, when not the package's name
    single_api = ""
    batch_api = ""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.ctl = ctx.ctl(self.name)
        self.live = ctx.prefix(self.name)
        self.staged = ctx.prefix(self.name, staging=True)

    def missing(self) -> str | None:
        if importlib.util.find_spec(self.package) is None:
            return (
                f"{self.package} is not installed (pip install {self.pip or self.package}); skipped"
            )
        return None

    def env(self) -> dict[str, str]:
        return {"RLBENCH_PREFIX": self.live}

    def command(self, concurrency: int, index: int) -> list[str]:
        raise NotImplementedError

    def setup(self) -> None:
        """Import the task module (the live copy) and build the staging copy."""

    def probe_ready(self) -> None:
        raise NotImplementedError

    def round_trip(self, token: str, timeout: float) -> float:
        raise NotImplementedError

    def trigger_single(self, n: int) -> None:
        raise NotImplementedError

    def trigger_batch(self, n: int) -> None:
        raise NotImplementedError

    def staged_pairs(self) -> list[tuple[str, str]]:
        """(staged key, live key) pairs: by prefix, the lists and hashes of the staging copy."""
        client = self.ctx.client
        pairs = []
        for key in client.scan_iter(match=f"{self.staged}*", count=1000):
            name = key.decode()
            if client.type(key) in (b"list", b"hash"):
                pairs.append((name, self.live + name[len(self.staged) :]))
        return pairs

    def completed(self) -> int:
        return int(self.ctx.client.get(self.ctl + "done") or 0)

    def verify(self) -> None:
        """Raise if a task failed (raw tasks cannot: they only count themselves)."""

    def before_workers(self) -> None:
        """Called before the worker processes start."""

    def before_release(self) -> None:
        """Called just before the staged tasks are moved onto the live queue."""

    def after_release(self) -> None:
        """Called just after they were moved (inside the timed drain)."""

    def close(self) -> None:
        pass


def _raw_round_trip(system: System, send: Callable[[str], Any], token: str, timeout: float):
    """Enqueue, then block in BLPOP until the task pushes its token: no polling delay."""
    key = system.ctl + "rt:" + token
    started = time.perf_counter()
    send(token)
    if system.ctx.client.blpop([key], timeout=timeout) is None:
        raise BenchError(f"{system.name}: no round trip after {timeout:.0f} s")
    return time.perf_counter() - started


class CelerySystem(System):
    name = package = "celery"
    module = "rlbench_celery"
    single_api = "noop.delay()"
    batch_api = f"group(noop.s() x{BATCH}).apply_async()"

    def command(self, concurrency: int, index: int) -> list[str]:
        pool = self.ctx.args.celery_pool
        return [
            executable("celery"),
            "-A",
            self.module,
            "worker",
            "--pool",
            pool,
            "-c",
            str(concurrency),
            "-n",
            f"rlbench{index}@%h",
        ]

    def setup(self) -> None:
        mod = importlib.import_module(self.module)
        self.app, self.noop = mod.app, mod.noop
        self.staging_app, self.staging_noop = mod.make(self.staged, current=False)

    def probe_ready(self) -> None:
        self.noop.delay("ready")

    def round_trip(self, token: str, timeout: float) -> float:
        return _raw_round_trip(self, self.noop.delay, token, timeout)

    def trigger_single(self, n: int) -> None:
        for _ in range(n):
            self.staging_noop.delay()

    def trigger_batch(self, n: int) -> None:
        from celery import group

        for chunk in h.chunks(range(n), BATCH):
            group(self.staging_noop.s() for _ in chunk).apply_async()

    def close(self) -> None:
        for app in (self.app, self.staging_app):
            with contextlib.suppress(Exception):
                app.close()


class DramatiqSystem(System):
    name = package = "dramatiq"
    module = "rlbench_dramatiq"
    single_api = "noop.send()"
    batch_api = f"group(noop.message() x{BATCH}).run()"
    pip = "'dramatiq[redis]'"

    def command(self, concurrency: int, index: int) -> list[str]:
        return [executable("dramatiq"), self.module, "-p", "1", "-t", str(concurrency)]

    def setup(self) -> None:
        mod = importlib.import_module(self.module)
        self.noop = mod.noop
        self.staging_broker, self.staging_noop = mod.make(self.staged)

    def probe_ready(self) -> None:
        self.noop.send("ready")

    def round_trip(self, token: str, timeout: float) -> float:
        return _raw_round_trip(self, self.noop.send, token, timeout)

    def trigger_single(self, n: int) -> None:
        for _ in range(n):
            self.staging_noop.send()

    def trigger_batch(self, n: int) -> None:
        import dramatiq

        for chunk in h.chunks(range(n), BATCH):
            messages = [self.staging_noop.message() for _ in chunk]
            dramatiq.group(messages, broker=self.staging_broker).run()


class HueySystem(System):
    name = package = "huey"
    module = "rlbench_huey"
    single_api = "noop()"
    batch_api = "noop() in a loop (no batch API)"

    def command(self, concurrency: int, index: int) -> list[str]:
        return [
            executable("huey_consumer"),
            f"{self.module}.huey",
            "-w",
            str(concurrency),
            "-k",
            "thread",
            "-q",
        ]

    def setup(self) -> None:
        mod = importlib.import_module(self.module)
        self.huey, self.noop = mod.huey, mod.noop
        self.staging_huey, self.staging_noop = mod.make(self.staged)

    def probe_ready(self) -> None:
        self.noop("ready")

    def round_trip(self, token: str, timeout: float) -> float:
        return _raw_round_trip(self, self.noop, token, timeout)

    def trigger_single(self, n: int) -> None:
        for _ in range(n):
            self.staging_noop()

    trigger_batch = trigger_single

    def staged_pairs(self) -> list[tuple[str, str]]:
        return [(self.staging_huey.storage.queue_key, self.huey.storage.queue_key)]


class RunlaneSystem(System):
    name = package = "runlane"
    module = "rlbench_runlane"
    single_api = "noop.trigger()"
    batch_api = f"noop.batch_trigger(x{BATCH})"

    owner = "rlbench-staging"

    def store_url(self) -> str:
        sep = "&" if "?" in self.ctx.url else "?"
        return f"{self.ctx.url}{sep}prefix={self.live}"

    def env(self) -> dict[str, str]:
        return {
            "RUNLANE_STORE_URL": self.store_url(),
            "RUNLANE_BROKER": "redis",
            "RUNLANE_ENV": self.ctx.args.environment,
        }

    def command(self, concurrency: int, index: int) -> list[str]:
        # -l warning: no console line per run, as raw Celery's workers (default WARNING) print
        # none; at runlane's default INFO the two lines a run cost about a fifth of the drain
        return [
            executable("runlane"), "worker", self.module, "--concurrency", str(concurrency),
            "-l", "warning",
        ]  # fmt: skip

    def setup(self) -> None:
        os.environ.update(self.env())
        self.mod = importlib.import_module(self.module)
        self.rt = self._configure(staging=False)

    def _configure(self, *, staging: bool) -> _runtime.Runtime:
        """The runtime of this process: the live broker, or (staging) a broker whose lists
        have the staging prefix; the store is the workers' store either way."""
        from runlane.backends.redis import RedisBroker

        env = self.ctx.args.environment
        broker: Any = RedisBroker(self.ctx.url, env, prefix=self.staged) if staging else "redis"
        rt = runlane.configure(
            store=self.store_url(),
            broker=broker,
            environment=env,
            limits={"batch_items": 100_000},
        )
        if staging:  # admission pushes onto the staging lists, as it does onto the live ones
            rt.store.direct = broker.prefix  # type: ignore[attr-defined]
        return rt

    def staged_pairs(self) -> list[tuple[str, str]]:
        """The staged broker lists (``bq:<task>``); the wake-up tokens are sent after them."""
        return [pair for pair in super().staged_pairs() if ":bq:" in pair[0]]

    def after_release(self) -> None:
        """Wake the idle workers as admission does (a token on each task's ``sig:`` list)."""
        live = f"{self.live}:{{{self.ctx.args.environment}}}:"
        pipe = self.ctx.client.pipeline(transaction=False)
        for key in self.ctx.client.scan_iter(match=f"{live}bq:*", count=1000):
            pipe.rpush(live + "sig:" + key.decode()[len(live) + 3 :], *[1] * 8)
        pipe.execute()

    def before_workers(self) -> None:
        # Staged runs wait admitted in the staging lists; the engine leader's redelivery loop
        # would send those older than redeliver_after to the live lists. So this process holds
        # the engine lease until the drain starts: the workers elect their leader then, as
        # they would after a leader's restart.
        if not self.rt.store.acquire_lease(ENGINE_LEASE, self.owner, ttl=3600, now=self.rt.now()):
            raise BenchError("could not take the engine lease of a fresh store")

    def before_release(self) -> None:
        self.rt.store.release_lease(ENGINE_LEASE, self.owner)

    @contextlib.contextmanager
    def staging(self) -> Iterator[None]:
        self.rt = self._configure(staging=True)
        try:
            yield
        finally:
            self.rt = self._configure(staging=False)

    def probe_ready(self) -> None:
        self.mod.ready.trigger()

    def round_trip(self, token: str, timeout: float) -> float:
        """Trigger, then wait for the run's COMPLETED through ``runs.subscribe_to_run`` (runlane's
        realtime, which follows the store's ``feed`` stream with a blocking XREAD): no polling
        delay, and the subscription's own latency is part of the figure."""
        started = time.perf_counter()
        handle = self.mod.noop.trigger()
        subscription = runlane.runs.subscribe_to_run(handle)
        watchdog = threading.Timer(timeout, subscription.close)  # ends the loop below
        watchdog.start()
        try:
            for run in subscription:
                if run.status == runlane.RunStatus.COMPLETED:
                    return time.perf_counter() - started
                if run.is_completed:  # final, not COMPLETED
                    raise BenchError(f"round-trip run {handle.id} ended {run.status}")
        finally:
            watchdog.cancel()
            subscription.close()
        raise BenchError(f"runlane: no round trip after {timeout:.0f} s")

    def trigger_single(self, n: int) -> None:
        with self.staging():
            for _ in range(n):
                self.mod.noop.trigger()

    def trigger_batch(self, n: int) -> None:
        with self.staging():
            for chunk in h.chunks(range(n), BATCH):
                self.mod.noop.batch_trigger([{"payload": i} for i in chunk])

    def completed(self) -> int:
        """COMPLETED runs (one ZCARD); ``verify`` checks that no run ended otherwise."""
        counts = self.rt.store.count_runs([runlane.RunStatus.COMPLETED])
        return counts.get(runlane.RunStatus.COMPLETED.value, 0)

    def verify(self) -> None:
        _, others = h.count_final(self.rt)
        if others:
            raise BenchError(f"{others} runlane run(s) ended in a status other than COMPLETED")

    def fanout(self, children: int, timeout: float) -> float:
        started = time.perf_counter()
        handle = self.mod.fanout.trigger({"children": children})
        runs = runlane.runs

        def final() -> bool:
            return runs.retrieve(handle).is_completed

        wait_for(final, timeout, f"the parent of {children:,} children", interval=0.005)
        seconds = time.perf_counter() - started
        run = runs.retrieve(handle)
        if run.status != runlane.RunStatus.COMPLETED or run.output != children:
            raise BenchError(f"fan-out parent ended {run.status} with output {run.output!r}")
        return seconds

    def close(self) -> None:
        old = _runtime.install(None)
        if old is not None:
            old.close()


CLASSES: dict[str, type[System]] = {
    "runlane": RunlaneSystem,
    "celery": CelerySystem,
    "dramatiq": DramatiqSystem,
    "huey": HueySystem,
}

# ---------------------------------------------------------------------------- workers


class Workers:
    """``count`` worker processes of one system, each in its own process group."""

    def __init__(self, system: System, count: int, concurrency: int) -> None:
        self.system = system
        self.count = count
        self.concurrency = concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> None:
        ctx = self.system.ctx
        for i in range(1, self.count + 1):
            env = {
                **os.environ,
                **self.system.env(),
                "RLBENCH_REDIS_URL": ctx.url,
                "RLBENCH_CTL": self.system.ctl,
                "RLBENCH_WORKER": str(i),
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ctx.folder), os.environ.get("PYTHONPATH")) if p
                ),
                "PYTHONUNBUFFERED": "1",
            }
            log = ctx.folder / f"{self.system.name}-worker-{i}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    self.system.command(self.concurrency, i),
                    cwd=ctx.folder,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.procs.append(proc)
            self.logs.append(log)

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise BenchError(
                    f"{self.system.name} worker exited with {proc.returncode}:\n{self.tail(log)}"
                )

    @staticmethod
    def tail(log: Path, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, timeout: float) -> None:
        """Each process has executed a task (the ``ready`` set names every one), then every
        probe sent has run, so the measurements start from empty queues."""
        client = self.system.ctx.client
        key = self.system.ctl + "ready"
        deadline = time.monotonic() + timeout
        sent = 0
        while client.scard(key) < self.count:
            self.check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(self.tail(log) for log in self.logs)
                raise BenchError(f"{self.system.name} workers not ready after {timeout} s\n{logs}")
            for _ in range(self.count * self.concurrency):
                self.system.probe_ready()
                sent += 1
            time.sleep(0.1)
        wait_for(
            lambda: int(client.get(self.system.ctl + "probes") or 0) >= sent,
            timeout,
            f"the {sent} readiness probes of {self.system.name}",
            interval=0.01,
        )

    def stop(self, grace: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the group this script created
                proc.wait()
        # children left in a group (dramatiq's worker process, celery's prefork pool)
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs = []


# ---------------------------------------------------------------------------- profiling


# ---------------------------------------------------------------------------- one system


def redis_counters(client: redis.Redis) -> dict[str, float]:
    """Server-wide counters (every client of this Redis counts): commands processed (those run
    inside Lua scripts included), script calls, and the CPU of Redis's main thread in µs."""
    info = client.info("all")
    cpu = [
        info.get(f"used_cpu_{k}_main_thread", info.get(f"used_cpu_{k}", 0)) for k in ("user", "sys")
    ]
    scripts = sum(
        info.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("eval", "evalsha", "fcall")
    )
    return {
        "commands": float(info["total_commands_processed"]),
        "scripts": float(scripts),
        "cpu_us": float(sum(cpu)) * 1e6,
    }


def measure(system: System, args: argparse.Namespace, profiler: h.Profiler | None) -> Result:
    result = Result()
    system.setup()
    workers = Workers(system, args.workers, args.concurrency)
    try:
        system.before_workers()
        workers.start()
        workers.wait_ready(args.timeout)
        # round trips, back to back then after idleness
        for label, samples, gap in (
            ("rt", args.latency_samples, 0.0),
            ("idle", args.idle_samples, IDLE_GAP),
        ):
            times = []
            for i in range(samples + (5 if gap == 0 else 0)):
                if gap:
                    time.sleep(gap)
                took = system.round_trip(f"{label}{i}", args.timeout)
                if gap or i >= 5:  # 5 warm-ups back to back
                    times.append(took * 1000)
            if times:
                result.values[f"{label}_p50"] = h.percentile(times, 50)
                result.values[f"{label}_p99"] = h.percentile(times, 99)
        # N one by one then N in batches, into the staging lists; then one drain of both
        for case, trigger in (("single", system.trigger_single), ("batch", system.trigger_batch)):
            with h.Stopwatch() as sw:
                trigger(args.runs)
            result.values[case] = h.rate(args.runs, sw.seconds)
            result.details[case] = f"{args.runs:,} in {sw.seconds:.2f} s"
        workers.check_alive()
        expected = 2 * args.runs
        base = system.completed()
        pairs = system.staged_pairs()
        profiling = (
            profiler.attached([p.pid for p in workers.procs], "runlane-drain")
            if profiler is not None and isinstance(system, RunlaneSystem)
            else contextlib.nullcontext()
        )
        with profiling:
            system.before_release()
            before = redis_counters(system.ctx.client)
            started = time.perf_counter()
            keys = [k for pair in pairs for k in pair]
            moved = system.ctx.client.eval(RELEASE, len(keys), *keys)
            system.after_release()
            if moved != expected:
                raise BenchError(f"{system.name}: {moved} tasks staged, {expected} expected")
            polls = 0

            def drained() -> bool:
                nonlocal polls
                polls += 1
                return system.completed() - base >= expected

            done = wait_for(drained, args.timeout, f"{system.name} to drain {expected:,} tasks")
        after = redis_counters(system.ctx.client)
        after["commands"] -= polls + 1  # this process's own polls (one command each) and INFO
        after["scripts"] -= 1  # the release
        for key, value in after.items():
            result.values[f"redis_{key}"] = (value - before[key]) / expected
        system.verify()
        workers.check_alive()
        result.values["drain"] = h.rate(expected, done - started)
        result.details["drain"] = f"{expected:,} in {done - started:.2f} s"
        if isinstance(system, RunlaneSystem) and args.children:
            seconds = system.fanout(args.children, args.timeout)
            result.values["fanout_s"] = seconds
            result.values["fanout_rate"] = h.rate(args.children, seconds)
    finally:
        workers.stop()
        system.close()
    return result


# ---------------------------------------------------------------------------- report

ROWS = [  # key, label, unit, higher is better
    ("single", "trigger one by one", "runs/s", True),
    ("batch", f"batch trigger ({BATCH} a call)", "runs/s", True),
    ("drain", "drain of 2 x runs, staged → all done", "runs/s", True),
    ("rt_p50", "round trip p50, back to back", "ms", False),
    ("rt_p99", "round trip p99, back to back", "ms", False),
    ("idle_p50", f"round trip p50, after {IDLE_GAP * 1000:.0f} ms idle", "ms", False),
    ("idle_p99", f"round trip p99, after {IDLE_GAP * 1000:.0f} ms idle", "ms", False),
    ("redis_commands", "drain: Redis commands a task (incl. in Lua)", "cmds", False),
    ("redis_scripts", "drain: Lua script calls a task", "cmds", False),
    ("redis_cpu_us", "drain: Redis CPU a task", "µs", False),
]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "runs/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "cmds":
        return f"{value:,.1f}"
    if unit == "µs":
        return f"{value:,.0f} µs"
    return f"{value:,.2f}{unit}"


def report(
    results: dict[str, Result],
    args: argparse.Namespace,
    ctx: Ctx,
    commands: dict[str, str],
    seconds: float,
    command: str,
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=200)
    redis_version = ctx.client.info("server").get("redis_version", "?")
    versions = {}
    for name in ("celery", "kombu", "dramatiq", "huey", "redis"):
        with contextlib.suppress(Exception):
            versions[name] = importlib.metadata.version(name)
    console.print(
        "[bold]runlane vs raw Celery, Dramatiq and huey on one Redis — "
        f"{args.workers} worker processes each, no-op tasks[/bold]"
    )
    console.print(f"  [dim]command:[/dim] {command}")
    settings = {
        "redis": f"{redis_version} at {ctx.url}",
        "runs": f"{args.runs:,}",
        "workers": args.workers,
        "concurrency": args.concurrency,
        "environment": args.environment,
        "total time": f"{seconds:.0f} s",
    }
    for info in (h.machine_info(), settings, versions):
        console.print("  " + "  ".join(f"[dim]{k}:[/dim] {v}" for k, v in info.items()))
    console.print("  [dim]worker commands (each started --workers times) and enqueue calls:[/dim]")
    for name, text in commands.items():
        console.print(f"    {name}: {text}", soft_wrap=True)
    for name, res in results.items():
        if res.skipped:
            console.print(f"  [yellow]{name}: {res.skipped}[/yellow]")

    raws = [s for s in SYSTEMS[1:] if s in results and not results[s].skipped]
    measured = [s for s in SYSTEMS if s in results and not results[s].skipped]
    table = Table(show_lines=False)
    table.add_column("measurement")
    for name in measured:
        table.add_column(name, justify="right", style="bold" if name == "runlane" else None)
    rl = results.get("runlane")
    has_rl = rl is not None and not rl.skipped
    if has_rl:
        for name in raws:
            table.add_column(f"runlane ÷ {name}", justify="right", style="cyan")
    for key, label, unit, _higher in ROWS:
        if not any(key in results[s].values for s in measured):
            continue
        row = [label]
        row += [_fmt(results[s].values.get(key), unit) for s in measured]
        if has_rl:
            for name in raws:
                a, b = rl.values.get(key), results[name].values.get(key)
                tiny = b is not None and unit == "cmds" and b < 0.05  # e.g. no Lua at all
                row.append("-" if a is None or not b or tiny else f"{h.ratio(a, b):.2f}x")
        table.add_row(*row)
    console.print(table)
    console.print(
        "  [dim]ratios: runlane ÷ raw; above 1 runlane is faster for runs/s rows, slower for ms "
        "rows and costlier for the Redis rows. Trigger and batch trigger write into staging "
        "lists; the drain moves them onto the live queues in one Lua call and times until the "
        "last completion is counted. The Redis rows are server-wide counters over the drain "
        "(this script's own polls subtracted): exact only when nothing else uses this "
        "Redis.[/dim]"
    )
    if has_rl and "fanout_s" in rl.values:
        console.print(
            f"  runlane batch_trigger_and_wait of {args.children:,} children from one parent: "
            f"[bold]{rl.values['fanout_s']:.2f} s[/bold] trigger → parent COMPLETED "
            f"({rl.values['fanout_rate']:,.0f} children/s; "
            f"{h.ratio(rl.values['fanout_rate'], rl.values['drain']):.2f}x runlane's drain rate)"
        )
    for name in measured:
        res = results[name]
        console.print(
            f"  [dim]{name}: single {res.details.get('single', '-')}; batch "
            f"{res.details.get('batch', '-')}; drain {res.details.get('drain', '-')}[/dim]"
        )
    if not has_rl:
        return
    targets = Table(title="issue 6 targets")
    targets.add_column("target")
    targets.add_column("measured", justify="right")
    targets.add_column("status")
    hu = results.get("huey")
    huey_ok = hu is not None and not hu.skipped

    def status(ok: bool) -> str:
        return "[green]met[/green]" if ok else "[red]NOT met[/red]"

    if huey_ok and "drain" in rl.values:
        r = h.ratio(rl.values["drain"], hu.values["drain"])
        targets.add_row(
            "drain ≥ 2x raw huey",
            f"{r:.2f}x ({rl.values['drain']:,.0f} vs {hu.values['drain']:,.0f}/s)",
            status(r >= 2),
        )
    else:
        targets.add_row("drain ≥ 2x raw huey", "huey not measured", "-")
    if "batch" in rl.values:
        b = rl.values["batch"]
        targets.add_row(
            "batch trigger ≥ 16,000 runs/s", f"{b:,.0f}/s ({b / 16000:.2f}x)", status(b >= 16000)
        )
    if huey_ok and "rt_p50" in rl.values:
        r = h.ratio(rl.values["rt_p50"], hu.values["rt_p50"])
        targets.add_row(
            "round trip p50 ≤ raw huey's",
            f"{rl.values['rt_p50']:.2f} vs {hu.values['rt_p50']:.2f} ms ({r:.2f}x)",
            status(r <= 1),
        )
    console.print(targets)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15",
        help="default $REDIS_URL, else redis://127.0.0.1:6379/15",
    )
    parser.add_argument("--runs", type=int, default=5000, help="tasks per case (default 5000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="threads per worker process (default 4)"
    )
    parser.add_argument("--latency-samples", type=int, default=200, help="default 200")
    parser.add_argument(
        "--idle-samples",
        type=int,
        default=30,
        help=f"round trips after {IDLE_GAP * 1000:.0f} ms idle (default 30; 0: none)",
    )
    parser.add_argument(
        "--children",
        type=int,
        help="children of runlane's batch_trigger_and_wait (default min(10000, 2 x --runs); 0: "
        "skip)",
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default all)",
    )
    parser.add_argument("--celery-pool", choices=["threads", "prefork"], default="threads")
    parser.add_argument(
        "--environment",
        default="prod",
        help="runlane environment (default prod; dev adds a 10 min default TTL to every run)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds any one wait may take (default 120)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="attach py-spy to the runlane workers during the drains, write the samples to DIR "
        "and print the hotspots (pip install py-spy)",
    )
    args = parser.parse_args(argv)
    if args.children is None:
        args.children = min(10_000, 2 * args.runs)
    if min(args.runs, args.workers, args.concurrency, args.latency_samples) < 1:
        parser.error("--runs, --workers, --concurrency and --latency-samples must be >= 1")
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(chosen) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s) {sorted(unknown)}: choose among {', '.join(SYSTEMS)}")
    profiler = None
    if args.profile:
        if shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None and (
            shutil.which("py-spy") is None
        ):
            parser.error("--profile needs py-spy: pip install py-spy")
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        profiler = h.Profiler(Path(args.profile).resolve())

    client = redis.Redis.from_url(args.redis_url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        print(f"Redis not reachable at {args.redis_url}: {exc}", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="rlbench-"))
    for name, source in MODULES.items():
        (folder / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    ctx = Ctx(args.redis_url, folder, uuid.uuid4().hex[:10], client, args)
    os.environ.update({"RLBENCH_REDIS_URL": ctx.url})
    command = " ".join(
        ["python benchmarks/bench_redis.py", *(sys.argv[1:] if argv is None else argv)]
    )
    results: dict[str, Result] = {}
    commands: dict[str, str] = {}
    failed = False
    try:
        with h.Stopwatch() as total:
            for name in SYSTEMS:
                if name in chosen:
                    failed |= not run_system(CLASSES[name](ctx), args, profiler, results, commands)
        report(results, args, ctx, commands, total.seconds, command)
        if profiler is not None:
            profiler.report()
    finally:
        client.close()
        if failed:
            print(f"worker logs kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if failed else 0


def run_system(
    system: System,
    args: argparse.Namespace,
    profiler: h.Profiler | None,
    results: dict[str, Result],
    commands: dict[str, str],
) -> bool:
    """Measure one system into ``results``; False if it failed (a missing package is no
    failure: it is skipped)."""
    name = system.name
    reason = system.missing()
    if reason:
        print(f"{name}: {reason}", flush=True)
        results[name] = Result(skipped=reason)
        return True
    os.environ["RLBENCH_CTL"] = system.ctl
    os.environ["RLBENCH_PREFIX"] = system.live
    env = " ".join(f"{k}={v}" for k, v in system.env().items() if k != "RLBENCH_PREFIX")
    cmd = system.command(args.concurrency, 1)
    shown = " ".join([Path(cmd[0]).name, *cmd[1:]])
    commands[name] = f"{env} {shown}".strip() if name == "runlane" else shown
    commands[name] += f"\n      enqueue: {system.single_api}; batch: {system.batch_api}"
    print(f"measuring {name}...", flush=True)
    try:
        with h.Stopwatch() as sw:
            results[name] = measure(system, args, profiler)
        print(f"  {name} done in {sw.seconds:.0f} s", flush=True)
        return True
    except BenchError as exc:
        print(f"{name} FAILED: {exc}", file=sys.stderr, flush=True)
        results[name] = Result(skipped=f"failed: {str(exc).splitlines()[0]}")
        return False
    finally:
        system.ctx.clean()


if __name__ == "__main__":
    sys.exit(main())
