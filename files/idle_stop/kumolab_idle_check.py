#!/usr/bin/env python3
"""kumolab idle check: stop this machine when CPU and GPU have been idle for N minutes.

Run it once a minute (roles/idle_stop installs a systemd timer, or a cron entry). Each run:

1. reads the CPU counters from /proc/stat and computes utilisation since the previous run (kept in the
   state file); reads GPU utilisation from ``nvidia-smi`` when it exists (the busiest GPU counts);
2. if both are below their thresholds, the machine is idle since the first idle run (also in the state
   file); otherwise the idle clock is reset;
3. once idle for ``--idle-minutes``, runs ``--command`` (default ``shutdown -h now``: on EC2 an OS shutdown
   *stops* the instance when its shutdown behaviour is ``stop``, the default; kumolab never sets
   ``terminate``) and posts a notification if a webhook file is configured.

After a reboot (a new /proc boot_id) the state starts afresh, so a restarted instance gets the full
idle period again. Restart a stopped lab host with ``aws ec2 start-instances --instance-ids <id>``.

Exit status: 0 always for busy/idle/stopped decisions (so the timer does not flap), 2 for bad arguments.
Only the standard library; Python 3.8+.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field


@dataclass
class State:
    boot_id: str = ""
    cpu_idle: int = 0  # /proc/stat idle+iowait jiffies at the last run
    cpu_total: int = 0  # /proc/stat total jiffies at the last run
    idle_since: float | None = None  # epoch seconds of the first idle run in the current idle stretch
    stopped_at: float | None = None

    @classmethod
    def load(cls, path: str) -> State:
        try:
            with open(path) as handle:
                data = json.load(handle)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as handle:
            json.dump(self.__dict__, handle)
        os.replace(tmp, path)


@dataclass
class Decision:
    action: str  # "busy", "idle", "stop", "warming-up"
    reason: str
    state: State = field(default_factory=State)


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(idle, total) jiffies from the aggregate ``cpu`` line of /proc/stat."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
            return idle, total
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def cpu_percent(prev_idle: int, prev_total: int, idle: int, total: int) -> float | None:
    """Busy share in percent between two readings; None when there is no usable previous reading."""
    delta_total = total - prev_total
    if prev_total <= 0 or delta_total <= 0:
        return None
    return round(max(0.0, min(100.0, 100.0 * (1.0 - (idle - prev_idle) / delta_total))), 2)


def parse_nvidia_smi(text: str) -> float | None:
    """Highest utilisation.gpu of ``nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits``."""
    values = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                values.append(float(line))
            except ValueError:
                continue  # "[N/A]" on some boards
    return max(values) if values else None


def read_gpu_percent(nvidia_smi: str = "nvidia-smi") -> float | None:
    path = shutil.which(nvidia_smi)
    if not path:
        return None
    try:
        out = subprocess.run(
            [path, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def decide(
    state: State,
    now: float,
    boot_id: str,
    cpu_reading: tuple[int, int],
    gpu: float | None,
    cpu_threshold: float,
    gpu_threshold: float,
    idle_minutes: float,
) -> Decision:
    """The pure heart: given the last state and this minute's readings, what to do and the next state."""
    idle_jiffies, total_jiffies = cpu_reading
    if state.boot_id != boot_id:  # first run, or first run after a reboot/restart: start afresh
        state = State(boot_id=boot_id)
    cpu = cpu_percent(state.cpu_idle, state.cpu_total, idle_jiffies, total_jiffies)
    new = State(
        boot_id=boot_id,
        cpu_idle=idle_jiffies,
        cpu_total=total_jiffies,
        idle_since=state.idle_since,
        stopped_at=state.stopped_at,
    )
    if cpu is None:
        new.idle_since = None
        return Decision("warming-up", "no previous CPU reading yet", new)
    gpu_text = "no GPU" if gpu is None else f"GPU {gpu:.1f}% (threshold {gpu_threshold:g}%)"
    readings = f"CPU {cpu:.1f}% (threshold {cpu_threshold:g}%), {gpu_text}"
    busy = cpu >= cpu_threshold or (gpu is not None and gpu >= gpu_threshold)
    if busy:
        new.idle_since = None
        return Decision("busy", readings, new)
    if new.idle_since is None:
        new.idle_since = now
    idle_for = (now - new.idle_since) / 60.0
    if idle_for >= idle_minutes:
        if new.stopped_at is None:
            new.stopped_at = now
            return Decision("stop", f"idle for {idle_for:.1f} min >= {idle_minutes:g} min: {readings}", new)
        return Decision("idle", f"stop already requested; idle for {idle_for:.1f} min: {readings}", new)
    return Decision("idle", f"idle for {idle_for:.1f} of {idle_minutes:g} min: {readings}", new)


def notify(webhook_file: str, text: str) -> None:
    try:
        with open(webhook_file) as handle:
            url = handle.read().strip()
    except OSError:
        return
    if not url:
        return
    request = urllib.request.Request(
        url, data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except OSError as exc:
        print(f"kumolab-idle-check: webhook failed: {exc}", file=sys.stderr)


def read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-threshold", type=float, default=10.0, help="busy at or above this CPU %% (default 10)")
    parser.add_argument("--gpu-threshold", type=float, default=10.0, help="busy at or above this GPU %% (default 10)")
    parser.add_argument(
        "--idle-minutes", type=float, default=30.0, help="stop after this many idle minutes (default 30)"
    )
    parser.add_argument("--state-file", default="/var/lib/kumolab/idle_state.json")
    parser.add_argument("--command", default="shutdown -h now", help="what to run to stop (default: shutdown -h now)")
    parser.add_argument("--webhook-file", default="", help="file holding a Slack-compatible webhook URL (optional)")
    parser.add_argument("--name", default=os.uname().nodename, help="name used in messages")
    parser.add_argument("--dry-run", action="store_true", help="decide and report, never run the command")
    parser.add_argument("--proc-stat", default="/proc/stat", help=argparse.SUPPRESS)
    parser.add_argument("--boot-id-file", default="/proc/sys/kernel/random/boot_id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.idle_minutes <= 0 or not 0 < args.cpu_threshold <= 100 or not 0 < args.gpu_threshold <= 100:
        parser.error("thresholds must be in (0, 100] and --idle-minutes positive")

    state = State.load(args.state_file)
    decision = decide(
        state,
        time.time(),
        read_text(args.boot_id_file).strip(),
        parse_proc_stat(read_text(args.proc_stat)),
        read_gpu_percent(),
        args.cpu_threshold,
        args.gpu_threshold,
        args.idle_minutes,
    )
    if decision.action == "stop" and args.dry_run:
        decision.state.stopped_at = None  # a dry run must not remember a stop it did not make
    decision.state.save(args.state_file)
    print(f"kumolab-idle-check: {decision.action}: {decision.reason}")
    if decision.action == "stop":
        message = f"kumolab: {args.name} is stopping itself: {decision.reason}"
        if args.dry_run:
            print(f"kumolab-idle-check: dry run, not running: {args.command}")
            return 0
        if args.webhook_file:
            notify(args.webhook_file, message)
        subprocess.run(shlex.split(args.command), check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
