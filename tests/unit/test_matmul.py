"""Matmul benchmark arithmetic, peak table and a real (tiny) CPU run (kumolab_workloads.matmul)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from workloads_support import WORKLOADS

from kumolab_workloads import common, matmul


def test_flops_of_square_matmul_is_two_n_cubed():
    assert matmul.matmul_flops(1) == 2
    assert matmul.matmul_flops(1000) == 2_000_000_000
    assert matmul.matmul_flops(10_000) == 2 * 10**12


def test_tflops_from_seconds():
    # 2 * 10000^3 = 2e12 FLOP in 0.5 s = 4 TFLOP/s
    assert matmul.tflops(10_000, 0.5) == pytest.approx(4.0)
    assert matmul.tflops(8192, 1.0) == pytest.approx(2 * 8192**3 / 1e12)
    with pytest.raises(ValueError):
        matmul.tflops(10, 0.0)


def test_percent_of_peak():
    assert matmul.percent_of_peak(742.05, 989.4) == pytest.approx(75.0)
    assert matmul.percent_of_peak(10.0, None) is None


@pytest.mark.parametrize(
    ("device_name", "canonical", "dtype", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", "bf16", 989.4),
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", "fp32", 66.9),
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", "tf32", 494.7),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H200", "NVIDIA H200", "bf16", 989.4),
        ("NVIDIA A10G", "NVIDIA A10G", "fp32", 31.2),
        ("NVIDIA L4", "NVIDIA L4", "tf32", 60.0),
        ("Tesla T4", "NVIDIA T4", "fp32", 8.1),
        ("Tesla T4", "NVIDIA T4", "bf16", None),
    ],
)
def test_peak_table_lookup(device_name, canonical, dtype, peak):
    found = matmul.lookup_peak(device_name)
    assert found is not None
    assert found[0] == canonical
    assert found[1][dtype] == peak


def test_unknown_device_has_no_peak():
    assert matmul.lookup_peak("NVIDIA GeForce GTX 1660 Ti") is None
    assert matmul.lookup_peak("AMD EPYC") is None


def test_dense_tensor_peaks_are_half_the_sparse_datasheet_figures():
    peaks = dict((c, p) for _, c, p in matmul.PEAK_TFLOPS)
    assert peaks["NVIDIA H100 SXM"]["bf16"] * 2 == pytest.approx(1978.8)
    assert peaks["NVIDIA L4"]["bf16"] * 2 == pytest.approx(242.0)


def test_parse_sizes():
    assert matmul.parse_sizes("1000, 4k,10000") == [1000, 4000, 10000]
    with pytest.raises(ValueError):
        matmul.parse_sizes("0")
    with pytest.raises(ValueError):
        matmul.parse_sizes(" , ")


def test_skip_reasons_without_gpu_and_above_caps():
    assert matmul.skip_reason("cpu", "tf32", 100, None) == "TF32 is an NVIDIA tensor-core mode (GPU only)"
    assert "cpu-max-size 4000" in matmul.skip_reason("cpu", "fp32", 10000, 4000)
    assert matmul.skip_reason("cpu", "fp32", 4000, 4000) is None
    assert "cpu-bf16-max-size" in matmul.skip_reason("cpu", "bf16", 2000, 4000, 1000)
    # With AMX/AVX512-BF16 the CPU multiplies bf16 in hardware: only the general CPU cap applies.
    assert matmul.skip_reason("cpu", "bf16", 2000, 4000, 1000, cpu_native_bf16=True) is None
    assert "cpu-max-size 4000" in matmul.skip_reason("cpu", "bf16", 5000, 4000, 1000, cpu_native_bf16=True)


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n", True),  # Sapphire Rapids
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n", False),  # no bf16 arithmetic
        ("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n", False),  # an AVX2-only EPYC
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),  # Graviton 3 (aarch64)
        ("", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert common.cpu_has_native_bf16(cpuinfo) is native


def test_cli_small_cpu_run_writes_consistent_json_and_png(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kumolab_workloads.matmul",
            "--sizes",
            "64,200",
            "--repeats",
            "3",
            "--devices",
            "cpu,cuda",
            "--cpu-bf16-max-size",
            "64",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=WORKLOADS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "matmul.json").read_text())
    rows = {(r["device"], r["dtype"], r["size"]): r for r in result["rows"]}
    assert len(rows) == 2 * 3 * 2
    fp32 = rows[("cpu", "fp32", 200)]
    assert fp32["status"] == "ok" and len(fp32["seconds_all"]) == 3
    assert fp32["seconds"] == sorted(fp32["seconds_all"])[1]  # median of 3
    assert fp32["tflops"] == pytest.approx(2 * 200**3 / fp32["seconds"] / 1e12)
    assert rows[("cpu", "bf16", 64)]["status"] == "ok"
    assert result["cpu_native_bf16"] is common.cpu_has_native_bf16()
    # --cpu-bf16-max-size 64 caps bf16 only on a CPU that emulates it
    assert rows[("cpu", "bf16", 200)]["status"] == ("ok" if result["cpu_native_bf16"] else "skipped")
    assert rows[("cpu", "tf32", 64)]["status"] == "skipped"
    import torch

    if not torch.cuda.is_available():
        assert all(
            r["status"] == "skipped" and "no CUDA device" in r["reason"] for k, r in rows.items() if k[0] == "cuda"
        )
    png = (tmp_path / "matmul.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_rejects_bad_arguments(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kumolab_workloads.matmul",
            "--sizes",
            "64",
            "--devices",
            "tpu",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=WORKLOADS,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "unknown device" in proc.stderr
