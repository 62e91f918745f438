"""Device selection, CPU thread setup and small helpers shared by the workloads."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def setup_cpu_threads(threads: int | None = None) -> int:
    """Use one intra-op thread per usable CPU (``KUMOLAB_THREADS`` overrides); return the count.

    PyTorch's default is the number of physical cores of the whole machine, which oversubscribes a
    container limited to fewer CPUs. Inter-op parallelism is not used by these workloads.
    """
    n = threads or int(os.environ.get("KUMOLAB_THREADS", "0") or 0) or usable_cpus()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set once in this process (e.g. a notebook re-running a cell)
    return n


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU raises a clear error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "--device cuda was requested but torch.cuda.is_available() is False: no NVIDIA GPU or "
            "driver is visible to this PyTorch build. Use --device auto or cpu, or run on a GPU "
            "instance (g4dn/g5/g6 with the Deep Learning AMI)."
        )
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU flags (/proc/cpuinfo) of hardware bf16 arithmetic: Intel AMX and AVX512-BF16, Arm's BF16 extension.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 in hardware; without it PyTorch emulates bf16 matmuls (~100x slower)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return not NATIVE_BF16_FLAGS.isdisjoint(value.split())
    return False


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall-clock stopwatch that synchronises the device before reading the time."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        synchronize(device)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        synchronize(self.device)
        return time.perf_counter() - self.start


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
