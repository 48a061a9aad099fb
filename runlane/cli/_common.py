"""What every command shares: the invocation's settings, configuring runlane once (a command that
only reads never creates a store), loading the user's task modules, parsing JSON and duration
arguments, and rendering runs."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import click
from rich.console import Console
from rich.text import Text

import runlane
from runlane.config import DEFAULT_STORE_URL
from runlane.core import runtime
from runlane.core.models import FAILED_STATUSES, Run, RunStatus
from runlane.core.options import ENVIRONMENTS

STATUS_STYLES: dict[str, str] = {
    "COMPLETED": "green",
    "CANCELED": "bright_black",
    "EXECUTING": "cyan",
    "REATTEMPTING": "yellow",
    "FROZEN": "blue",
    "DELAYED": "magenta",
    "QUEUED": "white",
    "WAITING_FOR_DEPLOY": "yellow",
    **{s.value: "red" for s in FAILED_STATUSES},
}


class BadEnvironmentVariable(click.ClickException):
    """A ``RUNLANE_*`` variable with a bad value: exit code 2, as for a bad option."""

    exit_code = 2


@dataclass
class CliState:
    """The global options of one invocation (``ctx.obj``): given before the command or after it
    (the later one wins)."""

    store: str | None = None
    env_option: str | None = None
    store_given: bool = False  # on the command line (not from $RUNLANE_STORE_URL)
    configured: bool = False

    @property
    def environment(self) -> str | None:
        """``--env``, else ``$RUNLANE_ENV`` (checked here, so a bad value names the variable)."""
        if self.env_option is not None:
            return self.env_option
        value = os.environ.get("RUNLANE_ENV") or None
        if value is not None and value not in ENVIRONMENTS:
            raise BadEnvironmentVariable(
                f"the environment variable RUNLANE_ENV is {value!r}: use one of "
                f"{', '.join(ENVIRONMENTS)}"
            )
        return value


def state() -> CliState:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:  # a subcommand invoked on its own (tests)
        obj = ctx.ensure_object(CliState)
    return obj


def configure(store: str | None = None, *, existing: bool = False) -> runtime.Runtime:
    """``runlane.configure()`` once per invocation, from the global options. With ``existing``
    (commands that read or change existing runs) a SQLite store that does not exist yet is an
    error rather than a new empty file; not in remote mode (``RUNLANE_API_URL`` without
    ``--store``), where the server has the store."""
    st = state()
    rt = runtime.peek()
    if st.configured and rt is not None:
        return rt
    url = store or st.store
    environment = st.environment
    if existing and not (os.environ.get("RUNLANE_API_URL") and not st.store_given):
        _require_store(url)
    st.configured = True
    return runlane.configure(store=url, environment=environment)


def _require_store(url: str | None) -> None:
    given = url if url is not None else os.environ.get("RUNLANE_STORE_URL") or None
    target = given or DEFAULT_STORE_URL
    if not target.startswith("sqlite:"):
        return  # a server's store: connecting creates nothing
    from runlane.backends.sqlite.store import path_from_url

    path = Path(path_from_url(target))
    if path.exists():
        return
    if given is not None:
        raise click.ClickException(
            f"no SQLite store at {path} ({given}): check the path; a command that only reads "
            "or changes existing runs does not create a store"
        )
    lines = [
        f"no runlane store here: the default store {path} does not exist "
        "(it is created by `runlane trigger`, `runlane worker` or `runlane dev`)."
    ]
    demos = sorted(path.parent.glob("demo-*.db"), key=lambda p: p.stat().st_mtime)
    if demos:
        newest = f"sqlite:///{demos[-1].as_posix()}"
        lines.append(
            f"`runlane demo` wrote its runs to {demos[-1]}; to see them:\n"
            f"  runlane --store {newest} runs list"
        )
    else:
        lines.append("Pass --store URL, set RUNLANE_STORE_URL, or start with `runlane demo`.")
    raise click.ClickException("\n".join(lines))


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def parse_json(text: str | None, flag: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {text!r}",
            param_hint=flag,
        ) from None


def duration_arg(text: str | None) -> str | int | None:
    """``"30"`` means 30 seconds; anything else goes to runlane's parser as written."""
    if text is None:
        return None
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() else stripped


# ---------------------------------------------------------------------- task modules
def _load_file(path: Path) -> ModuleType:
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == path:
            return existing
        raise click.UsageError(
            f"cannot load {path}: a module named {name!r} is already imported from "
            f"{getattr(existing, '__file__', None)}; rename the file or pass a dotted module name"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise click.UsageError(f"cannot load {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def module_files(specs: list[str]) -> list[Path]:
    """The files behind ``specs`` (paths or dotted names), without importing the modules."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    out: list[Path] = []
    for spec in specs:
        if is_file_spec(spec):
            path = Path(spec).resolve()
            if not path.is_file():
                raise click.BadParameter(f"no such file: {spec}", param_hint="MODULE")
            out.append(path)
            continue
        try:
            found = importlib.util.find_spec(spec)
        except (ImportError, ValueError) as exc:
            raise click.BadParameter(
                f"cannot find module {spec!r}: {exc}", param_hint="MODULE"
            ) from None
        if found is None or not found.origin or not Path(found.origin).is_file():
            raise click.BadParameter(f"cannot find module {spec!r}", param_hint="MODULE")
        out.append(Path(found.origin).resolve())
    return out


def load_modules(specs: list[str]) -> list[ModuleType]:
    """Import the user's task modules (dotted names or ``path/to/tasks.py``); cwd is on the path.

    A module that cannot be found is a usage error; an exception raised by the module's own code
    is shown with its traceback (it is the user's code) and ends the command with exit code 1.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    modules = []
    for spec in specs:
        try:
            if is_file_spec(spec):
                path = Path(spec).resolve()
                if not path.is_file():
                    raise click.BadParameter(f"no such file: {spec}", param_hint="MODULE")
                modules.append(_load_file(path))
            else:
                modules.append(importlib.import_module(spec))
        except click.ClickException:
            raise
        except ModuleNotFoundError as exc:
            if exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
                raise click.BadParameter(
                    f"cannot import module {spec!r}: {exc}", param_hint="MODULE"
                ) from None
            _user_error(spec)
        except Exception:
            _user_error(spec)
    return modules


def _user_error(spec: str) -> None:
    """Show the traceback of the user's module (without the import machinery's frames)."""
    exc = sys.exc_info()[1]
    assert exc is not None
    tb = traceback.TracebackException.from_exception(exc)
    here = str(Path(__file__).parent)
    tb.stack = traceback.StackSummary.from_list(
        [f for f in tb.stack if not f.filename.startswith(("<frozen", here))]
    )
    console(stderr=True).print(Text("".join(tb.format()), style="red"))
    raise click.ClickException(f"error while importing {spec} (traceback above)")


# ---------------------------------------------------------------------- rendering
def status_text(status: RunStatus | str) -> Text:
    value = str(status)
    return Text(value, style=STATUS_STYLES.get(value, ""))


def when(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration_text(run: Run) -> str:
    """How long the run executed; ``-`` only for a run that never finished an attempt."""
    ms = run.duration_ms
    if not ms and (run.started_at is None or run.finished_at is None):
        return "-"
    return span_text(ms)


def span_text(ms: float) -> str:
    """``<1 ms``, ``12 ms``, ``1.5 s``, ``2m 3s``."""
    if ms < 1000:
        return ms_text(ms)
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(int(ms) // 1000, 60)
    return f"{minutes}m {seconds}s"


def ms_text(ms: float) -> str:
    """``<1 ms``, ``12 ms``."""
    return "<1 ms" if ms < 1 else f"{ms:.0f} ms"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 row``, ``2 rows``."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def run_json(run: Run) -> dict[str, Any]:
    return run.model_dump(mode="json")


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def stacked(*options: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Click decorators applied as if written one above another, the first on top: the
    options several commands share, declared once."""

    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
