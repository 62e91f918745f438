"""Lab 4 end to end on the emulator: deploy, re-run changes nothing, use it as a student would, tear down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import live_queue_urls

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent
# The local inventory's runtime, on free ports so that a user's running lab is never in the way.
TARGET_VARS = json.dumps(
    {
        "kumolab_local_services": {
            "runtime": {"start": f"{VENV_BIN}/kumolab-runtime start --json --lambda-port 0 --api-port 0 --web-port 0"}
        },
    }
)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "kumolab-serverless"), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def deployed(run_playbook, lab_env):
    first = run_playbook("serverless.yml", "-e", TARGET_VARS)
    assert first.rc == 0, first.output[-4000:]
    out = json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "serverless" / "outputs.json").read_text())
    return {"first": first, "outputs": out}


def test_deploy_then_second_run_changes_nothing(deployed, run_playbook):
    assert deployed["first"].changed > 0
    second = run_playbook("serverless.yml", "--diff", "-e", TARGET_VARS)
    assert second.rc == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()


def test_function_is_configured_as_the_lab_says(deployed, aws):
    conf = aws("lambda").get_function_configuration(FunctionName=deployed["outputs"]["function_name"])
    assert (conf["Runtime"], conf["MemorySize"], conf["Timeout"], conf["Handler"]) == (
        "python3.13",
        128,
        10,
        "sushi.handler",
    )
    table = aws("dynamodb").describe_table(TableName=deployed["outputs"]["table_name"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    pitr = aws("dynamodb").describe_continuous_backups(TableName=deployed["outputs"]["table_name"])
    assert (
        pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    )


def test_invoke_one_synchronously(deployed):
    proc = cli("invoke")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "lambda" / "serverless_lab"))
    from sushi import SUSHI

    assert payload["sushi"] in SUSHI
    assert 2.0 <= payload["finished_at"] - payload["started_at"] <= 5.5


def test_invoke_many_runs_concurrently(deployed):
    proc = cli("invoke_many", "6", "--concurrency", "6")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    print(f"\ninvoke_many: {report}")
    assert report["invocations"] == 6
    assert report["max_concurrently_running"] > 1
    assert report["wall_seconds"] < report["sum_of_durations_seconds"]


def test_query_under_age_equals_brute_force_over_3000_people(deployed, aws):
    from boto3.dynamodb.types import TypeDeserializer

    assert cli("clear").returncode == 0
    proc = cli("write", "3000")
    assert proc.returncode == 0, proc.stderr
    client = aws("dynamodb")
    ages, kwargs = [], {"TableName": deployed["outputs"]["table_name"]}
    while True:  # brute force: every item, every page
        page = client.scan(**kwargs)
        ages.extend(int(TypeDeserializer().deserialize(item["age"])) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(ages) == 3000 and min(ages) >= 1 and max(ages) <= 50
    for bound, inclusive in ((20, False), (20, True), (1, False), (51, False)):
        args = ["query_under", str(bound)] + (["--inclusive"] if inclusive else [])
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr
        count = int(proc.stdout.split()[0])
        expected = sum(1 for a in ages if (a <= bound if inclusive else a < bound))
        assert count == expected, (args, proc.stdout)
        assert ("<=" if inclusive else "< ") in proc.stdout


def test_clear_empties_the_table(deployed, aws):
    proc = cli("clear")
    assert proc.returncode == 0 and "deleted 3000" in proc.stdout, proc.stdout
    assert aws("dynamodb").scan(TableName=deployed["outputs"]["table_name"], Select="COUNT")["Count"] == 0


def test_security_audit_passes(deployed, audit):
    report = audit("serverless")
    print(f"audit serverless: {report['summary']}")


def test_teardown_leaves_nothing(deployed, run_playbook, aws):
    result = run_playbook("teardown.yml", "-e", "lab=serverless")
    assert result.rc == 0, result.output[-4000:]
    out = deployed["outputs"]
    assert out["function_name"] not in [f["FunctionName"] for f in aws("lambda").list_functions()["Functions"]]
    assert out["table_name"] not in aws("dynamodb").list_tables()["TableNames"]
    assert not live_queue_urls(aws("sqs"), "kumolab-serverless")
    assert not [r for r in aws("iam").list_roles()["Roles"] if r["RoleName"].startswith("kumolab-serverless")]
    assert not aws("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/kumolab-serverless")["logGroups"]
    status = subprocess.run(
        [str(VENV_BIN / "kumolab-runtime"), "status", "--lab", "serverless"], capture_output=True, text=True
    )
    assert status.returncode == 1 and "not running" in status.stdout
