"""The store's Lua, as a Redis function library and as one script per command.

The Lua is written as plain files, put together here without reading them:

- ``lib/*.lua``, the library's parts: ``core`` (the key layout, the state of a call,
  ``begin`` and ``run``, which set up a call and run its command) and the parts some
  commands use (``admission``, ``release``, ``waits``, ...), each using only the ones
  before it in ``PARTS``;
- ``commands/<name>.lua``, one file per command: a chunk that returns the command's
  function (no arguments: it reads the call's state) and, for a command that takes plain
  arguments, their parser. ``COMMANDS`` lists each with the parts it uses besides ``core``.
  ``create_runs`` is preceded by the lists of the run fields it copies as given
  (``GIVEN_VALUES``, ``GIVEN_FLAGS``), written here from ``runlane.core.types.GIVEN_FIELDS``;
  the schedule commands by ``SCHEDULE_FIELDS``, likewise.

Two forms are built from them:

- ``LIBRARY``, a Redis function library (Redis 7 and later): ``FUNCTION LOAD`` defines every
  part and command once, and each call (``FCALL``) runs ``run`` and its command;
- ``SCRIPTS``, one script per command, for ``EVALSHA`` where functions are not available.
  A script defines its helpers at every call (their closures are a large part of a small
  call's cost on the server), so each holds only ``core``, the parts its command uses and
  the command: a helper only one command uses belongs in that command's file. ``PROGRAM``
  holds every command: the script for a command no script names, which it refuses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from runlane.core.types import GIVEN_FIELDS, SCHEDULE_FIELDS

# The library's parts in load order, each with the parts it uses besides core.
PARTS: dict[str, tuple[str, ...]] = {
    "core": (),
    "admission": (),
    "enqueue": ("admission",),
    "release": ("admission",),
    "waits": (),
    "waitpoint": (),
    "finish": ("release",),
    "start": (),
}

# Each command with the parts it uses besides core (and what those use).
COMMANDS: dict[str, tuple[str, ...]] = {
    "create_runs": ("enqueue", "waitpoint"),
    "register_tasks": ("enqueue", "release"),
    "promote_due": ("enqueue", "release", "waits"),
    "expire_runs": ("finish", "waits"),
    "start_attempt": ("start",),
    "fetch_start": ("start",),
    "finish_attempt": ("finish", "waits"),
    "transition": ("finish", "waits"),
    "suspend": ("finish",),
    "take_ready": (),
    "cancel": ("finish", "waits"),
    "release_canceled": ("finish",),
    "heartbeat": (),
    "reap": ("finish", "waits"),
    "purge": (),
    "create_waitpoint": ("waitpoint",),
    "set_paused": ("release",),
    "add_tags": (),
    "touch": (),
    "append_stream": (),
    "acquire_lease": (),
    "release_lease": (),
    "list_runs": (),
    "save_schedule": (),
    "delete_schedule": (),
    "due_schedules": (),
}


@dataclass(frozen=True)
class Command:
    """A command's Lua (a chunk returning its function, and its parser if it has one) and
    the library parts it uses besides the first."""

    source: str
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Library:
    """The function library: ``FUNCTION LOAD`` its ``text``; ``FCALL function 1 key command
    argument`` runs a command. Both names carry a digest of the text, so processes running
    different versions of runlane on one server each call their own."""

    name: str
    function: str
    text: str


def _define(name: str, source: str) -> str:
    """The Lua that adds a command to ``COMMANDS`` (and its parser to ``PARSERS``)."""
    return (
        f"-- commands/{name}.lua\n"
        f"COMMANDS[{name!r}], PARSERS[{name!r}] = (function()\n{source.rstrip()}\nend)()"
    )


def build(
    parts: Mapping[str, str],
    commands: Mapping[str, Command],
    uses: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[dict[str, str], str, Library]:
    """(command name → its script, the script of every command, the function library).

    ``parts``: the library's parts in load order (name → Lua); the first is in every script
    and defines ``COMMANDS``, ``PARSERS`` and ``run(keys, argv)``. ``uses``: the parts each
    part uses besides the first (none when not given)."""
    if not commands:
        raise ValueError("no store command")
    first, *_ = parts
    uses = uses or {}

    def needed(names: tuple[str, ...]) -> set[str]:
        out: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name not in parts:
                raise ValueError(f"no library part {name!r}")
            if name not in out:
                out.add(name)
                pending.extend(uses.get(name, ()))
        return out

    def text(wanted: set[str]) -> list[str]:
        return [f"-- lib/{name}.lua\n{parts[name].rstrip()}" for name in parts if name in wanted]

    every = text(set(parts))
    defined = {name: _define(name, command.source) for name, command in commands.items()}
    scripts = {}
    for name, command in commands.items():
        body = text({first} | needed(command.parts))
        scripts[name] = "\n".join([*body, defined[name], _CALL]) + "\n"
    program = "\n".join([*every, *defined.values(), _CALL]) + "\n"
    return scripts, program, _library("\n".join([*every, *defined.values()]))


_CALL = "return run(KEYS, ARGV)"


def _library(code: str) -> Library:
    digest = hashlib.sha1(code.encode()).hexdigest()[:16]
    name = f"runlane_{digest}"
    function = f"runlane_{digest}_call"
    text = f"#!lua name={name}\n{code}\nredis.register_function({function!r}, run)\n"
    return Library(name, function, text)


def _read(path: str) -> str:
    return resources.files(__package__).joinpath(path).read_text()


def given_fields_lua() -> str:
    """The Lua lists of GIVEN_FIELDS: values (written when given) and flags (always "1"/"0")."""

    def lua_list(names: list[str]) -> str:
        return "{" + ", ".join(f'"{name}"' for name in names) + "}"

    values = [name for name, kind in GIVEN_FIELDS.items() if kind is not bool]
    flags = [name for name, kind in GIVEN_FIELDS.items() if kind is bool]
    return (
        "-- the run fields copied as given (runlane.core.types.GIVEN_FIELDS)\n"
        f"local GIVEN_VALUES = {lua_list(values)}\n"
        f"local GIVEN_FLAGS = {lua_list(flags)}\n"
    )


def schedule_fields_lua() -> str:
    """The Lua list of a schedule's stored fields (runlane.core.types.SCHEDULE_FIELDS)."""
    names = ", ".join(f'"{name}"' for name in SCHEDULE_FIELDS)
    return f"-- a schedule's stored fields (SCHEDULE_FIELDS)\nlocal SCHEDULE_FIELDS = {{{names}}}\n"


# Lua that precedes a command's file, written here
PREAMBLES = {
    "create_runs": given_fields_lua(),
    "save_schedule": schedule_fields_lua(),
    "due_schedules": schedule_fields_lua(),
}


SCRIPTS, PROGRAM, LIBRARY = build(
    {name: _read(f"lib/{name}.lua") for name in PARTS},
    {
        name: Command(PREAMBLES.get(name, "") + _read(f"commands/{name}.lua"), parts)
        for name, parts in COMMANDS.items()
    },
    PARTS,
)
