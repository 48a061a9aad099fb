"""Realtime: how soon a subscriber sees a run's change, and what 1,000 SSE subscribers cost one
``runlane serve`` process while runs complete at a steady rate.

    python benchmarks/bench_realtime.py [--store sqlite|redis|both] [--quick] [--json]
        [--changes 2000] [--updates 20] [--parallel 4]
        [--subscribers 1000] [--tags 10] [--clients 2] [--rate 500] [--seconds 20]
        [--redis-url URL] [--settle 10] [--drain-timeout 30] [--timeout 60]

For each store (a SQLite file in a temporary folder: the embedded default; Redis under a private
key prefix, by default in database 15, whose keys are deleted afterwards: SCAN + DEL):

1. **Latency** (change → subscriber): a ``runlane worker`` process executes runs that each make
   ``--updates`` metadata updates, ``metadata.set("i", i).set("t", time.time()).flush()`` 2 ms
   apart; this process triggers them, ``--parallel`` at a time, and follows each with
   ``runs.subscribe_to_run`` in a thread of its own, recording ``time.time() - t`` whenever it
   sees an update it had not seen (the first item, the run as it was when the subscription
   started, is not counted). ``--changes`` updates in all: p50, p99 and max. Updates written
   faster than the subscriber reads come as one item (the latest state): "coalesced". The
   issue's target: p99 under 20 ms on Redis.
2. **Subscribers**: ``runlane serve`` (one uvicorn process, the API only) and a ``runlane
   worker`` process (concurrency 8) on the store, started as users start them with a key from
   ``runlane keys create``. ``--clients`` client processes (raw asyncio protocols on uvloop:
   HTTP/1.1 chunked framing and SSE parsed by hand, JSON decoded only for COMPLETED events, so
   that the clients cost little) hold ``--subscribers`` connections to ``GET
   /realtime/v1/runs?tags=tag-K``: ``--tags`` tags, the same number of subscribers each. A
   trigger process then ``batch.trigger``s no-op runs at ``--rate`` a second for ``--seconds``
   (a batch every 20 ms), each run tagged with one of the tags in turn, so every run is seen by
   subscribers ÷ tags subscribers. Measured: the server's RSS before and after the subscribers
   attach (per subscriber); the server's CPU time (psutil) from the first trigger to the last
   event delivered, per subscriber and per event, and split by thread (the event loop's; the
   others: the realtime hub's feed reader and asyncio's thread pool); events lost, i.e. each
   subscriber must see every run of its tag COMPLETED (lost = expected - seen, after waiting up
   to ``--settle`` s without progress, at most ``--drain-timeout`` s after the last trigger:
   an event later than that counts as lost); the latency of the COMPLETED events (client's
   ``time.time()`` on receipt - the run's ``finished_at``); and the rate achieved: runs
   delivered to all their subscribers a second, from the first trigger to the last event.

Everything shares the machine's cores: on a 2-core machine the clients, the trigger process, the
worker and Redis take CPU the server would otherwise have. ``--quick``: a smoke form (100
changes; 20 subscribers on 2 tags, 50 runs/s for 1.5 s). See benchmarks/README.md for figures.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
import bench_http as bh
import httpx
import psutil

import runlane
from runlane.core import runtime as _runtime

ENVIRONMENT = "prod"  # not dev: no default TTL
UPDATES_TASK = "rt-updates"
NOOP_TASK = "rt-noop"
LEAD = 0.05  # seconds a run waits before its first update (its subscriber starts meanwhile)
TRIGGER_STEP = 0.02  # the trigger process sends a batch this often
MODULE = "bench_realtime_tasks"
TASKS_MODULE = '''"""The tasks bench_realtime.py triggers."""
import time

import runlane


@runlane.task(id="rt-updates")
def updates(payload):
    time.sleep(payload["lead"])
    for i in range(payload["n"]):
        runlane.metadata.set("i", i).set("t", time.time()).flush()
        time.sleep(payload["gap"])


@runlane.task(id="rt-noop")
def noop(payload):
    return None
'''


class BenchError(RuntimeError):
    """The benchmark could not measure (a process did not start, a run failed...)."""


# ---------------------------------------------------------------------------- processes
@contextlib.contextmanager
def process(argv: list[str], log: Path, **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """``argv`` in its own process group until the block ends (SIGINT, as Ctrl-C; killed if
    it has not stopped after 15 s)."""
    with open(log, "wb") as out:
        stderr = popen.pop("stderr", out)
        proc = subprocess.Popen(
            argv,
            stdout=popen.pop("stdout", out),
            stderr=stderr,
            env=bh.clean_environ(),
            start_new_session=True,
            **popen,
        )
    try:
        yield proc
    finally:
        h.stop_group(proc)


def runlane_argv(store: bh.Store, *command: str) -> list[str]:
    return [*bh.runlane_command(), "--store", store.url, "--env", ENVIRONMENT, *command]


@contextlib.contextmanager
def worker(store: bh.Store, concurrency: int) -> Iterator[subprocess.Popen[Any]]:
    argv = runlane_argv(store, "worker", MODULE + ".py", "--concurrency", str(concurrency))
    with process(
        [*argv, "--loglevel", "warning"], store.folder / "worker.log", cwd=store.folder
    ) as p:
        yield p


@contextlib.contextmanager
def in_process(store: bh.Store) -> Iterator[_runtime.Runtime]:
    """runlane configured in this process on the store (the tasks defined, as the worker's)."""
    rt = runlane.configure(store=store.url, environment=ENVIRONMENT)
    sys.path.insert(0, str(store.folder))
    try:
        sys.modules.pop(MODULE, None)
        __import__(MODULE)
        yield rt
    finally:
        sys.path.remove(str(store.folder))
        _runtime.install(None)
        rt.close()


def wait_completed(handle: Any, timeout: float) -> None:
    """Until the run is COMPLETED (the worker is up and warm)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = runlane.runs.retrieve(handle)
        if run.status == runlane.RunStatus.COMPLETED:
            return
        if run.is_completed:
            raise BenchError(f"warm-up run {run.id} ended {run.status}")
        time.sleep(0.02)
    raise BenchError(f"the worker did not complete a run within {timeout:.0f} s")


# ---------------------------------------------------------------------------- 1. latency
def follow(handle: Any, timeout: float) -> tuple[list[float], int]:
    """Follow one run of ``updates``: the latency of each update seen, and the updates seen
    (the first item, the run as the subscription found it, is not counted)."""
    latencies: list[float] = []
    last = -1
    first = True
    subscription = runlane.runs.subscribe_to_run(handle)
    watchdog = threading.Timer(timeout, subscription.close)
    watchdog.start()
    run = None
    try:
        for run in subscription:
            now = time.time()
            index = (run.metadata or {}).get("i", -1)
            if index > last and not first:
                latencies.append(now - run.metadata["t"])
            last = max(last, index)
            first = False
    finally:
        watchdog.cancel()
    if run is None or run.status != runlane.RunStatus.COMPLETED:
        raise BenchError(f"run {handle.id} did not complete within {timeout:.0f} s")
    return latencies, last + 1


def measure_latency(store: bh.Store, args: argparse.Namespace) -> dict[str, Any]:
    runs = max(1, args.changes // args.updates)
    payload = {"n": args.updates, "gap": args.gap / 1000, "lead": LEAD}
    with in_process(store):
        wait_completed(runlane.tasks.trigger(NOOP_TASK), args.timeout)

        def one(_: int) -> tuple[list[float], int]:
            return follow(runlane.tasks.trigger(UPDATES_TASK, payload), args.timeout)

        one(-1)  # warm-up: the subscription's hub, the worker's task
        with ThreadPoolExecutor(args.parallel) as pool:
            results = list(pool.map(one, range(runs)))
    latencies = [x for got, _ in results for x in got]
    written = sum(n for _, n in results)
    if not latencies:
        raise BenchError("no metadata update was seen")
    return {
        "runs": runs,
        "updates_written": written,
        "updates_seen": len(latencies),
        "coalesced": written - len(latencies),  # seen only as part of a later state
        "p50_ms": 1000 * h.percentile(latencies, 50),
        "p99_ms": 1000 * h.percentile(latencies, 99),
        "max_ms": 1000 * max(latencies),
    }


# ---------------------------------------------------------------------------- 2. subscribers
def tag_name(k: int) -> str:
    return f"tag-{k}"


@dataclass
class Client:
    proc: subprocess.Popen[str]
    out: Path
    seen: int = 0
    ready: bool = False


class ServerMeter:
    """RSS and CPU (total and per thread) of the server process."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)

    def rss_mb(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def cpu(self) -> tuple[float, dict[int, float]]:
        times = self.proc.cpu_times()
        threads = {t.id: t.user_time + t.system_time for t in self.proc.threads()}
        return times.user + times.system, threads


def start_clients(store: bh.Store, url: str, key: str, args: argparse.Namespace) -> list[Client]:
    tags = [tag_name(k) for k in range(args.tags)]
    per_client = [args.subscribers // args.clients] * args.clients
    per_client[-1] += args.subscribers - sum(per_client)
    clients, first = [], 0
    for i, count in enumerate(per_client):
        out = store.folder / f"client-{i}.json"
        argv = [sys.executable, __file__, "_client", url, key, ",".join(tags), str(first)]
        proc = subprocess.Popen(
            [*argv, str(count), str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(store.folder / f"client-{i}.log", "wb"),  # noqa: SIM115
            text=True,
            bufsize=1,
        )
        clients.append(Client(proc, out))
        first += count
    for client in clients:
        threading.Thread(target=read_progress, args=(client,), daemon=True).start()
    return clients


def read_progress(client: Client) -> None:
    """The client's lines: READY once connected, then SEEN n (COMPLETED events) twice a second."""
    assert client.proc.stdout is not None
    for line in client.proc.stdout:
        word, _, rest = line.strip().partition(" ")
        if word == "READY":
            client.ready = True
        elif word == "SEEN":
            client.seen = int(rest)


def wait_for(predicate: Any, timeout: float, what: str, clients: list[Client]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for client in clients:
            if client.proc.poll() is not None:
                raise BenchError(f"a client process exited with {client.proc.returncode}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)


def measure_subscribers(store: bh.Store, args: argparse.Namespace) -> dict[str, Any]:
    key = bh.make_key(store, args.timeout)
    port = bh.free_port()
    url = f"http://127.0.0.1:{port}"
    serve = runlane_argv(store, "serve", MODULE + ".py", "--port", str(port))
    with (
        process(
            [*serve, "--loglevel", "warning"], store.folder / "serve.log", cwd=store.folder
        ) as server,
        in_process(store),
    ):
        deadline = time.monotonic() + args.timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                log = (store.folder / "serve.log").read_text()[-2000:]
                raise BenchError(f"runlane serve did not start:\n{log}")
            time.sleep(0.05)
        wait_completed(runlane.tasks.trigger(NOOP_TASK), args.timeout)
        headers = {"authorization": f"Bearer {key}"}
        with httpx.stream(  # the SSE path warm: its imports, the hub's thread
            "GET", f"{url}/realtime/v1/runs", params={"tags": "warm-up"}, headers=headers
        ) as response:
            next(response.iter_bytes())
        time.sleep(1.0)
        meter = ServerMeter(server.pid)
        rss_before = meter.rss_mb()
        clients = start_clients(store, url, key, args)
        try:
            wait_for(lambda: all(c.ready for c in clients), args.timeout, "no READY", clients)
            time.sleep(1.0)
            rss_after = meter.rss_mb()
            result = drive(store, args, meter, clients)
        finally:
            for client in clients:
                if client.proc.poll() is None:
                    with contextlib.suppress(OSError):
                        client.proc.stdin.write("STOP\n")  # type: ignore[union-attr]
                        client.proc.stdin.flush()  # type: ignore[union-attr]
            for client in clients:
                try:
                    client.proc.wait(30)
                except subprocess.TimeoutExpired:
                    client.proc.kill()
        result.update(collect(clients, result.pop("ids"), args))
        result["rss_before_mb"] = rss_before
        result["rss_attached_mb"] = rss_after
        result["rss_end_mb"] = meter.rss_mb()
        result["kib_per_subscriber"] = 1024 * (rss_after - rss_before) / args.subscribers
        completed, others = h.count_final(_runtime.get())
        result["store_completed"] = completed - 1  # (the warm-up run)
        result["store_other_final"] = others
    return result


def drive(
    store: bh.Store, args: argparse.Namespace, meter: ServerMeter, clients: list[Client]
) -> dict[str, Any]:
    """The trigger process at ``--rate``, then until every event is delivered (or none came for
    ``--settle`` s): the server's CPU over that span."""
    ids_file = store.folder / "triggered.json"
    argv = [sys.executable, __file__, "_trigger", store.url, str(store.folder), str(ids_file)]
    argv += [str(args.rate), str(args.seconds), str(args.tags)]
    with process(argv, store.folder / "trigger.log", stdout=subprocess.PIPE) as trigger:
        trigger.stdout.readline()  # type: ignore[union-attr]  # START: the first batch is next
        cpu_before, threads_before = meter.cpu()
        started = time.monotonic()
        while trigger.poll() is None:
            time.sleep(0.05)
            if time.monotonic() - started > args.seconds + args.timeout:
                raise BenchError("the trigger process did not finish")
        if trigger.returncode != 0:
            log = (store.folder / "trigger.log").read_text()[-2000:]
            raise BenchError(f"the trigger process failed:\n{log}")
    triggered = json.loads(ids_file.read_text())
    per_tag = args.subscribers // args.tags
    expected = sum(len(ids) for ids in triggered["ids"].values()) * per_tag
    last, last_change = -1, time.monotonic()
    give_up = last_change + args.drain_timeout
    while True:
        seen = sum(c.seen for c in clients)
        if seen != last:
            last, last_change = seen, time.monotonic()
        now = time.monotonic()
        if seen >= expected or now - last_change > args.settle or now > give_up:
            break
        time.sleep(0.05)
    cpu_after, threads_after = meter.cpu()
    spent = {tid: cpu - threads_before.get(tid, 0.0) for tid, cpu in threads_after.items()}
    loop_cpu = spent.pop(meter.proc.pid, 0.0)
    return {
        "ids": triggered["ids"],
        "trigger_rate": triggered["rate"],
        "trigger_started": triggered["started"],
        "waited_s": time.monotonic() - started,  # (the span when no event came)
        "server_cpu_s": cpu_after - cpu_before,
        "event_loop_cpu_s": loop_cpu,
        "other_threads_cpu_s": sorted(spent.values(), reverse=True)[:3],
    }


def collect(clients: list[Client], ids: dict[str, list[str]], args: argparse.Namespace) -> dict:
    """What the clients saw against what was triggered."""
    per_tag = args.subscribers // args.tags
    counts: dict[str, int] = {}
    latencies = array.array("d")
    events = duplicates = closed = 0
    last_event = 0.0
    for client in clients:
        if not client.out.exists():
            raise BenchError(f"a client wrote no result ({client.out.name})")
        got = json.loads(client.out.read_text())
        for run_id, n in got["counts"].items():
            counts[run_id] = counts.get(run_id, 0) + n
        events += got["events"]
        duplicates += got["duplicates"]
        closed += got["closed"]
        last_event = max(last_event, got["last_event"])
        with open(str(client.out) + ".lat", "rb") as f:
            latencies.frombytes(f.read())
    expected = seen = 0
    for run_ids in ids.values():
        for run_id in run_ids:
            expected += per_tag
            seen += min(per_tag, counts.pop(run_id, 0))
    runs = sum(len(v) for v in ids.values())
    return {
        "runs": runs,
        "expected": expected,
        "seen": seen,
        "lost": expected - seen,
        "unexpected": sum(counts.values()),  # COMPLETED events of runs not triggered
        "duplicates": duplicates,
        "events": events,
        "connections_closed": closed,
        "last_event": last_event,
        "latencies": sorted(latencies),
    }


def summarize(sub: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    latencies = sub.pop("latencies")
    last_event, started, waited = (
        sub.pop("last_event"),
        sub.pop("trigger_started"),
        sub.pop("waited_s"),
    )
    span = sub["span_s"] = last_event - started if last_event else waited
    out = dict(sub)
    out["subscribers"] = args.subscribers
    out["tags"] = args.tags
    out["target_rate"] = args.rate
    out["delivered_runs_per_s"] = h.rate(sub["seen"] / (args.subscribers // args.tags), span)
    out["events_per_s"] = h.rate(sub["events"], span)
    out["server_cores"] = h.rate(sub["server_cpu_s"], span)
    out["cpu_ms_per_subscriber"] = 1000 * sub["server_cpu_s"] / args.subscribers
    out["cpu_us_per_event"] = 1e6 * sub["server_cpu_s"] / max(1, sub["events"])
    if latencies:
        out["p50_ms"] = 1000 * h.percentile(latencies, 50)
        out["p99_ms"] = 1000 * h.percentile(latencies, 99)
        out["max_ms"] = 1000 * latencies[-1]
    return out


# ---------------------------------------------------------------------------- the roles
FIELD = {
    name: re.compile(rb'"' + name.encode() + rb'":"([^"]*)"') for name in ("id", "finished_at")
}
COMPLETED = b'"status":"COMPLETED"'


class SseClient(asyncio.Protocol):
    """One SSE subscription over a raw connection: the HTTP answer's head, then chunked
    framing (one chunk an event, as the server writes them), COMPLETED events decoded."""

    def __init__(self, state: ClientState, request: bytes) -> None:
        self.state = state
        self.request = request
        self.buffer = b""
        self.head = False
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.completed: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.closed += 1
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed before the answer"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.head:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 200"):
                self.connected.set_exception(BenchError(buffer[:200].decode("latin-1")))
                return
            buffer, self.head = buffer[end + 4 :], True
        pos = 0
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(buffer[pos:line_end], 16)
            if len(buffer) < line_end + 4 + size:
                break
            self.chunk(buffer[line_end + 2 : line_end + 2 + size])
            pos = line_end + 4 + size
        self.buffer = buffer[pos:]

    def chunk(self, data: bytes) -> None:
        if not self.connected.done():
            self.connected.set_result(None)  # the first chunk: the retry hint
        self.state.events += data.count(b"event: run\n")
        if COMPLETED not in data:
            return
        now = time.time()
        for event in data.split(b"\n\n"):
            if COMPLETED not in event:
                continue
            run_id = FIELD["id"].search(event).group(1).decode()  # type: ignore[union-attr]
            if run_id in self.completed:
                self.state.duplicates += 1
                continue
            self.completed.add(run_id)
            finished = FIELD["finished_at"].search(event).group(1).decode()  # type: ignore[union-attr]
            self.state.latencies.append(now - datetime.fromisoformat(finished).timestamp())
            self.state.seen += 1
            self.state.last_event = now


@dataclass
class ClientState:
    events: int = 0
    seen: int = 0
    duplicates: int = 0
    closed: int = 0
    last_event: float = 0.0
    latencies: array.array[float] | None = None


async def client_main(url: str, key: str, tags: list[str], first: int, count: int) -> tuple:
    host, port = url.removeprefix("http://").split(":")
    state = ClientState(latencies=array.array("d"))
    loop = asyncio.get_running_loop()
    protocols: list[SseClient] = []
    for index in range(first, first + count):
        tag = tags[index % len(tags)]
        request = (
            f"GET /realtime/v1/runs?tags={tag} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        protocol = SseClient(state, request)
        await loop.create_connection(lambda p=protocol: p, host, int(port))
        protocols.append(protocol)
        if len(protocols) % 50 == 0:
            await asyncio.gather(*(p.connected for p in protocols[-50:]))
    await asyncio.gather(*(p.connected for p in protocols))
    print("READY", flush=True)
    stop = asyncio.Event()

    def wait_stop() -> None:
        sys.stdin.readline()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_stop, daemon=True).start()
    while not stop.is_set():
        print(f"SEEN {state.seen}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    counts: dict[str, int] = {}
    for protocol in protocols:
        for run_id in protocol.completed:
            counts[run_id] = counts.get(run_id, 0) + 1
    return state, counts


def client_role(argv: list[str]) -> int:
    """``_client URL KEY TAGS FIRST COUNT OUT``: COUNT subscriptions (the i-th to tag
    i mod len(TAGS)), READY once all answered, SEEN n twice a second, results at STOP."""
    url, key, tags, first, count, out = argv
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    state, counts = asyncio.run(client_main(url, key, tags.split(","), int(first), int(count)))
    result = {
        "counts": counts,
        "events": state.events,
        "duplicates": state.duplicates,
        "closed": state.closed,
        "last_event": state.last_event,
    }
    Path(out).write_text(json.dumps(result))
    with open(out + ".lat", "wb") as f:
        state.latencies.tofile(f)  # type: ignore[union-attr]
    return 0


def trigger_role(argv: list[str]) -> int:
    """``_trigger STORE FOLDER OUT RATE SECONDS TAGS``: no-op runs at RATE a second, a batch
    every 20 ms, tagged tag-0, tag-1... in turn; their ids by tag into OUT."""
    url, folder, out, rate, seconds, tags = argv
    runlane.configure(store=url, environment=ENVIRONMENT)
    sys.path.insert(0, folder)
    __import__(MODULE)
    ids: dict[str, list[str]] = {tag_name(k): [] for k in range(int(tags))}
    total = int(float(rate) * float(seconds))
    print("START", flush=True)
    wall = time.time()
    started = time.perf_counter()
    sent = 0
    step = 0
    while sent < total:
        step += 1
        due = min(total, round(float(rate) * TRIGGER_STEP * step))
        items = [
            {"id": NOOP_TASK, "payload": None, "options": {"tags": [tag_name(i % int(tags))]}}
            for i in range(sent, due)
        ]
        if items:
            for i, handle in zip(range(sent, due), runlane.batch.trigger(items).runs, strict=True):
                ids[tag_name(i % int(tags))].append(handle.id)
            sent = due
        pause = started + step * TRIGGER_STEP - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    took = time.perf_counter() - started
    Path(out).write_text(json.dumps({"ids": ids, "rate": h.rate(sent, took), "started": wall}))
    return 0


# ---------------------------------------------------------------------------- report
def measurements(store: str, lat: dict, sub: dict) -> list[h.Measurement]:
    section = f"{store}: latency"
    rows = [
        h.Measurement(section, "change → subscriber p50", lat["p50_ms"], "ms"),
        h.Measurement(section, "change → subscriber p99", lat["p99_ms"], "ms"),
        h.Measurement(section, "change → subscriber max", lat["max_ms"], "ms"),
        h.Measurement(
            section,
            "updates seen",
            lat["updates_seen"],
            "",
            f"{lat['updates_written']:,} written by {lat['runs']} runs, "
            f"{lat['coalesced']} coalesced",
        ),
    ]
    section = f"{store}: {sub['subscribers']:,} SSE subscribers"
    detail = f"{sub['tags']} tags x {sub['subscribers'] // sub['tags']} subscribers"
    rows += [
        h.Measurement(
            section,
            "runs triggered",
            sub["trigger_rate"],
            "runs/s",
            f"target {sub['target_rate']}/s",
        ),
        h.Measurement(
            section,
            "runs delivered to all subscribers",
            sub["delivered_runs_per_s"],
            "runs/s",
            f"{sub['runs']:,} runs in {sub['span_s']:.1f} s, first trigger → last event",
        ),
        h.Measurement(
            section,
            "events lost",
            sub["lost"],
            "",
            f"{sub['seen']:,} of {sub['expected']:,} COMPLETED seen; {detail}",
        ),
        h.Measurement(
            section,
            "events delivered",
            sub["events_per_s"],
            "ops/s",
            f"{sub['events']:,} run events",
        ),
        h.Measurement(
            section,
            "COMPLETED latency p50",
            sub.get("p50_ms", float("nan")),
            "ms",
            "finished_at → client",
        ),
        h.Measurement(section, "COMPLETED latency p99", sub.get("p99_ms", float("nan")), "ms"),
        h.Measurement(
            section,
            "server RSS per subscriber",
            sub["kib_per_subscriber"],
            "KiB",
            f"{sub['rss_before_mb']:.0f} → {sub['rss_attached_mb']:.0f} MiB attached, "
            f"{sub['rss_end_mb']:.0f} MiB at the end",
        ),
        h.Measurement(
            section,
            "server CPU",
            sub["server_cores"],
            "cores",
            f"{sub['server_cpu_s']:.1f} s: event loop thread {sub['event_loop_cpu_s']:.1f} s, "
            "busiest others " + ", ".join(f"{x:.1f}" for x in sub["other_threads_cpu_s"]) + " s",
        ),
        h.Measurement(
            section,
            "server CPU per subscriber",
            sub["cpu_ms_per_subscriber"],
            "ms",
            "over the span",
        ),
        h.Measurement(section, "server CPU per event", sub["cpu_us_per_event"], "µs"),
    ]
    return rows


def measure_store(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with bh.make_store(name, args) as store:
        (store.folder / f"{MODULE}.py").write_text(TASKS_MODULE)
        try:
            with worker(store, max(8, args.parallel)):
                print(f"  {name}: change → subscriber latency...", file=sys.stderr, flush=True)
                latency = measure_latency(store, args)
                what = f"{args.subscribers:,} subscribers at {args.rate}/s"
                print(f"  {name}: {what}...", file=sys.stderr, flush=True)
                subscribers = summarize(measure_subscribers(store, args), args)
        finally:
            deleted = store.cleanup()
    return {
        "store": name,
        "latency": latency,
        "subscribers": subscribers,
        "redis_keys_deleted": deleted,
        "prefix": store.prefix,
    }


def report(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> None:
    rows = []
    for res in results:
        rows += measurements(res["store"], res["latency"], res["subscribers"])
    settings = {
        "changes": args.changes,
        "updates a run": args.updates,
        "subscribers": args.subscribers,
        "tags": args.tags,
        "clients": args.clients,
        "rate": f"{args.rate}/s for {args.seconds} s",
    }
    h.print_results("runlane realtime", rows, command=command, settings=settings)
    for res in results:
        lat, sub = res["latency"], res["subscribers"]
        if res["store"] == "redis":
            verdict = "met" if lat["p99_ms"] < 20 else "NOT met"
            print(
                f"redis: change → subscriber p99 {lat['p99_ms']:.1f} ms, target < 20 ms: {verdict}"
            )
        print(
            f"{res['store']} check: {sub['lost']} events lost, {sub['unexpected']} unexpected, "
            f"{sub['duplicates']} duplicates, {sub['store_other_final']} runs not COMPLETED"
        )
        if res["prefix"]:
            print(
                f"keys of this run (prefix {res['prefix']}:) deleted: {res['redis_keys_deleted']:,}"
            )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        return client_role(argv[1:])
    if argv[:1] == ["_trigger"]:
        return trigger_role(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="a smoke form (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--changes", type=int, default=2000, help="metadata updates (2000)")
    parser.add_argument("--updates", type=int, default=20, help="updates a run (20)")
    parser.add_argument("--parallel", type=int, default=4, help="runs followed at once (4)")
    parser.add_argument("--gap", type=float, default=25, help="ms between two updates (25)")
    parser.add_argument("--subscribers", type=int, default=1000, help="SSE connections (1000)")
    parser.add_argument("--tags", type=int, default=10, help="tags subscribed to (10)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (2)")
    parser.add_argument("--rate", type=int, default=500, help="runs triggered a second (500)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of triggers (20)")
    parser.add_argument(
        "--settle", type=float, default=10, help="seconds without a new event that end a case"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30,
        help="seconds after the last trigger to wait for the events (30): later ones count lost",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="default $REDIS_URL, else redis://127.0.0.1:6379/15",
    )
    parser.add_argument("--timeout", type=float, default=60, help="seconds a step may take")
    args = parser.parse_args(argv)
    if args.quick:
        args.changes, args.updates, args.subscribers, args.tags = 100, 20, 20, 2
        args.clients, args.rate, args.seconds, args.settle = 1, 50, 1.5, 3
    if args.subscribers % args.tags:
        parser.error("--subscribers must be a multiple of --tags")
    stores = ["sqlite", "redis"] if args.store == "both" else [args.store]
    results = [measure_store(name, args) for name in stores]
    if args.json:
        print(json.dumps({"machine": h.machine_info(), "results": results}, indent=2))
    else:
        report(results, args, "python benchmarks/bench_realtime.py " + " ".join(argv))
    return 0 if all(r["subscribers"]["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
