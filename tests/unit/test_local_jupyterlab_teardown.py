"""Review M6: the local GPU lab leaves no boot-persistent JupyterLab unit behind.

On the local target the lab host is this machine. JupyterLab runs under the supervisor script in the state
directory (never a unit in /etc/systemd/system), and teardown's `jupyterlab` stop command
(``kumolab_local_services`` in inventories/local/group_vars/all/target.yml) also disables, stops and removes
a ``kumolab-jupyterlab.service`` that an earlier kumolab installed. Run here against a stand-in unit directory
and a recording ``systemctl``.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import yaml
from conftest import REPO, VENV_BIN

UNIT = "kumolab-jupyterlab.service"


def _stop_command(state: Path, unit_dir: Path) -> list[str]:
    """The jupyterlab stop command as the local inventory renders it, with teardown's --lab argument."""
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible"),
            "localhost",
            "-i",
            "inventories/local/hosts.yml",
            "-m",
            "ansible.builtin.debug",
            "-a",
            "var=kumolab_local_services.jupyterlab.stop",
            "-e",
            f"kumolab_state_dir={state}",
            "-e",
            f"kumolab_local_systemd_unit_dir={unit_dir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # profile_tasks prints timing lines around the JSON report
    report, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("\n{") + 1 :])
    result = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return shlex.split(result["kumolab_local_services.jupyterlab.stop"]) + ["--lab", "gpu"]


def _recording_tools(bin_dir: Path, calls: Path) -> dict:
    bin_dir.mkdir()
    for tool in ("systemctl", "sudo"):
        script = bin_dir / tool
        if tool == "sudo":  # sudo -n <command>: run it (this test may run as root or not)
            script.write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
        else:
            script.write_text(f'#!/bin/sh\necho "systemctl $*" >> "{calls}"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_m6_local_gpu_lab_runs_jupyterlab_under_the_supervisor():
    local = yaml.safe_load((REPO / "inventories/local/group_vars/all/gpu_lab.yml").read_text())
    assert local["jupyterlab_service_manager"] == "supervisor"


def test_m6_teardown_disables_and_removes_a_leftover_unit(tmp_path):
    unit_dir = tmp_path / "systemd"
    (unit_dir / "multi-user.target.wants").mkdir(parents=True)
    (unit_dir / UNIT).write_text("[Service]\nExecStart=/bin/true\nRestart=always\n")
    (unit_dir / "multi-user.target.wants" / UNIT).symlink_to(unit_dir / UNIT)
    (unit_dir / "other.service").write_text("[Service]\n")
    calls = tmp_path / "calls"
    env = _recording_tools(tmp_path / "bin", calls)
    command = _stop_command(tmp_path / "state", unit_dir)

    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout) == {"changed": True}
    assert not (unit_dir / UNIT).exists()
    assert not (unit_dir / "multi-user.target.wants" / UNIT).is_symlink()
    assert (unit_dir / "other.service").exists(), "only kumolab's unit goes"
    assert calls.read_text().splitlines() == [f"systemctl disable --now {UNIT}", "systemctl daemon-reload"]

    calls.unlink()
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and json.loads(again.stdout) == {"changed": False}
    assert not calls.exists(), "nothing to disable the second time"
