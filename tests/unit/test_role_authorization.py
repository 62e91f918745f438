"""Fidelity rule ``iam-role-authorization``: local functions and tasks run with their own role's keys, and the
emulator enforces that role's policies (moto's IAM evaluation, for role sessions only); the operator's key is not
evaluated. Against the session's emulator (tests/conftest.py), through plain boto3, as a user's code would."""

from __future__ import annotations

import json
import time
import uuid

import botocore.exceptions
import pytest

from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.lambda_invoke import artifact_dir
from kumolab.local.runtime.package import package
from kumolab.local.settings import region as default_region

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
ECS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}

#: A handler that makes the DynamoDB call the event names with the function's own credentials (the default chain).
HANDLER = """
import os
import boto3


def handler(event, context):
    ddb = boto3.client("dynamodb")
    try:
        if event["op"] == "put":
            ddb.put_item(TableName=event["table"], Item={"id": {"S": "1"}})
        elif event["op"] == "scan":
            ddb.scan(TableName=event["table"])
        elif event["op"] == "whoami":
            return boto3.client("sts").get_caller_identity()["Arn"]
        return {"ok": True, "key": os.environ["AWS_ACCESS_KEY_ID"][:4], "token": bool(os.environ.get("AWS_SESSION_TOKEN"))}
    except Exception as exc:
        return {"ok": False, "code": exc.response["Error"]["Code"], "status": exc.response["ResponseMetadata"]["HTTPStatusCode"],
                "message": exc.response["Error"]["Message"]}
"""  # noqa: E501


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def table(aws, name: str) -> str:
    return aws("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )["TableDescription"]["TableArn"]


def until_assumable(call, timeout: float = 20.0):
    """``call()``, retried while the new role cannot be assumed yet (IAM propagation, as on AWS)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            if (
                exc.response["Error"]["Code"] not in ("InvalidParameterValueException", "ClientException")
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(0.5)


@pytest.fixture
def network(aws):
    """A subnet for a task, removed afterwards: the lab tests on this emulator count every VPC left over."""
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    yield {"awsvpcConfiguration": {"subnets": [subnet], "assignPublicIp": "DISABLED"}}
    for eni in ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet]}])[
        "NetworkInterfaces"
    ]:
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)


def role(aws, name: str, trust: dict, statements: list[dict]) -> str:
    iam = aws("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="least-privilege",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    return arn


@pytest.fixture(scope="module")
def function(aws, tmp_path_factory):
    """A function whose role allows only dynamodb:PutItem on table A; tables A and B."""
    a, b, name = unique("authz-a"), unique("authz-b"), unique("authz-fn")
    arn_a = table(aws, a)
    table(aws, b)
    role_arn = role(aws, name, LAMBDA_TRUST, [{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": arn_a}])
    source = tmp_path_factory.mktemp("authz-src")
    (source / "app.py").write_text(HANDLER)
    code = package(source, ["app.py"], artifact_dir() / f"{name}.zip")
    with open(code["path"], "rb") as zipped:
        code = zipped.read()
    until_assumable(
        lambda: aws("lambda").create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role_arn,
            Handler="app.handler",
            Timeout=30,
            Code={"ZipFile": code},
        )
    )
    return {"name": name, "a": a, "b": b, "arn_a": arn_a, "role": name}


def invoke(aws, name: str, event: dict):
    answer = aws("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    return payload


def test_iam_role_authorization_function_runs_with_its_role_keys(aws, function):
    whoami = invoke(aws, function["name"], {"op": "whoami"})
    assert str(whoami).startswith(f"arn:aws:sts::{function['arn_a'].split(':')[4]}:assumed-role/{function['role']}/"), (
        whoami
    )
    result = invoke(aws, function["name"], {"op": "put", "table": function["a"]})
    assert result == {"ok": True, "key": "ASIA", "token": True}


def test_iam_role_authorization_denies_another_table_and_another_action(aws, function):
    other = invoke(aws, function["name"], {"op": "put", "table": function["b"]})
    assert other["ok"] is False and other["code"] == "AccessDeniedException" and other["status"] == 400, other
    assert "dynamodb:PutItem" in other["message"] and function["b"] in other["message"]
    scan = invoke(aws, function["name"], {"op": "scan", "table": function["a"]})
    assert scan["ok"] is False and scan["code"] == "AccessDeniedException", scan
    assert "dynamodb:Scan" in scan["message"]


def test_iam_role_authorization_allows_what_the_policy_allows(aws, function):
    aws("iam").put_role_policy(
        RoleName=function["role"],
        PolicyName="scan-and-b",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["dynamodb:Scan", "dynamodb:PutItem"],
                        "Resource": [function["arn_a"], function["arn_a"].replace(function["a"], function["b"])],
                    }
                ],
            }
        ),
    )
    try:
        assert invoke(aws, function["name"], {"op": "scan", "table": function["a"]})["ok"] is True
        assert invoke(aws, function["name"], {"op": "put", "table": function["b"]})["ok"] is True
    finally:
        aws("iam").delete_role_policy(RoleName=function["role"], PolicyName="scan-and-b")
    assert invoke(aws, function["name"], {"op": "scan", "table": function["a"]})["ok"] is False


def test_iam_role_authorization_leaves_the_operator_key_unrestricted(aws, function):
    aws("dynamodb").scan(TableName=function["b"])  # the project's key: the account's administrator


def test_iam_role_authorization_lambda_invoke_needs_lambda_invoke_function(aws, function, lab_env):
    import boto3

    keys = aws("sts").assume_role(
        RoleArn=aws("iam").get_role(RoleName=function["role"])["Role"]["Arn"], RoleSessionName="caller"
    )["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
        region_name=default_region(),
    )
    endpoint = AwsConfig.from_environment(lab_env["KUMOLAB_AWS_PROFILE"]).endpoint_url
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        session.client("lambda", endpoint_url=endpoint).invoke(FunctionName=function["name"], Payload=b"{}")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(botocore.exceptions.ClientError) as sqs:
        session.client("sqs", endpoint_url=endpoint).list_queues()
    assert sqs.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException")


def test_iam_role_authorization_names_batch_calls_by_their_iam_action():
    from kumolab.local.role_authorization import request_action

    assert request_action("sqs", "DeleteMessageBatch") == "sqs:DeleteMessage"
    assert request_action("sqs", "SendMessageBatch") == "sqs:SendMessage"
    assert request_action("sqs", "ChangeMessageVisibilityBatch") == "sqs:ChangeMessageVisibility"
    assert request_action("dynamodb", "BatchWriteItem") == "dynamodb:BatchWriteItem"  # a real IAM action
    assert request_action("monitoring", "PutMetricData") == "cloudwatch:PutMetricData"


def test_iam_role_authorization_spells_operations_as_the_api_does():
    """moto's Batch reads the operation from the URL (``/v1/submitjob``); IAM action names are case-insensitive on
    AWS, so a policy allowing ``batch:SubmitJob`` must allow it (Step Functions' Batch tasks run under such a role)."""
    from kumolab.local.role_authorization import operation_name, request_action

    assert operation_name("batch", "submitjob") == "SubmitJob"
    assert request_action("batch", operation_name("batch", "describejobs")) == "batch:DescribeJobs"
    assert operation_name("sqs", "SendMessage") == "SendMessage"
    assert operation_name("no-such-service", "whatever") == "whatever"


def test_iam_role_authorization_ecs_task_lacks_an_action_of_its_task_role(aws, network):
    name = unique("authz-task")
    queue = aws("sqs").create_queue(QueueName=name)["QueueUrl"]
    role_arn = role(
        aws,
        name,
        ECS_TRUST,
        [
            {
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": aws("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
                    "QueueArn"
                ],
            }
        ],
    )
    ecs = aws("ecs")
    ecs.create_cluster(clusterName=name)
    ecs.register_task_definition(
        family=name,
        taskRoleArn=role_arn,
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "main",
                "image": "kumolab.local/authz:1",
                "essential": True,
                "memory": 256,
                "command": ["python", "-m", "probe", "sqs", queue],
                "dockerLabels": {"kumolab.runtime.source": "tests/support/ecs_probe"},
            }
        ],
    )
    arn = until_assumable(
        lambda: ecs.run_task(cluster=name, taskDefinition=name, launchType="FARGATE", networkConfiguration=network)
    )["tasks"][0]["taskArn"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = ecs.describe_tasks(cluster=name, tasks=[arn])["tasks"][0]
        if task["lastStatus"] == "STOPPED":
            break
        time.sleep(0.3)
    assert task["lastStatus"] == "STOPPED", task
    assert task["containers"][0]["exitCode"] == 7, task  # SendMessage allowed, ReceiveMessage denied
    assert (
        int(
            aws("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        == 2  # SendMessage and a SendMessageBatch, both under sqs:SendMessage
    )


def reaper_policy(region: str, account: str) -> str:
    """playbooks/templates/reaper_policy.json.j2 rendered as playbooks/reaper.yml renders it (project kumolab)."""
    import re

    import jinja2

    from kumolab.paths import REPO_ROOT

    env = jinja2.Environment()
    env.filters["to_json"] = json.dumps
    env.filters["regex_replace"] = lambda value, pattern, repl: re.sub(pattern, repl, value)
    template = env.from_string((REPO_ROOT / "playbooks" / "templates" / "reaper_policy.json.j2").read_text())
    return template.render(
        aws_region=region,
        reaper_account=account,
        reaper_name="kumolab-reaper-authz",
        reaper_tag_condition={"StringEquals": {"aws:ResourceTag/Project": "kumolab"}},
        reaper_name_pattern="kumolab-*",
        reaper_notify_ssm_parameter="",
    )


def test_iam_role_authorization_reaper_reaps_its_own_next_to_foreign_resources_under_its_policy(aws, tmp_path):
    """Issue 12 Part 3: the reaper, with its own policy enforced, reaps expired kumolab resources and leaves a foreign
    Lambda, table, queue, ECR repository and target-tracking alarms (none tagged kumolab) alone; the run is ok."""
    import shutil

    from kumolab.paths import REPO_ROOT

    region, account = default_region(), aws("sts").get_caller_identity()["Account"]
    suffix = uuid.uuid4().hex[:6]
    # The reaper, deployed as playbooks/reaper.yml deploys it (handler + catalogue, its policy, Lambda's trust).
    build = tmp_path / "reaper"
    build.mkdir()
    shutil.copy(REPO_ROOT / "files" / "lambda" / "reaper" / "handler.py", build)
    shutil.copy(REPO_ROOT / "module_utils" / "kumolab_resources.py", build)
    name = f"kumolab-reaper-authz-{suffix}"
    role_arn = aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    aws("iam").put_role_policy(
        RoleName=name, PolicyName="least-privilege", PolicyDocument=reaper_policy(region, account)
    )
    code = package(build, ["handler.py", "kumolab_resources.py"], artifact_dir() / f"{name}.zip")
    with open(code["path"], "rb") as zipped:
        body = zipped.read()
    until_assumable(
        lambda: aws("lambda").create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role_arn,
            Handler="handler.lambda_handler",
            Timeout=120,
            Code={"ZipFile": body},
            Environment={"Variables": {"KUMOLAB_PROJECT": "kumolab", "KUMOLAB_REAPER_DRY_RUN": "false"}},
        )
    )

    # Its own expired resources: a table and a queue of lab "authz<suffix>", ExpiresAt in the past.
    lab = f"authz{suffix}"
    tags = {"Project": "kumolab", "Lab": lab, "ExpiresAt": "2020-01-01T00:00:00Z"}
    own_table = f"kumolab-{lab}-items"
    aws("dynamodb").create_table(
        TableName=own_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )
    own_queue = aws("sqs").create_queue(QueueName=f"kumolab-{lab}-jobs", tags=tags)["QueueUrl"]

    # Foreign resources, none tagged kumolab.
    foreign = f"foreign-{suffix}"
    foreign_role = aws("iam").create_role(RoleName=foreign, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"][
        "Arn"
    ]
    until_assumable(
        lambda: aws("lambda").create_function(
            FunctionName=foreign, Runtime="python3.13", Role=foreign_role, Handler="app.handler", Code={"ZipFile": body}
        )
    )
    aws("dynamodb").create_table(
        TableName=foreign,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    foreign_queue = aws("sqs").create_queue(QueueName=foreign)["QueueUrl"]
    aws("ecr").create_repository(repositoryName=foreign)
    alarms = [f"TargetTracking-service/{foreign}/{foreign}-Alarm{kind}-{suffix}" for kind in ("High", "Low")]
    for alarm in alarms:
        aws("cloudwatch").put_metric_alarm(
            AlarmName=alarm,
            MetricName="CPUUtilization",
            Namespace="AWS/ECS",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=3,
            Threshold=50.0,
            ComparisonOperator="GreaterThanThreshold",
        )

    answer = aws("lambda").invoke(FunctionName=name, Payload=b"{}")
    report = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, report
    assert report.get("failed") == [], report
    deleted = {entry["id"] for entry in report["deleted"]}
    assert any(own_table in ident for ident in deleted) and any(
        own_queue.rsplit("/", 1)[-1] in ident for ident in deleted
    ), report
    # The foreign ones are all still there.
    aws("lambda").get_function(FunctionName=foreign)
    aws("dynamodb").describe_table(TableName=foreign)
    aws("sqs").get_queue_attributes(QueueUrl=foreign_queue, AttributeNames=["QueueArn"])
    aws("ecr").describe_repositories(repositoryNames=[foreign])
    assert sorted(
        a["AlarmName"] for a in aws("cloudwatch").describe_alarms(AlarmNames=alarms)["MetricAlarms"]
    ) == sorted(alarms)
    with pytest.raises(botocore.exceptions.ClientError):
        aws("dynamodb").describe_table(TableName=own_table)
