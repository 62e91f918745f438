"""A sweep child for the Step Functions tests (the job definition's tag ``kumolab.runtime.source`` names this
directory): ``python -m sweep_probe`` takes configuration ``GRID[$AWS_BATCH_JOB_ARRAY_INDEX]``, scores it
with a fixed function (no training: the test is about the pipeline) and writes
``s3://$RESULTS_BUCKET/$RESULTS_PREFIX/results/<index>.json``. With ``FAIL_INDEX`` equal to its index it
writes nothing and exits 4."""

from __future__ import annotations

import json
import os
import sys

import boto3

GRID = [{"lr": lr, "batch_size": bs} for lr in (0.1, 0.01, 0.001) for bs in (32, 64)]


def score(config: dict) -> float:
    """Best at lr=0.01, batch 64: a peak the aggregator must find."""
    return round(0.99 - abs(config["lr"] - 0.01) - (0.01 if config["batch_size"] == 32 else 0.0), 6)


def main() -> int:
    index = int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"])
    if os.environ.get("FAIL_INDEX") == str(index):
        print(f"index {index}: failing on purpose", flush=True)
        return 4
    config = GRID[index % len(GRID)]
    result = {
        "index": index,
        "config": config,
        "metrics": {"accuracy": score(config)},
        "managed_by": os.environ.get("MANAGED_BY_AWS"),
    }
    key = f"{os.environ['RESULTS_PREFIX'].strip('/')}/results/{index}.json"
    boto3.client("s3").put_object(Bucket=os.environ["RESULTS_BUCKET"], Key=key, Body=json.dumps(result))
    print("result", json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
