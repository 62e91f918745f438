"""QA bot benchmark: batched warm worker vs the textbook's one-process-per-question design.

    python tests/bench/bench_qa.py [--model-dir DIR] [--questions 100] [--fresh 5] [--asks 20]

1. **Warm, batched**: one ``python -m qa_worker`` process (model loaded once) against a moto server on a
   free port; N questions are enqueued at once; time from the first send until the last answer is in
   DynamoDB (so SQS, inference and DynamoDB writes are all inside the measurement).
2. **Textbook design**: a fresh Python process per question that imports the libraries, loads the model,
   answers one question and exits (no SQS/DynamoDB at all, which favours it). ``--fresh`` such processes
   are timed and the mean is extrapolated to N questions; the script says so in its output.
3. **Latency**: ``--asks`` single ``ask`` round trips (send, poll DynamoDB until the answer is there) one
   after another against the warm worker; p50 and p95.

Prints the figures and one JSON line; nothing is asserted (this is not a test module).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER_DIR = REPO / "files" / "containers" / "qa_bot"
sys.path[:0] = [str(REPO / "src"), str(WORKER_DIR)]

from kumolab.local.runtime.httpserve import free_port  # noqa: E402

SAMPLE = REPO / "src" / "kumolab" / "qa" / "data" / "sample_questions.json"
HELDOUT = REPO / "src" / "kumolab" / "qa" / "data" / "heldout.json"

ONE_SHOT = """
import sys, time
t = time.monotonic()
sys.path.insert(0, {worker!r})
from qa_worker.inference import QAModel
qa = QAModel.load({model!r})
a = qa.answer({question!r}, {context!r})
print(a.answer, time.monotonic() - t)
"""


def _questions(n: int) -> list[dict[str, str]]:
    pool = [
        {"context": q["context"], "question": q["question"]}
        for q in json.loads(HELDOUT.read_text()) + json.loads(SAMPLE.read_text())
    ]
    return [pool[i % len(pool)] for i in range(n)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="model directory (default: build or reuse the offline model)")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--fresh", type=int, default=5, help="fresh one-question processes to time")
    parser.add_argument("--asks", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        from kumolab.qa.build_model import ensure_model

        model_dir = ensure_model(log=lambda m: print(m, file=sys.stderr))
    questions = _questions(args.questions)

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    import boto3

    from kumolab.qa.cli import Clients, Target, enqueue, wait_for

    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="bench-questions")["QueueUrl"]
    boto3.client("dynamodb").create_table(
        TableName="bench-answers",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "S"}],
    )
    clients = Clients(Target(queue_url, "bench-answers", "us-east-1", endpoint))
    env = dict(
        os.environ,
        PYTHONPATH=str(WORKER_DIR),
        QUEUE_URL=queue_url,
        TABLE_NAME="bench-answers",
        MODEL_DIR=str(model_dir),
        BATCH_SIZE=str(args.batch_size),
        WAIT_TIME_SECONDS="20",
        LOG_LEVEL="WARNING",
    )
    worker = subprocess.Popen([sys.executable, "-m", "qa_worker"], env=env)
    try:
        # Warm up: the first answer proves the worker has loaded its model.
        ids = enqueue(clients, questions[:1])
        if len(wait_for(clients, ids, 300)) != 1:
            raise SystemExit("worker did not answer the warm-up question")

        started = time.monotonic()
        ids = enqueue(clients, questions)
        found = wait_for(clients, ids, 900)
        warm_seconds = time.monotonic() - started
        if len(found) != len(ids):
            raise SystemExit(f"only {len(found)}/{len(ids)} answered")
        warm_qps = len(ids) / warm_seconds

        latencies = []
        for q in questions[: args.asks]:
            t = time.monotonic()
            (item_id,) = enqueue(clients, [q])
            if item_id not in wait_for(clients, [item_id], 120, poll=0.05):
                raise SystemExit("an ask timed out")
            latencies.append(time.monotonic() - t)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        server.stop()

    fresh_times = []
    for q in questions[: args.fresh]:
        code = ONE_SHOT.format(
            worker=str(WORKER_DIR), model=str(model_dir), question=q["question"], context=q["context"]
        )
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        fresh_times.append(time.monotonic() - t)
    fresh_mean = statistics.mean(fresh_times)
    fresh_qps = 1.0 / fresh_mean
    result = {
        "questions": len(ids),
        "batch_size": args.batch_size,
        "warm_batched_seconds": round(warm_seconds, 2),
        "warm_batched_qps": round(warm_qps, 2),
        "fresh_process_runs": len(fresh_times),
        "fresh_process_mean_seconds": round(fresh_mean, 2),
        "fresh_process_extrapolated_seconds": round(fresh_mean * len(ids), 1),
        "fresh_process_qps": round(fresh_qps, 3),
        "speedup": round(warm_qps / fresh_qps, 1),
        "ask_p50_seconds": round(percentile(latencies, 0.5), 3),
        "ask_p95_seconds": round(percentile(latencies, 0.95), 3),
        "asks": len(latencies),
        "model_dir": str(model_dir),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    print(
        f"warm batched worker: {len(ids)} questions in {warm_seconds:.1f} s = {warm_qps:.2f} questions/s "
        f"(SQS -> worker -> DynamoDB, batch {args.batch_size})"
    )
    print(
        f"fresh process per question: mean {fresh_mean:.2f} s over {len(fresh_times)} runs "
        f"(extrapolated to {len(ids)}: {fresh_mean * len(ids):.0f} s) = {fresh_qps:.3f} questions/s"
    )
    print(f"speed-up: {warm_qps / fresh_qps:.1f}x")
    print(
        f"single ask round trip with a warm worker: p50 {result['ask_p50_seconds'] * 1000:.0f} ms, "
        f"p95 {result['ask_p95_seconds'] * 1000:.0f} ms over {len(latencies)} asks"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
