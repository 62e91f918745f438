"""Python quality gate: ``ruff format --check`` and ``ruff check`` (settings in pyproject.toml [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("command", [["format", "--check", "--diff"], ["check", "--no-fix"]], ids=["format", "lint"])
def test_ruff_is_clean(command):
    proc = subprocess.run([str(RUFF), *command, "."], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"ruff {' '.join(command)} found problems (run `ruff format . && ruff check --fix .`):\n"
        + (proc.stdout + proc.stderr)[-6000:]
    )
