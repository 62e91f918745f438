"""Lab 3 end to end on the emulator: deploy the QA bot, use it as a student would with ``qa-bot``, re-run
and check-run change nothing, the security properties hold, the service starts at 0 tasks and its step
scaling (evaluated by the local ECS runtime, kumolab.local.runtime.autoscaling) starts a worker for a
question and stops it once the queue is empty (review B2), and teardown leaves nothing.

The workers load the offline model (``qa-bot build-model``, cached under .cache/qa-model/; about five
CPU minutes the first time on this machine, seconds afterwards).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import live_queue_urls, live_tagged_arns

from kumolab.labs import lab as registry_lab
from kumolab.local.process import pid_alive

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent
NAME = registry_lab("qa_bot").prefix()
EINSTEIN = (  # the textbook's example
    "Albert Einstein (14 March 1879 – 18 April 1955) was a German-born theoretical physicist who developed the "
    "theory of relativity, one of the two pillars of modern physics. He received the 1921 Nobel Prize in Physics "
    "for his services to theoretical physics."
)
MOMOTARO = (
    "A giant peach was flowing in the river. She picked it up and brought it home. Later, a healthy baby was born "
    "from the peach. She named the baby Momotaro."
)


def qa_bot(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "qa-bot"), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def runtime_status() -> dict:
    proc = subprocess.run(
        [str(VENV_BIN / "kumolab-runtime"), "ecs", "status", "--cluster", NAME, "--service", NAME],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_without_an_image_or_a_docker_engine_the_playbook_names_both_ways_out(run_playbook, lab_env):
    result = run_playbook(
        "qa_bot.yml",
        "-e",
        "qa_bot_image_uri=",
        "-e",
        "qa_bot_image_build=true",
        "-e",
        "lab_container_image_docker_command=/nonexistent/docker",
    )
    assert result.rc != 0
    assert "qa_bot_image_uri" in result.output and "Docker engine" in result.output
    # failed before creating anything
    assert "Create the image repository" not in result.output and "Create the lab VPC" not in result.output


@pytest.fixture(scope="module")
def deployed(run_playbook, lab_env):
    first = run_playbook("qa_bot.yml")
    assert first.rc == 0, first.output[-4000:]
    outputs = json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "qa_bot" / "outputs.json").read_text())
    return {"first": first, "outputs": outputs}


def test_deploy_writes_the_outputs_the_cli_reads(deployed, aws):
    out = deployed["outputs"]
    assert deployed["first"].changed > 0
    assert out["queue_url"] == aws("sqs").get_queue_url(QueueName=f"{NAME}-questions")["QueueUrl"]
    assert out["table_name"] == f"{NAME}-answers"
    assert out["region"] == "ap-northeast-1" and out["endpoint_url"].startswith("http://127.0.0.1:")
    assert "Try: qa-bot ask" in deployed["first"].output


def desired_count(aws) -> int:
    return aws("ecs").describe_services(cluster=NAME, services=[NAME])["services"][0]["desiredCount"]


def wait_for_tasks(count: int, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = runtime_status()["tasks"]
        if len(tasks) == count and all(pid_alive(p) for t in tasks for p in t["pids"]):
            return tasks
        time.sleep(1)
    raise AssertionError(f"local workers did not reach {count}: {runtime_status()}")


def test_b2_ask_on_a_service_at_zero_tasks_scales_out_answers_and_scales_back_in(deployed, aws):
    """Review B2: the service starts at 0 tasks (as on AWS); one question must start a worker (step scaling:
    visible messages >= 1 -> 1 task), get its answer, and the service goes back to 0 once the queue has been
    empty for the scale-in alarm's periods (10 min on AWS, 30 s at the local time factor 0.05)."""
    assert desired_count(aws) == 0 and runtime_status()["tasks"] == []
    started = time.monotonic()
    proc = qa_bot("ask", MOMOTARO, "What is the name of the baby?", "--json", "--timeout", "240")
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "Momotaro"
    print(f"qa_bot first answer from 0 tasks: {seconds:.1f} s from ask to answer")
    assert desired_count(aws) == 1
    alarms = {a["AlarmName"]: a for a in aws("cloudwatch").describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"]}
    assert alarms[f"{NAME}-scale-out"]["StateValue"] in ("ALARM", "OK")  # evaluated locally (OK once taken)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and desired_count(aws) != 0:
        time.sleep(2)
    assert desired_count(aws) == 0, f"did not scale back in after the queue was empty: {runtime_status()}"
    assert wait_for_tasks(0) == []
    scale_in = aws("cloudwatch").describe_alarms(AlarmNames=[f"{NAME}-scale-in"])["MetricAlarms"][0]
    assert scale_in["StateValue"] == "ALARM"


def test_ask_answers_the_textbook_questions(deployed):
    proc = qa_bot("ask", EINSTEIN, "In what year did Einstein win the Nobel prize ?", "--json", "--timeout", "300")
    assert proc.returncode == 0, proc.stderr
    item = json.loads(proc.stdout)
    assert item["answer"] == "1921"
    assert EINSTEIN[item["answer_start"] : item["answer_end"]] == "1921"  # character offsets, non-ASCII context
    proc = qa_bot("ask", MOMOTARO, "What is the name of the baby?", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr
    assert "answer: Momotaro" in proc.stdout


def test_ask_many_answers_the_shipped_sample(deployed):
    proc = qa_bot("ask_many", "--timeout", "300")
    assert proc.returncode == 0, proc.stderr
    assert "10/10 answered" in proc.stdout, proc.stdout


def test_list_answers_pages_through_the_table(deployed, aws):
    total = aws("dynamodb").scan(TableName=deployed["outputs"]["table_name"], Select="COUNT")["Count"]
    assert total == 13  # three asks and the ten sample questions
    everything = qa_bot("list_answers", "--page-size", "5", "--json")  # three Scan pages
    assert everything.returncode == 0, everything.stderr
    ids = [json.loads(line)["item_id"] for line in everything.stdout.splitlines()]
    assert len(ids) == total == len(set(ids))
    limited = qa_bot("list_answers", "--limit", "7", "--page-size", "3", "--json")  # stops on the third page
    assert limited.returncode == 0, limited.stderr
    limited_ids = [json.loads(line)["item_id"] for line in limited.stdout.splitlines()]
    assert len(limited_ids) == 7 and set(limited_ids) <= set(ids)
    assert "7 answer(s) listed" in limited.stderr


def test_clear_deletes_every_answer(deployed, aws):
    proc = qa_bot("clear")
    assert proc.returncode == 0 and "deleted 13 answer(s)" in proc.stdout, proc.stdout + proc.stderr
    assert aws("dynamodb").scan(TableName=deployed["outputs"]["table_name"], Select="COUNT")["Count"] == 0


def test_security_and_durability_settings(deployed, aws):
    out = deployed["outputs"]
    iam = aws("iam")
    task_policy = iam.get_role_policy(RoleName=f"{NAME}-task", PolicyName="least-privilege")["PolicyDocument"]
    if isinstance(task_policy, str):
        task_policy = json.loads(task_policy)
    statements = task_policy["Statement"]
    actions = [a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    resources = [r for s in statements for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    assert all(s["Effect"] == "Allow" for s in statements)
    assert not [x for x in actions + resources if "*" in x], (actions, resources)
    queue_arn = aws("sqs").get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    table_arn = aws("dynamodb").describe_table(TableName=out["table_name"])["Table"]["TableArn"]
    assert set(resources) == {queue_arn, table_arn}
    assert set(actions) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "dynamodb:PutItem",
    }

    dynamodb = aws("dynamodb")
    assert (
        dynamodb.describe_table(TableName=out["table_name"])["Table"]["BillingModeSummary"]["BillingMode"]
        == "PAY_PER_REQUEST"
    )
    pitr = dynamodb.describe_continuous_backups(TableName=out["table_name"])["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    groups = aws("logs").describe_log_groups(logGroupNamePrefix=out["log_group"])["logGroups"]
    assert [g.get("retentionInDays") for g in groups] == [7]

    attrs = aws("sqs").get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 5 and redrive["deadLetterTargetArn"].endswith(f"{NAME}-dead-letters")

    repo = aws("ecr").describe_repositories(repositoryNames=[NAME])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True


def test_task_definition_service_and_autoscaling(deployed, aws):
    ecs = aws("ecs")
    service = ecs.describe_services(cluster=NAME, services=[NAME])["services"][0]
    taskdef = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    assert (taskdef["cpu"], taskdef["memory"], taskdef["networkMode"]) == ("1024", "4096", "awsvpc")
    assert "FARGATE" in taskdef["requiresCompatibilities"]
    (container,) = taskdef["containerDefinitions"]
    assert container["cpu"] == 1024 and container["memory"] == 4096
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["dockerLabels"] == {"kumolab.runtime.source": "files/containers/qa_bot"}
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert (
        env["QUEUE_URL"] == deployed["outputs"]["queue_url"] and env["TABLE_NAME"] == deployed["outputs"]["table_name"]
    )
    assert Path(env["MODEL_DIR"], "config.json").exists()  # the locally built model
    scaling = aws("application-autoscaling")
    resource_id = f"service/{NAME}/{NAME}"
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource_id])["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 4)
    policies = {
        p["PolicyName"]: p
        for p in scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=resource_id)["ScalingPolicies"]
    }
    assert set(policies) == {f"{NAME}-scale-out", f"{NAME}-scale-in"}  # step scaling (B2), no target tracking
    out = policies[f"{NAME}-scale-out"]["StepScalingPolicyConfiguration"]
    assert out["AdjustmentType"] == "ExactCapacity"
    steps = [(s.get("MetricIntervalLowerBound"), s["ScalingAdjustment"]) for s in out["StepAdjustments"]]
    assert steps == [(0, 1), (49, 2), (199, 4)]
    cloudwatch = aws("cloudwatch")
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"]}
    assert alarms[f"{NAME}-scale-out"]["AlarmActions"] == [policies[f"{NAME}-scale-out"]["PolicyARN"]]
    assert alarms[f"{NAME}-scale-out"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms[f"{NAME}-scale-out"]["Dimensions"] == [{"Name": "QueueName", "Value": f"{NAME}-questions"}]
    assert alarms[f"{NAME}-scale-in"]["AlarmActions"] == [policies[f"{NAME}-scale-in"]["PolicyARN"]]
    for alarm in alarms.values():
        tags = {t["Key"]: t["Value"] for t in cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]}
        assert tags["Lab"] == "qa_bot" and tags["Project"] == "kumolab"


def test_b4_the_task_definition_names_the_image_architecture(deployed, aws):
    """Review B4: an image built on an Apple Silicon Mac is arm64; a task definition without runtimePlatform is
    X86_64 and Fargate cannot pull it. The platform is the image's: here a kumolab.local/ image, this machine's."""
    ecs = aws("ecs")
    service = ecs.describe_services(cluster=NAME, services=[NAME])["services"][0]
    taskdef = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    machine = {"x86_64": "X86_64", "aarch64": "ARM64", "arm64": "ARM64"}[platform.machine().lower()]
    assert taskdef["runtimePlatform"] == {"cpuArchitecture": machine, "operatingSystemFamily": "LINUX"}


def test_second_run_changes_nothing(deployed, run_playbook):
    second = run_playbook("qa_bot.yml")
    assert second.rc == 0, second.output[-4000:]
    assert second.changed == 0, second.changed_tasks()


def test_check_mode_on_a_deployed_lab_changes_nothing(deployed, run_playbook):
    check = run_playbook("qa_bot.yml", "--check")
    assert check.rc == 0, check.output[-4000:]
    assert check.changed == 0, check.changed_tasks()


def test_security_audit_passes(deployed, audit):
    report = audit("qa_bot")
    print(f"audit qa_bot: {report['summary']}")


def test_teardown_leaves_nothing_and_stops_the_workers(deployed, run_playbook, aws):
    pids = [p for t in runtime_status()["tasks"] for p in t["pids"]]
    assert runtime_status()["runner"]["running"]
    result = run_playbook("teardown.yml", "-e", "lab=qa_bot")
    assert result.rc == 0, result.output[-4000:]
    out = deployed["outputs"]
    assert not live_queue_urls(aws("sqs"), NAME)
    assert out["table_name"] not in aws("dynamodb").list_tables()["TableNames"]
    assert not aws("logs").describe_log_groups(logGroupNamePrefix=out["log_group"])["logGroups"]
    assert not [r for r in aws("ecr").describe_repositories()["repositories"] if r["repositoryName"] == NAME]
    assert not [r for r in aws("iam").list_roles()["Roles"] if r["RoleName"].startswith(NAME)]
    ecs = aws("ecs")
    assert not [c for c in ecs.describe_clusters(clusters=[NAME])["clusters"] if c["status"] == "ACTIVE"]
    assert not ecs.list_task_definitions(familyPrefix=NAME, status="ACTIVE")["taskDefinitionArns"]
    assert not aws("application-autoscaling").describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert not aws("cloudwatch").describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"]
    assert not aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Lab", "Values": ["qa_bot"]}])["Vpcs"]
    assert live_tagged_arns(aws, {"Project": "kumolab", "Lab": "qa_bot"}) == []
    status = runtime_status()
    assert status["tasks"] == [] and not status["runner"]["running"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.5)
    assert not [p for p in pids if pid_alive(p)]
