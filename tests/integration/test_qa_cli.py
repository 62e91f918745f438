"""``qa-bot`` against the emulator (moto server on a free port): deployment discovery, ask with a worker,
timeouts, list_answers pagination, clear."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "files" / "containers" / "qa_bot"))

import kumolab.aws  # noqa: E402
from kumolab.local import settings  # noqa: E402
from kumolab.qa import cli  # noqa: E402
from qa_worker.inference import Answer  # noqa: E402
from qa_worker.worker import Config, Worker  # noqa: E402


@pytest.fixture(scope="module")
def endpoint(emulator):
    """The session's emulator (tests/conftest.py)."""
    return emulator


@pytest.fixture
def deployment(endpoint, tmp_path, monkeypatch):
    """A queue + table like the playbook's, and results/qa_bot/outputs.json pointing at them."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "KUMOLAB_QA_QUEUE_URL",
        "KUMOLAB_QA_TABLE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUMOLAB_RESULTS_DIR", str(tmp_path / "results"))
    session = kumolab.aws.session(settings.profile_name(), "us-east-1")  # the session's emulator, through its profile
    name = f"qa-cli-{uuid.uuid4().hex[:8]}"
    queue_url = session.client("sqs").create_queue(QueueName=name)["QueueUrl"]
    table = session.resource("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "S"}],
    )
    out = tmp_path / "results" / "qa_bot" / "outputs.json"
    out.parent.mkdir(parents=True)
    out.write_text(
        json.dumps({"queue_url": queue_url, "table_name": name, "region": "us-east-1", "endpoint_url": endpoint})
    )
    return type("D", (), {"queue_url": queue_url, "table": table, "session": session})


def test_without_a_deployment_the_user_is_told_to_deploy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUMOLAB_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("KUMOLAB_QA_QUEUE_URL", raising=False)
    monkeypatch.delenv("KUMOLAB_QA_TABLE", raising=False)
    assert cli.main(["list_answers"]) == cli.EXIT_CONFIG
    assert "run ansible-playbook playbooks/qa_bot.yml" in capsys.readouterr().err


def test_missing_table_is_reported_as_not_deployed(deployment, capsys):
    deployment.table.delete()
    assert cli.main(["list_answers"]) == cli.EXIT_CONFIG
    assert "not found: run ansible-playbook playbooks/qa_bot.yml" in capsys.readouterr().err


def test_ask_without_a_worker_times_out_with_a_clear_message(deployment, capsys):
    assert cli.main(["ask", "Some context.", "Some question?", "--timeout", "1"]) == cli.EXIT_TIMEOUT
    assert "is a worker running?" in capsys.readouterr().err


class FirstWordModel:
    model_id = "first-word"

    def answer_batch(self, pairs):
        out = []
        for _, context in pairs:
            word = context.split()[0]
            out.append(Answer(word, 0.75, 0, len(word)))
        return out


def test_ask_and_ask_many_get_answers_from_a_running_worker(deployment, capsys, monkeypatch):
    sqs = deployment.session.client("sqs")
    dynamodb = deployment.session.resource("dynamodb")
    config = Config(
        queue_url=deployment.queue_url,
        table_name=deployment.table.name,
        model_source="stub",
        model_id=None,
        wait_time_seconds=1,
    )
    worker = Worker(config, FirstWordModel(), sqs=sqs, dynamodb=dynamodb)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert cli.main(["ask", "Momotaro was born from a peach.", "Who?", "--timeout", "30"]) == 0
        out = capsys.readouterr().out
        assert "answer: Momotaro" in out and "characters 0..8" in out
        assert cli.main(["ask_many", "--timeout", "60"]) == 0  # the shipped sample, non-ASCII included
        out = capsys.readouterr().out
        sample = json.loads(cli.SAMPLE_QUESTIONS.read_text(encoding="utf-8"))
        assert f"{len(sample)}/{len(sample)} answered" in out
        assert "'東京'" in out  # the CJK context's first word came back intact
    finally:
        worker.stopping = True
        thread.join(timeout=10)


def test_list_answers_pages_for_real_and_clear_deletes_everything(deployment, capsys):
    with deployment.table.batch_writer() as batch:
        for n in range(60):
            batch.put_item(Item={"item_id": f"id-{n:03d}", "question": f"q{n}?", "answer": f"a{n}", "score": 1})
    assert cli.main(["list_answers", "--limit", "30", "--page-size", "7", "--json"]) == 0
    limited = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(limited) == 30 and len({i["item_id"] for i in limited}) == 30
    assert cli.main(["list_answers", "--page-size", "7", "--json"]) == 0
    everything = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len({i["item_id"] for i in everything}) == 60  # beyond the first page, no duplicates
    assert cli.main(["clear"]) == 0
    assert "deleted 60 answer(s)" in capsys.readouterr().out
    assert deployment.table.scan()["Count"] == 0
