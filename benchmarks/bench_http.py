"""HTTP: triggering, batch triggering and listing runs through ``runlane serve`` over loopback,
against the same verbs called in-process on the same store, measured in the same run.

    python benchmarks/bench_http.py [--store sqlite|redis|both] [--runs 2000] [--clients 8]
        [--batches 10] [--list-pages 0] [--workers 1] [--redis-url URL] [--timeout 60]
        [--profile] [--top 20]

For each store (a SQLite file in a temporary folder; Redis under a private key prefix, by
default in database 15, whose keys are deleted afterwards: SCAN + DEL, never FLUSHDB):

1. A secret key is made with ``runlane --store URL --env prod keys create`` and the server is
   started as users start it, ``runlane --store URL --env prod serve TASKS.py --port P``, in a
   subprocess (one uvicorn process, or ``--workers W``; no worker executing runs: they stay
   QUEUED). The environment is ``prod`` so that the dev environment's default TTL plays no
   part. ``TASKS.py`` defines the no-op task triggered (as this process does), so the runs
   are QUEUED, not WAITING_FOR_DEPLOY. The script waits for ``GET /healthz``.
2. Trigger, one caller: ``--runs`` sequential ``runlane.tasks.trigger`` calls in this process,
   then as many ``POST /api/v1/tasks/{id}/trigger`` (Trigger.dev's body, ``{"payload": ...,
   "options": {...}}``) from one httpx client on a keep-alive connection: runs a second and the
   p50/p99 latency of a call.
3. Trigger, ``--clients`` callers at once: ``--runs`` triggers shared among C threads calling
   ``tasks.trigger`` in this process, then among C threads each with its own keep-alive httpx
   client: runs a second (and the latency under that load).
4. Batch trigger: ``--batches`` batches of 500 items, ``runlane.batch.trigger`` in-process then
   ``POST /api/v1/tasks/batch`` from one client: runs a second.
5. Listing: every page of 100 runs, newest first, following the cursor (``--list-pages`` caps
   the pages walked): ``runlane.runs.list(limit=100)`` / ``get_next_page()`` in-process, then
   ``GET /api/v1/runs?page[size]=100`` following ``pagination.next`` with ``page[after]``:
   pages a second. Both walks must see every run once.
6. The API handler alone: ``--runs``/2 triggers through ``build_api(rt).handle(Request(...))``
   in this process (routing, authentication, body parsing, the run token, the JSON answer;
   no HTTP): what the HTTP transport adds is the rest.

During every case the CPU time of each process is read: this one (the callers, in-process or
httpx), the server (``/proc/PID/stat``) and, on Redis, the Redis server (``INFO cpu``; it is
server-wide, so other clients of the same Redis count too). Server and clients share the
machine's cores: on a 2-core machine the client's CPU is taken from the server's.

The ratios are HTTP ÷ in-process. The issue's targets: the HTTP trigger throughput (C clients)
at least 50 % of the in-process one (the better of 1 and C threads), and a p99 latency under
20 ms for one client on a keep-alive connection.

``--profile``: afterwards, a second ``runlane serve`` on the same store, started through a
small wrapper that turns cProfile on and off by signal (SIGUSR1/SIGUSR2: startup and warm-up
are not profiled) in the event loop's thread and around each call handed to a thread
(``asyncio.to_thread``: the API handler), serves ``--runs`` triggers from one keep-alive
client, one after the other (no two requests compete for the GIL). Its time, the event loop's
idle wait for the next request excluded, is split by where the code lives (uvicorn and h11,
asyncio and the thread hop with the socket writes, runlane's HTTP layer, engine and store, the
JWT libraries, json...) and, inside ``api.handle``, by part (authentication, body parsing,
``engine.trigger``, the run token, the answer), with the functions taking the most time of
their own. cProfile slows Python code with many small calls more than C code and system
calls: the shares are indicative.

Checks, which fail the script: every answer is a 200 with the runs asked for, every run
created is QUEUED and the store holds exactly the runs triggered, each list walk sees every run
once. See benchmarks/README.md for the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import shutil
import signal
import socket
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
import httpx

import runlane
from runlane.core import runtime as _runtime
from runlane.core.runtime import Runtime

TASK_ID = "bench-http"
BATCH = 500  # items a batch request (runlane's and Trigger.dev's limit)
PAGE = 100  # runs a list page (the largest page)
ENVIRONMENT = "prod"  # not dev: no default TTL
WARMUP = 30  # untimed calls of each kind before the first case
TRIGGER_PATH = f"/api/v1/tasks/{TASK_ID}/trigger"
JSON_HEADERS = {"content-type": "application/json"}

TASKS_MODULE = f'''"""The task bench_http.py triggers (no worker runs it: the runs stay QUEUED)."""
import runlane


@runlane.task(id="{TASK_ID}", retry={{"max_attempts": 3}})
def bench_http(payload):
    return None
'''


class BenchError(RuntimeError):
    """The benchmark could not measure (the server did not start, an answer was wrong...)."""


# ---------------------------------------------------------------------------- requests
def payload(i: int) -> dict[str, Any]:
    return {"index": i, "user": "bench", "plan": "pro"}


def trigger_body(i: int) -> bytes:
    """Trigger.dev's ``TriggerTaskRequestBody`` (JSON payload, one option)."""
    return json.dumps(
        {"payload": payload(i), "options": {"maxAttempts": 3, "payloadType": "application/json"}}
    ).encode()


def batch_body(start: int) -> bytes:
    items = [
        {"task": TASK_ID, "payload": payload(i), "options": {"maxAttempts": 3}}
        for i in range(start, start + BATCH)
    ]
    return json.dumps({"items": items}).encode()


def in_process_trigger(i: int) -> str:
    return runlane.tasks.trigger(TASK_ID, payload(i), max_attempts=3).id


def in_process_batch(start: int) -> int:
    items = [
        {"id": TASK_ID, "payload": payload(i), "options": {"max_attempts": 3}}
        for i in range(start, start + BATCH)
    ]
    return len(runlane.batch.trigger(items).runs)


def http_client(url: str, key: str, args: argparse.Namespace) -> httpx.Client:
    """A keep-alive client authenticated with the secret key."""
    return httpx.Client(
        base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=args.timeout
    )


def http_trigger(client: httpx.Client, i: int) -> str:
    response = client.post(TRIGGER_PATH, content=trigger_body(i), headers=JSON_HEADERS)
    if response.status_code != 200:
        raise BenchError(f"trigger answered {response.status_code}: {response.text[:300]}")
    return response.json()["id"]


def http_batch(client: httpx.Client, start: int) -> int:
    response = client.post("/api/v1/tasks/batch", content=batch_body(start), headers=JSON_HEADERS)
    if response.status_code != 200:
        raise BenchError(f"batch trigger answered {response.status_code}: {response.text[:300]}")
    runs = response.json()["runs"]
    if len(runs) != BATCH:
        raise BenchError(f"a batch of {BATCH} answered {len(runs)} runs")
    return len(runs)


# ---------------------------------------------------------------------------- CPU
def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (state first)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) so far of process ``pid`` and its
    descendants (``runlane serve --workers N``: the supervisor and its N processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(entry)[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(current)
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(children.get(current, []))
    return total


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CpuMeter:
    """CPU seconds of this process, the server's and the Redis server's over a case."""

    def __init__(self, server_pid: int | None, redis_client: Any = None) -> None:
        self.server_pid = server_pid
        self.redis = redis_client

    def read(self) -> dict[str, float]:
        out = {"client": time.process_time()}
        if self.server_pid is not None and Path(f"/proc/{self.server_pid}/stat").exists():
            out["server"] = _tree_cpu(self.server_pid)
        if self.redis is not None:
            out["redis"] = _redis_cpu(self.redis)
        return out

    @contextlib.contextmanager
    def over(self, case: Case) -> Iterator[None]:
        before = self.read()
        started = time.perf_counter()
        yield
        case.seconds = time.perf_counter() - started
        after = self.read()
        case.cpu = {k: after[k] - before[k] for k in after if k in before}


# ---------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One timed case: ``n`` items (runs, or pages) in ``seconds``; each call's latency."""

    n: int = 0
    calls: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return h.rate(self.n, self.seconds)

    def p(self, q: float) -> float:
        """The q-th percentile latency in ms."""
        return 1000 * h.percentile(self.latencies, q) if self.latencies else float("nan")

    def cpu_per(self, who: str) -> float | None:
        """CPU µs of ``who`` an item."""
        if who not in self.cpu or not self.n:
            return None
        return 1e6 * self.cpu[who] / self.n


def sequential(call: Callable[[int], Any], indexes: range) -> list[float]:
    """Call ``call(i)`` for each index, one after the other; the latency of each."""
    latencies = []
    for i in indexes:
        started = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - started)
    return latencies


def concurrently(
    make_call: Callable[[], tuple[Callable[[int], Any], Callable[[], None]]],
    callers: int,
    indexes: range,
    meter: CpuMeter,
    case: Case,
    timeout: float,
) -> None:
    """``callers`` threads share ``indexes``; each makes its own call (its own HTTP client)
    and warms it up with one call (index -1) before the clock starts. ``case`` gets the wall
    time from the common start to the last call's end, and every latency."""
    shares = [indexes[k::callers] for k in range(callers)]
    ready = threading.Barrier(callers + 1)
    go = threading.Barrier(callers + 1)
    latencies: list[list[float]] = [[] for _ in range(callers)]
    errors: list[BaseException] = []

    def run(k: int) -> None:
        call, close = make_call()
        try:
            call(-1)  # the connection is open and warm before the clock starts
            ready.wait(timeout)
            go.wait(timeout)
            latencies[k] = sequential(call, shares[k])
        except BaseException as exc:
            errors.append(exc)
            ready.abort()
            go.abort()
        finally:
            close()

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(callers)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout)
    with meter.over(case):
        with contextlib.suppress(threading.BrokenBarrierError):
            go.wait(timeout)
        for t in threads:
            t.join(timeout * 10)
    if errors:
        raise BenchError(f"a caller failed: {errors[0]!r}") from errors[0]
    case.latencies = [x for lat in latencies for x in lat]
    case.n = case.calls = len(case.latencies)


# ---------------------------------------------------------------------------- stores
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runlane_command() -> list[str]:
    """The ``runlane`` console script of this interpreter (``python -m runlane.cli`` if none)."""
    found = shutil.which("runlane", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "runlane.cli"]


def clean_environ() -> dict[str, str]:
    """This environment without RUNLANE_* (the store and environment are given explicitly)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNLANE_")}


@dataclass
class Store:
    name: str
    url: str  # what --store and configure() take
    folder: Path  # temporary: the task module, the server's log, the SQLite file
    cleanup: Callable[[], int]  # deletes what the store wrote; returns Redis keys deleted
    prefix: str = ""  # Redis: the private key prefix
    redis: Any = None  # a client of the Redis server (CPU readings), or None


@contextlib.contextmanager
def make_store(name: str, args: argparse.Namespace) -> Iterator[Store]:
    folder = Path(tempfile.mkdtemp(prefix="rlbench-http-"))
    (folder / "bench_http_tasks.py").write_text(TASKS_MODULE)
    client = None
    try:
        if name == "sqlite":
            yield Store(name, f"sqlite:///{folder}/bench.db", folder, lambda: 0)
            return
        import redis

        client = redis.Redis.from_url(args.redis_url)
        prefix = f"rlbench-http-{uuid.uuid4().hex[:12]}"
        sep = "&" if "?" in args.redis_url else "?"

        def delete_keys() -> int:
            deleted = 0
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for chunk in h.chunks(keys, 1000):
                deleted += client.delete(*chunk)
            return deleted

        url = f"{args.redis_url}{sep}prefix={prefix}"
        yield Store(name, url, folder, delete_keys, prefix, client)
    finally:
        if client is not None:
            client.close()
        shutil.rmtree(folder, ignore_errors=True)


def make_key(store: Store, timeout: float) -> str:
    """``runlane --store URL --env prod keys create``: the key, printed once on stdout."""
    cmd = [*runlane_command(), "--store", store.url, "--env", ENVIRONMENT, "keys", "create"]
    proc = subprocess.run(
        [*cmd, "--name", "bench_http"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_environ(),
    )
    key = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not key.startswith(f"rl_{ENVIRONMENT}_"):
        raise BenchError(f"runlane keys create failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return key


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    command: str
    log: Path


@contextlib.contextmanager
def serving(
    store: Store, timeout: float, launcher: list[str] | None = None, workers: int = 1
) -> Iterator[Server]:
    """``runlane --store URL --env prod serve TASKS.py --port P [--workers W]`` until the block
    ends (SIGINT, as Ctrl-C; killed if it has not stopped after 15 s). ``launcher``: what runs
    the command's arguments instead of the ``runlane`` script (the profiler's wrapper)."""
    port = free_port()
    module = store.folder / "bench_http_tasks.py"
    launcher = launcher or runlane_command()
    cmd = [
        *launcher,
        "--store",
        store.url,
        "--env",
        ENVIRONMENT,
        "serve",
        str(module),
        "--port",
        str(port),
        "--loglevel",
        "warning",
        *(["--workers", str(workers)] if workers > 1 else []),
    ]
    log = store.folder / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_environ(),
            cwd=store.folder,
            start_new_session=True,  # its own process group: --workers' children included
        )
    url = f"http://127.0.0.1:{port}"
    shown = ["runlane", *cmd[len(launcher) :]]
    shown[shown.index(str(module))] = module.name
    server = Server(proc, url, " ".join(shown), log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise BenchError(
                    f"runlane serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"runlane serve did not answer /healthz within {timeout:.0f} s")
            time.sleep(0.05)
        yield server
    finally:
        h.stop_group(proc)


@contextlib.contextmanager
def in_process(store: Store) -> Iterator[Runtime]:
    """runlane configured in this process on the same store and environment, the same task
    defined (imported from the same module as the server's)."""
    rt = runlane.configure(store=store.url, environment=ENVIRONMENT)
    sys.path.insert(0, str(store.folder))
    try:
        sys.modules.pop("bench_http_tasks", None)
        __import__("bench_http_tasks")
        yield rt
    finally:
        sys.path.remove(str(store.folder))
        sys.modules.pop("bench_http_tasks", None)
        _runtime.install(None)
        rt.close()


# ---------------------------------------------------------------------------- one store
@dataclass
class StoreResult:
    store: str
    command: str = ""
    cases: dict[str, Case] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    profile: ServerProfile | None = None
    keys_deleted: int = 0
    prefix: str = ""


class Counter:
    """Hands out payload indexes: every run gets a payload of its own."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, n: int) -> range:
        r = range(self.next, self.next + n)
        self.next += n
        return r


def measure_store(name: str, args: argparse.Namespace) -> StoreResult:
    res = StoreResult(name)
    with make_store(name, args) as store:
        try:
            key = make_key(store, args.timeout)
            serve = serving(store, args.timeout, workers=args.workers)
            with serve as server, in_process(store) as rt:
                res.command = server.command
                counter = Counter()
                measure(rt, store, server, key, args, res, counter)
            if args.profile:
                print(f"  {name}: runlane serve again, under cProfile...", flush=True)
                res.profile = profile_server(
                    store, lambda url: http_client(url, key, args), counter, args
                )
        finally:
            res.keys_deleted, res.prefix = store.cleanup(), store.prefix
    return res


def measure(
    rt: Runtime,
    store: Store,
    server: Server,
    key: str,
    args: argparse.Namespace,
    res: StoreResult,
    counter: Counter,
) -> None:
    n, c = args.runs, args.clients
    meter = CpuMeter(server.proc.pid, store.redis)
    triggered = 0

    def client() -> httpx.Client:
        return http_client(server.url, key, args)

    def case(label: str) -> Case:
        res.cases[label] = Case()
        print(f"  {store.name}: {label}...", flush=True)
        return res.cases[label]

    with client() as one:
        # warm-up: the task registered, the connection open, the code paths taken once
        sequential(in_process_trigger, counter.take(WARMUP))
        sequential(lambda i: http_trigger(one, i), counter.take(WARMUP))
        triggered += 2 * WARMUP

        k = case("trigger 1 in-process")
        with meter.over(k):
            k.latencies = sequential(in_process_trigger, counter.take(n))
        k.n = k.calls = n
        k = case("trigger 1 http")
        with meter.over(k):
            k.latencies = sequential(lambda i: http_trigger(one, i), counter.take(n))
        k.n = k.calls = n
        triggered += 2 * n

        def in_process_caller() -> tuple[Callable[[int], Any], Callable[[], None]]:
            return in_process_trigger, lambda: None

        def http_caller() -> tuple[Callable[[int], Any], Callable[[], None]]:
            cl = client()
            return (lambda i: http_trigger(cl, i)), cl.close

        for label, caller in (("in-process", in_process_caller), ("http", http_caller)):
            concurrently(
                caller, c, counter.take(n), meter, case(f"trigger C {label}"), args.timeout
            )
        triggered += 2 * (n + c)

        k = case("batch in-process")
        with meter.over(k):
            k.latencies = sequential(
                in_process_batch,
                range(counter.take(args.batches * BATCH).start, counter.next, BATCH),
            )
        k.calls, k.n = args.batches, args.batches * BATCH
        k = case("batch http")
        with meter.over(k):
            k.latencies = sequential(
                lambda i: http_batch(one, i),
                range(counter.take(args.batches * BATCH).start, counter.next, BATCH),
            )
        k.calls, k.n = args.batches, args.batches * BATCH
        triggered += 2 * args.batches * BATCH

        handler_case(rt, key, counter, max(1, n // 2), meter, case("trigger 1 handler"))
        triggered += max(1, n // 2) + WARMUP

        check_runs(rt, triggered, res.checks)
        walk_in_process(args.list_pages, meter, case("list in-process"), triggered, res.checks)
        walk_http(one, args.list_pages, meter, case("list http"), triggered, res.checks)


def handler_case(
    rt: Runtime, key: str, counter: Counter, n: int, meter: CpuMeter, case: Case
) -> None:
    """Triggers through the API's ``handle()`` in this process: no HTTP, no server."""
    from runlane.frameworks.http.api import Request
    from runlane.frameworks.http.app import build_api

    api = build_api(rt)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    def call(i: int) -> None:
        response = api.handle(Request("POST", TRIGGER_PATH, headers=headers, body=trigger_body(i)))
        if response.status != 200:
            raise BenchError(f"api.handle answered {response.status}: {response.body[:300]!r}")

    sequential(call, counter.take(WARMUP))
    with meter.over(case):
        case.latencies = sequential(call, counter.take(n))
    case.n = case.calls = n


def check_runs(rt: Runtime, expected: int, checks: list[str]) -> None:
    counts = rt.store.count_runs()
    total = sum(counts.values())
    if total != expected or set(counts) != {"QUEUED"}:
        raise BenchError(f"{expected:,} runs triggered, the store holds {counts}")
    checks.append(f"{total:,} runs triggered, {total:,} in the store, every one QUEUED")


def walk_in_process(
    max_pages: int, meter: CpuMeter, case: Case, total: int, checks: list[str]
) -> None:
    seen: set[str] = set()
    with meter.over(case):
        started = time.perf_counter()
        page = runlane.runs.list(limit=PAGE)
        while True:
            case.latencies.append(time.perf_counter() - started)
            case.n += 1
            seen.update(r.id for r in page.data)
            if not page.has_next_page() or case.n == max_pages:
                break
            started = time.perf_counter()
            page = page.get_next_page()
    _check_walk("in-process runs.list", case, seen, total, max_pages, checks)


def walk_http(
    client: httpx.Client,
    max_pages: int,
    meter: CpuMeter,
    case: Case,
    total: int,
    checks: list[str],
) -> None:
    seen: set[str] = set()
    params: dict[str, Any] = {"page[size]": PAGE}
    with meter.over(case):
        while True:
            started = time.perf_counter()
            response = client.get("/api/v1/runs", params=params)
            if response.status_code != 200:
                raise BenchError(f"runs list answered {response.status_code}: {response.text}")
            body = response.json()
            case.latencies.append(time.perf_counter() - started)
            case.n += 1
            seen.update(r["id"] for r in body["data"])
            cursor = body["pagination"].get("next")
            if not cursor or case.n == max_pages:
                break
            params["page[after]"] = cursor
    _check_walk("GET /api/v1/runs", case, seen, total, max_pages, checks)


def _check_walk(
    what: str, case: Case, seen: set[str], total: int, max_pages: int, checks: list[str]
) -> None:
    case.calls = case.n
    expected = total if case.n != max_pages else min(total, max_pages * PAGE)
    if len(seen) != expected:
        raise BenchError(f"{what}: {case.n} pages held {len(seen):,} runs, {expected:,} expected")
    checks.append(f"{what}: {case.n:,} pages of {PAGE}, {len(seen):,} distinct runs")


# ---------------------------------------------------------------------------- profile
Key = tuple[str, int, str]  # a pstats function: (path, line, name)


def _path(key: Key) -> str:
    return key[0].replace(os.sep, "/")


def _is(func: Any) -> Callable[[Key], bool]:
    """The pstats key of ``func`` (a function, or a method of a class)."""
    code = getattr(func, "__func__", func).__code__
    wanted = (code.co_filename.replace(os.sep, "/"), code.co_firstlineno, code.co_name)
    return lambda k: (_path(k), k[1], k[2]) == wanted


def _parts() -> list[tuple[str, Callable[[Key], bool]]]:
    """(part, its function) of a trigger in the API handler: a part's time is the cumulative
    time of the calls into it from outside it; the parts do not call one another."""
    from runlane.api import auth as tokens
    from runlane.core.engine import Engine
    from runlane.frameworks.http import api, auth, shapes

    return [
        ("routing (Router.match)", _is(api.Router.match)),
        ("authentication (digest, the key's row read)", _is(auth.Authenticator.authenticate)),
        ("body: JSON decode (json_object)", _is(api.Request.json_object)),
        ("body: shapes.parse_trigger_body", _is(shapes.parse_trigger_body)),
        ("engine.trigger (prepare, create_runs, send)", _is(Engine.trigger)),
        ("run token: sign_token (HS256 JWT)", _is(tokens.sign_token)),
        ("answer: trigger_response_headers", _is(shapes.trigger_response_headers)),
        ("answer: Response.json", _is(api.Response.json)),
    ]


ENGINE_PART = "engine.trigger (prepare, create_runs, send)"
CREATE_PART = "  of which store.create_runs"


def _create_runs(k: Key) -> bool:
    return k[2] == "create_runs" and "runlane/backends/" in _path(k)


# Where a function's own time is counted, by where its code lives (the first match); a
# builtin (a C function: sqlite3, sockets, hashing) counts where its caller does.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("uvicorn + h11: HTTP parsing and framing", ("/uvicorn/", "/h11/", "/httptools/")),
    (
        "asyncio: event loop, socket writes, the thread hop (to_thread, wake-ups)",
        ("/asyncio/", "/concurrent/futures/", "/threading.py", "/selectors.py", "/queue.py"),
    ),
    ("runlane HTTP layer: AsgiApp, routing, auth, parsing, answers", ("runlane/frameworks/",)),
    ("runlane store, Python side (+ its sqlite3 / redis-py calls)", ("runlane/backends/",)),
    ("redis-py", ("/redis/",)),
    ("runlane engine, options, tokens (the rest of runlane)", ("runlane/",)),
    ("PyJWT, hmac, hashlib, base64 (the run token)", ("/jwt/", "/hmac.py", "/base64.py")),
    ("json (encode, decode)", ("/json/",)),
    ("other libraries (pydantic, typing, logging, ...)", ("",)),
)


def _group(key: Key) -> str:
    path = _path(key)
    for name, markers in GROUPS:
        if any(marker in path for marker in markers):
            return name
    return GROUPS[-1][0]


@dataclass
class ServerProfile:
    n: int  # triggers served under the profiler
    seconds: float  # their wall time (the profiler slows the server)
    total: float  # seconds the server was busy (its threads, the idle wait excluded)
    groups: list[tuple[str, float]]  # (where the code lives, seconds of own time)
    handle: float  # seconds in HttpApi.handle (cumulative)
    parts: list[tuple[str, float]]  # (part of api.handle, seconds)
    top: list[tuple[str, int, float, float]]
    path: str  # the pstats file (removed with the temporary folder)


def _entered(raw: dict[Key, Any], part: Callable[[Key], bool]) -> float:
    """Cumulative seconds of the calls into ``part`` from outside it."""
    seconds = 0.0
    for key, (_cc, _nc, _tt, _ct, callers) in raw.items():
        if part(key):
            for caller, (_c, _n, _t, ct) in callers.items():
                if not part(caller):
                    seconds += ct
    return seconds


# ``python profiled_serve.py OUT ARGS...``: ``runlane ARGS...`` (``serve``) with cProfile
# switched on by SIGUSR1 and off by SIGUSR2: the event loop's thread, and each call the loop
# hands to a thread (``asyncio.to_thread``: the API handler) while it is on. The merged stats
# are written to OUT when the server stops. Startup, imports and warm-up are not profiled.
PROFILED_SERVE = """
import cProfile, pstats, signal, sys, threading
from concurrent.futures import thread as futures_thread

out, args = sys.argv[1], sys.argv[2:]
on = False
loop_profile = cProfile.Profile()
profiles = [loop_profile]
local = threading.local()
run_item = futures_thread._WorkItem.run


def profiled_run(item):
    if not on:
        return run_item(item)
    profile = getattr(local, "profile", None)
    if profile is None:
        profile = local.profile = cProfile.Profile()
        profiles.append(profile)
    profile.enable()
    try:
        return run_item(item)
    finally:
        profile.disable()


def start(*_):
    global on
    on = True
    loop_profile.enable()


def stop(*_):
    global on
    on = False
    loop_profile.disable()


futures_thread._WorkItem.run = profiled_run
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
from runlane.cli import main

try:
    main(args, prog_name="runlane")
finally:
    stop()
    stats = pstats.Stats(*profiles)
    stats.dump_stats(out)
"""


IDLE = ("<method 'poll' of 'select.epoll' objects>", "<method 'select' of 'select.select' objects>")


def profile_server(
    store: Store,
    make_client: Callable[[str], httpx.Client],
    counter: Counter,
    args: argparse.Namespace,
) -> ServerProfile:
    """A second ``runlane serve`` on the same store, under cProfile (PROFILED_SERVE) while one
    keep-alive client sends ``--runs`` triggers one after the other (no two requests compete
    for the GIL); its time split by where the code lives and, inside ``api.handle``, by part.
    The event loop waiting for the next request (``epoll``) is not counted."""
    wrapper = store.folder / "profiled_serve.py"
    wrapper.write_text(PROFILED_SERVE)
    out = store.folder / "serve.pstats"
    launcher = [sys.executable, str(wrapper), str(out)]
    with serving(store, args.timeout, launcher=launcher) as server, make_client(server.url) as cl:
        sequential(lambda i: http_trigger(cl, i), counter.take(WARMUP))
        server.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        with h.Stopwatch() as sw:
            sequential(lambda i: http_trigger(cl, i), counter.take(args.runs))
        server.proc.send_signal(signal.SIGUSR2)
        time.sleep(0.2)
    if not out.exists():
        raise BenchError(f"the profiled server wrote no stats:\n{server.log.read_text()[-3000:]}")
    raw = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    own = dict.fromkeys((name for name, _ in GROUPS), 0.0)
    for key, (_cc, _nc, tt, _ct, callers) in raw.items():
        if key[0] != "~":
            own[_group(key)] += tt
        elif key[2] not in IDLE:
            attributed = 0.0  # a builtin: its time split among its callers' groups
            for caller_key, (_c, _n, t, _ct2) in callers.items():
                own[_group(caller_key)] += t
                attributed += t
            own[GROUPS[-1][0]] += max(0.0, tt - attributed)

    from runlane.frameworks.http.api import HttpApi

    handle = _entered(raw, _is(HttpApi.handle))
    parts = [(name, _entered(raw, part)) for name, part in _parts()]
    outside = sum(seconds for _, seconds in parts)
    at = [name for name, _ in parts].index(ENGINE_PART) + 1
    parts.insert(at, (CREATE_PART, min(dict(parts)[ENGINE_PART], _entered(raw, _create_runs))))
    parts.append(("other (in api.handle)", max(0.0, handle - outside)))
    busy = [(k, v) for k, v in raw.items() if k[2] not in IDLE]
    ordered = sorted(busy, key=lambda item: item[1][2], reverse=True)[: args.top]
    rows = [
        (_short(path, line, func), nc, tt, ct)
        for (path, line, func), (_cc, nc, tt, ct, _callers) in ordered
    ]
    groups = sorted(own.items(), key=lambda item: -item[1])
    return ServerProfile(
        args.runs, sw.seconds, sum(own.values()), groups, handle, parts, rows, str(out)
    )


def _short(path: str, line: int, func: str) -> str:
    path = path.replace(os.sep, "/")
    if "/runlane/" in path:
        path = "runlane/" + path.rsplit("/runlane/", 1)[1]
    else:
        for marker in ("site-packages/", "lib/python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
    if path == "~":
        return func
    return f"{path}:{line}({func})"


# ---------------------------------------------------------------------------- report
def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def _rate(value: float, unit: str = "runs/s") -> str:
    return f"{value:,.0f} {unit}"


def _cpu(case: Case, who: str) -> str:
    value = case.cpu_per(who)
    return "-" if value is None else f"{value:,.0f} µs"


def status(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]NOT met[/red]"


@dataclass
class Targets:
    throughput_ratio: float
    p99: float

    @property
    def throughput_ok(self) -> bool:
        return self.throughput_ratio >= 0.5

    @property
    def p99_ok(self) -> bool:
        return self.p99 < 20


def targets_of(r: StoreResult) -> Targets:
    k = r.cases
    best = max(k["trigger 1 in-process"].rate, k["trigger C in-process"].rate)
    return Targets(h.ratio(k["trigger C http"].rate, best), k["trigger 1 http"].p(99))


def report(results: list[StoreResult], args: argparse.Namespace, command: str) -> None:
    import uvicorn
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=170)
    console.print(
        "[bold]HTTP: runlane serve over loopback (keep-alive) against the same verbs "
        "in-process, same store, same run[/bold]"
    )
    console.print(f"  [dim]command:[/dim] {command}")
    for r in results:
        console.print(f"  [dim]{r.store} server:[/dim] {r.command}")
    machine = h.machine_info()
    loop = "uvloop" if _has("uvloop") else "asyncio"
    parser = "httptools" if _has("httptools") else "h11"
    settings = {
        "server": f"uvicorn {uvicorn.__version__} ({parser}, {loop}), "
        + ("1 process" if args.workers == 1 else f"--workers {args.workers}"),
        "client": f"httpx {httpx.__version__}",
        "environment": ENVIRONMENT,
        "runs a case": f"{args.runs:,}",
        "clients": args.clients,
        "batches": f"{args.batches} x {BATCH}",
    }
    if any(r.store == "redis" for r in results):
        settings["redis"] = args.redis_url
    for info in (machine, settings):
        console.print("  " + "  ".join(f"[dim]{k}:[/dim] {v}" for k, v in info.items()))

    c = args.clients
    for r in results:
        k = r.cases
        table = Table(title=f"{r.store}: in-process vs HTTP")
        table.add_column("case")
        table.add_column("in-process", justify="right", style="bold")
        table.add_column("HTTP", justify="right", style="bold")
        table.add_column("HTTP ÷ in-process", justify="right")
        table.add_column("detail", style="dim")

        def pair(
            label: str, a: Case, b: Case, unit: str, detail: str = "", table: Table = table
        ) -> None:
            table.add_row(
                label,
                _rate(a.rate, unit),
                _rate(b.rate, unit),
                f"{h.ratio(b.rate, a.rate):.2f}x",
                escape(detail),
            )

        def lat(label: str, a: Case, b: Case, detail: str = "", table: Table = table) -> None:
            table.add_row(
                label,
                f"{_ms(a.p(50))} / {_ms(a.p(99))}",
                f"{_ms(b.p(50))} / {_ms(b.p(99))}",
                f"{h.ratio(b.p(50), a.p(50)):.1f}x / {h.ratio(b.p(99), a.p(99)):.1f}x",
                escape(detail),
            )

        one_in, one_http = k["trigger 1 in-process"], k["trigger 1 http"]
        many_in, many_http = k["trigger C in-process"], k["trigger C http"]
        pair(
            "trigger, 1 caller",
            one_in,
            one_http,
            "runs/s",
            "tasks.trigger · POST /api/v1/tasks/{id}/trigger",
        )
        lat("trigger, 1 caller: p50 / p99", one_in, one_http, "a call's latency")
        pair(
            f"trigger, {c} callers",
            many_in,
            many_http,
            "runs/s",
            f"{c} threads · {c} httpx clients, each its own connection",
        )
        lat(
            f"trigger, {c} callers: p50 / p99",
            many_in,
            many_http,
            "a call's latency under that load",
        )
        table.add_section()
        b_in, b_http = k["batch in-process"], k["batch http"]
        pair(
            f"batch trigger of {BATCH}",
            b_in,
            b_http,
            "runs/s",
            "batch.trigger · POST /api/v1/tasks/batch",
        )
        lat("batch of 500: p50 / p99", b_in, b_http, f"{b_in.calls} batches each")
        table.add_section()
        l_in, l_http = k["list in-process"], k["list http"]
        pair(
            f"list, pages of {PAGE}",
            l_in,
            l_http,
            "pages/s",
            "runs.list + get_next_page · GET /api/v1/runs?page[size]=100, cursor followed",
        )
        lat("a page: p50 / p99", l_in, l_http, f"{l_in.n:,} pages each")
        console.print(table)

        handler = k["trigger 1 handler"]
        cpu = Table(title=f"{r.store}: CPU a trigger, by process (1 caller; µs of CPU a run)")
        cpu.add_column("path")
        cpu.add_column("runs/s", justify="right")
        cpu.add_column("p50 / p99", justify="right")
        cpu.add_column("this process", justify="right")
        cpu.add_column("runlane serve", justify="right")  # every process of it
        if r.store == "redis":
            cpu.add_column("redis-server", justify="right")
        cpu.add_column("what it adds", style="dim")
        rows = [
            ("tasks.trigger in-process", one_in, "engine + store"),
            (
                "api.handle in-process",
                handler,
                "+ routing, auth (a key read), body, run token, JSON",
            ),
            (
                "HTTP, 1 client",
                one_http,
                f"+ uvicorn ({parser}), {loop}, to_thread; httpx in this process",
            ),
            (f"HTTP, {c} clients", many_http, "the same, concurrent"),
            (f"tasks.trigger, {c} threads", many_in, "in-process, concurrent"),
        ]
        for label, case, what in rows:
            cells = [
                label,
                _rate(case.rate, ""),
                f"{_ms(case.p(50))} / {_ms(case.p(99))}",
                _cpu(case, "client"),
                _cpu(case, "server"),
            ]
            if r.store == "redis":
                cells.append(_cpu(case, "redis"))
            cpu.add_row(*cells, what)
        console.print(cpu)

    targets = Table(title="the issue's targets")
    targets.add_column("target")
    for r in results:
        targets.add_column(r.store, justify="right")
    ts = [targets_of(r) for r in results]
    targets.add_row(
        f"HTTP trigger throughput ({c} clients) ≥ 50 % of in-process (best of 1 and {c} threads)",
        *[f"{t.throughput_ratio:.0%} {status(t.throughput_ok)}" for t in ts],
    )
    targets.add_row(
        "p99 < 20 ms (1 client, keep-alive)",
        *[f"{_ms(t.p99)} {status(t.p99_ok)}" for t in ts],
    )
    targets.add_row(
        f"(p99 with {c} clients, not a target)",
        *[_ms(r.cases["trigger C http"].p(99)) for r in results],
    )
    console.print(targets)
    for r in results:
        for line in r.checks:
            console.print(f"  [dim]{r.store} check:[/dim] {line}")
        if r.store == "redis":
            console.print(
                f"  [dim]redis: {r.keys_deleted:,} keys of this run (prefix {r.prefix}:) "
                "deleted[/dim]"
            )

    for r in results:
        p = r.profile
        if p is None:
            continue
        unprofiled = r.cases["trigger 1 http"]
        title = (
            f"{r.store}: where runlane serve's time goes: {p.n:,} triggers, one client, to a "
            f"second server under cProfile ({1e6 * p.seconds / p.n:,.0f} µs a trigger end to "
            f"end; {1e6 * p.total / p.n:,.0f} µs of it the server busy; unprofiled: "
            f"{1e6 * unprofiled.seconds / unprofiled.n:,.0f} µs, the server's CPU "
            f"{_cpu(unprofiled, 'server')})"
        )
        groups = Table(title=title)
        groups.add_column("code (own time; a C function counts where its caller lives)")
        groups.add_column("µs a trigger", justify="right")
        groups.add_column("share", justify="right")
        for name, seconds in p.groups:
            share = f"{100 * h.ratio(seconds, p.total):.0f}%"
            groups.add_row(name, f"{1e6 * seconds / p.n:,.0f}", share)
        console.print(groups)
        prof = Table(title=f"{r.store}: inside api.handle (cumulative, the same profile)")
        prof.add_column("part")
        prof.add_column("µs a trigger", justify="right")
        prof.add_column("share of the server's busy time", justify="right")
        for name, seconds in [*p.parts, ("api.handle in all", p.handle)]:
            share = f"{100 * h.ratio(seconds, p.total):.0f}%"
            prof.add_row(name, f"{1e6 * seconds / p.n:,.0f}", share)
        console.print(prof)
        own = Table(title=f"{r.store}: top {len(p.top)} functions by own time (the same profile)")
        own.add_column("function")
        own.add_column("calls", justify="right")
        own.add_column("own", justify="right")
        own.add_column("cumulative", justify="right")
        for func, calls, tt, ct in p.top:
            own.add_row(escape(func), f"{calls:,}", f"{tt:.3f} s", f"{ct:.3f} s")
        console.print(own)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--runs", type=int, default=2000, help="triggers a case (default 2000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers (default 8)")
    parser.add_argument(
        "--batches", type=int, default=10, help=f"batches of {BATCH} a side (default 10)"
    )
    parser.add_argument(
        "--list-pages", type=int, default=0, help="most pages walked a side (default 0: all)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runlane serve --workers (server processes; default 1); the profile uses 1",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15",
        help="default $REDIS_URL, else redis://127.0.0.1:6379/15",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds any one wait may take (default 60)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile of the API handler through the ASGI app (and py-spy on the server when "
        "on the PATH)",
    )
    parser.add_argument("--top", type=int, default=20, help="functions listed from a profile")
    args = parser.parse_args(argv)
    if min(args.runs, args.clients, args.batches, args.workers) < 1 or args.list_pages < 0:
        parser.error("--runs, --clients, --batches and --workers must be >= 1, --list-pages >= 0")
    stores = ["sqlite", "redis"] if args.store == "both" else [args.store]
    if "redis" in stores:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        try:
            client.ping()
        except redis.exceptions.ConnectionError as exc:
            print(f"Redis not reachable at {args.redis_url}: {exc}", file=sys.stderr)
            return 2
        finally:
            client.close()
    command = " ".join(
        ["python benchmarks/bench_http.py", *(sys.argv[1:] if argv is None else argv)]
    )
    results = []
    try:
        for name in stores:
            print(f"{name}: starting runlane serve...", flush=True)
            results.append(measure_store(name, args))
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    report(results, args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
