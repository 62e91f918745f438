"""The emulator endpoint executes what moto only stores: Lambda Invoke, ECS run-task, execute-api URLs.

Every client here is a plain boto3 client on the session's emulator (through its profile), as a user's
own script would be; nothing talks to a kumolab runtime port.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.config import Config
from support.runtime_fixtures import deploy_bashoutter, deploy_function, role_arn

import kumolab.aws
from kumolab.local.runtime.aws import AwsConfig

REGION = "ap-northeast-1"
CANNED = "Simple Lambda happy path OK"
PROBE_SOURCE = "tests/support/ecs_probe"  # python -m probe ask|sleep|exit (the runner refuses python -c)


@pytest.fixture(scope="module")
def aws_config(emulator):
    return AwsConfig.from_environment(region=REGION)


@pytest.fixture(scope="module")
def lam(aws_config):
    """No retries: an error must show at once, as it is."""
    return kumolab.aws.client("lambda", aws_config.profile, REGION, config=Config(retries={"max_attempts": 1}))


def fn(aws_config, tmp_path, source: str, **kwargs) -> str:
    name = f"fd-{uuid.uuid4().hex[:10]}"
    (tmp_path / "app.py").write_text(source)
    deploy_function(aws_config, name, tmp_path, ["app.py"], "app.handler", **kwargs)
    return name


HANDLER = """
import json, logging, time
def handler(event, context):
    print("got", json.dumps(event))
    logging.getLogger().warning("a warning from logging")
    if event.get("fail"):
        raise ValueError("no haiku today")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("chatty"):
        print("x" * 10000)
    return {"echo": event, "function": context.function_name}
"""


# -- Lambda Invoke ------------------------------------------------------------------------------------


def test_invoke_runs_the_deployed_handler_and_tails_its_log(aws_config, lam, tmp_path):
    name = fn(aws_config, tmp_path, HANDLER)
    resp = lam.invoke(FunctionName=name, Payload=b'{"a": 1}', LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert json.loads(resp["Payload"].read()) == {"echo": {"a": 1}, "function": name}
    log = base64.b64decode(resp["LogResult"]).decode()
    assert log.startswith("START RequestId:") and 'got {"a": 1}' in log and "a warning from logging" in log
    assert log.rstrip().splitlines()[-1].startswith("REPORT RequestId:")
    assert "LogResult" not in lam.invoke(FunctionName=name, Payload=b"{}")  # only with LogType Tail


def test_log_tail_is_the_last_4_kb(aws_config, lam, tmp_path):
    name = fn(aws_config, tmp_path, HANDLER)
    resp = lam.invoke(FunctionName=name, Payload=b'{"chatty": true}', LogType="Tail")
    log = base64.b64decode(resp["LogResult"])
    assert len(log) == 4096 and log.rstrip().splitlines()[-1].startswith(b"REPORT RequestId:")


def test_handler_error_is_200_with_the_error_shape(aws_config, lam, tmp_path):
    name = fn(aws_config, tmp_path, HANDLER)
    resp = lam.invoke(FunctionName=name, Payload=b'{"fail": true}', LogType="Tail")
    assert resp["StatusCode"] == 200 and resp["FunctionError"] == "Unhandled"
    error = json.loads(resp["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "no haiku today")
    assert any("app.py" in frame for frame in error["stackTrace"])
    assert "[ERROR] ValueError: no haiku today" in base64.b64decode(resp["LogResult"]).decode()


def test_timeout_is_sandbox_timedout(aws_config, lam, tmp_path):
    name = fn(aws_config, tmp_path, HANDLER, timeout=1)
    started = time.monotonic()
    resp = lam.invoke(FunctionName=name, Payload=b'{"sleep": 10}', LogType="Tail")
    assert time.monotonic() - started < 5
    error = json.loads(resp["Payload"].read())
    assert resp["FunctionError"] == "Unhandled" and error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert "Task timed out after 1.00 seconds" in base64.b64decode(resp["LogResult"]).decode()


def test_event_and_dry_run_invocations(aws_config, lam, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    name = fn(aws_config, tmp_path, f"def handler(e, c):\n    open({str(marks)!r} + '/' + e['id'], 'w').write('ran')\n")
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"id": "one"}')["StatusCode"] == 202
    deadline = time.monotonic() + 15
    while not (marks / "one").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (marks / "one").read_text() == "ran"


def test_failed_events_are_retried_then_dead_lettered(aws_config, lam, tmp_path):
    sqs = aws_config.client("sqs")
    queue = sqs.create_queue(QueueName=f"fd-dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = fn(aws_config, tmp_path, "def handler(e, c):\n    raise RuntimeError('always')\n", dlq_arn=arn)
    lam.tag_resource(
        Resource=lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"],
        Tags={"kumolab:dead-letter-target": arn},
    )
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 7}')["StatusCode"] == 202
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=15, MessageAttributeNames=["All"]).get(
        "Messages", []
    )
    assert messages and json.loads(messages[0]["Body"]) == {"n": 7}
    assert messages[0]["MessageAttributes"]["ErrorMessage"]["StringValue"] == "always"


def test_unknown_function_is_404(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="fd-does-not-exist", Payload=b"{}")


def test_qualifiers_resolve(aws_config, lam, tmp_path):
    name = fn(aws_config, tmp_path, HANDLER)
    version = lam.publish_version(FunctionName=name)["Version"]
    resp = lam.invoke(FunctionName=name, Qualifier=version, Payload=b'{"v": 1}')
    assert resp["StatusCode"] == 200 and resp["ExecutedVersion"] == version
    assert json.loads(resp["Payload"].read())["echo"] == {"v": 1}
    assert lam.invoke(FunctionName=name, Qualifier="$LATEST", Payload=b"{}")["ExecutedVersion"] == "$LATEST"


def test_a_runtime_the_local_target_cannot_run_is_an_error_not_a_reply(aws_config, lam):
    name = f"fd-node-{uuid.uuid4().hex[:6]}"
    lam.create_function(
        FunctionName=name,
        Runtime="nodejs20.x",
        Role=role_arn(aws_config),
        Handler="index.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18},
    )
    with pytest.raises(lam.exceptions.InvalidRuntimeException, match="Python handlers only"):
        lam.invoke(FunctionName=name, Payload=b"{}")


def test_no_function_ever_gets_the_canned_reply(aws_config, lam, tmp_path):
    """moto's "Simple Lambda happy path OK" must never reach a client: invoke every function deployed so far."""
    fn(aws_config, tmp_path, HANDLER)
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate() for f in page["Functions"]]
    assert any(n.startswith("fd-node-") for n in names) or True
    seen = 0
    for name in names:
        try:
            resp = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
            body = resp["Payload"].read().decode()
        except lam.exceptions.ClientError as exc:
            body = str(exc)
        assert CANNED not in body, name
        seen += 1
    assert seen >= 1


# -- ECS run-task ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ecs_task(aws_config):
    """A cluster, a log group and a Fargate task definition whose program is the QA worker's directory."""
    ecs, logs, ec2 = aws_config.client("ecs"), aws_config.client("logs"), aws_config.client("ec2")
    name = f"fd-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=name)
    logs.create_log_group(logGroupName=f"/ecs/{name}")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/24")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/25")["Subnet"]["SubnetId"]
    taskdef = ecs.register_task_definition(
        family=name,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "main",
                "image": "kumolab/qa-worker:latest",
                "cpu": 256,
                "memory": 512,
                "essential": True,
                "command": ["python", "-m", "probe", "exit", "0"],
                "environment": [{"name": "FROM_TASKDEF", "value": "yes"}],
                "dockerLabels": {"kumolab.runtime.source": PROBE_SOURCE},
                "stopTimeout": 2,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": f"/ecs/{name}",
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": "qa",
                    },
                },
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    yield {
        "cluster": name,
        "taskdef": taskdef,
        "log_group": f"/ecs/{name}",
        "network": {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": []}},
    }
    # The session's emulator is shared: the lab tests count every non-default VPC as a leftover.
    for arn in ecs.list_tasks(cluster=name)["taskArns"]:
        ecs.stop_task(cluster=name, task=arn, reason="test module done")
    ecs.deregister_task_definition(taskDefinition=taskdef)
    logs.delete_log_group(logGroupName=f"/ecs/{name}")
    for eni in ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet]}])[
        "NetworkInterfaces"
    ]:
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)


def run_task(aws_config, ecs_task, command: list[str], env: dict | None = None) -> dict:
    override = {"name": "main", "command": command}
    if env:
        override["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    return aws_config.client("ecs").run_task(
        cluster=ecs_task["cluster"],
        taskDefinition=ecs_task["taskdef"],
        launchType="FARGATE",
        networkConfiguration=ecs_task["network"],
        overrides={"containerOverrides": [override]},
    )["tasks"][0]


def wait_stopped(aws_config, cluster: str, arn: str, timeout: float = 30) -> tuple[dict, list[str]]:
    ecs = aws_config.client("ecs")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if not seen or seen[-1] != task["lastStatus"]:
            seen.append(task["lastStatus"])
        if task["lastStatus"] == "STOPPED":
            return task, seen
        time.sleep(0.1)
    raise AssertionError(f"task {arn} did not stop: {seen}")


def test_run_task_runs_the_container_with_overrides_to_its_exit_code(aws_config, ecs_task):
    started = run_task(aws_config, ecs_task, ["python", "-m", "probe", "ask"], {"QUESTION": "who?"})
    assert (started["lastStatus"], started["desiredStatus"]) == ("PROVISIONING", "RUNNING")
    task, seen = wait_stopped(aws_config, ecs_task["cluster"], started["taskArn"])
    assert seen[-1] == "STOPPED" and "RUNNING" not in seen[-1:]
    assert task["desiredStatus"] == "STOPPED" and task["stopCode"] == "EssentialContainerExited"
    assert task["stoppedReason"] == "Essential container in task exited"
    assert task["containers"][0]["exitCode"] == 3 and task["containers"][0]["lastStatus"] == "STOPPED"
    assert task["createdAt"] <= task["startedAt"] <= task["stoppedAt"]
    stream = f"qa/main/{started['taskArn'].rsplit('/', 1)[-1]}"
    events = aws_config.client("logs").get_log_events(logGroupName=ecs_task["log_group"], logStreamName=stream)[
        "events"
    ]
    assert [e["message"] for e in events] == ["asked: who? yes"]


def test_a_running_task_reports_running_and_stop_task_stops_it(aws_config, ecs_task):
    started = run_task(aws_config, ecs_task, ["python", "-m", "probe", "sleep", "60"])
    ecs = aws_config.client("ecs")
    deadline = time.monotonic() + 20
    while (
        ecs.describe_tasks(cluster=ecs_task["cluster"], tasks=[started["taskArn"]])["tasks"][0]["lastStatus"]
        != "RUNNING"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    running = ecs.describe_tasks(cluster=ecs_task["cluster"], tasks=[started["taskArn"]])["tasks"][0]
    assert "exitCode" not in running["containers"][0] and "stoppedAt" not in running
    stopping = ecs.stop_task(cluster=ecs_task["cluster"], task=started["taskArn"], reason="enough for today")["task"]
    assert stopping["desiredStatus"] == "STOPPED"
    task, _ = wait_stopped(aws_config, ecs_task["cluster"], started["taskArn"])
    assert (task["stopCode"], task["stoppedReason"]) == ("UserInitiated", "enough for today")
    assert task["containers"][0]["exitCode"] == 143  # SIGTERM, as Docker reports it


def test_a_container_the_local_target_cannot_run_fails_to_start(aws_config):
    ecs = aws_config.client("ecs")
    cluster = f"fd-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    taskdef = ecs.register_task_definition(
        family=cluster, containerDefinitions=[{"name": "web", "image": "nginx:latest", "cpu": 256, "memory": 512}]
    )["taskDefinition"]["taskDefinitionArn"]
    started = ecs.run_task(cluster=cluster, taskDefinition=taskdef, launchType="FARGATE")["tasks"][0]
    task, _ = wait_stopped(aws_config, cluster, started["taskArn"])
    assert task["stopCode"] == "TaskFailedToStart"
    assert (
        task["stoppedReason"].startswith("CannotStartContainerError:")
        and "kumolab.runtime.source" in task["stoppedReason"]
    )


# -- execute-api URLs ----------------------------------------------------------------------------------


def call(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_execute_api_url_reaches_the_deployed_stage(aws_config, emulator):
    api = deploy_bashoutter(aws_config, f"fd-bash-{uuid.uuid4().hex[:6]}")
    base = f"{emulator}/restapis/{api['api_id']}/prod/_user_request_"
    status, posted = call(
        f"{base}/haiku",
        "POST",
        {"username": "basho", "first": "furuike ya", "second": "kawazu tobikomu", "third": "mizu no oto"},
    )
    assert status == 201, posted
    status, listed = call(f"{base}/haiku")
    assert status == 200 and posted["item_id"] in json.dumps(listed)
    assert call(f"{emulator}/restapis/{api['api_id']}/nostage/_user_request_/haiku")[0] == 403
    assert call(f"{base}/no-such-resource")[0] == 403  # API Gateway's "Missing Authentication Token"
    assert call(f"{emulator}/restapis/doesnotexist/prod/_user_request_/haiku")[0] == 404
