"""AWS Batch and Step Functions on the emulator endpoint, with nothing but boto3: jobs run as processes with
Batch's environment and lifecycle, and state machines run with the States Language's semantics (Task with
``batch:submitJob.sync`` and ``lambda:invoke``, Retry, Catch with ResultPath, Choice, InputPath/OutputPath)
under their role's permissions.

The job program is ``tests/support/batch_probe`` (it writes its AWS_BATCH_* variables to S3 and can fail the
first attempts); the Lambda a tiny handler zipped here.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from support.network import delete_vpc

from kumolab.local.runtime.lambda_invoke import artifact_dir
from kumolab.local.runtime.package import package

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

TRUST = {
    "batch": "ecs-tasks.amazonaws.com",
    "states": "states.amazonaws.com",
    "lambda": "lambda.amazonaws.com",
}
FLAKY_HANDLER = """
import os, json
COUNT = {"n": 0}
def handler(event, context):
    COUNT["n"] += 1
    if event.get("fail") == "always":
        raise ValueError("no good: " + json.dumps(event))
    return {"seen": event, "calls": COUNT["n"]}
"""


def _role(iam, name: str, service: str, statements: list[dict]) -> str:
    arn = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
            }
        ),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="least-privilege",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    return arn


def wait_job(batch, job_id: str, timeout: float = 120) -> tuple[dict, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {seen} after {timeout} s")


def wait_execution(sfn, arn: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.3)
    raise AssertionError(f"execution {arn} still RUNNING after {timeout} s")


@pytest.fixture(scope="module")
def lab(aws):
    name = f"bsr-{uuid.uuid4().hex[:6]}"
    iam, s3, batch, lam = aws("iam"), aws("s3"), aws("batch"), aws("lambda")
    bucket = f"{name}-bucket"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
    account = aws("sts").get_caller_identity()["Account"]
    job_role = _role(
        iam,
        f"{name}-job",
        TRUST["batch"],
        [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/probe/*"}],
    )
    service_role = _role(
        iam,
        f"{name}-service",
        "batch.amazonaws.com",
        [{"Effect": "Allow", "Action": "ec2:DescribeSubnets", "Resource": "*"}],
    )
    vpc = aws("ec2").create_vpc(CidrBlock="10.47.0.0/24")["Vpc"]["VpcId"]
    subnet = aws("ec2").create_subnet(VpcId=vpc, CidrBlock="10.47.0.0/25")["Subnet"]["SubnetId"]
    group = aws("ec2").create_security_group(GroupName=name, Description="batch probe", VpcId=vpc)["GroupId"]
    env = batch.create_compute_environment(
        computeEnvironmentName=name,
        type="MANAGED",
        serviceRole=service_role,
        computeResources={"type": "FARGATE", "maxvCpus": 4, "subnets": [subnet], "securityGroupIds": [group]},
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
    )["jobQueueArn"]
    definition = batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "kumolab.local/batch-probe:local-process",
            "command": ["python", "-m", "batch_probe", "Ref::bucket"],
            "jobRoleArn": job_role,
            "environment": [{"name": "NOTE", "value": "from the definition"}],
            "resourceRequirements": [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
        },
        parameters={"bucket": bucket},
        retryStrategy={"attempts": 3},
        tags={"kumolab.runtime.source": "tests/support/batch_probe"},
    )["jobDefinitionArn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("flaky.py", FLAKY_HANDLER)
    fn_role = _role(
        iam, f"{name}-fn", TRUST["lambda"], [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]
    )
    function = None
    for _ in range(20):
        try:
            function = lam.create_function(
                FunctionName=f"{name}-fn",
                Runtime="python3.12",
                Role=fn_role,
                Handler="flaky.handler",
                Code={"ZipFile": buf.getvalue()},
                Timeout=10,
            )["FunctionArn"]
            break
        except lam.exceptions.InvalidParameterValueException:
            time.sleep(1)  # the role is not assumable yet (IAM propagation, as on AWS)
    assert function
    states_role = _role(
        iam,
        f"{name}-states",
        TRUST["states"],
        [
            {
                "Effect": "Allow",
                "Action": ["batch:SubmitJob", "batch:DescribeJobs", "batch:TerminateJob"],
                "Resource": [
                    queue,
                    definition.rsplit(":", 1)[0] + ":*",
                    f"arn:aws:batch:ap-northeast-1:{account}:job/*",
                ],
            },
            {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function},
        ],
    )
    time.sleep(1)
    yield {
        "name": name,
        "bucket": bucket,
        "queue": queue,
        "definition": definition,
        "function": function,
        "states_role": states_role,
        "account": account,
    }
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    batch.delete_job_queue(jobQueue=queue)
    batch.update_compute_environment(computeEnvironment=env, state="DISABLED")
    batch.delete_compute_environment(computeEnvironment=env)
    delete_vpc(aws("ec2"), vpc)


def probe(s3, bucket: str, job_id: str, attempt: int = 1) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=f"probe/{job_id}-{attempt}.json")["Body"].read())


def test_an_array_job_runs_each_child_with_its_index(lab, aws):
    batch, s3 = aws("batch"), aws("s3")
    parent = batch.submit_job(
        jobName="array",
        jobQueue=lab["queue"],
        jobDefinition=lab["definition"],
        arrayProperties={"size": 3},
        containerOverrides={"environment": [{"name": "NOTE", "value": "overridden"}]},
    )
    job, seen = wait_job(batch, parent["jobId"])
    assert job["status"] == "SUCCEEDED", job
    assert seen[-1] == "SUCCEEDED" and ("RUNNING" in seen or "PENDING" in seen), seen
    assert job["arrayProperties"]["size"] == 3 and job["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    indexes = set()
    for index in range(3):
        child_id = f"{parent['jobId']}:{index}"
        child = batch.describe_jobs(jobs=[child_id])["jobs"][0]
        assert child["status"] == "SUCCEEDED" and child["container"]["exitCode"] == 0
        assert child["arrayProperties"]["index"] == index and len(child["attempts"]) == 1
        got = probe(s3, lab["bucket"], child_id)
        assert got["AWS_BATCH_JOB_ID"] == child_id and got["AWS_BATCH_JOB_ATTEMPT"] == "1"
        assert got["AWS_BATCH_JOB_ARRAY_SIZE"] == "3" and got["NOTE"] == "overridden"
        assert got["AWS_BATCH_JQ_NAME"] == lab["name"] and got["AWS_BATCH_CE_NAME"] == lab["name"]
        indexes.add(int(got["AWS_BATCH_JOB_ARRAY_INDEX"]))
    assert indexes == {0, 1, 2}
    listed = batch.list_jobs(arrayJobId=parent["jobId"])["jobSummaryList"]
    assert sorted(j["jobId"] for j in listed) == [f"{parent['jobId']}:{i}" for i in range(3)]
    stream = batch.describe_jobs(jobs=[f"{parent['jobId']}:0"])["jobs"][0]["container"]["logStreamName"]
    events = aws("logs").get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    assert any(e["message"].startswith("probe ") for e in events)


def test_a_failing_attempt_is_retried_and_each_attempt_is_recorded(lab, aws):
    batch, s3 = aws("batch"), aws("s3")
    job_id = batch.submit_job(
        jobName="flaky",
        jobQueue=lab["queue"],
        jobDefinition=lab["definition"],
        containerOverrides={"environment": [{"name": "SUCCEED_FROM_ATTEMPT", "value": "2"}]},
    )["jobId"]
    job, seen = wait_job(batch, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [3, 0]
    assert probe(s3, lab["bucket"], job_id, 2)["AWS_BATCH_JOB_ATTEMPT"] == "2"
    failing = batch.submit_job(
        jobName="bad",
        jobQueue=lab["queue"],
        jobDefinition=lab["definition"],
        containerOverrides={
            "environment": [{"name": "SUCCEED_FROM_ATTEMPT", "value": "9"}, {"name": "EXIT_CODE", "value": "5"}]
        },
    )["jobId"]
    job, _ = wait_job(batch, failing)
    assert job["status"] == "FAILED" and job["container"]["exitCode"] == 5
    assert len(job["attempts"]) == 3 and job["statusReason"] == "Essential container in task exited"


def test_a_program_outside_the_repository_is_not_run(lab, aws):
    batch = aws("batch")
    bad = batch.register_job_definition(
        jobDefinitionName=f"{lab['name']}-nosource",
        type="container",
        containerProperties={"image": "x", "command": ["python", "-m", "batch_probe"], "vcpus": 1, "memory": 512},
    )["jobDefinitionArn"]
    job, _ = wait_job(batch, batch.submit_job(jobName="nosource", jobQueue=lab["queue"], jobDefinition=bad)["jobId"])
    assert job["status"] == "FAILED" and "kumolab.runtime.source" in job["statusReason"]


# -- Step Functions: the Lab 6 sweep pipeline, run by the emulator ---------------------------------------------

SWEEP_DEFINITION = REPO / "files" / "stepfunctions" / "batch_sweep.asl.json"
AGGREGATE_HANDLER = REPO / "files" / "lambda" / "batch" / "aggregate.py"
BEST = {"lr": 0.01, "batch_size": 64}  # sweep_probe's peak


def sweep_definition(substitutions: dict[str, str], retry_interval: int = 1) -> str:
    """The lab's definition with its DefinitionSubstitutions filled in, and its retry intervals shortened."""
    text = SWEEP_DEFINITION.read_text()
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text, "a placeholder of the definition was not substituted"
    definition = json.loads(text)
    for state in definition["States"].values():
        for retrier in state.get("Retry", []):
            retrier["IntervalSeconds"] = retry_interval
    return json.dumps(definition)


def history(sfn, arn: str) -> list[dict]:
    events = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events


def entered(events: list[dict]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


@pytest.fixture(scope="module")
def sweep(lab, aws):
    """Two state machines from the lab's definition: one whose array job succeeds, one whose child 1 always fails."""
    iam, batch, lam, sfn = aws("iam"), aws("batch"), aws("lambda"), aws("stepfunctions")
    name, bucket = lab["name"], lab["bucket"]
    job_role = batch.describe_job_definitions(jobDefinitions=[lab["definition"]])["jobDefinitions"][0][
        "containerProperties"
    ]["jobRoleArn"]
    definitions = {}
    for kind, environment in (("ok", []), ("bad", [{"name": "FAIL_INDEX", "value": "1"}])):
        definitions[kind] = batch.register_job_definition(
            jobDefinitionName=f"{name}_sweep_{kind}",
            type="container",
            platformCapabilities=["FARGATE"],
            containerProperties={
                "image": "kumolab.local/sweep-probe:local-process",
                "command": ["python", "-m", "sweep_probe"],
                "jobRoleArn": job_role,
                "environment": environment,
                "resourceRequirements": [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
            },
            tags={"kumolab.runtime.source": "tests/support/sweep_probe"},
        )["jobDefinitionArn"]
    # Packaged as the playbook packages it: the local runtime runs the zip whose hash the function was deployed with.
    code = package(AGGREGATE_HANDLER.parent, [AGGREGATE_HANDLER.name], artifact_dir() / f"{name}-aggregate.zip")
    fn_role = _role(
        iam,
        f"{name}-agg",
        TRUST["lambda"],
        [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/*"},
        ],
    )
    function = None
    for _ in range(20):
        try:
            function = lam.create_function(
                FunctionName=f"{name}-aggregate",
                Runtime="python3.12",
                Role=fn_role,
                Handler="aggregate.handler",
                Code={"ZipFile": Path(code["path"]).read_bytes()},
                Timeout=30,
            )["FunctionArn"]
            break
        except lam.exceptions.InvalidParameterValueException:
            time.sleep(1)  # the role is not assumable yet (IAM propagation, as on AWS)
    assert function
    states_role = _role(
        iam,
        f"{name}-sweep-states",
        TRUST["states"],
        [
            {
                "Effect": "Allow",
                "Action": ["batch:SubmitJob", "batch:DescribeJobs", "batch:TerminateJob"],
                "Resource": [
                    lab["queue"],
                    f"arn:aws:batch:ap-northeast-1:{lab['account']}:job-definition/{name}_sweep_*",
                    f"arn:aws:batch:ap-northeast-1:{lab['account']}:job/*",
                ],
            },
            {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function},
        ],
    )
    time.sleep(1)
    machines = {}
    for kind, job_definition in definitions.items():
        machines[kind] = sfn.create_state_machine(
            name=f"{name}-sweep-{kind}",
            roleArn=states_role,
            definition=sweep_definition(
                {
                    "JobNamePrefix": f"{name}-sweep",
                    "JobQueue": lab["queue"],
                    "JobDefinition": job_definition,
                    "ResultsBucket": bucket,
                    "ResultsPrefix": "probe/sweeps",
                    "AggregateFunction": function,
                    "Metric": "accuracy",
                    "Goal": "max",
                }
            ),
        )["stateMachineArn"]
    yield {"machines": machines, "function": function}
    for arn in machines.values():
        sfn.delete_state_machine(stateMachineArn=arn)


def test_start_execution_runs_the_sweep_array_job_then_the_aggregation_lambda(lab, sweep, aws):
    sfn, s3, batch = aws("stepfunctions"), aws("s3"), aws("batch")
    started = time.monotonic()
    arn = sfn.start_execution(stateMachineArn=sweep["machines"]["ok"], name="ok-1", input=json.dumps({"size": 4}))[
        "executionArn"
    ]
    execution = wait_execution(sfn, arn)
    elapsed = time.monotonic() - started
    assert execution["status"] == "SUCCEEDED", (execution, history(sfn, arn))
    output = json.loads(execution["output"])
    # Succeed's OutputPath is the Aggregate state's ResultSelector output: the report the Lambda really computed.
    assert output["status"] == "complete" and output["completed"] == 4
    assert output["best"]["config"] == BEST and output["best"]["index"] == 3
    assert output["report"] == f"s3://{lab['bucket']}/probe/sweeps/ok-1/report.json"
    report = json.loads(s3.get_object(Bucket=lab["bucket"], Key="probe/sweeps/ok-1/report.json")["Body"].read())
    assert sorted(r["index"] for r in report["results"]) == [0, 1, 2, 3]
    # Step Functions marks what it submits; the child saw it (the .sync integration's environment variable).
    assert {r["managed_by"] for r in report["results"]} == {"STARTED_BY_STEP_FUNCTIONS"}
    job = batch.describe_jobs(jobs=[report["job_id"]])["jobs"][0]
    assert job["jobName"] == f"{lab['name']}-sweep-ok-1" and job["status"] == "SUCCEEDED"
    assert job["arrayProperties"]["size"] == 4

    events = history(sfn, arn)
    types = [e["type"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    for kind in ("TaskStateEntered", "TaskScheduled", "TaskSubmitted", "TaskSucceeded", "TaskStateExited"):
        assert kind in types, (kind, types)
    assert entered(events) == ["RunSweep", "Aggregate", "AllConfigurationsDone", "SweepSucceeded"]
    succeeded = [e["taskSucceededEventDetails"] for e in events if e["type"] == "TaskSucceeded"]
    assert [d["resourceType"] + ":" + d["resource"] for d in succeeded] == ["batch:submitJob.sync", "lambda:invoke"]
    batch_output = json.loads(succeeded[0]["output"])  # the .sync task's result: the DescribeJobs job
    assert batch_output["JobId"] == report["job_id"] and batch_output["Status"] == "SUCCEEDED"
    assert json.loads(succeeded[1]["output"])["StatusCode"] == 200
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert elapsed < 60, f"the sweep took {elapsed:.1f} s"


def test_a_failing_array_job_is_retried_then_caught_and_reported(lab, sweep, aws):
    sfn, s3, batch = aws("stepfunctions"), aws("s3"), aws("batch")
    arn = sfn.start_execution(stateMachineArn=sweep["machines"]["bad"], name="bad-1", input=json.dumps({"size": 2}))[
        "executionArn"
    ]
    execution = wait_execution(sfn, arn)
    assert execution["status"] == "FAILED", (execution, history(sfn, arn))
    assert execution["error"] == "Sweep.Failed"
    cause = json.loads(execution["cause"])  # CausePath: the caught error's Cause, the failed DescribeJobs job
    assert cause["Status"] == "FAILED" and cause["ArrayProperties"]["StatusSummary"]["FAILED"] == 1

    events = history(sfn, arn)
    types = [e["type"] for e in events]
    failed = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert [f["error"] for f in failed] == ["States.TaskFailed", "States.TaskFailed"]  # the try and one retry
    assert entered(events) == ["RunSweep", "ReportFailure", "SweepFailed"]
    assert types[-1] == "ExecutionFailed"
    assert events[-1]["executionFailedEventDetails"]["error"] == "Sweep.Failed"
    jobs = [
        j
        for status in ("SUCCEEDED", "FAILED")
        for j in batch.list_jobs(jobQueue=lab["queue"], jobStatus=status)["jobSummaryList"]
        if j["jobName"] == f"{lab['name']}-sweep-bad-1" and ":" not in j["jobId"]  # parents (moto lists children too)
    ]
    assert len(jobs) == 2 and {j["status"] for j in jobs} == {"FAILED"}  # Retry submitted the array job again
    report = json.loads(s3.get_object(Bucket=lab["bucket"], Key="probe/sweeps/bad-1/report.json")["Body"].read())
    assert report["status"] == "failed" and report["error"]["Error"] == "States.TaskFailed"
    assert json.loads(report["error"]["Cause"])["JobId"] in {j["jobId"] for j in jobs}


def test_a_task_runs_under_the_state_machine_role_and_is_denied_what_it_lacks(lab, sweep, aws):
    """The module's first role may invoke only its own function: invoking the aggregator is AccessDenied, as on AWS
    (the interpreter's calls are signed with the state machine's role, which the emulator enforces)."""
    sfn = aws("stepfunctions")
    definition = {
        "StartAt": "Aggregate",
        "States": {
            "Aggregate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": sweep["function"], "Payload": {"bucket": lab["bucket"], "prefix": "x"}},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=f"{lab['name']}-denied", roleArn=lab["states_role"], definition=json.dumps(definition)
    )["stateMachineArn"]
    try:
        arn = sfn.start_execution(stateMachineArn=machine, name="denied-1")["executionArn"]
        execution = wait_execution(sfn, arn)
        assert execution["status"] == "FAILED" and execution["error"] == "Lambda.AccessDeniedException", execution
        assert "lambda:InvokeFunction" in execution["cause"] and lab["name"] in execution["cause"]
        assert [e["type"] for e in history(sfn, arn)][-2:] == ["TaskFailed", "ExecutionFailed"]
    finally:
        sfn.delete_state_machine(stateMachineArn=machine)
