"""Lab 3 the textbook's way: one ECS task per question (``run-task`` with container overrides), against the
emulator endpoint with nothing but boto3.

The task definition is the QA lab's container (program ``files/containers/qa_bot``, Fargate, awsvpc,
``awslogs``) with a tiny model; each task runs ``python -m qa_worker.ask CONTEXT QUESTION``, writes its
answer to the answers table and exits. The script waits for STOPPED (the ``tasks_stopped`` waiter, as
on AWS), reads the container's exit code and then the answer.
"""

from __future__ import annotations

import uuid

import boto3
import pytest
from support.network import delete_vpc
from support.qa_fixtures import tiny_qa_model

REGION = "ap-northeast-1"
QUESTIONS = [
    ("Mount Fuji is the highest mountain in Japan, at 3,776 metres.", "How high is Mount Fuji?"),
    ("The Shinkansen opened in 1964, in time for the Tokyo Olympics.", "When did the Shinkansen open?"),
]


@pytest.fixture(scope="module")
def qa_lab(emulator, lab_env, tmp_path_factory):
    model = tiny_qa_model(tmp_path_factory.mktemp("tiny-qa-model"))
    session = boto3.session.Session(profile_name=lab_env["KUMOLAB_AWS_PROFILE"], region_name=REGION)
    ecs, ec2, ddb, logs = (session.client(s) for s in ("ecs", "ec2", "dynamodb", "logs"))
    name = f"qa-run-task-{uuid.uuid4().hex[:6]}"
    ddb.create_table(
        TableName=f"{name}-answers",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
    )
    logs.create_log_group(logGroupName=f"/ecs/{name}")
    ecs.create_cluster(clusterName=name)
    vpc = ec2.create_vpc(CidrBlock="10.43.0.0/24")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.43.0.0/25")["Subnet"]["SubnetId"]
    taskdef = ecs.register_task_definition(
        family=name,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="1024",
        memory="4096",
        containerDefinitions=[
            {
                "name": "qa-worker",
                "image": "kumolab/qa-worker:latest",
                "cpu": 1024,
                "memory": 4096,
                "essential": True,
                "command": ["python", "-m", "qa_worker"],
                "environment": [
                    {"name": "TABLE_NAME", "value": f"{name}-answers"},
                    {"name": "MODEL_DIR", "value": str(model)},
                    {"name": "MAX_LENGTH", "value": "128"},
                    {"name": "STRIDE", "value": "32"},
                ],
                "dockerLabels": {"kumolab.runtime.source": "files/containers/qa_bot"},
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
        "session": session,
        "cluster": name,
        "taskdef": taskdef,
        "table": f"{name}-answers",
        "network": {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [], "assignPublicIp": "ENABLED"}},
    }
    delete_vpc(ec2, vpc)


def ask_one_task_per_question(
    session, cluster: str, taskdef: str, table: str, network: dict, questions: list[tuple[str, str]]
) -> list[dict]:
    """What a student's script does: one task per question, wait for all to stop, read exit codes and answers."""
    ecs, ddb = session.client("ecs"), session.client("dynamodb")
    runs = []
    for context, question in questions:
        item_id = str(uuid.uuid4())
        task = ecs.run_task(
            cluster=cluster,
            taskDefinition=taskdef,
            launchType="FARGATE",
            networkConfiguration=network,
            overrides={
                "containerOverrides": [
                    {
                        "name": "qa-worker",
                        "command": ["python", "-m", "qa_worker.ask", context, question],
                        "environment": [{"name": "ITEM_ID", "value": item_id}],
                    }
                ]
            },
        )["tasks"][0]
        runs.append((task["taskArn"], item_id, question))
    arns = [arn for arn, _, _ in runs]
    ecs.get_waiter("tasks_stopped").wait(cluster=cluster, tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    described = {t["taskArn"]: t for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]}
    results = []
    for arn, item_id, question in runs:
        task = described[arn]
        item = ddb.get_item(TableName=table, Key={"item_id": {"S": item_id}}).get("Item")
        results.append(
            {
                "question": question,
                "exit_code": task["containers"][0].get("exitCode"),
                "last_status": task["lastStatus"],
                "stopped_reason": task.get("stoppedReason"),
                "answer": item["answer"]["S"] if item else None,
                "context": item["context"]["S"] if item else None,
            }
        )
    return results


def test_one_task_per_question_gets_every_answer(qa_lab):
    results = ask_one_task_per_question(
        qa_lab["session"], qa_lab["cluster"], qa_lab["taskdef"], qa_lab["table"], qa_lab["network"], QUESTIONS
    )
    print(results)
    for (context, _question), result in zip(QUESTIONS, results, strict=False):
        assert result["last_status"] == "STOPPED" and result["exit_code"] == 0, result
        assert result["stopped_reason"] == "Essential container in task exited"
        assert result["context"] == context and result["answer"] is not None and result["answer"] in context


def test_a_task_with_a_bad_question_exits_2_and_writes_nothing(qa_lab):
    results = ask_one_task_per_question(
        qa_lab["session"],
        qa_lab["cluster"],
        qa_lab["taskdef"],
        qa_lab["table"],
        qa_lab["network"],
        [("some context", " ")],
    )
    assert results[0]["exit_code"] == 2 and results[0]["answer"] is None
