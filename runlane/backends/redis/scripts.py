"""The store's Lua, one script per command.

``lib.lua`` (shared helpers) and ``commands.lua`` (the preamble that decodes the call's argument,
a few helpers, then one ``if cmd == "…" then`` branch per command) are written as one program.
Sent as one script, every call would define all of its ~60 helper closures before running
the one branch it needs: about 70,000 instructions of the Redis server a call, as much as a
small transition itself. So each command gets its own script: the top-level statements that
are not functions (constants, the decoded argument), the helper functions its branch uses
(directly or through other helpers, by name), in their original order, then the branch.

The split relies on how the two files are laid out: every top-level definition starts at
column 0 (``local function name(`` … ``end``, or ``local name = …``), and every command branch
starts with ``if cmd == "name" then`` or ``elseif cmd == "name" then`` at column 0. A name is
"used" when it appears as a word anywhere in the code that needs it (comments and strings
included): too many helpers are kept at worst, never too few.
"""

from __future__ import annotations

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


def build(lib: str, commands: str) -> tuple[dict[str, str], str]:
    """(command name → its script, the whole program). The whole program answers a command
    it does not know with an error."""
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

    scripts = {}
    for name, body_lines in branches.items():
        body = "\n".join(body_lines)
        needed: set[str] = set()
        pending = [body] + [u.text for u in units if u.defines is None]
        while pending:
            for word in _WORD.findall(pending.pop()):
                if word in by_name and word not in needed:
                    needed.add(word)
                    pending.append(by_name[word].text)
        kept = [u.text for u in units if u.defines is None or u.defines in needed]
        scripts[name] = "\n".join([*kept, "do", body, "end"]) + "\n"
    return scripts, lib + "\n" + commands


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


SCRIPTS, PROGRAM = build(_read("lib.lua"), _read("commands.lua"))
