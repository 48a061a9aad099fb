"""The store's Lua, as a Redis function library and as one script per command.

``lib.lua`` (shared helpers) and ``commands.lua`` (``begin``, which sets up a call from its
key and arguments, a few helpers, then one ``if cmd == "…" then`` branch per command) are
written as one program. Two forms are built from them:

- ``LIBRARY``, a Redis function library (Redis 7 and later): ``FUNCTION LOAD`` defines every
  helper once, and each call (``FCALL``) runs only ``begin`` and its command's branch;
- ``SCRIPTS``, one script per command, for ``EVALSHA`` where functions are not available.
  A script defines the helper closures it uses at every call (about 20,000 instructions of the
  Redis server for a small transition's helpers, 70,000 for all of them), so each keeps only
  what its branch uses: the top-level statements that are not functions (constants, call
  state), the helper functions its branch uses (directly or through other helpers, by name),
  in their original order, then the branch.

The split relies on how the two files are laid out: every top-level definition starts at
column 0 (``local function name(`` … ``end``, or ``local name = …``), and every command branch
starts with ``if cmd == "name" then`` or ``elseif cmd == "name" then`` at column 0. A name is
"used" when it appears as a word anywhere in the code that needs it (comments and strings
included): too many helpers are kept at worst, never too few. Every branch returns its reply.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_BRANCH = re.compile(r'^(?:if|elseif) cmd == "([a-z_]+)" then$')
_FUNCTION = re.compile(r"^local function ([A-Za-z_]\w*)\(")
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class _Unit:
    text: str
    defines: str | None  # the function this unit defines; None: always kept


def _units(source: str) -> list[_Unit]:
    """Top-level statements of Lua source laid out as described above, with the comment
    lines before each attached to it."""
    units: list[_Unit] = []
    lines: list[str] = []
    defines: str | None = None
    started = False  # the current unit has a statement (not only comments)
    for line in source.splitlines():
        top = bool(line) and not line[0].isspace() and line != "end" and not line.startswith("}")
        if top and not line.startswith("--") and started:
            units.append(_Unit("\n".join(lines), defines))
            lines, defines, started = [], None, False
        if top and not line.startswith("--") and not started:
            started = True
            match = _FUNCTION.match(line)
            defines = match.group(1) if match else None
        lines.append(line)
    if lines:
        units.append(_Unit("\n".join(lines), defines))
    return units


_BEGIN = "local err = begin({keys}, {argv})\nif err then return err end\n"


@dataclass(frozen=True)
class Library:
    """The function library: ``FUNCTION LOAD`` its ``text``; ``FCALL function 1 key command
    argument`` runs a command. Both names carry a digest of the text, so processes running
    different versions of runlane on one server each call their own."""

    name: str
    function: str
    text: str


def build(lib: str, commands: str) -> tuple[dict[str, str], str, Library]:
    """(command name → its script, the whole program, the function library). The program and
    the library answer a command they do not know with an error."""
    head, sep, chain = commands.partition('\nif cmd == "')
    if not sep:
        raise ValueError("commands.lua: no command branch")
    chain = 'if cmd == "' + chain
    units = _units(lib) + _units(head)
    by_name = {u.defines: u for u in units if u.defines is not None}

    branches: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in chain.splitlines():
        match = _BRANCH.match(line)
        if match:
            current = branches.setdefault(match.group(1), [])
        elif line == "end":  # the chain's end; after it, the unknown-command error
            current = None
        elif current is not None:
            current.append(line)

    begin = _BEGIN.format(keys="KEYS", argv="ARGV")
    scripts = {}
    for name, body_lines in branches.items():
        body = "\n".join(body_lines)
        needed: set[str] = set()
        pending = [begin, body] + [u.text for u in units if u.defines is None]
        while pending:
            for word in _WORD.findall(pending.pop()):
                if word in by_name and word not in needed:
                    needed.add(word)
                    pending.append(by_name[word].text)
        kept = [u.text for u in units if u.defines is None or u.defines in needed]
        scripts[name] = "\n".join([*kept, begin + "do", body, "end"]) + "\n"
    program = lib + "\n" + head + "\n" + begin + chain
    return scripts, program, _library(lib, head, branches)


def _library(lib: str, head: str, branches: dict[str, list[str]]) -> Library:
    parts = [lib, head, "local COMMANDS = {}"]
    for name, body_lines in branches.items():
        parts.append(f"COMMANDS[{name!r}] = function()\n" + "\n".join(body_lines) + "\nend")
    code = "\n".join(parts)
    digest = hashlib.sha1(code.encode()).hexdigest()[:16]
    name = f"runlane_{digest}"
    function = f"runlane_{digest}_call"
    text = (
        f"#!lua name={name}\n{code}\n"
        f"redis.register_function({function!r}, function(keys, args)\n"
        + _BEGIN.format(keys="keys", argv="args")
        + "  local command = COMMANDS[cmd]\n"
        + "  if not command then\n"
        + '    return redis.error_reply("runlane: unknown store command " .. tostring(cmd))\n'
        + "  end\n"
        + "  return command()\n"
        + "end)\n"
    )
    return Library(name, function, text)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


SCRIPTS, PROGRAM, LIBRARY = build(_read("lib.lua"), _read("commands.lua"))
