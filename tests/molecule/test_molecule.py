"""Every molecule scenario of every role (shared settings in .config/molecule/config.yml).

The GPU-lab roles' scenarios share one PyTorch venv, <repo>/.state/molecule-lab-host/pytorch-venv, with the role's
default torch and torchvision (the CUDA build a GPU host gets; the local inventory gives its CPU-only lab host
torch's CPU build alone, in a venv of its own); pytorch_env's scenario runs first. Where the venv does not exist
yet, it is seeded with this interpreter's torch and torchvision, the same versions, by hard links (seconds, not
minutes for ~5.5 GB of wheels): the scenarios test the roles on such a venv, and pip then finds them installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ARTIFACTS, LAB_HOST_VENV_GROUP, REPO

ROLES = sorted(
    (p.parents[2].name for p in REPO.glob("roles/*/molecule/default/molecule.yml")),
    key=lambda r: (r != "pytorch_env", r),
)
# (role, scenario): default scenarios first in ROLES order, then the extra ones (lab_instance/spot).
SCENARIOS = [(role, "default") for role in ROLES] + sorted(
    (p.parents[2].name, p.parent.name)
    for p in REPO.glob("roles/*/molecule/*/molecule.yml")
    if p.parent.name != "default"
)

# Roles whose scenarios use the lab host's shared PyTorch venv; every other scenario is a unit of its own.
LAB_HOST_VENV_ROLES = {"pytorch_env", "jupyterlab", "matmul_benchmark", "mnist"}
PARAMS = [
    pytest.param(
        role,
        scenario,
        id=f"{role}-{scenario}",
        marks=pytest.mark.xdist_group(
            LAB_HOST_VENV_GROUP if role in LAB_HOST_VENV_ROLES else f"molecule-{role}-{scenario}"
        ),
    )
    for role, scenario in SCENARIOS
]


LAB_HOST_VENV = REPO / ".state" / "molecule-lab-host" / "pytorch-venv"


def seed_lab_host_venv(venv: Path = LAB_HOST_VENV, dists: tuple[str, ...] = ("torch", "torchvision")) -> None:
    """Create ``venv`` (as the role's ``python -m venv`` would) holding ``dists`` and what they require, hard-linked
    from this interpreter's site-packages (copied across file systems); pip then finds them installed."""
    from kumolab.local.runtime.package import with_requirements

    if (venv / "bin" / "python").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    target = Path(
        subprocess.run([venv / "bin" / "python", "-c", purelib], capture_output=True, text=True).stdout.strip()
    )
    for dist in with_requirements(list(dists)):
        source = Path(dist.locate_file("")).resolve()
        for rel in dist.files or []:
            path = Path(dist.locate_file(rel)).resolve()
            if not path.is_relative_to(source) or not path.is_file() or "__pycache__" in path.parts:
                continue  # console scripts in bin/ name this interpreter; the role needs the packages only
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, dest)
            except OSError:
                shutil.copy2(path, dest)


def test_every_role_has_a_scenario():
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
    assert roles and set(roles) == set(ROLES), f"roles without a molecule scenario: {set(roles) - set(ROLES)}"


@pytest.mark.parametrize(("role", "scenario"), PARAMS)
def test_molecule_scenario(role, scenario, lab_env):
    if role in LAB_HOST_VENV_ROLES:
        seed_lab_host_venv()
    proc = subprocess.run(
        ["molecule", "test", "--scenario-name", scenario],
        cwd=REPO / "roles" / role,
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"molecule-{role}-{scenario}.log").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "idempotence" in proc.stdout and "Idempotence test failed" not in proc.stdout
    if (role, scenario) == ("jupyterlab", "default"):
        # its verify step saves a headless-Chromium screenshot of the lab UI
        png = (ARTIFACTS / "jupyterlab.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
