"""Real (short) MNIST training with kumolab_workloads.mnist, evaluated on the 10k test set."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from workloads_support import WORKLOADS, mnist_dir

from kumolab_workloads import idx, mnist


@pytest.fixture(scope="module")
def mnist_data():
    return idx.load_mnist(mnist_dir(), verify=True)


def test_textbook_network_is_the_textbooks():
    model = mnist.build_model(mnist.CONFIGS["textbook"])
    # conv1 320 + conv2 18,496 + fc1 1,179,776 + fc2 1,290
    assert mnist.count_parameters(model) == 1_199_882
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    cfg = mnist.CONFIGS["textbook"]
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.batch_size, cfg.epochs) == ("sgd", 0.01, 0.5, 64, 5)
    assert not cfg.resident


def test_fast_network_is_about_100k_parameters_two_convs():
    model = mnist.build_model(mnist.CONFIGS["fast"])
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2
    assert 80_000 <= mnist.count_parameters(model) <= 120_000
    cfg = mnist.CONFIGS["fast"]
    assert cfg.resident and cfg.channels_last and cfg.schedule == "onecycle" and cfg.epochs == 2
    assert 0.9 < cfg.ema_decay < 1.0


def test_weight_ema_warms_up_then_averages_parameters_and_bn_statistics():
    live = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = mnist.WeightEma(live, decay=0.9)
    start = live[0].weight.detach().clone()
    with torch.no_grad():
        live[0].weight.fill_(1.0)
        live[1].running_mean.fill_(4.0)
        live[1].num_batches_tracked.fill_(7)
    ema.update()  # warm-up decay min(0.9, 2/11): mostly the new value
    d1 = 2 / 11
    assert torch.allclose(ema.module[0].weight, d1 * start + (1 - d1))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), (1 - d1) * 4.0))
    assert ema.module[1].num_batches_tracked.item() == 7  # integer buffers are copied
    for _ in range(200):
        ema.update()
    assert torch.allclose(ema.module[0].weight, torch.ones(2, 2), atol=1e-6)
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert live[0].weight.requires_grad  # the live model is untouched
    with pytest.raises(ValueError, match="decay"):
        mnist.WeightEma(live, decay=1.0)


def test_fast_one_epoch_on_a_subset_learns_digits(mnist_data):
    result = mnist.train(
        "fast",
        epochs=1,
        max_train_samples=8000,
        seed=1,
        device="cpu",
        data=mnist_data,
        log=lambda s: None,
        write_outputs=False,
    )
    assert result["train_samples"] == 8000
    assert result["test_samples"] == 10000  # always the full test set
    assert len(result["epochs"]) == 1
    # 8,000 images, one epoch: ~96% here; chance is 10%, a broken pipeline stays far below.
    assert result["final_test_accuracy"] >= 0.93, result["epochs"]
    assert result["epochs"][0]["train_loss"] < 1.0


def test_textbook_short_run_learns_digits(mnist_data):
    result = mnist.train(
        "textbook",
        epochs=1,
        max_train_samples=3000,
        seed=0,
        device="cpu",
        data=mnist_data,
        log=lambda s: None,
        write_outputs=False,
    )
    assert result["settings"]["batch_size"] == 64
    assert result["final_test_accuracy"] >= 0.80, result["epochs"]


def test_cli_writes_json_plots_and_weights(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kumolab_workloads.mnist",
            "--config",
            "fast",
            "--data-dir",
            str(mnist_dir()),
            "--out-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--max-train-samples",
            "5000",
            "--seed",
            "2",
            "--device",
            "cpu",
        ],
        cwd=WORKLOADS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/1" in proc.stdout and "test_acc" in proc.stdout
    result = json.loads((tmp_path / "mnist_fast.json").read_text())
    assert result["config"] == "fast" and result["device"] == "cpu"
    assert result["torch_version"] == torch.__version__
    assert result["data_sha256_verified"] is True
    epoch = result["epochs"][0]
    assert set(epoch) >= {"epoch", "train_loss", "test_loss", "test_accuracy", "elapsed_seconds"}
    assert result["final_test_accuracy"] == epoch["test_accuracy"] >= 0.90
    # 99% is out of reach with 5,000 images and one epoch: reported as null, not faked.
    assert result["seconds_to_99"] is None
    for name in ("mnist_fast_loss.png", "mnist_fast_predictions.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(tmp_path / "mnist_fast.pt")
    model = mnist.build_model(mnist.CONFIGS["fast"])
    model.load_state_dict(state)  # the saved weights fit the fast network


def test_cli_reports_missing_gpu_clearly(tmp_path):
    if torch.cuda.is_available():
        pytest.xfail("this machine has a GPU")  # never reached on the CPU-only CI
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kumolab_workloads.mnist",
            "--data-dir",
            str(mnist_dir()),
            "--out-dir",
            str(tmp_path),
            "--device",
            "cuda",
            "--max-train-samples",
            "100",
            "--epochs",
            "1",
        ],
        cwd=WORKLOADS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "torch.cuda.is_available() is False" in proc.stderr and "--device auto or cpu" in proc.stderr
