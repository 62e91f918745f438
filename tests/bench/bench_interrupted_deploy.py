"""Interrupted deploys, the whole matrix: every lab's deploy killed at each of its seeded points, then teardown.

    python tests/bench/bench_interrupted_deploy.py [-k <pytest -k expression>]

The suite (tests/integration/test_interrupted_deploy.py) kills each lab's deploy at one point, its first seed; this
runs the same test with ``KUMOLAB_INTERRUPT_SEEDS=all`` (3 points for Labs 1 and 2, 2 for the others: about a
minute each), in one process on its own emulator, and prints, per case, the task the deploy was killed in, whether
teardown left nothing, and the case's wall time. Exits non-zero when a case fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE = "tests/integration/test_interrupted_deploy.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the cases matching this pytest -k expression")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", MODULE]
        command += [f"--junitxml={junit}"] + (["-k", args.k] if args.k else [])
        proc = subprocess.run(command, cwd=REPO, env={**os.environ, "KUMOLAB_INTERRUPT_SEEDS": "all"}, check=False)
        cases = [
            (case.get("name"), float(case.get("time")), "failed" if len(case) else "ok")
            for case in ET.parse(junit).iter("testcase")
        ]
    print("\n| case | result | wall time (s) |\n|---|---|---:|")
    for name, seconds, result in cases:
        print(f"| {name.split('[', 1)[-1].rstrip(']')} | {result} | {seconds:.1f} |")
    summary = REPO / "test-artifacts" / "interrupted_deploy.txt"
    if summary.exists():
        print("\n" + summary.read_text())
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
