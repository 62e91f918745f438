"""Lab 7 benchmark: cold start, torch import and model load from EFS, warm p50/p95 of POST /predict.

    .venv/bin/python tests/bench/bench_efs_inference.py [-n 200] [--rounds 3] [--json OUT]

Against a deployed Lab 7 (results/efs_inference/outputs.json; deploy with playbooks/efs_inference.yml, on
either target). Each round forces a cold start (a new configuration of the predict function: new execution
environments) and then sends N warm requests, one at a time, from this machine. A benchmark, not a test: it
prints figures and writes them as JSON (default test-artifacts/bench_efs_inference.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
from pathlib import Path

from kumolab.efs_inference.cli import LAB, bench, default_mnist_dir
from kumolab.serverless.outputs import outputs

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mnist-dir", default=str(default_mnist_dir()))
    parser.add_argument("--json", default=str(REPO / "test-artifacts" / "bench_efs_inference.json"))
    args = parser.parse_args()
    out = outputs(LAB)
    rounds = []
    for i in range(args.rounds):
        figures = bench(out, args.requests, Path(args.mnist_dir))
        rounds.append(figures)
        print(
            f"round {i + 1}: cold start {figures['cold_start_s']:.2f} s "
            f"(torch import {figures['torch_import_s']:.2f} s, "
            f"model load {1000 * figures['model_load_s']:.1f} ms); warm p50 {figures['warm_p50_ms']:.1f} ms, "
            f"p95 {figures['warm_p95_ms']:.1f} ms, max {figures['warm_max_ms']:.1f} ms; "
            f"{100 * figures['accuracy_on_requests']:.0f}% right",
            flush=True,
        )
    summary = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "target": "aws" if not out.get("endpoint_url") else "local",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "requests_per_round": args.requests,
        "cold_start_s_median": statistics.median(r["cold_start_s"] for r in rounds),
        "torch_import_s_median": statistics.median(r["torch_import_s"] for r in rounds),
        "model_load_ms_median": 1000 * statistics.median(r["model_load_s"] for r in rounds),
        "warm_p50_ms_median": statistics.median(r["warm_p50_ms"] for r in rounds),
        "warm_p95_ms_median": statistics.median(r["warm_p95_ms"] for r in rounds),
        "rounds": rounds,
    }
    print(
        f"\nmedian of {args.rounds} rounds: cold start {summary['cold_start_s_median']:.2f} s, torch import "
        f"{summary['torch_import_s_median']:.2f} s, model load {summary['model_load_ms_median']:.1f} ms, warm p50 "
        f"{summary['warm_p50_ms_median']:.1f} ms, p95 {summary['warm_p95_ms_median']:.1f} ms"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=2))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
