"""Square matmul benchmark: CPU vs GPU, fp32 / tf32 / bf16, seconds, TFLOP/s, speed-up, % of peak.

For each size n it times ``C = A @ B`` with A, B of shape (n, n): 2*n^3 floating-point operations.
Each measurement does warm-up runs first, then ``repeats`` timed runs, and reports the median.
GPU runs are timed with CUDA events around the matmul (after a synchronisation); CPU runs with
``time.perf_counter``.

``tf32`` is fp32 storage with TensorFloat-32 tensor-core math, enabled explicitly
(``torch.backends.cuda.matmul.allow_tf32 = True``) for that row only and reported separately;
it exists on NVIDIA GPUs of compute capability 8.0 and newer, so it is a GPU-only row.

CLI::

    python -m kumolab_workloads.matmul --sizes 1000,4000,10000 --repeats 5 --out-dir OUT
        [--devices cpu,cuda] [--dtypes fp32,tf32,bf16] [--cpu-max-size 4000] [--cpu-bf16-max-size 1000]

Writes ``matmul.json`` and ``matmul.png`` under OUT. Rows that cannot run (no GPU, size above the
CPU cap, dtype not supported by the device) are recorded with ``status: skipped`` and the reason.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import common, plots

DTYPES = ("fp32", "tf32", "bf16")

# Dense (no structured sparsity) peak TFLOP/s from NVIDIA's public datasheets. Datasheets print
# tensor-core figures "with sparsity", which are twice the dense figure: halved here.
# Keys are matched against torch.cuda.get_device_name() (case-insensitive substrings, first match).
PEAK_TFLOPS: list[tuple[tuple[str, ...], str, dict[str, float | None]]] = [
    # H100 SXM5 datasheet: FP32 67, TF32 989 (sparse), BF16 1979 (sparse)
    (("h100 80gb hbm3", "h100 sxm"), "NVIDIA H100 SXM", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    # H100 PCIe datasheet: FP32 51, TF32 756 (sparse), BF16 1513 (sparse)
    (("h100 pcie",), "NVIDIA H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    # H200 SXM datasheet: same compute as H100 SXM (more and faster memory)
    (("h200",), "NVIDIA H200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    # H100 SXM reported by some drivers as plain "NVIDIA H100"
    (("h100",), "NVIDIA H100 SXM", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),
    # A10G (AWS g5): NVIDIA publishes no separate datasheet; AWS/NVIDIA figures: FP32 31.2,
    # TF32 70 (sparse), BF16 140 (sparse)
    (("a10g",), "NVIDIA A10G", {"fp32": 31.2, "tf32": 35.0, "bf16": 70.0}),
    # L4 (AWS g6) datasheet: FP32 30.3, TF32 120 (sparse), BF16 242 (sparse)
    (("l4",), "NVIDIA L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    # T4 (AWS g4dn) datasheet: FP32 8.1; Turing has no TF32 and no BF16 tensor cores
    (("t4",), "NVIDIA T4", {"fp32": 8.1, "tf32": None, "bf16": None}),
]


def matmul_flops(n: int) -> int:
    """Floating-point operations of an (n x n) @ (n x n) product: n^2 dot products of 2n-1 ops,
    counted as 2*n^3 by convention (one multiply and one add per term)."""
    return 2 * n**3


def tflops(n: int, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    return matmul_flops(n) / seconds / 1e12


def lookup_peak(device_name: str) -> tuple[str, dict[str, float | None]] | None:
    """Return (canonical name, {dtype: dense peak TFLOP/s or None}) for a known GPU, else None."""
    name = device_name.lower()
    for keys, canonical, peaks in PEAK_TFLOPS:
        if any(key in name for key in keys):
            return canonical, peaks
    return None


def percent_of_peak(achieved_tflops: float, peak_tflops: float | None) -> float | None:
    if peak_tflops is None or peak_tflops <= 0:
        return None
    return 100.0 * achieved_tflops / peak_tflops


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        value = int(float(part[:-1]) * 1000) if part.endswith("k") else int(part)
        if value < 1:
            raise ValueError(f"matrix size must be >= 1, got {part!r}")
        sizes.append(value)
    if not sizes:
        raise ValueError("no sizes given")
    return sizes


def _torch_dtype(dtype: str) -> torch.dtype:
    return torch.bfloat16 if dtype == "bf16" else torch.float32


def skip_reason(
    device: str,
    dtype: str,
    size: int,
    cpu_max_size: int | None,
    cpu_bf16_max_size: int | None = None,
    cpu_native_bf16: bool = False,
) -> str | None:
    """Why a (device, dtype, size) row cannot or should not run here, or None if it can.

    ``cpu_bf16_max_size`` caps CPU bf16 rows only where bf16 is emulated (``cpu_native_bf16`` false).
    """
    if device == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
        major, _minor = torch.cuda.get_device_capability()
        if dtype == "tf32" and major < 8:
            return "TF32 needs compute capability >= 8.0 (Ampere or newer)"
        if dtype == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16 tensor cores need compute capability >= 8.0"
        return None
    if dtype == "tf32":
        return "TF32 is an NVIDIA tensor-core mode (GPU only)"
    if cpu_max_size is not None and size > cpu_max_size:
        return f"size {size} above --cpu-max-size {cpu_max_size}"
    if dtype == "bf16" and not cpu_native_bf16 and cpu_bf16_max_size is not None and size > cpu_bf16_max_size:
        return (
            f"size {size} above --cpu-bf16-max-size {cpu_bf16_max_size} (this CPU has no AMX/AVX512-BF16: "
            "bf16 matmul is emulated, ~100x slower than fp32)"
        )
    return None


def time_matmul(n: int, dtype: str, device: str, repeats: int, warmup: int) -> list[float]:
    """Seconds of each timed ``A @ B`` (n x n) run, after ``warmup`` untimed runs."""
    dev = torch.device(device)
    tdtype = _torch_dtype(dtype)
    gen = torch.Generator(device="cpu").manual_seed(n)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32).to(dev, tdtype)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32).to(dev, tdtype)
    out = torch.empty(n, n, device=dev, dtype=tdtype)
    times: list[float] = []
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    prev_precision = torch.get_float32_matmul_precision()
    try:
        if dev.type == "cuda":
            # fp32 rows must be true fp32: TF32 only where asked for.
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
            torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
        for _ in range(warmup):
            torch.matmul(a, b, out=out)
        common.synchronize(dev)
        for _ in range(repeats):
            if dev.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.matmul(a, b, out=out)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000.0)
            else:
                t0 = time.perf_counter()
                torch.matmul(a, b, out=out)
                times.append(time.perf_counter() - t0)
        # Sanity check on a few rows against float64, so a broken kernel cannot post a fast time.
        k = min(n, 4)
        ref = a[:k].double() @ b.double()
        err = ((out[:k].double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
        tol = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 5e-2}[dtype]
        if not err <= tol:
            raise RuntimeError(f"{dtype} matmul n={n} on {device}: relative error {err:.2e} above {tol}")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
        torch.set_float32_matmul_precision(prev_precision)
        del a, b, out
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return times


def run_benchmark(
    sizes: list[int],
    repeats: int = 5,
    devices: list[str] | None = None,
    dtypes: list[str] | None = None,
    cpu_max_size: int | None = 4000,
    warmup: int | None = None,
    cpu_bf16_max_size: int | None = 1000,
    log=print,
) -> dict[str, Any]:
    devices = devices or ["cpu", "cuda"]
    dtypes = dtypes or list(DTYPES)
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise ValueError(f"unknown dtype(s) {unknown}; choose from {DTYPES}")
    threads = common.setup_cpu_threads()
    native_bf16 = common.cpu_has_native_bf16()
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    peak = lookup_peak(gpu_name) if gpu_name else None
    rows: list[dict[str, Any]] = []
    for device in devices:
        for dtype in dtypes:
            for n in sizes:
                row: dict[str, Any] = {
                    "device": device,
                    "device_name": (gpu_name if device == "cuda" else common.cpu_model_name()),
                    "dtype": dtype,
                    "size": n,
                    "flops": matmul_flops(n),
                }
                reason = skip_reason(device, dtype, n, cpu_max_size, cpu_bf16_max_size, native_bf16)
                if reason:
                    row.update(status="skipped", reason=reason)
                    log(f"{device:4s} {dtype:4s} n={n:<6d} skipped: {reason}")
                    rows.append(row)
                    continue
                n_warm = warmup if warmup is not None else (3 if device == "cuda" else 1)
                times = time_matmul(n, dtype, device, repeats, n_warm)
                med = statistics.median(times)
                row.update(
                    status="ok",
                    repeats=repeats,
                    warmup=n_warm,
                    seconds=med,
                    seconds_all=times,
                    tflops=tflops(n, med),
                    timing="cuda events" if device == "cuda" else "time.perf_counter",
                )
                if device == "cuda" and peak:
                    row["peak_tflops"] = peak[1].get(dtype)
                    row["percent_of_peak"] = percent_of_peak(row["tflops"], row["peak_tflops"])
                rows.append(row)
                log(
                    f"{device:4s} {dtype:4s} n={n:<6d} {med:9.4f} s  {row['tflops']:8.3f} TFLOP/s"
                    + (f"  {row['percent_of_peak']:.1f}% of peak" if row.get("percent_of_peak") else "")
                )
    cpu_fp32 = {
        r["size"]: r["seconds"] for r in rows if r["device"] == "cpu" and r["dtype"] == "fp32" and r["status"] == "ok"
    }
    for r in rows:
        if r["device"] == "cuda" and r["status"] == "ok":
            base = cpu_fp32.get(r["size"])
            r["speedup_vs_cpu_fp32"] = base / r["seconds"] if base else None
    return {
        "workload": "matmul",
        "torch_version": torch.__version__,
        "cpu": common.cpu_model_name(),
        "cpu_threads": threads,
        "gpu": gpu_name,
        "gpu_peak_table_entry": peak[0] if peak else None,
        "peak_note": "dense (no sparsity) peak TFLOP/s from NVIDIA datasheets",
        "sizes": sizes,
        "repeats": repeats,
        "cpu_max_size": cpu_max_size,
        "cpu_bf16_max_size": cpu_bf16_max_size,
        "cpu_native_bf16": native_bf16,
        "rows": rows,
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def chart(result: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: TFLOP/s per size, one bar per (device, dtype); skipped rows show 'n/a'."""
    sizes = result["sizes"]
    series: dict[str, list[float | None]] = {}
    for r in result["rows"]:
        if r["device"] == "cuda" and all(x["status"] == "skipped" for x in result["rows"] if x["device"] == "cuda"):
            continue  # no GPU at all: one note instead of empty bars
        key = f"{r['device']} {r['dtype']}"
        series.setdefault(key, [None] * len(sizes))
        if r["status"] == "ok":
            series[key][sizes.index(r["size"])] = r["tflops"]
    series = {k: v for k, v in series.items() if any(x is not None for x in v) or k.startswith("cuda")}
    notes = []
    reasons = sorted({f"{r['device']} {r['dtype']}: {r['reason']}" for r in result["rows"] if r["status"] == "skipped"})
    notes.extend(f"skipped - {x}" for x in reasons[:6])
    title = f"Square matmul throughput (CPU: {result['cpu']}, {result['cpu_threads']} threads"
    title += f"; GPU: {result['gpu']})" if result["gpu"] else "; no GPU)"
    return plots.grouped_bars([f"n={s}" for s in sizes], series, path, title, "TFLOP/s (2n³ / median s)", notes=notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kumolab_workloads.matmul", description="CPU vs GPU square matmul benchmark."
    )
    parser.add_argument("--sizes", default="1000,4000,10000", help="comma-separated n (e.g. 1000,4k,10000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=None, help="default: 3 on GPU, 1 on CPU")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument(
        "--cpu-max-size",
        type=int,
        default=4000,
        help="skip CPU rows above this n (0: no cap); 10000 fp32 takes ~minutes per run on a small CPU",
    )
    parser.add_argument(
        "--cpu-bf16-max-size",
        type=int,
        default=1000,
        help="skip CPU bf16 rows above this n where the CPU emulates bf16 (no AMX/AVX512-BF16; 0: no cap)",
    )
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    bad = [d for d in devices if d not in ("cpu", "cuda")]
    if bad:
        parser.error(f"unknown device(s) {bad}; use cpu and/or cuda")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    try:
        result = run_benchmark(
            sizes,
            args.repeats,
            devices,
            dtypes,
            args.cpu_max_size or None,
            args.warmup,
            args.cpu_bf16_max_size or None,
            log=lambda s: print(s, flush=True),
        )
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out_dir)
    common.write_json(out / "matmul.json", result)
    chart(result, out / "matmul.png")
    print(f"wrote {out / 'matmul.json'} and {out / 'matmul.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
