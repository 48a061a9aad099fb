"""Every code block of README.md and docs/*.md runs (or is checked) as it stands.

- ```python blocks of a page run in order in one namespace, on a fresh runtime (a SQLite file
  in a temporary folder, which is also the working directory), as a reader would paste them.
  A block that names ``redis://localhost:6379/0`` gets the session Redis under a private key
  prefix instead, deleted afterwards.
- A block after ``<!-- quoted: examples/PATH -->`` is an excerpt of that example file (which
  runs in CI: tests/test_examples.py, .ci/extras.py): its text must appear in the file.
- A block after ``<!-- not run: REASON -->`` is skipped; it needs a reason, and there are few.
- In ```bash blocks, every line that starts with ``runlane `` must name an existing command
  of the CLI with options that command has.
"""

from __future__ import annotations

import re
import shlex
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import runlane
from runlane.cli import main as cli_main
from runlane.core import runtime as runtime_mod

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REDIS_PLACEHOLDER = "redis://localhost:6379/0"
MAX_NOT_RUN = 6  # blocks skipped with a reason, over all pages: keep them few

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
_MARK = re.compile(r"^\s*<!--\s*(?P<kind>not run|quoted)\s*:?\s*(?P<arg>.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str | None = None  # "not run" or "quoted"
    arg: str = ""  # the reason, or the quoted file

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, indent = i, m["indent"]
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        block = Block(page, start + 1, m["lang"].lower(), textwrap.dedent("\n".join(body)))
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        mark = _MARK.match(lines[prev]) if prev >= 0 else None
        if mark is not None:
            block.mark, block.arg = mark["kind"], mark["arg"]
        found.append(block)
    return found


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


ALL_BLOCKS = [b for page in PAGES for b in blocks_of(page)]


# ---------------------------------------------------------------------------------------------
# python blocks
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def docs_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh runtime on a SQLite file; the working directory is tmp_path (a page's relative
    ``sqlite:///.runlane/...`` lands there). Whatever runtime the page left is closed."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/docs.db"
    runlane.configure(store=url)
    yield url
    old = runtime_mod.install(None)
    if old is not None:
        old.close()


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_blocks_run(
    page: Path, docs_runtime: str, request: pytest.FixtureRequest, capsys
) -> None:
    blocks = [b for b in blocks_of(page) if b.lang == "python" and b.mark is None]
    if not blocks:
        pytest.skip("no python block to run")
    prefixes: list[str] = []
    redis_url = None
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for block in blocks:
            code = block.code
            if REDIS_PLACEHOLDER in code:
                redis_url = redis_url or request.getfixturevalue("redis_url")
                prefix = f"rldocs-{uuid.uuid4().hex[:12]}"
                prefixes.append(prefix)
                code = code.replace(REDIS_PLACEHOLDER, f"{redis_url}?prefix={prefix}")
            try:
                exec(compile(code, block.where, "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"the block at {block.where} raised {exc!r}") from exc
    finally:
        old = runtime_mod.install(None)
        if old is not None:
            old.close()
        if prefixes:
            from tests.adapters import delete_redis_prefix

            for prefix in prefixes:
                delete_redis_prefix(redis_url, prefix)


def test_quoted_blocks_match_their_example() -> None:
    quoted = [b for b in ALL_BLOCKS if b.mark == "quoted"]
    assert quoted, "no block quotes an example any more: drop this test or the marker"
    for block in quoted:
        path = REPO / block.arg
        assert path.is_file(), f"{block.where} quotes {block.arg}, which does not exist"
        source = path.read_text(encoding="utf-8")
        assert block.code.strip() in source, f"{block.where} is not an excerpt of {block.arg}"


def test_blocks_not_run_are_few_and_say_why() -> None:
    skipped = [b for b in ALL_BLOCKS if b.mark == "not run"]
    for block in skipped:
        assert block.arg, f"{block.where}: <!-- not run: ... --> needs a reason"
    assert len(skipped) <= MAX_NOT_RUN, [f"{b.where}: {b.arg}" for b in skipped]


def test_python_blocks_parse() -> None:
    """Blocks that are not run (quoted, not run) still have to be valid Python."""
    for block in ALL_BLOCKS:
        if block.lang == "python":
            compile(block.code, block.where, "exec")


# ---------------------------------------------------------------------------------------------
# bash blocks: runlane command lines
# ---------------------------------------------------------------------------------------------


def _options(command: click.Command) -> dict[str, click.Option]:
    return {
        opt: param
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    } | {"--help": click.Option(["--help"], is_flag=True)}


def check_command_line(line: str) -> None:
    """Raise AssertionError when ``line`` (``runlane ...``) names an unknown command or option."""
    tokens = shlex.split(line, comments=True)
    assert tokens[0] == "runlane"
    command: click.Command = cli_main
    path = ["runlane"]
    i = 1
    while i < len(tokens):
        token = tokens[i]
        if token in ("|", "&&", ";", ">", "2>&1"):
            break
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            options = _options(command)
            assert name in options, f"`{' '.join(path)}` has no option {name}: {line!r}"
            if not options[name].is_flag and not options[name].count and "=" not in token:
                i += 1  # its value
        elif isinstance(command, click.Group):
            assert token in command.commands, f"`{' '.join(path)}` has no command {token!r}"
            command = command.commands[token]
            path.append(token)
        i += 1
    assert not isinstance(command, click.Group) or path == ["runlane"], (
        f"{line!r} stops at the group `{' '.join(path)}`"
    )


BASH_LINES = [
    (b, line.strip())
    for b in ALL_BLOCKS
    if b.lang in ("bash", "sh", "shell", "console")
    for line in b.code.splitlines()
    if line.strip().startswith("runlane ")
]


@pytest.mark.parametrize(
    ("block", "line"), BASH_LINES, ids=[f"{b.where}:{ln}" for b, ln in BASH_LINES]
)
def test_runlane_command_lines_exist(block: Block, line: str) -> None:
    check_command_line(line)


def test_command_line_checker_refuses_unknown_names() -> None:
    check_command_line("runlane runs list --status COMPLETED --limit 5  # a comment")
    with pytest.raises(AssertionError):
        check_command_line("runlane runz list")
    with pytest.raises(AssertionError):
        check_command_line("runlane worker tasks --no-such-option 3")
