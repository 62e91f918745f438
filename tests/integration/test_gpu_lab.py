"""Lab 2, the main job, end to end on the emulator with a CI-sized workload (real training, real SSH)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import LAB_HOST_VENV_GROUP, live_tagged_arns

from kumolab.labs import lab as registry_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group(LAB_HOST_VENV_GROUP)]

# One epoch of the fast configuration on all 60k images, small matmuls: minutes on 2 CPU cores.
CI_SETTINGS = [
    "-e",
    "mnist_epochs=1",
    "-e",
    "mnist_min_test_accuracy=0.985",
    "-e",
    '{"matmul_benchmark_sizes": [256, 1024]}',
]


@pytest.fixture(scope="module")
def deployed(run_playbook):
    run = run_playbook("gpu_lab.yml", *CI_SETTINGS)
    assert run.rc == 0, run.output[-5000:]
    return run


@pytest.fixture(scope="module")
def results(deployed, lab_env):
    return Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "gpu"


def test_mnist_reaches_the_accuracy_threshold_on_the_test_set(results):
    mnist = json.loads((results / "mnist_fast.json").read_text())
    assert mnist["evaluated_on"].startswith("MNIST test set")
    assert mnist["test_samples"] == 10_000 and mnist["train_samples"] == 60_000
    assert len(mnist["epochs"]) == 1
    assert mnist["final_test_accuracy"] >= 0.985
    assert mnist["data_sha256_verified"] is True


def test_benchmark_reports_cpu_timings_and_skips_the_missing_gpu(results):
    matmul = json.loads((results / "matmul.json").read_text())
    ok = [r for r in matmul["rows"] if r["status"] == "ok"]
    assert {(r["device"], r["size"]) for r in ok if r["dtype"] == "fp32"} == {("cpu", 256), ("cpu", 1024)}
    for row in ok:
        assert row["tflops"] == pytest.approx(2 * row["size"] ** 3 / row["seconds"] / 1e12, rel=1e-6)
    assert all(r["status"] == "skipped" for r in matmul["rows"] if r["device"] == "cuda")


def test_plots_are_real_pngs(results):
    for name in ("matmul.png", "mnist_fast_loss.png", "mnist_fast_predictions.png"):
        data = (results / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_summary_says_which_device_ran_and_how_to_reach_jupyter(deployed, results, lab_env):
    summary = json.loads((results / "summary.json").read_text())
    assert "(cpu)" in summary["device"] or "(cuda)" in summary["device"]
    key = Path(lab_env["KUMOLAB_STATE_DIR"]) / "keys" / registry_lab("gpu").prefix()
    port = lab_env["KUMOLAB_JUPYTER_PORT"]
    assert (
        summary["jupyter_tunnel"]
        == f"ssh -i {key} -p {lab_env['KUMOLAB_SSH_PORT']} -L {port}:localhost:{port} "
        + summary["jupyter_tunnel"].split()[-1]
    )
    assert summary["jupyter_tunnel"].split()[-1].endswith("@127.0.0.1")
    assert "JupyterLab:" in deployed.output and "MNIST fast: test accuracy" in deployed.output


def test_jupyterlab_needs_its_token(deployed, lab_env):
    port = lab_env["KUMOLAB_JUPYTER_PORT"]
    lab_host = json.loads((Path(lab_env["KUMOLAB_STATE_DIR"]) / "sshd" / "lab_host.json").read_text())
    token_file = Path(lab_host["lab_dir"]) / "jupyter" / "token"
    assert token_file.stat().st_uid == lab_host["uid"] != 0, "JupyterLab runs as the lab host's account, not root"
    token = token_file.read_text().strip()
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs", timeout=10)
    assert denied.value.code == 403
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}", timeout=10) as resp:
        kernels = json.load(resp)
    assert "kumolab-pytorch" in kernels["kernelspecs"]
    assert token not in deployed.output, "the token must not be printed by the playbook log"


def test_second_run_changes_nothing(deployed, run_playbook):
    run = run_playbook("gpu_lab.yml", *CI_SETTINGS)
    assert run.rc == 0, run.output[-5000:]
    assert run.changed == 0, run.changed_tasks()


def test_security_audit_passes(deployed, audit):
    report = audit("gpu")
    print(f"audit gpu: {report['summary']}")


def test_teardown_leaves_nothing(deployed, run_playbook, aws):
    run = run_playbook("teardown.yml", "-e", "lab=gpu")
    assert run.rc == 0, run.output[-3000:]
    live = [arn for arn in live_tagged_arns(aws, {"Lab": "gpu"}) if ":instance/" not in arn]
    assert live == []
    running = aws("ec2").describe_instances(
        Filters=[
            {"Name": "tag:Lab", "Values": ["gpu"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
        ]
    )
    assert running["Reservations"] == []
