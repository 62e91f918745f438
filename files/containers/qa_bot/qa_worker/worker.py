"""The QA worker: long-polls an SQS queue, answers questions in batches, writes answers to DynamoDB.

Configuration comes only from the environment (the ECS task definition's ``environment``):

==================  ========  ==========================================================================
variable            required  meaning
==================  ========  ==========================================================================
QUEUE_URL           yes       the questions queue (its redrive policy sends poison messages to the DLQ)
TABLE_NAME          yes       the answers table, partition key ``item_id`` (S)
MODEL_DIR           one of    a local model directory (the image bakes one at /opt/model)
MODEL_ID            these     a Hugging Face id, loaded when MODEL_DIR is unset; when both are set the
                              model loads from MODEL_DIR and MODEL_ID is the id written with each answer
BATCH_SIZE          no        questions answered per model call, default 16 (SQS gives at most 10 per
                              receive; the worker tops a batch up with short polls)
WAIT_TIME_SECONDS   no        long-poll wait, 0..20, default 20
RETRY_DELAY_SECONDS no        when a DynamoDB write fails, make the message visible again after this
                              many seconds (default: leave it to the queue's visibility timeout)
MAX_LENGTH, STRIDE  no        tokens per window / overlap between windows (default 384 / 128)
MIN_SCORE           no        best spans scoring below this are stored as no answer (default 0)
HEARTBEAT_FILE      no        touched after every poll; the container HEALTHCHECK reads its age
LOG_LEVEL           no        default INFO
AWS_REGION, AWS_DEFAULT_REGION, credentials (locally AWS_PROFILE, the emulator's profile): read by boto3 itself.
==================  ========  ==========================================================================

Messages are JSON objects ``{"item_id": str, "context": str, "question": str, "created_at": iso}``;
``item_id`` defaults to the SQS message id and ``created_at`` to the message's SentTimestamp.

Delivery: a message is deleted only after its answer was written. A malformed message (not JSON, or
missing context/question) is never deleted: its visibility is reset to 0 so it is received again at once,
and after the queue's ``maxReceiveCount`` receives SQS moves it to the dead-letter queue. A failed write
leaves the message on the queue, to be answered again (writes are idempotent by ``item_id``).

Shutdown: SIGTERM or SIGINT stop the loop. During a long poll the poll is abandoned at once (whatever it
may have received becomes visible again after the visibility timeout: delayed, never lost); during a
batch, the batch is finished, written and deleted first. Exit status 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

log = logging.getLogger("qa_worker")


class ConfigError(RuntimeError):
    pass


class _StopPolling(Exception):
    """Raised when a stop signal arrived during a long poll, once the poll has returned and what it received
    has been handed back to the queue."""


@dataclass(frozen=True)
class Config:
    queue_url: str
    table_name: str
    model_source: str
    model_id: str | None
    batch_size: int = 16
    wait_time_seconds: int = 20
    retry_delay_seconds: int | None = None
    max_length: int = 384
    stride: int = 128
    min_score: float = 0.0
    heartbeat_file: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        missing = [name for name in ("QUEUE_URL", "TABLE_NAME") if not env.get(name)]
        if not (env.get("MODEL_DIR") or env.get("MODEL_ID")):
            missing.append("MODEL_DIR or MODEL_ID")
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
        model_dir = env.get("MODEL_DIR")
        if model_dir and not Path(model_dir, "config.json").exists():
            raise ConfigError(f"MODEL_DIR={model_dir} is not a model directory (no config.json there)")

        def integer(name: str, default: int | None, low: int, high: int) -> int | None:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not an integer") from None
            if not low <= value <= high:
                raise ConfigError(f"{name}={value} is outside {low}..{high}")
            return value

        try:
            min_score = float(env.get("MIN_SCORE") or 0.0)
        except ValueError:
            raise ConfigError(f"MIN_SCORE={env.get('MIN_SCORE')!r} is not a number") from None
        return cls(
            queue_url=env["QUEUE_URL"],
            table_name=env["TABLE_NAME"],
            model_source=model_dir or env["MODEL_ID"],
            model_id=env.get("MODEL_ID") or None,
            batch_size=integer("BATCH_SIZE", 16, 1, 256),
            wait_time_seconds=integer("WAIT_TIME_SECONDS", 20, 0, 20),
            retry_delay_seconds=integer("RETRY_DELAY_SECONDS", None, 0, 43200),
            max_length=integer("MAX_LENGTH", 384, 32, 4096),
            stride=integer("STRIDE", 128, 0, 2048),
            min_score=min_score,
            heartbeat_file=env.get("HEARTBEAT_FILE") or None,
        )


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_from_epoch_ms(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        stamp = datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Question:
    message: dict[str, Any]
    item_id: str
    context: str
    question: str
    created_at: str


def parse_message(message: dict[str, Any]) -> Question:
    """Validate one SQS message; ValueError says what is wrong with it."""
    try:
        body = json.loads(message["Body"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    context, question = body.get("context"), body.get("question")
    if not isinstance(context, str) or not context.strip():
        raise ValueError("'context' must be a non-empty string")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' must be a non-empty string")
    item_id = body.get("item_id") or message["MessageId"]
    if not isinstance(item_id, str) or len(item_id) > 256:
        raise ValueError("'item_id' must be a string of at most 256 characters")
    created_at = body.get("created_at")
    if not isinstance(created_at, str) or not created_at:
        created_at = _iso_from_epoch_ms(message.get("Attributes", {}).get("SentTimestamp")) or utc_now()
    return Question(message, item_id, context, question, created_at)


class Worker:
    def __init__(self, config: Config, qa_model: Any, sqs: Any = None, dynamodb: Any = None) -> None:
        import boto3

        self.config = config
        self.qa = qa_model
        self.sqs = sqs or boto3.client("sqs")
        self.table = (dynamodb or boto3.resource("dynamodb")).Table(config.table_name)
        self.model_id = config.model_id or getattr(qa_model, "model_id", None) or config.model_source
        self.stopping = False
        self._polling = False
        self.stats = {"answered": 0, "malformed": 0, "write_failures": 0, "batches": 0}
        self.host = socket.gethostname()

    # -- signals ------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info(
            "received %s: %s",
            signal.Signals(signum).name,
            "stopping after the current poll" if self._polling else "finishing the current batch",
        )
        self.stopping = True

    # -- SQS ----------------------------------------------------------------------------------------

    def _receive(self, wait: int, count: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.config.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            AttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        )
        return response.get("Messages", [])

    def _long_poll(self) -> list[dict[str, Any]]:
        """The long poll runs in a thread; on a stop signal the worker still waits for it to return (at most
        the poll's wait time, well within ECS's stopTimeout): SQS delivers a message that arrives meanwhile to
        this open request even after the process has gone, hiding it for the whole visibility timeout. What it
        brings is handed back at once (visibility 0) for another worker."""
        result: dict[str, Any] = {}
        done = threading.Event()

        def poll() -> None:
            try:
                result["messages"] = self._receive(self.config.wait_time_seconds, self.config.batch_size)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=poll, name="sqs-long-poll", daemon=True).start()
        while not done.wait(0.2):
            pass
        if "error" in result:
            raise result["error"]
        if self.stopping:
            self._hand_back(result["messages"])
            raise _StopPolling()
        return result["messages"]

    def _hand_back(self, messages: list[dict[str, Any]]) -> None:
        for i in range(0, len(messages), 10):
            chunk = messages[i : i + 10]
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.config.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(chunk)
                ],
            )
        if messages:
            log.info("stopping: handed %d message(s) received during the last poll back to the queue", len(messages))

    def receive_batch(self) -> list[dict[str, Any]]:
        """Long-poll for the first messages, then top the batch up with short polls."""
        self._polling = True
        try:
            messages = self._long_poll()
        finally:
            self._polling = False
        while messages and len(messages) < self.config.batch_size and not self.stopping:
            more = self._receive(0, self.config.batch_size - len(messages))
            if not more:
                break
            messages.extend(more)
        self._heartbeat()
        return messages

    def _heartbeat(self) -> None:
        if self.config.heartbeat_file:
            Path(self.config.heartbeat_file).touch()

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for i in range(0, len(messages), 10):
            chunk = messages[i : i + 10]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.config.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)],
            )
            for failed in response.get("Failed", []):
                log.warning("delete failed (message will be answered again): %s", failed)

    def _release(self, message: dict[str, Any], delay: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
            )
        except Exception as exc:  # noqa: BLE001 - the visibility timeout releases it anyway
            log.warning("could not release message %s: %s", message.get("MessageId"), exc)

    # -- one batch ----------------------------------------------------------------------------------

    def process(self, messages: list[dict[str, Any]]) -> int:
        """Answer, write and delete one batch; returns the number of answers written."""
        self.stats["batches"] += 1
        valid: list[Question] = []
        for message in messages:
            try:
                valid.append(parse_message(message))
            except ValueError as exc:
                self.stats["malformed"] += 1
                receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
                log.error(
                    "malformed message %s (receive %s): %s; left for the dead-letter queue",
                    message.get("MessageId"),
                    receives,
                    exc,
                )
                self._release(message, 0)
        if not valid:
            return 0
        started = time.monotonic()
        answers = self.qa.answer_batch([(q.question, q.context) for q in valid])
        elapsed = time.monotonic() - started
        done: list[dict[str, Any]] = []
        for q, answer in zip(valid, answers, strict=False):
            item = {
                "item_id": q.item_id,
                "context": q.context,
                "question": q.question,
                "answer": answer.answer,
                "score": Decimal(repr(round(float(answer.score), 6))),
                "answer_start": answer.start,
                "answer_end": answer.end,
                "model_id": self.model_id,
                "created_at": q.created_at,
                "answered_at": utc_now(),
                "worker": self.host,
            }
            try:
                self.table.put_item(Item=item)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the message for a retry
                self.stats["write_failures"] += 1
                log.error("writing answer %s failed, message kept for a retry: %s", q.item_id, exc)
                if self.config.retry_delay_seconds is not None:
                    self._release(q.message, self.config.retry_delay_seconds)
                continue
            done.append(q.message)
        if done:
            self._delete(done)
        self.stats["answered"] += len(done)
        log.info(
            "batch of %d: %d answered in %.2f s (%.1f questions/s), %d kept for retry",
            len(valid),
            len(done),
            elapsed,
            len(valid) / max(elapsed, 1e-9),
            len(valid) - len(done),
        )
        return len(done)

    # -- loop ---------------------------------------------------------------------------------------

    def run(self, max_batches: int | None = None, stop_when_idle: bool = False) -> dict[str, int]:
        """Poll until SIGTERM/SIGINT; or after ``max_batches`` non-empty receives; or, with
        ``stop_when_idle``, at the first poll that brings nothing (tests and benchmarks)."""
        log.info(
            "polling %s, writing to %s, model %s, batch size %d",
            self.config.queue_url,
            self.config.table_name,
            self.model_id,
            self.config.batch_size,
        )
        while not self.stopping:
            try:
                messages = self.receive_batch()
            except _StopPolling:
                break
            if messages:
                self.process(messages)
            elif stop_when_idle:
                break
            if max_batches is not None and self.stats["batches"] >= max_batches:
                break
        log.info("stopped: %s", self.stats)
        return self.stats


def load_model(config: Config) -> Any:
    from qa_worker.inference import QAModel

    return QAModel.load(
        config.model_source,
        model_id=config.model_id,
        max_length=config.max_length,
        stride=config.stride,
        batch_size=config.batch_size,
        min_score=config.min_score,
    )


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        stream=sys.stdout,
    )
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"qa_worker: {exc}", file=sys.stderr)
        return 2
    # Handlers first: a SIGTERM while the model loads must also stop the worker cleanly.
    stop_early = {"flag": False}

    def early(signum: int, frame: Any) -> None:
        stop_early["flag"] = True

    signal.signal(signal.SIGTERM, early)
    signal.signal(signal.SIGINT, early)
    started = time.monotonic()
    qa_model = load_model(config)
    log.info("model %s loaded in %.1f s", config.model_source, time.monotonic() - started)
    worker = Worker(config, qa_model)
    worker.install_signal_handlers()
    if stop_early["flag"]:
        log.info("stopped before the first poll")
        return 0
    worker.run()
    return 0
