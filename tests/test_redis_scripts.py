"""The store's Lua (scripts.py) is built as a Redis function library (Redis 7 and later) and as
one script per command: each script compiles in Redis, holds the library's core, the parts its
command names and the command, and defines every helper it calls; a command no script names
goes to the whole program, which refuses it. The store uses the library where the server has
functions and its user may load them, and the scripts otherwise."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from runlane.backends.redis.scripts import LIBRARY, PROGRAM, SCRIPTS, Command, build
from runlane.backends.redis.store import RedisStore
from runlane.core.models import RunStatus
from runlane.core.types import AttemptOutcome, RegisteredTask
from tests.adapters import delete_redis_prefix
from tests.helpers import new_run

redis = pytest.importorskip("redis")

CORE = """local prefix, command_name, argument
local COMMANDS, PARSERS = {}, {}
local function key(name) return prefix .. name end
local function get(id)
  return redis.call("GET", key(id))
end
local function run(keys, argv)
  prefix, command_name, argument = keys[1], argv[1], argv[2]
  if argument == "refused" then return redis.error_reply("refused at the start") end
  local command = COMMANDS[command_name]
  if not command then return redis.error_reply("unknown store command " .. command_name) end
  return command()
end
"""

PARTS = {
    "core": CORE,
    "twice": """local function twice(id)
  -- calls a helper of core
  return get(id) .. get(id)
end
""",
    "unused": """local function unused(x)
  return x .. "never"
end
""",
}

ONE = Command("""local function one()
  return get(argument)
end
return one
""")

TWO = Command(
    """local function two()
  local v = twice(argument)
  return v
end
return two
""",
    ("twice",),
)


def _functions(script: str) -> set[str]:
    return set(re.findall(r"^local function (\w+)\(", script, re.M))


def test_each_command_has_core_and_the_parts_it_names_and_no_others():
    scripts, program, library = build(PARTS, {"one": ONE, "two": TWO})
    assert set(scripts) == {"one", "two"}
    assert _functions(scripts["one"]) == {"key", "get", "run", "one"}
    assert _functions(scripts["two"]) == {"key", "get", "run", "twice", "two"}
    for script in scripts.values():
        assert script.startswith("-- lib/core.lua\n" + CORE)
        assert script.endswith("return run(KEYS, ARGV)\n")
    assert _functions(program) == {"key", "get", "run", "twice", "unused", "one", "two"}
    # the library defines every part and command once, and registers run
    assert library.text.startswith(f"#!lua name={library.name}\n")
    assert _functions(library.text) == _functions(program)
    assert f"redis.register_function('{library.function}', run)" in library.text
    assert build(PARTS, {"one": ONE, "two": TWO})[2] == library  # named by its text
    changed = {**PARTS, "unused": PARTS["unused"].replace("never", "ever")}
    assert build(changed, {"one": ONE, "two": TWO})[2].name != library.name


def _redis_version(client) -> int:
    return int(client.info("server")["redis_version"].split(".")[0])


def test_the_scripts_and_the_library_run_in_redis(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"rltest-{uuid.uuid4().hex[:12]}:"
    scripts, program, library = build(PARTS, {"one": ONE, "two": TWO})
    try:
        client.set(prefix + "x", "v")
        assert client.eval(scripts["one"], 1, prefix, "one", "x") == "v"
        assert client.eval(scripts["two"], 1, prefix, "two", "x") == "vv"
        assert client.eval(program, 1, prefix, "two", "x") == "vv"
        with pytest.raises(redis.exceptions.ResponseError, match="unknown store command three"):
            client.eval(program, 1, prefix, "three", "x")
        with pytest.raises(redis.exceptions.ResponseError, match="refused at the start"):
            client.eval(scripts["one"], 1, prefix, "one", "refused")
        if _redis_version(client) < 7:
            return  # no functions before Redis 7
        client.function_load(library.text, replace=True)
        assert client.fcall(library.function, 1, prefix, "one", "x") == "v"
        assert client.fcall(library.function, 1, prefix, "two", "x") == "vv"
        with pytest.raises(redis.exceptions.ResponseError, match="unknown store command three"):
            client.fcall(library.function, 1, prefix, "three", "x")
        with pytest.raises(redis.exceptions.ResponseError, match="refused at the start"):
            client.fcall(library.function, 1, prefix, "one", "refused")
    finally:
        client.delete(prefix + "x")
        if _redis_version(client) >= 7:
            client.function_delete(library.name)
        client.close()


def test_a_command_naming_an_unknown_part_is_refused():
    with pytest.raises(ValueError, match="no library part 'three'"):
        build(PARTS, {"one": Command(ONE.source, ("three",))})
    with pytest.raises(ValueError, match="no store command"):
        build(PARTS, {})


def test_every_store_command_compiles_and_is_smaller_than_the_program(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        helpers = _functions(PROGRAM)
        for name, script in SCRIPTS.items():
            client.script_load(script)  # compiles
            assert len(script) < len(PROGRAM), name
            # a helper called but not defined would be a nil global at run time
            called = {h for h in helpers if re.search(rf"\b{h}\(", script)}
            assert called <= _functions(script), (name, called - _functions(script))
        assert {"create_runs", "start_attempt", "finish_attempt", "cancel"} <= set(SCRIPTS)
        assert "local function admit(" not in SCRIPTS["start_attempt"]
    finally:
        client.close()


def test_an_unknown_command_is_refused_by_the_store(redis_url):
    prefix = f"rltest-{uuid.uuid4().hex[:12]}"
    store = RedisStore(redis_url, "dev", prefix=prefix)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="unknown store command"):
            store._call("no_such_command")
    finally:
        store.close()
        delete_redis_prefix(redis_url, prefix)


def _server_major(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return _redis_version(client)
    finally:
        client.close()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = f"rltest-{uuid.uuid4().hex[:12]}"
    yield p
    delete_redis_prefix(redis_url, p)


def _one_run(store: RedisStore) -> str:
    """Create, start and finish one run through the store; its final status."""
    now = time.time()
    new = new_run(payload='{"n": 1}', created_at=now)
    store.register_tasks([RegisteredTask("t", "task/t")], now=now)
    [created] = store.create_runs([new], now=now, ready=[])
    started = store.start_attempt(created.run_id, worker_id="w", now=now, known_tasks=["t"])
    assert started is not None and started.brief.payload == {"n": 1}
    outcome = AttemptOutcome("COMPLETED", RunStatus.COMPLETED, output="2")
    assert store.finish_attempt(created.run_id, 1, outcome, now=now, ready=[])
    run = store.get_run(created.run_id)
    assert run is not None and run.output == 2
    return run.status


def test_on_redis_7_the_store_runs_as_a_function_library(redis_url, prefix):
    if _server_major(redis_url) < 7:
        if os.environ.get("CI") == "true":
            pytest.fail("CI tests the function library on Redis 7 (install redis-server 7)")
        pytest.skip("Redis 6: no functions")
    store = RedisStore(redis_url, "dev", prefix=prefix)
    try:
        assert _one_run(store) == "COMPLETED"
        assert store._lane.functions is True
        libraries = store.client.function_list(library=LIBRARY.name)
        names = [dict(zip(lib[::2], lib[1::2], strict=True))["library_name"] for lib in libraries]
        assert names == [LIBRARY.name]
        # lost (a restart without persistence, FUNCTION FLUSH): loaded again by the next call
        store.client.function_delete(LIBRARY.name)
        assert _one_run(store) == "COMPLETED"
        assert store.client.function_list(library=LIBRARY.name)
    finally:
        store.close()


def test_the_scripts_serve_a_server_or_user_without_functions(redis_url, prefix):
    """Redis 6 has no functions, and a user may be refused them (ACL): the store then runs
    every transition as scripts (EVALSHA), with the same results."""
    forced = RedisStore(redis_url, "dev", prefix=prefix)
    forced._lane.functions = False  # as on Redis 6
    try:
        assert _one_run(forced) == "COMPLETED"
        assert forced._lane.functions is False
    finally:
        forced.close()
    if _server_major(redis_url) < 7:  # the store finds out by itself
        store = RedisStore(redis_url, "dev", prefix=prefix)
        try:
            assert _one_run(store) == "COMPLETED"
            assert store._lane.functions is False
        finally:
            store.close()
        return
    admin = redis.Redis.from_url(redis_url)
    user = f"rltest-{uuid.uuid4().hex[:8]}"
    kw = admin.connection_pool.connection_kwargs
    host, port = kw["host"], kw["port"]
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-function", "-fcall"],
    )
    try:
        store = RedisStore(f"redis://{user}:pw@{host}:{port}/0", "dev", prefix=prefix)
        try:
            assert _one_run(store) == "COMPLETED"
            assert store._lane.functions is False
        finally:
            store.close()
    finally:
        admin.acl_deluser(user)
        admin.close()
