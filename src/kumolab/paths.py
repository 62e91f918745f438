"""Where kumolab keeps its local state.

Everything a run leaves on the controller (emulator pid/log, SSH host config, generated keys, tokens)
lives under one state directory: ``$KUMOLAB_STATE_DIR`` if set, else ``<repo>/.state``. Tests point
``KUMOLAB_STATE_DIR`` at a temporary directory so they never touch a user's lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """The state directory, created 0700 (it holds keys, tokens and logs that may carry request data).

    An existing one of ours that others can read (made by an earlier kumolab under umask 022) is narrowed
    to 0700 too.
    """
    path = Path(os.environ.get("KUMOLAB_STATE_DIR") or REPO_ROOT / ".state")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def results_dir() -> Path:
    """What the labs write for the owner of this run: ``$KUMOLAB_RESULTS_DIR``, else ``<repo>/results/<owner slug>``
    (``kumolab_results_dir``)."""
    from kumolab.labs import default_owner, owner_slug  # kumolab.labs imports this module

    return Path(os.environ.get("KUMOLAB_RESULTS_DIR") or REPO_ROOT / "results" / owner_slug(default_owner()))


@contextlib.contextmanager
def state_lock(name: str) -> Iterator[None]:
    """Hold ``<state>/<name>.lock`` exclusively: two playbooks started at once (two owners on one machine)
    must not both find a local service down and both start it on the same port."""
    with (state_dir() / f"{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
