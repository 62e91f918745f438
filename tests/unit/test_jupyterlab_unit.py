"""The jupyterlab role's systemd unit, rendered by Ansible from the role's template and defaults and
checked offline with systemd-analyze (this machine does not run systemd as PID 1, so the molecule
scenario exercises the supervisor path; AWS hosts take this one)."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLAY = """
- name: Render the JupyterLab unit
  hosts: localhost
  connection: local
  gather_facts: true
  gather_subset: [min]
  vars_files:
    - {repo}/roles/jupyterlab/defaults/main.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: {repo}/roles/jupyterlab/templates/jupyterlab.service.j2
        dest: {home}/kumolab-jupyterlab.service
        mode: "0644"
      vars:  # task vars outrank the defaults loaded as vars_files
        jupyterlab_home: {home}
        jupyterlab_venv_dir: {home}/venv
        jupyterlab_port: 8899
        jupyterlab_environment: {{KUMOLAB_MNIST_DIR: /srv/mnist}}
"""


def render(tmp_path: Path) -> Path:
    (tmp_path / "venv/bin").mkdir(parents=True)
    launcher = tmp_path / "venv/bin/jupyter-lab"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    (tmp_path / "notebooks").mkdir()
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAY.format(repo=REPO, home=tmp_path))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", str(playbook)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp_path / "kumolab-jupyterlab.service"


def test_unit_runs_the_venvs_jupyterlab_as_the_user_and_passes_systemd_analyze(tmp_path):
    unit = render(tmp_path)
    text = unit.read_text()
    assert f"ExecStart={tmp_path}/venv/bin/jupyter-lab --config={tmp_path}/jupyter/jupyter_server_config.py" in text
    assert f"User={pwd.getpwuid(os.getuid()).pw_name}" in text
    assert f"WorkingDirectory={tmp_path}/notebooks" in text
    assert "Environment=KUMOLAB_MNIST_DIR=/srv/mnist" in text and "127.0.0.1:8899" in text
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr


def test_unit_is_hardened_but_keeps_the_gpu_devices_reachable(tmp_path):
    unit = render(tmp_path)
    text = unit.read_text()
    # Each of these would close /dev/nvidia* to the notebook kernels.
    for directive in ("PrivateDevices=", "DeviceAllow=", "DevicePolicy=", "ProtectClock=", "MemoryDenyWriteExecute="):
        assert directive not in text, directive
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout + security.stderr)
    assert match, security.stdout[-2000:] + security.stderr
    assert float(match.group(1)) <= 5.0, security.stdout[-3000:]  # unhardened: 9.1 UNSAFE
