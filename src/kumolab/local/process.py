"""Background services with a pid file, a log and a health check; reused while they are up.

Used by the emulator (:mod:`kumolab.local.emulator`), the serverless runtime (``kumolab-runtime start``)
and the local ECS workers (:mod:`kumolab.local.runtime.ecs`). A service lives in
``<state dir>/runtime/<name>/``: ``pid``, ``<name>.log`` and ``info.json`` (what the service
reports about itself once it is healthy, e.g. its URLs; written by the service).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kumolab.paths import state_dir


class ServiceError(RuntimeError):
    """Raised with a message that tells the user what to do."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_pid(pid: int, grace_s: float = 10.0, group: bool = True) -> None:
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class BackgroundService:
    name: str
    argv: list[str]
    healthy: Callable[[BackgroundService], bool] = lambda svc: svc.info() is not None
    env: dict | None = None
    cwd: Path | None = None
    start_timeout_s: float = 30.0
    directory: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.directory is None:
            self.directory = state_dir() / "runtime" / self.name

    @property
    def pid_file(self) -> Path:
        return self.directory / "pid"

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def info_file(self) -> Path:
        return self.directory / "info.json"

    def info(self) -> dict | None:
        try:
            return json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None and self.healthy(self)

    def start(self) -> bool:
        """Start unless already up and healthy. Returns True when a new process was started."""
        if self.running():
            return False
        self.stop()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.info_file.unlink(missing_ok=True)
        # Logs may carry request data: 0600 whatever the umask (review L4).
        with open(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name} exited with status {proc.returncode} right after starting; "
                    f"see {self.log_file}:\n{tail}"
                )
            if self.healthy(self):
                return True
            time.sleep(0.1)
        self.stop()
        raise ServiceError(
            f"{self.name} did not become healthy within {self.start_timeout_s:.0f} s; see {self.log_file}."
        )

    def stop(self) -> bool:
        """Stop the service (SIGTERM to its process group, then SIGKILL). True when one was stopped."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        stop_pid(pid)
        return True

    def status(self) -> dict:
        return {
            "name": self.name,
            "running": self.running(),
            "pid": self.pid(),
            "log": str(self.log_file),
            "info": self.info(),
        }


def python_module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
