"""Static quality gates: ansible-lint (production profile, offline) and self-documenting modules."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import REPO, VENV_BIN

MODULES = sorted(p.stem for p in (REPO / "library").glob("*.py"))


def test_ansible_lint_production_profile_is_clean():
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor", "-f", "pep8", "playbooks", "roles"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("module", MODULES)
def test_module_documents_itself(module):
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-doc"), "-M", "library", "-t", "module", "--json", module],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[module]
    assert doc["doc"]["short_description"] and doc["doc"]["description"]
    for option, spec in doc["doc"].get("options", {}).items():
        assert spec.get("description"), f"{module}: option {option} has no description"
        assert spec.get("type") or option in ("state",), f"{module}: option {option} has no type"
    assert yaml.safe_load(doc["examples"]), f"{module}: EXAMPLES is empty"
    assert doc["return"] is not None, f"{module}: RETURN is missing"
    source = (REPO / "library" / f"{module}.py").read_text()
    assert "supports_check_mode=True" in source, f"{module} does not support check mode"
    assert re.search(r"Why (a custom module|this module exists)", source), (
        f"{module}'s docstring does not say why amazon.aws was not enough"
    )
