"""runlane over Celery against raw Celery, and runlane over Dramatiq against raw Dramatiq: the
same broker, the same worker command and settings, measured in the same run.

    python benchmarks/bench_adapters.py [--broker redis|rabbitmq] [--store redis|sqlite]
        [--runs N] [--rounds R] [--concurrency C] [--celery-pool prefork|threads]
        [--frameworks celery,dramatiq] [--redis-url URL] [--amqp-url URL] [--profile DIR]
        [--interleave] [--floor]

For each framework, two worker setups (five with ``--floor``) are started one after the other
with the framework's own command (``celery -A … worker -P POOL -c C``, ``dramatiq …
--processes 1 --threads C``), each on a no-op task:

- raw: a plain task/actor that INCRs a Redis counter (so the benchmark can see it ran);
  Celery's is late-acked, like runlane's;
- runlane: a runlane task executed by the same command through ``CeleryBroker`` /
  ``DramatiqBroker``; every run is recorded in the store (QUEUED → EXECUTING → COMPLETED,
  with its attempt) and counted there;
- floor (``--floor``): the raw task plus the three writes any store that records each run
  makes at the least, as bare Redis commands: the trigger HSETs the run QUEUED before the
  framework's send, the task HSETs it EXECUTING (one round trip), then COMPLETED with the
  counter's INCR (one pipelined round trip). floor ÷ raw is what recording alone costs on
  this machine: the part of the 30 % that no store's logic can have;
- atomic (``--floor`` too): the raw task with three minimal Lua transitions instead
  (create; start only if QUEUED; finish only if EXECUTING; a status index, a lease and a
  change feed, nothing else): what a store that fences duplicates atomically pays before
  any of runlane's features;
- featured (``--floor`` too): the same three transitions carrying what runlane's features
  need a run to have (its hash of ~20 fields, a run number, the list indexes, the queue's and
  the environment's concurrency counts, an attempt record, a lease, retention, the change
  feed), each written the cheapest way (plain string arguments, no JSON decoded in Lua, the
  payload as the only reply), with a Python task that decodes the payload and encodes the
  output: what any store offering those features pays. runlane ÷ featured is runlane's own
  overhead, the part its code can remove.

A round triggers N tasks one by one from this process while the workers run, and times from
the first enqueue to the N-th completion: the per-task cost is that time / N (a throughput
figure; it includes the enqueue). The median of ``--rounds`` rounds is reported, and the ratio
runlane ÷ raw (the issue's target: at most 1.30). Queues and keys carry a unique prefix and are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h
import redis

try:
    import psutil
except ImportError:  # CPU of the worker processes is then not reported
    psutil = None

from runlane.core import runtime as _runtime
from runlane.core.models import RunStatus

MODULE = '''"""The benchmark's tasks: raw and runlane workers of Celery and Dramatiq (RLB_* env)."""
import json
import os
import socket
import threading
import time
from urllib.parse import urlsplit

import redis

import runlane

FRAMEWORK, MODE = os.environ["RLB_FRAMEWORK"], os.environ["RLB_MODE"]
PREFIX, BROKER = os.environ["RLB_PREFIX"], os.environ["RLB_BROKER_URL"]
counter = redis.Redis.from_url(os.environ["RLB_REDIS_URL"])
COUNTER = PREFIX + ":done"


class Bare:
    """The cheapest Redis client for the floor: one socket per process and thread, commands
    packed by hand, replies read without a library (the floor must not carry a client
    library's own cost: redis-py spends more CPU than these few commands take in Redis)."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.password, self.db = parts.password, int(parts.path.strip("/") or 0)
        self.local = threading.local()
        self.sha = {}

    def _sock(self):
        sock = getattr(self.local, "sock", None)
        if sock is None or self.local.pid != os.getpid():
            sock = socket.create_connection(self.address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.local.sock, self.local.pid, self.local.buf = sock, os.getpid(), b""
            if self.password:
                self.call("AUTH", self.password)
            self.call("SELECT", str(self.db))
        return sock

    def call(self, *args, more=()):
        """Send one command (and the commands in ``more``, pipelined); the first reply."""
        out = b"".join(_pack(c) for c in (args, *more))
        self._sock().sendall(out)
        replies = [self._reply() for _ in range(1 + len(more))]
        return replies[0]

    def script(self, text):
        sha = self.call("SCRIPT", "LOAD", text).decode()
        return lambda keys, args: self.call("EVALSHA", sha, str(len(keys)), *keys, *args)

    def _line(self):
        while b"\\r\\n" not in self.local.buf:
            chunk = self.local.sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.local.buf += chunk
        line, _, self.local.buf = self.local.buf.partition(b"\\r\\n")
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.local.buf) < n + 2:
                self.local.buf += self.local.sock.recv(65536)
            data, self.local.buf = self.local.buf[:n], self.local.buf[n + 2 :]
            return data
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        return rest  # +OK


def _pack(args):
    parts = [b"*%d\\r\\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        parts.append(b"$%d\\r\\n%s\\r\\n" % (len(a), a))
    return b"".join(parts)


bare = Bare(os.environ["RLB_REDIS_URL"])


def trigger_recorded(send):
    """The floor's trigger: one Redis write of the run (QUEUED), then the framework's send."""
    run_id = os.urandom(12).hex()
    bare.call("HSET", PREFIX + ":run:" + run_id, "status", "QUEUED", "task", "noop")
    send(run_id)


def record(run_id):
    """The floor's task: the run marked EXECUTING (one round trip), then COMPLETED and
    counted (one pipelined round trip): the fewest writes a store recording the run makes."""
    key = PREFIX + ":run:" + run_id
    bare.call("HSET", key, "status", "EXECUTING")
    bare.call("HSET", key, "status", "COMPLETED", more=[("INCR", COUNTER)])


# the floor's second form: three Lua transitions that check the run's status and move it,
# with the fewest structures a store needs (status index, lease, change feed): what any
# atomic store pays before features (concurrency slots, attempts, indexes, idempotency)
CREATE = """
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "status", "QUEUED", "task", ARGV[1], "created_at", ARGV[2])
redis.call("ZADD", KEYS[2], 0, ARGV[3])
redis.call("ZADD", KEYS[3], 0, ARGV[3])
redis.call("PUBLISH", KEYS[4], ARGV[3])
return 1"""
START = """
if redis.call("HGET", KEYS[1], "status") ~= "QUEUED" then return false end
redis.call("HSET", KEYS[1], "status", "EXECUTING", "started_at", ARGV[1])
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[3])
redis.call("ZREM", KEYS[3], ARGV[3])
redis.call("ZADD", KEYS[4], 0, ARGV[3])
redis.call("PUBLISH", KEYS[5], ARGV[3])
return redis.call("HGET", KEYS[1], "task")"""
FINISH = """
if redis.call("HGET", KEYS[1], "status") ~= "EXECUTING" then return 0 end
redis.call("HSET", KEYS[1], "status", "COMPLETED", "finished_at", ARGV[1])
redis.call("ZREM", KEYS[2], ARGV[2])
redis.call("ZREM", KEYS[3], ARGV[2])
redis.call("ZADD", KEYS[4], 0, ARGV[2])
redis.call("PUBLISH", KEYS[6], ARGV[2])
redis.call("INCR", KEYS[5])
return 1"""
scripts = {}


def _script(text):
    if text not in scripts:
        scripts[text] = bare.script(text)
    return scripts[text]


def trigger_atomic(send):
    run_id = os.urandom(12).hex()
    keys = [PREFIX + ":run:" + run_id, PREFIX + ":ix:st:QUEUED", PREFIX + ":ix:all"]
    _script(CREATE)(keys + [PREFIX + ":changes"], ["noop", repr(time.time()), run_id])
    send(run_id)


def atomic(run_id):
    key, st, now = PREFIX + ":run:" + run_id, PREFIX + ":ix:st:", time.time()
    leases, changes = PREFIX + ":leases", PREFIX + ":changes"
    started = _script(START)(
        [key, leases, st + "QUEUED", st + "EXECUTING", changes], [repr(now), repr(now + 30), run_id]
    )
    if started is None:  # canceled or taken: a store's fence
        return
    _script(FINISH)(
        [key, leases, st + "EXECUTING", st + "COMPLETED", COUNTER, changes],
        [repr(time.time()), run_id],
    )


# the floor's third form: the same three transitions carrying the structures runlane's
# features need a run to have (issues 2-6), each written the cheapest way (arguments as plain
# strings, no JSON decoded in Lua, no reply document): the run's hash with its ~20 fields, a
# run number, the list indexes (all, task, queue, status), the queue's and the environment's
# concurrency counts, an attempt record, a lease, retention and the change feed. What any
# store offering those features pays, before its own code: runlane ÷ this is its overhead
CREATE_F = """
local id, now = ARGV[1], ARGV[3]
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local number = redis.call("INCR", KEYS[6])
redis.call("HSET", KEYS[1], "id", id, "task", ARGV[2], "status", "QUEUED", "seed_metadata",
  "{}", "tags", "[]", "created_at", now, "updated_at", now, "depth", "0", "queue", ARGV[4],
  "ckey", "", "number", number, "is_test", "0", "attempt_count", "0", "duration_ms", "0",
  "admitted", "1", "resume", "0", "queue_given", "0", "holds_queue", "1", "holds_env", "1",
  "payload", ARGV[5], "queued_at", now, "queue_ts", now)
redis.call("ZADD", KEYS[5], 0, id)
redis.call("ZADD", KEYS[2], 0, id)
redis.call("ZADD", KEYS[3], 0, id)
redis.call("ZADD", KEYS[4], 0, id)
redis.call("HINCRBY", KEYS[7], "running", 1)
redis.call("INCRBY", KEYS[8], 1)
redis.call("PUBLISH", KEYS[9], '{"id":"' .. id .. '","status":"QUEUED","at":' .. now .. '}')
return 1"""
START_F = """
local id, now = ARGV[1], ARGV[2]
local r = redis.call("HMGET", KEYS[1], "status", "admitted", "attempt_count", "payload")
if r[1] ~= "QUEUED" or r[2] ~= "1" then return false end
local n = tostring(tonumber(r[3]) + 1)
redis.call("HSET", KEYS[2], n, '{"id":"' .. ARGV[4] .. '","number":' .. n
  .. ',"status":"EXECUTING","started_at":' .. now .. ',"worker_id":"' .. ARGV[3] .. '"}')
redis.call("HSET", KEYS[1], "status", "EXECUTING", "updated_at", now, "attempt_count", n,
  "worker_id", ARGV[3], "segment_started_at", now, "started_at", now, "lease_until", ARGV[5])
redis.call("ZADD", KEYS[3], ARGV[5], id)
redis.call("ZREM", KEYS[4], id)
redis.call("ZADD", KEYS[5], 0, id)
redis.call("PUBLISH", KEYS[6], '{"id":"' .. id .. '","status":"EXECUTING","at":' .. now .. '}')
return {n, r[4]}"""
FINISH_F = """
local id, n, now = ARGV[1], ARGV[2], ARGV[3]
local r = redis.call("HMGET", KEYS[1], "status", "attempt_count", "segment_started_at")
if r[1] ~= "EXECUTING" or r[2] ~= n then return 0 end
local ms = tostring(math.floor((tonumber(now) - tonumber(r[3])) * 1000))
redis.call("HSET", KEYS[1], "status", "COMPLETED", "updated_at", now, "admitted", "0",
  "duration_ms", ms, "output", ARGV[4], "finished_at", now)
redis.call("HDEL", KEYS[1], "segment_started_at", "lease_until", "holds_queue", "holds_env")
redis.call("HINCRBY", KEYS[7], "running", -1)
redis.call("INCRBY", KEYS[8], -1)
redis.call("ZREM", KEYS[3], id)
redis.call("ZREM", KEYS[4], id)
redis.call("ZADD", KEYS[5], 0, id)
redis.call("HSET", KEYS[2], n, '{"number":' .. n .. ',"status":"COMPLETED","finished_at":'
  .. now .. ',"duration_ms":' .. ms .. '}')
redis.call("ZADD", KEYS[9], tonumber(now) + 86400, id)
redis.call("PUBLISH", KEYS[10], '{"id":"' .. id .. '","status":"COMPLETED","at":' .. now .. '}')
redis.call("INCR", KEYS[6])
return 1"""
F = PREFIX + ":f:"


def trigger_featured(send):
    run_id = os.urandom(12).hex()
    keys = [F + "run:" + run_id, F + "ix:all", F + "ix:task:f-noop", F + "ix:q:task/f-noop",
            F + "ix:st:QUEUED", F + "n:task:f-noop", F + "q:task/f-noop", F + "running",
            F + "changes"]
    payload = json.dumps(None)
    _script(CREATE_F)(keys, [run_id, "f-noop", repr(time.time()), "task/f-noop", payload])
    send(run_id, "f-noop", "task/f-noop", None, "production")


def featured(run_id, task, queue, machine, environment):
    key, st = F + "run:" + run_id, F + "ix:st:"
    now = time.time()
    started = _script(START_F)(
        [key, F + "att:" + run_id, F + "leases", st + "QUEUED", st + "EXECUTING", F + "changes"],
        [run_id, repr(now), "w-" + str(os.getpid()), os.urandom(8).hex(), repr(now + 30)],
    )
    if started is None:  # canceled or taken: a store's fence
        return
    number, payload = started
    output = json.dumps(globals()["FEATURED_TASK"](json.loads(payload)))
    _script(FINISH_F)(
        [key, F + "att:" + run_id, F + "leases", st + "EXECUTING", st + "COMPLETED", COUNTER,
         F + "q:" + queue, F + "running", F + "gc", F + "changes"],
        [run_id, number, repr(time.time()), output],
    )


def FEATURED_TASK(payload):
    return None


if FRAMEWORK == "celery":
    from celery import Celery

    app = Celery("rlb", broker=BROKER)
    options = {"global_keyprefix": PREFIX + ":"} if BROKER.startswith("redis") else {}
    app.conf.update(
        broker_transport_options=options,
        task_default_queue=PREFIX,
        task_default_exchange=PREFIX,
        control_exchange=PREFIX,
        task_ignore_result=True,
        worker_enable_remote_control=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="rlb.noop", acks_late=True)
    def noop():
        counter.incr(COUNTER)

    @app.task(name="rlb.recorded", acks_late=True)
    def recorded(run_id):
        record(run_id)

    @app.task(name="rlb.atomic", acks_late=True)
    def atomic_task(run_id):
        atomic(run_id)

    @app.task(name="rlb.featured", acks_late=True)
    def featured_task(run_id, task, queue, machine, environment):
        featured(run_id, task, queue, machine, environment)

    if MODE == "runlane":
        from runlane.backends.celery import CeleryBroker

        runlane.configure(broker=CeleryBroker(app, queue=PREFIX + "-rl", machines=[]))
else:
    import dramatiq

    if BROKER.startswith("redis"):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=BROKER, namespace=PREFIX)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=BROKER)
    dramatiq.set_broker(broker)

    @dramatiq.actor(broker=broker, queue_name=PREFIX, max_retries=0)
    def noop():
        counter.incr(COUNTER)

    @dramatiq.actor(broker=broker, queue_name=PREFIX, max_retries=0)
    def recorded(run_id):
        record(run_id)

    @dramatiq.actor(broker=broker, queue_name=PREFIX, max_retries=0)
    def atomic_task(run_id):
        atomic(run_id)

    @dramatiq.actor(broker=broker, queue_name=PREFIX, max_retries=0)
    def featured_task(run_id, task, queue, machine, environment):
        featured(run_id, task, queue, machine, environment)

    if MODE == "runlane":
        from runlane.backends.dramatiq import DramatiqBroker

        runlane.configure(broker=DramatiqBroker(broker, queue=PREFIX + "-rl", machines=[]))


@runlane.task(id="rlb-noop", retry={"max_attempts": 1})
def rl_noop(payload):
    return None
'''


@dataclass
class Round:
    enqueue: float  # seconds to enqueue the tasks
    total: float  # seconds from the first enqueue to the last completion
    producer_cpu: float  # CPU seconds of this process while it enqueued
    worker_cpu: float  # CPU seconds of the worker command's processes over the round
    redis_cpu: float  # CPU seconds of the Redis server over the round
    rabbitmq_cpu: float | None  # CPU seconds of a local RabbitMQ (None: not measured)


def pika_url(url: str) -> str:
    head, sep, rest = url.partition("://")
    host, _, path = rest.partition("/")
    return f"{head}{sep}{host}/%2F" if path in ("", "/") else url


class Setup:
    """One worker setup (framework x raw|runlane) with its own prefix, workers and cleanup."""

    def __init__(self, args: argparse.Namespace, framework: str, mode: str, tmp: Path) -> None:
        self.args, self.framework, self.mode, self.tmp = args, framework, mode, tmp
        self.prefix = f"rlb-{uuid.uuid4().hex[:10]}"
        broker_url = args.redis_url if args.broker == "redis" else args.amqp_url
        if framework == "dramatiq" and args.broker == "rabbitmq":
            broker_url = pika_url(broker_url)
        self.store_url = (
            f"{args.redis_url}?prefix={self.prefix}-store"
            if args.store == "redis"
            else f"sqlite:///{tmp}/{self.prefix}.db"
        )
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")]),
            "RLB_FRAMEWORK": framework,
            "RLB_MODE": mode,
            "RLB_PREFIX": self.prefix,
            "RLB_BROKER_URL": broker_url,
            "RLB_REDIS_URL": args.redis_url,
            "RUNLANE_STORE_URL": self.store_url,
        }
        self.redis = redis.Redis.from_url(args.redis_url)
        self.proc: subprocess.Popen[bytes] | None = None
        self.module: Any = None

    def start(self) -> None:
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("RLB_", "RUNLANE"))})
        sys.modules.pop("rlb_tasks", None)
        import rlb_tasks  # configures this process like the workers (runlane: the broker)

        self.module = rlb_tasks
        c = str(self.args.concurrency)
        if self.framework == "celery":
            argv = [sys.executable, "-m", "celery", "-A", "rlb_tasks", "worker"]
            argv += ["-P", self.args.celery_pool, "-c", c, "--loglevel=WARNING"]
            argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
        else:
            argv = [sys.executable, "-m", "dramatiq", "rlb_tasks", "--processes", "1"]
            argv += ["--threads", c]
        log = open(self.tmp / f"{self.framework}-{self.mode}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.round(20, warmup=True)  # up, and warm

    def enqueue(self) -> Callable[[], Any]:
        if self.mode == "runlane":
            return lambda: self.module.rl_noop.trigger(None)
        if self.mode in ("floor", "atomic", "featured"):
            m = self.module
            task, trigger = {
                "floor": (m.recorded, m.trigger_recorded),
                "atomic": (m.atomic_task, m.trigger_atomic),
                "featured": (m.featured_task, m.trigger_featured),
            }[self.mode]
            send = task.delay if self.framework == "celery" else task.send
            return lambda: trigger(send)
        if self.framework == "celery":
            return self.module.noop.delay
        return self.module.noop.send

    def done(self) -> int:
        if self.mode == "runlane":
            rt = _runtime.get()
            return rt.store.count_runs([RunStatus.COMPLETED]).get("COMPLETED", 0)
        return int(self.redis.get(f"{self.prefix}:done") or 0)

    def round(self, n: int, *, warmup: bool = False) -> Round:
        """Enqueue n tasks and wait until all n ran; with the CPU each side used."""
        before = self.done()
        send = self.enqueue()
        cpu = self.cpu()
        start = time.perf_counter()
        for _ in range(n):
            send()
        enqueued = time.perf_counter() - start
        producer = self.cpu()
        deadline = time.monotonic() + (120 if warmup else self.args.timeout)
        while self.done() - before < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.framework}/{self.mode}: timed out; see {self.tmp}")
            time.sleep(0.002)
        total = time.perf_counter() - start
        after = self.cpu()
        return Round(
            enqueue=enqueued,
            total=total,
            producer_cpu=producer[0] - cpu[0],
            worker_cpu=after[1] - cpu[1],
            redis_cpu=after[2] - cpu[2],
            rabbitmq_cpu=None if after[3] is None or cpu[3] is None else after[3] - cpu[3],
        )

    def cpu(self) -> tuple[float, float, float, float | None]:
        """CPU seconds used so far by this process, the worker command (with its pool
        processes), the Redis server and, with the RabbitMQ broker, a RabbitMQ server on this
        machine (both server-wide: exact only when nothing else uses them)."""
        own = sum(os.times()[:2])
        workers = 0.0
        if psutil is not None and self.proc is not None:
            try:
                root = psutil.Process(self.proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        workers += t.user + t.system
            except psutil.Error:
                pass
        info = self.redis.info("cpu")
        server = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        rabbitmq = None
        if psutil is not None and self.args.broker == "rabbitmq":
            for p in psutil.process_iter(["name"]):  # the Erlang VM that runs RabbitMQ
                if p.info["name"] == "beam.smp":
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        rabbitmq = (rabbitmq or 0.0) + t.user + t.system
        return own, workers, server, rabbitmq

    def pids(self) -> list[int]:
        """The worker command's processes (its pool's children included)."""
        if psutil is None or self.proc is None:
            return [] if self.proc is None else [self.proc.pid]
        root = psutil.Process(self.proc.pid)
        return [p.pid for p in [root, *root.children(recursive=True)]]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(60)
        old = _runtime.install(None)
        if old is not None:
            old.close()
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            self.redis.delete(key)
        if self.args.broker == "rabbitmq":
            self._delete_amqp()
        self.redis.close()

    def _delete_amqp(self) -> None:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(pika_url(self.args.amqp_url)))
        try:
            names = [self.prefix, f"{self.prefix}-rl"]
            names += [f"{n}{s}" for n in names for s in (".DQ", ".XQ")]
            for kind, name in [("queue", n) for n in names] + [
                ("exchange", n) for n in (self.prefix, f"{self.prefix}-rl")
            ]:
                channel = conn.channel()
                with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                if channel.is_open:
                    channel.close()
        finally:
            conn.close()


@contextlib.contextmanager
def setup(args: argparse.Namespace, framework: str, mode: str, tmp: Path) -> Iterator[Setup]:
    s = Setup(args, framework, mode, tmp)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def one_after_the_other(
    args: argparse.Namespace, framework: str, mode: str, tmp: Path, profiler: Any
) -> list[Round]:
    """The rounds of one setup, started and stopped on its own."""
    rounds = []
    with setup(args, framework, mode, tmp) as s:
        attached: Any = contextlib.nullcontext()
        if profiler is not None:
            attached = profiler.attached(s.pids(), f"{framework}-{mode}")
        with attached:
            for _ in range(args.rounds):
                rounds.append(s.round(args.runs))
    return rounds


def interleaved(args: argparse.Namespace, framework: str, tmp: Path) -> dict[str, list[Round]]:
    """Every setup up at once, their rounds alternated (raw first, then the last first, ...),
    so that a machine whose speed drifts affects them alike."""
    modes = modes_of(args)
    out: dict[str, list[Round]] = {mode: [] for mode in modes}
    with contextlib.ExitStack() as stack:
        setups = [stack.enter_context(setup(args, framework, mode, tmp)) for mode in modes]
        for i in range(args.rounds):
            for s in setups if i % 2 == 0 else reversed(setups):
                out[s.mode].append(s.round(args.runs))
    return out


def modes_of(args: argparse.Namespace) -> list[str]:
    return ["raw", "runlane", "floor", "atomic", "featured"] if args.floor else ["raw", "runlane"]


LABELS = {
    "raw": "{} raw",
    "runlane": "runlane over {}",
    "floor": "{} + 3 Redis writes",
    "atomic": "{} + 3 minimal Lua transitions",
    "featured": "{} + 3 featured Lua transitions",
}


# the --floor ratios: (label, setup, setup it is divided by, what it says)
FLOOR_RATIOS = [
    ("floor ratio (raw + 3 Redis writes ÷ raw)", "floor", "raw",
     "the least any store writing each run 3 times adds"),
    ("minimal atomic store ratio (÷ raw)", "atomic", "raw",
     "3 Lua transitions with a status check, nothing more"),
    ("featured store ratio (÷ raw)", "featured", "raw",
     "the structures runlane's features need, written at least cost"),
    ("runlane ÷ featured store", "runlane", "featured",
     "runlane's own overhead above those writes"),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    parser.add_argument("--store", choices=["redis", "sqlite"], default="redis")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--celery-pool", choices=["prefork", "threads"], default="prefork")
    parser.add_argument("--frameworks", default="celery,dramatiq")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="keep the setups up at once and alternate their rounds (fairer on a machine whose "
        "speed drifts; each setup's idle workers then run beside the others' rounds)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the raw task with the 3 Redis writes a recording store needs "
        "(QUEUED at the trigger, EXECUTING and COMPLETED in the worker), as plain commands, "
        "as 3 minimal Lua transitions and as 3 Lua transitions with runlane's structures",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="attach py-spy to the workers during their rounds; raw stacks in DIR",
    )
    args = parser.parse_args()
    profiler = None
    if args.profile and args.interleave:
        parser.error("--profile and --interleave do not go together")
    if args.profile:
        if shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
            parser.error("--profile needs py-spy: pip install py-spy")
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        profiler = h.Profiler(Path(args.profile).resolve())

    tmp = Path(tempfile.mkdtemp(prefix="rlb-adapters-"))
    (tmp / "rlb_tasks.py").write_text(MODULE)
    sys.path.insert(0, str(tmp))
    results: list[h.Measurement] = []
    try:
        for framework in args.frameworks.split(","):
            cost: dict[str, float] = {}
            by_mode = (
                interleaved(args, framework, tmp)
                if args.interleave
                else {mode: one_after_the_other(args, framework, mode, tmp, profiler)
                      for mode in modes_of(args)}
            )  # fmt: skip
            for mode in modes_of(args):
                rounds = by_mode[mode]

                def med(field: str, rs: list[Round] = rounds) -> float:
                    """The median over the rounds, in ms a task."""
                    return statistics.median(getattr(r, field) for r in rs) * 1000 / args.runs

                cost[mode] = med("total")
                label = LABELS[mode].format(framework)
                spread = ", ".join(f"{r.total * 1000 / args.runs:.3f}" for r in rounds)
                results += [
                    h.Measurement(framework, f"{label}: per-task cost", cost[mode], "ms",
                                  f"rounds: {spread} ms"),
                    h.Measurement(framework, f"{label}: throughput", 1000 / cost[mode], "runs/s"),
                    h.Measurement(framework, f"{label}: enqueue per task", med("enqueue"), "ms"),
                    h.Measurement(framework, f"{label}: CPU a task, enqueuing process",
                                  med("producer_cpu"), "ms"),
                    h.Measurement(framework, f"{label}: CPU a task, worker processes",
                                  med("worker_cpu"), "ms",
                                  "" if psutil else "psutil not installed: not measured"),
                    h.Measurement(framework, f"{label}: CPU a task, Redis server",
                                  med("redis_cpu"), "ms", "server-wide"),
                ]  # fmt: skip
                if all(r.rabbitmq_cpu is not None for r in rounds):
                    results.append(
                        h.Measurement(framework, f"{label}: CPU a task, RabbitMQ server",
                                      med("rabbitmq_cpu"), "ms", "server-wide, this machine")
                    )  # fmt: skip
            # each runlane round against the raw round of the same index (next to it in time
            # with --interleave): how far one pair of rounds strays from the medians' ratio
            pairs = [
                mine.total / theirs.total
                for mine, theirs in zip(by_mode["runlane"], by_mode["raw"], strict=True)
                if theirs.total > 0
            ]
            results.append(
                h.Measurement(
                    framework,
                    "overhead ratio (runlane ÷ raw, target ≤ 1.30)",
                    h.ratio(cost["runlane"], cost["raw"]),
                    "x",
                    f"round by round: {min(pairs):.2f}x-{max(pairs):.2f}x" if pairs else "",
                )
            )
            if args.floor:
                for name, top, bottom, detail in FLOOR_RATIOS:
                    ratio = h.ratio(cost[top], cost[bottom])
                    results.append(h.Measurement(framework, name, ratio, "x", detail))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if profiler is not None:
        profiler.report()
    h.print_results(
        "runlane over Celery and Dramatiq vs the raw frameworks",
        results,
        command="python " + " ".join(sys.argv),
        settings={
            "broker": args.broker,
            "store": args.store,
            "runs/round": args.runs,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "celery pool": args.celery_pool,
        },
    )


if __name__ == "__main__":
    main()
