"""One question, one task: answer it, write the answer to DynamoDB, print it, exit.

The textbook's original Lab 3 ran one ECS task per question, with the question in the task's command
(``run-task --overrides`` with ``containerOverrides``); the queue worker (:mod:`qa_worker.worker`) is the
batched design the lab deploys. This entry point keeps the one-task-per-question way working with the
same image and task definition:

    python -m qa_worker.ask CONTEXT QUESTION            # or CONTEXT / QUESTION in the environment

Environment: ``TABLE_NAME`` (required), ``MODEL_DIR`` or ``MODEL_ID`` (as the worker), optional
``ITEM_ID`` (default: a new UUID; a caller that wants to read the answer back passes its own),
``MAX_LENGTH``, ``STRIDE``, ``MIN_SCORE``. The item written has the worker's fields (``item_id``,
``context``, ``question``, ``answer``, ``score``, ``answer_start``, ``answer_end``, ``model_id``,
``created_at``, ``answered_at``, ``worker``). stdout gets the answer as one JSON line.

Exit status: 0 answered and written, 2 bad configuration or input, 4 the write failed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from decimal import Decimal
from pathlib import Path

from qa_worker.worker import utc_now


def _fail(message: str, code: int) -> int:
    print(f"qa_worker.ask: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = os.environ
    context = args[0] if len(args) > 0 else env.get("CONTEXT", "")
    question = args[1] if len(args) > 1 else env.get("QUESTION", "")
    if len(args) > 2:
        return _fail("usage: python -m qa_worker.ask CONTEXT QUESTION", 2)
    if not context.strip() or not question.strip():
        return _fail("a non-empty CONTEXT and QUESTION are required (arguments or environment)", 2)
    table_name = env.get("TABLE_NAME")
    model_dir, model_id = env.get("MODEL_DIR"), env.get("MODEL_ID")
    if not table_name or not (model_dir or model_id):
        return _fail("missing environment variable(s): TABLE_NAME and MODEL_DIR or MODEL_ID", 2)
    if model_dir and not Path(model_dir, "config.json").exists():
        return _fail(f"MODEL_DIR={model_dir} is not a model directory (no config.json there)", 2)
    item_id = env.get("ITEM_ID") or str(uuid.uuid4())
    created_at = utc_now()

    import boto3

    from qa_worker.inference import QAModel

    model = QAModel.load(
        model_dir or model_id,
        model_id=model_id,
        max_length=int(env.get("MAX_LENGTH") or 384),
        stride=int(env.get("STRIDE") or 128),
        min_score=float(env.get("MIN_SCORE") or 0.0),
    )
    answer = model.answer_batch([(question, context)])[0]
    item = {
        "item_id": item_id,
        "context": context,
        "question": question,
        "answer": answer.answer,
        "score": Decimal(repr(round(float(answer.score), 6))),
        "answer_start": answer.start,
        "answer_end": answer.end,
        "model_id": model_id or getattr(model, "model_id", None) or model_dir,
        "created_at": created_at,
        "answered_at": utc_now(),
        "worker": socket.gethostname(),
    }
    try:
        boto3.resource("dynamodb").Table(table_name).put_item(Item=item)
    except Exception as exc:  # noqa: BLE001 - any failure: say so in the exit status
        return _fail(f"writing answer {item_id} to {table_name} failed: {exc}", 4)
    print(json.dumps({k: (float(v) if isinstance(v, Decimal) else v) for k, v in item.items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
