"""The lab's notebooks execute headless (`jupyter execute`) with tiny settings and real outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from workloads_support import NOTEBOOKS, WORKLOADS, mnist_dir

NAMES = ["00_getting_started.ipynb", "01_matmul_benchmark.ipynb", "02_mnist.ipynb"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run all three notebooks once, in one `jupyter execute` call, on copies in a temp dir."""
    work = tmp_path_factory.mktemp("notebooks")
    for name in NAMES:
        shutil.copy(NOTEBOOKS / name, work / name)
    env = {
        **os.environ,
        "KUMOLAB_WORKLOADS_PATH": str(WORKLOADS),
        "KUMOLAB_MNIST_DIR": str(mnist_dir()),
        "KUMOLAB_NB_OUT": str(work / "out"),
        "KUMOLAB_NB_SIZES": "96,192",
        "KUMOLAB_NB_REPEATS": "2",
        "KUMOLAB_NB_EPOCHS": "1",
        "KUMOLAB_NB_MAX_TRAIN": "5000",
        "KUMOLAB_NB_DEVICE": "cpu",
    }
    jupyter = Path(sys.executable).with_name("jupyter")
    proc = subprocess.run(
        [str(jupyter), "execute", "--inplace", "--kernel_name=python3", "--timeout=600", *NAMES],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


def outputs(nb_path: Path) -> tuple[str, list[dict]]:
    nb = nbformat.read(nb_path, as_version=4)
    text, rich = [], []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"{nb_path.name}: a cell did not run"
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{nb_path.name}: {out.get('ename')}: {out.get('evalue')}"
            if out.get("output_type") == "stream":
                text.append(out["text"])
            elif "data" in out:
                rich.append(out["data"])
                text.append(out["data"].get("text/plain", ""))
    return "".join(text), rich


def test_notebooks_are_valid_and_use_the_workloads_package():
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "import kumolab_workloads" in source
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is shipped with outputs"


def test_getting_started_runs_a_tensor_op(executed):
    text, _ = outputs(executed / "00_getting_started.ipynb")
    assert "torch" in text and "device: cpu" in text
    assert "max relative error vs float64" in text


def test_matmul_notebook_measures_and_plots(executed):
    text, rich = outputs(executed / "01_matmul_benchmark.ipynb")
    result = json.loads((executed / "out" / "matmul.json").read_text())
    assert result["sizes"] == [96, 192]
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    assert {(r["device"], r["dtype"]) for r in ok} >= {("cpu", "fp32")}
    assert "TFLOP/s" in text
    assert any("image/png" in d for d in rich)


def test_mnist_notebook_trains_and_shows_both_plots(executed):
    text, rich = outputs(executed / "02_mnist.ipynb")
    result = json.loads((executed / "out" / "mnist_fast.json").read_text())
    assert result["train_samples"] == 5000 and len(result["epochs"]) == 1
    assert result["final_test_accuracy"] >= 0.90
    assert "final test accuracy" in text and "reloaded model" in text
    assert sum("image/png" in d for d in rich) == 2
