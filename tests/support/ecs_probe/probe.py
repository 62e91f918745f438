"""A container program for the local ECS runner's tests (``dockerLabels[kumolab.runtime.source]`` names this
directory): ``python -m probe ask`` prints two variables and exits 3, ``python -m probe sleep S`` prints
``up`` and sleeps, ``python -m probe exit N`` exits N, ``python -m probe sqs URL`` sends a message (and a
batch of one) to the queue and tries to receive one (exit 7 with the error code when that is denied). The
runner runs only modules of a program directory, never ``python -c`` (tests/unit/test_local_security.py)."""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    what, args = (argv[0], argv[1:]) if argv else ("exit", [])
    if what == "ask":
        print("asked:", os.environ["QUESTION"], os.environ["FROM_TASKDEF"])
        return 3
    if what == "sleep":
        print("up", flush=True)
        time.sleep(float(args[0]))
        return 0
    if what == "sqs":
        import boto3

        sqs = boto3.client("sqs")
        sqs.send_message(QueueUrl=args[0], MessageBody="allowed")
        # IAM authorizes a batch as its single action: sqs:SendMessage allows SendMessageBatch.
        sqs.send_message_batch(QueueUrl=args[0], Entries=[{"Id": "1", "MessageBody": "allowed as a batch"}])
        try:
            sqs.receive_message(QueueUrl=args[0])
        except Exception as exc:  # noqa: BLE001 - the probe reports any refusal by its code
            print(exc.response["Error"]["Code"])
            return 7
        return 0
    if what == "exit":
        return int(args[0]) if args else 0
    print(f"probe: unknown command {what!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
