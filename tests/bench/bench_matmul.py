"""Matmul benchmark as recorded in docs/benchmarks.md: CPU (and GPU where present) TFLOP/s.

    .venv/bin/python tests/bench/bench_matmul.py [--sizes 1000,2000,4000] [--repeats 5]
        [--cpu-max-size 4000] [--out-dir test-artifacts/bench_matmul]

Prints a Markdown table ready for docs/benchmarks.md and writes matmul.json + matmul.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "files" / "workloads"))

from kumolab_workloads import common, matmul  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,2000,4000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-max-size", type=int, default=4000)
    parser.add_argument("--cpu-bf16-max-size", type=int, default=1000)
    parser.add_argument("--out-dir", default=str(REPO / "test-artifacts" / "bench_matmul"))
    args = parser.parse_args()
    result = matmul.run_benchmark(
        matmul.parse_sizes(args.sizes),
        args.repeats,
        ["cpu", "cuda"],
        list(matmul.DTYPES),
        args.cpu_max_size or None,
        None,
        args.cpu_bf16_max_size or None,
    )
    out = Path(args.out_dir)
    common.write_json(out / "matmul.json", result)
    matmul.chart(result, out / "matmul.png")
    print()
    print(
        f"{dt.date.today().isoformat()}, CPU {result['cpu']} ({result['cpu_threads']} threads), GPU {result['gpu']}, "
        f"torch {result['torch_version']}, load average {os.getloadavg()[0]:.1f}"
    )
    print("| device | dtype | n | median s | TFLOP/s | speed-up vs CPU fp32 | % of peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        if r["status"] != "ok":
            print(f"| {r['device']} | {r['dtype']} | {r['size']} | — | — | — | skipped: {r['reason']} |")
            continue
        sp = r.get("speedup_vs_cpu_fp32")
        pk = r.get("percent_of_peak")
        print(
            f"| {r['device']} | {r['dtype']} | {r['size']} | {r['seconds']:.4f} | {r['tflops']:.4f} | "
            f"{f'{sp:.0f}x' if sp else '—'} | {f'{pk:.0f}%' if pk else '—'} |"
        )
    print(f"wrote {out / 'matmul.json'} and {out / 'matmul.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
