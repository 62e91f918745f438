"""Where kumolab keeps its local state.

Everything a run leaves on the controller (emulator pid/log, SSH host config, generated keys, tokens)
lives under one state directory: ``$KUMOLAB_STATE_DIR`` if set, else ``<repo>/.state``. Tests point
``KUMOLAB_STATE_DIR`` at a temporary directory so they never touch a user's lab.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    path = Path(os.environ.get("KUMOLAB_STATE_DIR") or REPO_ROOT / ".state")
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    return Path(os.environ.get("KUMOLAB_RESULTS_DIR") or REPO_ROOT / "results")
