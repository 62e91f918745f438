"""``qa-bot``: use the deployed question-answering bot (Lab 3).

Subcommands mirror the lab guide:

* ``ask CONTEXT QUESTION`` - enqueue one question, wait for its answer, print answer/score/offsets;
* ``ask_many [FILE]``      - enqueue every ``{"context", "question"}`` of a JSON list (default: the sample
  shipped with kumolab), wait until all are answered, print a summary;
* ``list_answers [--limit N]`` - page through the answers table (Scan with ExclusiveStartKey);
* ``clear``                - delete every answer (paginated scan + batched deletes);
* ``build-model``          - build or find the offline QA model (``kumolab.qa.build_model``).

Where the bot is: ``--queue-url``/``--table``/``--region``/``--profile`` flags, else the environment
(``KUMOLAB_QA_QUEUE_URL``, ``KUMOLAB_QA_TABLE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_PROFILE``),
else the deploy's output file ``results/<owner>/qa_bot/outputs.json`` (keys ``queue_url``, ``table_name``,
``region``, ``profile``) written by ``playbooks/qa_bot.yml``. AWS clients come from :mod:`kumolab.aws`: on
the local target, the emulator's profile names its endpoint (``--endpoint-url`` overrides it).

Exit status: 0 done, 1 bad input, 2 no deployment / bad configuration, 3 timed out waiting for answers,
4 an AWS call failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kumolab.aws
from kumolab.paths import results_dir

SAMPLE_QUESTIONS = Path(__file__).resolve().parent / "data" / "sample_questions.json"
DEPLOY_HINT = "run ansible-playbook playbooks/qa_bot.yml"

EXIT_INPUT, EXIT_CONFIG, EXIT_TIMEOUT, EXIT_AWS = 1, 2, 3, 4


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def outputs_file() -> Path:
    return results_dir() / "qa_bot" / "outputs.json"


@dataclass(frozen=True)
class Target:
    queue_url: str
    table_name: str
    region: str | None
    profile: str | None
    endpoint_url: str | None

    @classmethod
    def resolve(cls, args: argparse.Namespace) -> Target:
        recorded: dict[str, Any] = {}
        path = Path(args.outputs) if args.outputs else outputs_file()
        if path.exists():
            try:
                recorded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise CliError(  # noqa: B904
                    f"{path} is not valid JSON ({exc}): re-run ansible-playbook playbooks/qa_bot.yml", EXIT_CONFIG
                )
        elif args.outputs:
            raise CliError(f"{path} does not exist", EXIT_CONFIG)
        env = os.environ

        def pick(flag: str | None, env_names: Sequence[str], key: str) -> str | None:
            return flag or next((env[n] for n in env_names if env.get(n)), None) or recorded.get(key) or None

        queue_url = pick(args.queue_url, ["KUMOLAB_QA_QUEUE_URL"], "queue_url")
        table_name = pick(args.table, ["KUMOLAB_QA_TABLE"], "table_name")
        if not queue_url or not table_name:
            raise CliError(
                f"no deployment found ({path} is missing and no --queue-url/--table given): {DEPLOY_HINT}",
                EXIT_CONFIG,
            )
        return cls(
            queue_url=queue_url,
            table_name=table_name,
            region=pick(args.region, ["AWS_REGION", "AWS_DEFAULT_REGION"], "region"),
            profile=args.profile or kumolab.aws.outputs_profile(recorded),
            endpoint_url=args.endpoint_url or None,
        )


class Clients:
    def __init__(self, target: Target) -> None:
        kwargs: dict[str, Any] = {"endpoint_url": target.endpoint_url} if target.endpoint_url else {}
        session = kumolab.aws.session(target.profile, target.region)
        self.sqs = session.client("sqs", **kwargs)
        self.dynamodb = session.resource("dynamodb", **kwargs)
        self.table = self.dynamodb.Table(target.table_name)
        self.target = target


def _is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _aws_error(exc: Exception, target: Target) -> CliError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    if isinstance(exc, EndpointConnectionError):
        local = _is_loopback(exc.kwargs.get("endpoint_url") or "")
        hint = "is the emulator running? kumolab-emulator start" if local else "check your network"
        return CliError(f"cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}: {hint}", EXIT_AWS)
    if isinstance(exc, NoCredentialsError):
        return CliError(
            "no AWS credentials: configure a profile or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", EXIT_AWS
        )
    if isinstance(exc, NoRegionError):
        return CliError("no AWS region: pass --region or set AWS_REGION", EXIT_CONFIG)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            return CliError(f"table {target.table_name} not found: {DEPLOY_HINT}", EXIT_CONFIG)
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return CliError(f"queue {target.queue_url} not found: {DEPLOY_HINT}", EXIT_CONFIG)
        return CliError(f"AWS call failed: {exc}", EXIT_AWS)
    raise exc


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{message}\033[K", end="", file=sys.stderr, flush=True)
    else:
        print(message, file=sys.stderr, flush=True)


def _progress_done() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)


def _queue_depth(clients: Clients) -> str:
    try:
        attrs = clients.sqs.get_queue_attributes(
            QueueUrl=clients.target.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    except Exception:  # noqa: BLE001 - progress only
        return ""
    return (
        f" (queue: {attrs.get('ApproximateNumberOfMessages', '?')} waiting, "
        f"{attrs.get('ApproximateNumberOfMessagesNotVisible', '?')} in progress)"
    )


def enqueue(clients: Clients, questions: Sequence[dict[str, str]]) -> list[str]:
    """Send questions in batches of 10; returns their item ids in order."""
    ids = [str(uuid.uuid4()) for _ in questions]
    for start in range(0, len(questions), 10):
        entries = []
        for n, (item_id, q) in enumerate(zip(ids[start : start + 10], questions[start : start + 10], strict=False)):
            body = {"item_id": item_id, "context": q["context"], "question": q["question"], "created_at": _utc_now()}
            entries.append({"Id": str(n), "MessageBody": json.dumps(body, ensure_ascii=False)})
        response = clients.sqs.send_message_batch(QueueUrl=clients.target.queue_url, Entries=entries)
        if response.get("Failed"):
            raise CliError(f"the queue refused {len(response['Failed'])} message(s): {response['Failed'][0]}", EXIT_AWS)
    return ids


def wait_for(clients: Clients, ids: Sequence[str], timeout: float, poll: float = 0.2) -> dict[str, dict[str, Any]]:
    """Poll the table (BatchGetItem, 100 keys a call) until every id has an answer or ``timeout`` passes."""
    found: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    last_report = -2.0
    delay = poll
    while True:
        pending = [i for i in ids if i not in found]
        for chunk_start in range(0, len(pending), 100):
            keys = [{"item_id": i} for i in pending[chunk_start : chunk_start + 100]]
            request = {clients.target.table_name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = clients.dynamodb.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(clients.target.table_name, []):
                    found[item["item_id"]] = _plain(item)
                request = response.get("UnprocessedKeys") or None
        elapsed = time.monotonic() - started
        if len(found) == len(ids):
            _progress_done()
            return found
        if elapsed >= timeout:
            _progress_done()
            return found
        if elapsed >= 1.0 and elapsed - last_report >= 2.0:
            last_report = elapsed
            _progress(f"waiting for answers: {len(found)}/{len(ids)} after {elapsed:.0f} s{_queue_depth(clients)}")
        time.sleep(min(delay, max(0.0, timeout - elapsed)))
        delay = min(delay * 1.5, 1.0)


TIMEOUT_HINT = (
    "is a worker running? The service scales from 0 tasks when a question waits: on AWS the first "
    "answer takes 2-4 min (SQS metrics reach the scaling alarm about once a minute, then Fargate pulls "
    "the image), locally well under a minute. On AWS check the scaling alarms, the ECS service's "
    "desired/running count and its log group; locally check the local runtime's QA workers "
    "(kumolab-runtime ecs status). Questions stay queued and will still be answered; see them later "
    "with list_answers"
)


def cmd_ask(args: argparse.Namespace, clients: Clients) -> int:
    if not args.context.strip() or not args.question.strip():
        raise CliError("CONTEXT and QUESTION must not be empty", EXIT_INPUT)
    (item_id,) = enqueue(clients, [{"context": args.context, "question": args.question}])
    print(f"asked (item {item_id}); waiting up to {args.timeout:.0f} s", file=sys.stderr)
    found = wait_for(clients, [item_id], args.timeout)
    if item_id not in found:
        raise CliError(f"no answer after {args.timeout:.0f} s: {TIMEOUT_HINT}", EXIT_TIMEOUT)
    item = found[item_id]
    if args.json:
        print(json.dumps(item, ensure_ascii=False))
    else:
        print(f"answer: {item['answer']}")
        print(f"score:  {item['score']:.4f}")
        print(f"span:   characters {item['answer_start']}..{item['answer_end']} of the context")
        print(f"model:  {item['model_id']}")
    return 0


def _load_questions(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{path} does not exist", EXIT_INPUT) from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}", EXIT_INPUT) from None
    if not isinstance(data, list) or not data:
        raise CliError(f'{path} must hold a non-empty JSON list of {{"context", "question"}} objects', EXIT_INPUT)
    for n, item in enumerate(data):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item[k].strip() for k in ("context", "question")
        ):
            raise CliError(f"{path}: item {n} needs non-empty string fields 'context' and 'question'", EXIT_INPUT)
    return [{"context": d["context"], "question": d["question"]} for d in data]


def cmd_ask_many(args: argparse.Namespace, clients: Clients) -> int:
    questions = _load_questions(Path(args.file) if args.file else SAMPLE_QUESTIONS)
    started = time.monotonic()
    ids = enqueue(clients, questions)
    print(f"asked {len(ids)} questions; waiting up to {args.timeout:.0f} s", file=sys.stderr)
    found = wait_for(clients, ids, args.timeout)
    elapsed = time.monotonic() - started
    for item_id, q in zip(ids, questions, strict=False):
        item = found.get(item_id)
        shown = f"{item['answer']!r} (score {item['score']:.3f})" if item else "(no answer yet)"
        print(f"- {q['question']} -> {shown}")
    print(f"{len(found)}/{len(ids)} answered in {elapsed:.1f} s ({len(found) / max(elapsed, 1e-9):.1f} questions/s)")
    if len(found) < len(ids):
        raise CliError(
            f"{len(ids) - len(found)} question(s) unanswered after {args.timeout:.0f} s: {TIMEOUT_HINT}", EXIT_TIMEOUT
        )
    return 0


def scan_pages(clients: Clients, page_size: int, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
    """Every page of a Scan, following LastEvaluatedKey."""
    start_key = None
    while True:
        request = dict(kwargs, Limit=page_size)
        if start_key:
            request["ExclusiveStartKey"] = start_key
        response = clients.table.scan(**request)
        yield response.get("Items", [])
        start_key = response.get("LastEvaluatedKey")
        if not start_key:
            return


def cmd_list_answers(args: argparse.Namespace, clients: Clients) -> int:
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1", EXIT_INPUT)
    shown = 0
    for page in scan_pages(clients, min(args.page_size, args.limit or args.page_size)):
        for item in page:
            if args.limit is not None and shown >= args.limit:
                break
            item = _plain(item)
            shown += 1
            if args.json:
                print(json.dumps(item, ensure_ascii=False))
            else:
                print(
                    f"{item.get('answered_at', '?')}  {item.get('question')!s} -> {item.get('answer')!r} "
                    f"(score {float(item.get('score', 0)):.3f})"
                )
        if args.limit is not None and shown >= args.limit:
            break
    print(f"{shown} answer(s) listed", file=sys.stderr)
    return 0


def cmd_clear(args: argparse.Namespace, clients: Clients) -> int:
    deleted = 0
    with clients.table.batch_writer() as batch:
        for page in scan_pages(clients, 100, ProjectionExpression="item_id"):
            for item in page:
                batch.delete_item(Key={"item_id": item["item_id"]})
                deleted += 1
    print(f"deleted {deleted} answer(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa-bot", description="Ask the deployed question-answering bot.")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--outputs", help="deploy outputs JSON (default results/<owner>/qa_bot/outputs.json)")
    where.add_argument("--queue-url", help="questions queue URL (default: from the outputs file)")
    where.add_argument("--table", help="answers table name (default: from the outputs file)")
    where.add_argument("--region", help="AWS region (default: from the outputs file or AWS_REGION)")
    where.add_argument("--profile", help="AWS profile (default: from the outputs file or AWS_PROFILE)")
    where.add_argument("--endpoint-url", help="AWS endpoint, overriding the profile's")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", parents=[where], help="ask one question and wait for the answer")
    ask.add_argument("context")
    ask.add_argument("question")
    ask.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait (default 300; from 0 tasks the first answer takes 2-4 min on AWS)",
    )
    ask.add_argument("--json", action="store_true", help="print the stored answer item as JSON")
    ask.set_defaults(func=cmd_ask)

    many = sub.add_parser("ask_many", aliases=["ask-many"], parents=[where], help="ask every question in a JSON file")
    many.add_argument("file", nargs="?", help=f"JSON list of {{context, question}} (default: {SAMPLE_QUESTIONS.name})")
    many.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all answers (default 600)")
    many.set_defaults(func=cmd_ask_many)

    lst = sub.add_parser("list_answers", aliases=["list-answers"], parents=[where], help="list stored answers")
    lst.add_argument("--limit", type=int, help="show at most N answers (default: all)")
    lst.add_argument("--page-size", type=int, default=25, help="items per Scan page (default 25)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    lst.set_defaults(func=cmd_list_answers)

    clear = sub.add_parser("clear", parents=[where], help="delete every stored answer")
    clear.set_defaults(func=cmd_clear)

    sub.add_parser("build-model", add_help=False, help="build (or find) the offline QA model; --help for options")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["build-model"]:
        from kumolab.qa.build_model import main as build_main

        return build_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        target = Target.resolve(args)
        clients = Clients(target)
        try:
            return args.func(args, clients)
        except CliError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore errors become actionable messages
            raise _aws_error(exc, target) from exc
    except CliError as exc:
        print(f"qa-bot {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted; questions already sent stay queued and will be answered", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
