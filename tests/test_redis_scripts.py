"""The store's Lua is split into one script per command (scripts.py): each compiles in Redis,
keeps every helper its branch uses (directly or through other helpers) and leaves out the
others; a command no script names goes to the whole program, which refuses it."""

from __future__ import annotations

import re
import uuid

import pytest

from runlane.backends.redis.scripts import PROGRAM, SCRIPTS, build
from runlane.backends.redis.store import RedisStore
from tests.adapters import delete_redis_prefix

redis = pytest.importorskip("redis")

LIB = """-- helpers
local P = KEYS[1]
local function k(name) return P .. name end
local function unused(x)
  return x .. "never"
end
local function get(id)
  return redis.call("GET", k(id))
end
local function twice(id)
  -- calls another helper
  return get(id) .. get(id)
end
"""

COMMANDS = """local cmd = ARGV[1]
local a = ARGV[2]
if cmd == "one" then
  return get(a)
elseif cmd == "two" then
  local v = twice(a)
  return v
end

return redis.error_reply("unknown " .. tostring(cmd))
"""


def _functions(script: str) -> set[str]:
    return set(re.findall(r"^local function (\w+)\(", script, re.M))


def test_each_command_keeps_the_helpers_it_uses_and_no_others():
    scripts, program = build(LIB, COMMANDS)
    assert set(scripts) == {"one", "two"}
    assert _functions(scripts["one"]) == {"k", "get"}
    assert _functions(scripts["two"]) == {"k", "get", "twice"}
    for script in scripts.values():
        assert "local P = KEYS[1]" in script and "local a = ARGV[2]" in script
        assert "unknown " not in script  # the chain's fallback belongs to the program only
    assert program == LIB + "\n" + COMMANDS


def test_the_scripts_run_in_redis(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"rltest-{uuid.uuid4().hex[:12]}:"
    try:
        scripts, program = build(LIB, COMMANDS)
        client.set(prefix + "x", "v")
        assert client.eval(scripts["one"], 1, prefix, "one", "x") == "v"
        assert client.eval(scripts["two"], 1, prefix, "two", "x") == "vv"
        with pytest.raises(redis.exceptions.ResponseError, match="unknown three"):
            client.eval(program, 1, prefix, "three", "x")
    finally:
        client.delete(prefix + "x")
        client.close()


def test_a_source_without_command_branches_is_refused():
    with pytest.raises(ValueError, match="no command branch"):
        build(LIB, "local cmd = ARGV[1]\nreturn 1\n")


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
