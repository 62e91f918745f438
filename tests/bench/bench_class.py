"""Class mode at scale: 1, 10 and 30 student environments of Lab 1 on the embedded default.

    python tests/bench/bench_class.py [--sizes 1 10 30] [--forks 10]

For each class size, on one private emulator and loopback SSH host (started before the clock runs):

1. **deploy**: ``ansible-playbook playbooks/class.yml -e roster=<N students>`` (preflight, one class network, every
   student's security group, key pair and server, SSH login and bundle);
2. **ssh**: ``ansible -m ping lab_ec2`` through the dynamic inventory: every student's server must answer;
3. **re-run**: the same playbook again, which must report ``changed=0``;
4. **teardown**: ``playbooks/class_teardown.yml`` with a receipt per student, each of which must pass.

Peak memory is the largest sum of the resident sets of every process of this run (the playbooks, their forks and
modules, the emulator and the SSH host: those whose environment names this run's state directory), sampled every
0.2 s. Prints a table and one JSON line; asserts only that each step worked (this is not a test module).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "src"))

from kumolab.local import settings  # noqa: E402
from kumolab.local.runtime.httpserve import free_port  # noqa: E402

RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


class PeakMemory:
    """Peak of the summed RSS of every process whose environment carries ``marker``."""

    def __init__(self, marker: str):
        self.marker, self.peak, self.running = marker, 0, True
        self.known: dict[int, bool] = {}
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _mine(self, proc) -> bool:
        if proc.pid not in self.known:
            try:
                self.known[proc.pid] = proc.environ().get("KUMOLAB_STATE_DIR") == self.marker
            except (psutil.Error, OSError):
                self.known[proc.pid] = False
        return self.known[proc.pid]

    def _watch(self):
        while self.running:
            total = 0
            for proc in psutil.process_iter():
                try:
                    if self._mine(proc):
                        total += proc.memory_info().rss
                except (psutil.Error, OSError):
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak


def run(command: list[str], env: dict, log: Path) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    log.write_text(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed (rc {proc.returncode}); see {log}\n{proc.stdout[-3000:]}")
    return elapsed, proc.stdout


def roster(path: Path, n: int) -> Path:
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [f"b{i:02d},Student {i},b{i:02d}@example.edu,ec2,20,{expiry}" for i in range(1, n + 1)]
    path.write_text("student_id,display_name,email,labs,budget_usd,expiry\n" + "\n".join(rows) + "\n")
    return path


def one_size(n: int, forks: int, env: dict, work: Path) -> dict:
    class_roster = roster(work / f"bench{n}.csv", n)
    playbook = [str(VENV_BIN / "ansible-playbook"), "-f", str(forks)]
    memory = PeakMemory(env["KUMOLAB_STATE_DIR"])
    deploy_s, _ = run(playbook + ["playbooks/class.yml", "-e", f"roster={class_roster}"], env, work / f"deploy{n}.log")
    ssh_s, pinged = run(
        [
            str(VENV_BIN / "ansible"),
            "-f",
            str(forks),
            "-i",
            "inventories/local",
            "-m",
            "ansible.builtin.ping",
            "lab_ec2",
        ],
        env,
        work / f"ssh{n}.log",
    )
    answered = len(re.findall(r"^kumolab-ec2-b\d+ \| SUCCESS", pinged, re.MULTILINE))
    assert answered == n, f"{answered} of {n} servers answered over SSH"
    rerun_s, output = run(
        playbook + ["playbooks/class.yml", "-e", f"roster={class_roster}"], env, work / f"rerun{n}.log"
    )
    changed = sum(int(m[2]) for m in RECAP.finditer(output))
    teardown_s, _ = run(
        playbook + ["playbooks/class_teardown.yml", "-e", f"roster={class_roster}"], env, work / f"teardown{n}.log"
    )
    peak = memory.stop()
    receipts = [
        json.loads((Path(env["KUMOLAB_RESULTS_DIR"]) / "class" / f"b{i:02d}" / "receipt.json").read_text())
        for i in range(1, n + 1)
    ]
    passed = sum(r["verdict"] == "pass" and r["leftovers"]["ok"] for r in receipts)
    assert passed == n, f"{passed} of {n} receipts pass"
    return {
        "students": n,
        "forks": forks,
        "deploy_s": round(deploy_s, 1),
        "ssh_ping_s": round(ssh_s, 1),
        "rerun_s": round(rerun_s, 1),
        "rerun_changed": changed,
        "teardown_s": round(teardown_s, 1),
        "receipts_pass": passed,
        "peak_rss_mib": round(peak / 2**20),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--forks", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kumolab-bench-class-"))
    state = work / "state"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "KUMOLAB_STATE_DIR": str(state),
        "KUMOLAB_RESULTS_DIR": str(state / "results"),
        "KUMOLAB_EMULATOR_PORT": str(free_port()),
        "KUMOLAB_SSH_PORT": str(free_port()),
        "KUMOLAB_AWS_REGION": "ap-northeast-1",
        "KUMOLAB_AWS_PROFILE": settings.PROFILE,
        "AWS_CONFIG_FILE": str(state / "aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(state / "aws" / "credentials"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    state.mkdir(parents=True)
    for command in ("kumolab-emulator", "kumolab-sshhost"):
        subprocess.run([str(VENV_BIN / command), "start"], env=env, check=True, capture_output=True)
    rows = []
    try:
        for n in args.sizes:
            rows.append(one_size(n, min(args.forks, max(n, 1)), env, work))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for command in ("kumolab-sshhost", "kumolab-emulator"):
            subprocess.run([str(VENV_BIN / command), "stop"], env=env, capture_output=True)
    base = rows[0]["deploy_s"] if rows and rows[0]["students"] == 1 else None
    print(
        f"\n{'students':>8} {'forks':>5} {'deploy s':>9} {'x of 1':>7} {'ssh s':>6} {'re-run s':>9} {'changed':>8} "
        f"{'teardown s':>11} {'receipts':>9} {'peak MiB':>9}"
    )
    for r in rows:
        ratio = f"{r['deploy_s'] / base:.2f}" if base else "—"
        print(
            f"{r['students']:>8} {r['forks']:>5} {r['deploy_s']:>9} {ratio:>7} {r['ssh_ping_s']:>6} {r['rerun_s']:>9} "
            f"{r['rerun_changed']:>8} {r['teardown_s']:>11} {r['receipts_pass']:>9} {r['peak_rss_mib']:>9}"
        )
    print(json.dumps({"bench": "class", "cpus": os.cpu_count(), "rows": rows, "logs": str(work)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
