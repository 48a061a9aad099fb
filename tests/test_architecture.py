"""The layers of ARCHITECTURE.md hold: ``lint-imports`` keeps the contracts of pyproject.toml
(layers pointing one way; ``runlane.core`` free of broker, Redis, web and HTTP libraries).

CI runs ``lint-imports`` itself (.ci/run); this test gives developers the same check from
``pytest``. Without import-linter installed it skips locally and fails in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def lint_imports() -> str:
    """The ``lint-imports`` command of this interpreter's environment."""
    here = Path(sysconfig.get_path("scripts")) / "lint-imports"
    found = str(here) if here.exists() else shutil.which("lint-imports")
    if found is None:
        message = "import-linter is not installed: pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI checks the layers with lint-imports; {message}")
        pytest.skip(message)
    return found


def test_imports_keep_the_layers() -> None:
    done = subprocess.run(
        [lint_imports(), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"a broken contract:\n{done.stdout}{done.stderr}"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_the_architecture_page_draws_the_contracted_layers() -> None:
    """The first block under "## Layers" in ARCHITECTURE.md lists the layers contract's layers,
    top to bottom, one a line (the name, two spaces, what it holds)."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = (c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers")
    page = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = page.split("\n## Layers\n", 1)[1]
    drawn = section.split("```", 2)[1].strip("\n").splitlines()
    assert [re.split(r"\s{2,}", line.strip())[0] for line in drawn] == contract["layers"]
