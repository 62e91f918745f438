"""A container program for the local Batch runner's tests (the job definition's tag ``kumolab.runtime.source``
names this directory). ``python -m batch_probe BUCKET`` writes what Batch gave it (the AWS_BATCH_* variables and
``NOTE``) to ``s3://BUCKET/probe/<job id>.json`` and then exits with ``$EXIT_CODE`` (default 0) while
``AWS_BATCH_JOB_ATTEMPT`` is below ``$SUCCEED_FROM_ATTEMPT`` (default 1: the first attempt succeeds)."""

from __future__ import annotations

import json
import os
import sys

import boto3


def main(argv: list[str]) -> int:
    seen = {k: v for k, v in os.environ.items() if k.startswith("AWS_BATCH_") or k == "NOTE"}
    boto3.client("s3").put_object(
        Bucket=argv[0],
        Key=f"probe/{seen['AWS_BATCH_JOB_ID']}-{seen['AWS_BATCH_JOB_ATTEMPT']}.json",
        Body=json.dumps(seen),
    )
    print("probe", json.dumps(seen), flush=True)
    if int(seen["AWS_BATCH_JOB_ATTEMPT"]) < int(os.environ.get("SUCCEED_FROM_ATTEMPT", "1")):
        return int(os.environ.get("EXIT_CODE", "3"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
