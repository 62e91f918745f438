"""Lab 6's aggregation handler (files/lambda/batch/aggregate.py): validates its event, picks the best configuration
by the metric and goal, and writes the report next to the results (moto's S3, in process)."""

from __future__ import annotations

import importlib.util
import json

import boto3
import pytest
from moto import mock_aws

from kumolab.paths import REPO_ROOT

REGION = "ap-northeast-1"


@pytest.fixture(scope="module")
def aggregate():
    spec = importlib.util.spec_from_file_location(
        "aggregate", REPO_ROOT / "files" / "lambda" / "batch" / "aggregate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket="sweep-results", CreateBucketConfiguration={"LocationConstraint": REGION})
        yield client


def put_results(s3, prefix: str, accuracies: list) -> None:
    for index, accuracy in enumerate(accuracies):
        body = {"index": index, "config": {"i": index}, "metrics": {"accuracy": accuracy}}
        s3.put_object(Bucket="sweep-results", Key=f"{prefix}/results/{index}.json", Body=json.dumps(body))


def test_the_best_configuration_is_picked_and_the_report_written(aggregate, s3):
    put_results(s3, "sweeps/r1", [0.5, 0.9, float("nan"), 0.7])
    got = aggregate.handler({"bucket": "sweep-results", "prefix": "sweeps/r1/", "size": 4, "job_id": "j"}, None)
    assert got["status"] == "complete" and got["completed"] == 4 and got["best"]["index"] == 1  # NaN is no winner
    assert got["report"] == "s3://sweep-results/sweeps/r1/report.json" and "results" not in got
    report = json.loads(s3.get_object(Bucket="sweep-results", Key="sweeps/r1/report.json")["Body"].read())
    assert [r["index"] for r in report["results"]] == [0, 1, 2, 3] and report["best"]["config"] == {"i": 1}


def test_goal_min_picks_the_smallest_and_missing_results_make_it_incomplete(aggregate, s3):
    put_results(s3, "sweeps/r2", [0.5, 0.2])
    got = aggregate.handler({"bucket": "sweep-results", "prefix": "sweeps/r2", "size": 3, "goal": "min"}, None)
    assert got["status"] == "incomplete" and got["completed"] == 2 and got["best"]["index"] == 1


def test_the_failure_path_writes_a_failure_report(aggregate, s3):
    error = {"Error": "States.TaskFailed", "Cause": '{"Status": "FAILED"}'}
    got = aggregate.handler({"bucket": "sweep-results", "prefix": "sweeps/r3", "failed": True, "error": error}, None)
    assert got["status"] == "failed" and got["error"] == error
    assert (
        json.loads(s3.get_object(Bucket="sweep-results", Key="sweeps/r3/report.json")["Body"].read())["status"]
        == "failed"
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "JSON object"),
        ({"prefix": "p", "size": 1}, "'bucket'"),
        ({"bucket": "sweep-results", "prefix": "p", "size": 0}, "'size'"),
        ({"bucket": "sweep-results", "prefix": "p", "size": True}, "'size'"),
        ({"bucket": "sweep-results", "prefix": "p", "size": 2, "goal": "best"}, "'goal'"),
    ],
)
def test_a_malformed_event_is_refused_before_anything_is_read(aggregate, event, message):
    with pytest.raises(aggregate.BadEvent, match=message):
        aggregate.parse(event)
