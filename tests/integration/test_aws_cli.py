"""Every lab's "AWS CLI equivalents" (docs/<lab>.md) run with the unmodified AWS CLI against the emulator.

The CLI (``awscli`` from PyPI) reaches the session's emulator through the local profile alone
(``--profile kumolab-local``; the profile's ``endpoint_url`` names the emulator). The resources are
deployed with boto3 (tests/support) rather than by the playbooks, to keep this cheap; the playbooks'
own tests deploy the same shapes. What is asserted is what a student would read in the CLI's output.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from support.network import delete_vpc
from support.runtime_fixtures import deploy_bashoutter, deploy_function

from kumolab.local.runtime.aws import AwsConfig
from kumolab.paths import REPO_ROOT

pytestmark = pytest.mark.integration

REGION = "ap-northeast-1"
AWS = Path(sys.executable).with_name("aws")
CANNED = "Simple Lambda happy path OK"


def _raw_payload_option() -> tuple[str, ...]:
    """AWS CLI v2 reads --payload as base64 unless told otherwise; v1 (PyPI's awscli) reads it raw and has no option."""
    try:
        version = subprocess.run([str(AWS), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return ()
    return (
        ()
        if (version.stdout + version.stderr).startswith("aws-cli/1.")
        else ("--cli-binary-format", "raw-in-base64-out")
    )


RAW_PAYLOAD = _raw_payload_option()


@pytest.fixture(scope="module")
def aws_cli(emulator, lab_env, tmp_path_factory):
    """``aws_cli("lambda", "invoke", ...)`` -> parsed JSON stdout (or text); fails with the CLI's stderr."""
    if not AWS.exists():
        pytest.skip("the AWS CLI is not installed: pip install -r requirements/test.txt")
    cwd = tmp_path_factory.mktemp("aws-cli")
    profile = lab_env["KUMOLAB_AWS_PROFILE"]

    def run(*args: str, check: bool = True, output: str = "json"):
        command = [str(AWS), "--profile", profile, "--region", REGION, "--output", output, *args]
        proc = subprocess.run(
            command, cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=300, check=False
        )
        if check:
            assert proc.returncode == 0, f"{' '.join(args)}: rc={proc.returncode}\n{proc.stderr}"
        elif proc.returncode != 0:
            return proc
        text = proc.stdout.strip()
        return json.loads(text) if output == "json" and text else text

    run.cwd = cwd
    return run


@pytest.fixture(scope="module")
def aws_config(emulator):
    return AwsConfig.from_environment(region=REGION)


# -- Lab 1 and 2: EC2 ---------------------------------------------------------------------------------


@pytest.fixture
def launch(aws_config):
    """Launch an instance in a VPC of its own, as a lab's CLI equivalents do; both are gone after the test."""
    vpcs = []

    def run(lab: str, image_id: str, instance_type: str) -> str:
        instance, vpc = _launch(aws_config, lab, image_id, instance_type)
        vpcs.append(vpc)
        return instance

    yield run
    for vpc in vpcs:
        delete_vpc(aws_config.client("ec2"), vpc)


def _launch(aws_config, lab: str, image_id: str, instance_type: str) -> tuple[str, str]:
    ec2 = aws_config.client("ec2")
    tags = [{"Key": "Lab", "Value": lab}, {"Key": "Name", "Value": f"kumolab-{lab}-cli-test"}]
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/23", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])["Vpc"][
        "VpcId"
    ]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.0.0/24")["Subnet"]["SubnetId"]
    instance = ec2.run_instances(
        ImageId=image_id,
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]
    return instance, vpc


def test_ec2_lab_cli(aws_cli, aws_config, launch):
    ami = aws_cli(
        "ssm",
        "get-parameter",
        "--name",
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        "--query",
        "Parameter.Value",
        output="text",
    )
    instance = launch("ec2", ami, "t3.micro")
    found = aws_cli(
        "ec2",
        "describe-instances",
        "--filters",
        "Name=tag:Lab,Values=ec2",
        "--query",
        "Reservations[].Instances[].[InstanceId,InstanceType,State.Name]",
    )
    assert [instance, "t3.micro", "running"] in found
    vpcs = aws_cli("ec2", "describe-vpcs", "--filters", "Name=tag:Lab,Values=ec2", "--query", "Vpcs[].CidrBlock")
    assert "10.50.0.0/23" in vpcs


def test_gpu_lab_cli(aws_cli, aws_config, launch):
    # On AWS: /aws/service/deeplearning/ami/...; the emulator publishes the same parameter under its own prefix.
    name = "/kumolab/emulator/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
    ami = aws_cli("ssm", "get-parameter", "--name", name, "--query", "Parameter.Value", output="text")
    images = aws_cli("ec2", "describe-images", "--image-ids", ami, "--query", "Images[].Name")
    assert images and images[0].startswith("Deep Learning Base OSS Nvidia Driver GPU AMI")
    instance = launch("gpu", ami, "g4dn.xlarge")
    found = aws_cli(
        "ec2",
        "describe-instances",
        "--filters",
        "Name=tag:Lab,Values=gpu",
        "--query",
        "Reservations[].Instances[].[InstanceId,InstanceType,ImageId]",
    )
    assert [instance, "g4dn.xlarge", ami] in found


# -- Lab 3: the QA bot ----------------------------------------------------------------------------------


def test_qa_bot_cli(aws_cli, aws_config, tmp_path_factory):
    from support.qa_fixtures import tiny_qa_model

    model = tiny_qa_model(tmp_path_factory.mktemp("tiny-qa-model"))
    name = f"kumolab-qa-bot-cli-{uuid.uuid4().hex[:6]}"
    table = f"{name}-answers"
    aws_cli(
        "dynamodb",
        "create-table",
        "--table-name",
        table,
        "--billing-mode",
        "PAY_PER_REQUEST",
        "--attribute-definitions",
        "AttributeName=item_id,AttributeType=S",
        "--key-schema",
        "AttributeName=item_id,KeyType=HASH",
    )
    # AWS CLI v1 pins SQS's endpoint to <region>.queue.amazonaws.com unless --endpoint-url is given (its
    # overridesslcommonname customization ignores the profile's endpoint_url): name it explicitly, from the profile.
    sqs = ("sqs", "--endpoint-url", aws_cli("configure", "get", "endpoint_url", output="text"))
    queue_url = aws_cli(*sqs, "create-queue", "--queue-name", name, "--query", "QueueUrl", output="text")
    aws_cli("ecs", "create-cluster", "--cluster-name", name)
    vpc = aws_cli("ec2", "create-vpc", "--cidr-block", "10.51.0.0/24", "--query", "Vpc.VpcId", output="text")
    subnet = aws_cli(
        "ec2",
        "create-subnet",
        "--vpc-id",
        vpc,
        "--cidr-block",
        "10.51.0.0/25",
        "--query",
        "Subnet.SubnetId",
        output="text",
    )
    container = {
        "name": "qa-worker",
        "image": "kumolab/qa-worker:latest",
        "cpu": 1024,
        "memory": 4096,
        "essential": True,
        "command": ["python", "-m", "qa_worker"],
        "dockerLabels": {"kumolab.runtime.source": "files/containers/qa_bot"},
        "environment": [
            {"name": "QUEUE_URL", "value": queue_url},
            {"name": "TABLE_NAME", "value": table},
            {"name": "MODEL_DIR", "value": str(model)},
            {"name": "MAX_LENGTH", "value": "128"},
            {"name": "STRIDE", "value": "32"},
        ],
    }
    (aws_cli.cwd / "containers.json").write_text(json.dumps([container]))
    taskdef = aws_cli(
        "ecs",
        "register-task-definition",
        "--family",
        name,
        "--requires-compatibilities",
        "FARGATE",
        "--network-mode",
        "awsvpc",
        "--cpu",
        "1024",
        "--memory",
        "4096",
        "--container-definitions",
        "file://containers.json",
        "--query",
        "taskDefinition.taskDefinitionArn",
        output="text",
    )

    # ask (the queue way): a question on the queue
    body = json.dumps(
        {
            "item_id": "q-1",
            "context": "Kyoto was the capital of Japan until 1868.",
            "question": "Until when was Kyoto the capital?",
        }
    )
    assert aws_cli(*sqs, "send-message", "--queue-url", queue_url, "--message-body", body)["MessageId"]
    assert (
        aws_cli(
            *sqs,
            "get-queue-attributes",
            "--queue-url",
            queue_url,
            "--attribute-names",
            "ApproximateNumberOfMessages",
            "--query",
            "Attributes.ApproximateNumberOfMessages",
            output="text",
        )
        == "1"
    )

    # ask (one task per question): run-task with overrides, wait for STOPPED, read the exit code and the answer
    overrides = {
        "containerOverrides": [
            {
                "name": "qa-worker",
                "command": [
                    "python",
                    "-m",
                    "qa_worker.ask",
                    "Mount Fuji is 3,776 metres high.",
                    "How high is Mount Fuji?",
                ],
                "environment": [{"name": "ITEM_ID", "value": "q-2"}],
            }
        ]
    }
    (aws_cli.cwd / "overrides.json").write_text(json.dumps(overrides))
    task = aws_cli(
        "ecs",
        "run-task",
        "--cluster",
        name,
        "--task-definition",
        taskdef,
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        f"awsvpcConfiguration={{subnets=[{subnet}],assignPublicIp=ENABLED}}",
        "--overrides",
        "file://overrides.json",
        "--query",
        "tasks[0].taskArn",
        output="text",
    )
    aws_cli("ecs", "wait", "tasks-stopped", "--cluster", name, "--tasks", task, output="text")
    described = aws_cli(
        "ecs",
        "describe-tasks",
        "--cluster",
        name,
        "--tasks",
        task,
        "--query",
        "tasks[0].[lastStatus,containers[0].exitCode,stoppedReason]",
    )
    assert described == ["STOPPED", 0, "Essential container in task exited"]
    answer = aws_cli(
        "dynamodb",
        "get-item",
        "--table-name",
        table,
        "--key",
        '{"item_id": {"S": "q-2"}}',
        "--query",
        "Item.[question.S,answer.S]",
    )
    assert answer[0] == "How high is Mount Fuji?" and answer[1] in "Mount Fuji is 3,776 metres high."

    # list_answers / clear
    assert aws_cli("dynamodb", "scan", "--table-name", table, "--select", "COUNT", "--query", "Count") == 1
    aws_cli("dynamodb", "delete-item", "--table-name", table, "--key", '{"item_id": {"S": "q-2"}}')
    assert aws_cli("dynamodb", "scan", "--table-name", table, "--select", "COUNT", "--query", "Count") == 0


# -- Lab 4: serverless ----------------------------------------------------------------------------------


def test_serverless_cli(aws_cli, aws_config):
    name = f"kumolab-serverless-cli-{uuid.uuid4().hex[:6]}"
    deploy_function(
        aws_config,
        f"{name}-sushi",
        REPO_ROOT / "files" / "lambda" / "serverless_lab",
        ["sushi.py"],
        "sushi.handler",
        timeout=10,
    )
    # invoke: the deployed handler's own answer, its log tail, no canned reply
    out = aws_cli(
        "lambda",
        "invoke",
        "--function-name",
        f"{name}-sushi",
        *RAW_PAYLOAD,
        "--payload",
        "{}",
        "--log-type",
        "Tail",
        "response.json",
    )
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    assert "REPORT RequestId:" in base64.b64decode(out["LogResult"]).decode()
    payload = json.loads((aws_cli.cwd / "response.json").read_text())
    assert payload["sushi"] and CANNED not in json.dumps(payload)
    event = aws_cli(
        "lambda",
        "invoke",
        "--function-name",
        f"{name}-sushi",
        "--invocation-type",
        "Event",
        *RAW_PAYLOAD,
        "--payload",
        "{}",
        "event.json",
    )
    assert event["StatusCode"] == 202

    # write / query_under / clear
    table = f"{name}-people"
    aws_cli(
        "dynamodb",
        "create-table",
        "--table-name",
        table,
        "--billing-mode",
        "PAY_PER_REQUEST",
        "--attribute-definitions",
        "AttributeName=item_id,AttributeType=S",
        "--key-schema",
        "AttributeName=item_id,KeyType=HASH",
    )
    for item_id, first, age in (("p-1", "Yui", "17"), ("p-2", "Sota", "34")):
        aws_cli(
            "dynamodb",
            "put-item",
            "--table-name",
            table,
            "--item",
            json.dumps(
                {"item_id": {"S": item_id}, "first_name": {"S": first}, "last_name": {"S": "Sato"}, "age": {"N": age}}
            ),
        )
    young = aws_cli(
        "dynamodb",
        "scan",
        "--table-name",
        table,
        "--filter-expression",
        "age < :a",
        "--expression-attribute-values",
        '{":a": {"N": "20"}}',
        "--query",
        "Items[].first_name.S",
    )
    assert young == ["Yui"]
    assert (
        aws_cli(
            "dynamodb",
            "get-item",
            "--table-name",
            table,
            "--key",
            '{"item_id": {"S": "p-2"}}',
            "--query",
            "Item.age.N",
            output="text",
        )
        == "34"
    )


def test_lambda_errors_through_the_cli(aws_cli, aws_config, tmp_path):
    (tmp_path / "app.py").write_text(
        "import time\ndef handler(e, c):\n    if e.get('sleep'):\n        time.sleep(e['sleep'])\n"
        "    raise ValueError('no sushi today')\n"
    )
    name = f"kumolab-cli-errors-{uuid.uuid4().hex[:6]}"
    deploy_function(aws_config, name, tmp_path, ["app.py"], "app.handler", timeout=1)
    out = aws_cli("lambda", "invoke", "--function-name", name, *RAW_PAYLOAD, "--payload", "{}", "error.json")
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    assert json.loads((aws_cli.cwd / "error.json").read_text())["errorMessage"] == "no sushi today"
    out = aws_cli(
        "lambda", "invoke", "--function-name", name, *RAW_PAYLOAD, "--payload", '{"sleep": 5}', "timeout.json"
    )
    assert out["FunctionError"] == "Unhandled"
    assert json.loads((aws_cli.cwd / "timeout.json").read_text())["errorType"] == "Sandbox.Timedout"
    missing = aws_cli("lambda", "invoke", "--function-name", "kumolab-no-such-function", "missing.json", check=False)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


# -- Lab 5: Bashoutter ----------------------------------------------------------------------------------


def test_bashoutter_cli(aws_cli, aws_config, emulator):
    prefix = f"kumolab-bashoutter-cli-{uuid.uuid4().hex[:6]}"
    deployed = deploy_bashoutter(aws_config, prefix)
    api_id = aws_cli("apigateway", "get-rest-apis", "--query", f"items[?name=='{prefix}'].id | [0]", output="text")
    assert api_id == deployed["api_id"]
    assert (
        aws_cli(
            "apigateway",
            "get-stage",
            "--rest-api-id",
            api_id,
            "--stage-name",
            "prod",
            "--query",
            "stageName",
            output="text",
        )
        == "prod"
    )

    # post / list through the execute-api URL (what curl would do: the CLI does not call APIs)
    url = f"{emulator}/restapis/{api_id}/prod/_user_request_/haiku"
    body = json.dumps({"username": "basho", "first": "furuike ya", "second": "kawazu tobikomu", "third": "mizu no oto"})
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 201
        item_id = json.loads(resp.read())["item_id"]

    # the same data with the CLI: the table, and the GET function invoked with an API Gateway proxy event
    items = aws_cli("dynamodb", "scan", "--table-name", deployed["table"], "--query", "Items[].item_id.S")
    assert item_id in items
    event = {
        "resource": "/haiku",
        "path": "/haiku",
        "httpMethod": "GET",
        "headers": None,
        "queryStringParameters": None,
        "pathParameters": None,
        "body": None,
        "isBase64Encoded": False,
    }
    out = aws_cli(
        "lambda",
        "invoke",
        "--function-name",
        f"{prefix}-get_haiku",
        *RAW_PAYLOAD,
        "--payload",
        json.dumps(event),
        "list.json",
    )
    assert out["StatusCode"] == 200
    listed = json.loads((aws_cli.cwd / "list.json").read_text())
    assert listed["statusCode"] == 200 and item_id in listed["body"]

    # clear_database: delete it, through the API's DELETE
    request = urllib.request.Request(f"{url}/{item_id}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 204
    deadline = time.monotonic() + 5
    while item_id in aws_cli("dynamodb", "scan", "--table-name", deployed["table"], "--query", "Items[].item_id.S"):
        assert time.monotonic() < deadline
