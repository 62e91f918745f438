"""The States Language semantics Lab 6's state machine relies on, as the embedded default runs them.

The interpreter is moto's (``moto.stepfunctions.parser``, see :mod:`kumolab.local.step_functions`), run here in
process (``mock_aws`` with ``execute_state_machine``) with the two fixes the emulator installs: Batch's casing
(without it the Batch tests fail with ``States.Runtime``) and ``.sync`` retries. Batch is moto's "simple"
backend (a job ends at once, SUCCEEDED, or FAILED under ``MOTO_SIMPLE_BATCH_FAIL_AFTER``); the emulator's real
job runs are in tests/integration/test_batch_jobs_runtime.py. Each test cites the section of the Amazon States
Language specification (https://states-language.net/spec.html) whose rule it checks. Every result comes from a
real execution, read back through DescribeExecution and GetExecutionHistory.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

import boto3
import pytest
from moto import mock_aws

from kumolab.local.step_functions import install_batch_casing, install_sync_without_token

REGION = "ap-northeast-1"
ROLE = "arn:aws:iam::123456789012:role/kumolab-test-states"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False}}):
        install_batch_casing()
        install_sync_without_token()
        yield lambda service: boto3.client(service, region_name=REGION)


def run(aws, definition: dict, payload: dict | None = None, timeout: float = 30) -> tuple[dict, list[dict]]:
    sfn = aws("stepfunctions")
    arn = sfn.create_state_machine(name=f"t-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution_arn = sfn.start_execution(stateMachineArn=arn, name="run-1", input=json.dumps(payload or {}))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout
    while (execution := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still RUNNING"
        time.sleep(0.05)
    return execution, sfn.get_execution_history(executionArn=execution_arn)["events"]


def output(execution: dict):
    assert execution["status"] == "SUCCEEDED", execution
    return json.loads(execution["output"])


def one_state(state: dict, name: str = "S") -> dict:
    return {"StartAt": name, "States": {name: state}}


@pytest.fixture
def queue(aws):
    """A Batch queue and job definition of moto's simple backend (jobs end at once)."""
    iam, ec2, batch = aws("iam"), aws("ec2"), aws("batch")
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/24")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/25")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="sweep", Description="sweep", VpcId=vpc)["GroupId"]
    env = batch.create_compute_environment(
        computeEnvironmentName="sweep_ce",
        type="MANAGED",
        serviceRole=role,
        computeResources={"type": "FARGATE", "maxvCpus": 4, "subnets": [subnet], "securityGroupIds": [group]},
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(
        jobQueueName="sweep_q",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env}],
    )["jobQueueArn"]
    definition = batch.register_job_definition(
        jobDefinitionName="sweep_d",
        type="container",
        containerProperties={"image": "x", "command": ["true"], "vcpus": 1, "memory": 512},
    )["jobDefinitionArn"]
    return {"JobQueue": queue, "JobDefinition": definition}


def batch_task(queue: dict, **fields) -> dict:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": {"JobName": "sweep", "ArrayProperties": {"Size": 2}, **queue},
        **fields,
    }


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def at(event: dict) -> float:
    stamp = event["timestamp"]
    return stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)


# -- Pass, Succeed, Fail ------------------------------------------------------------------------------------------


def test_pass_state_puts_its_result_at_result_path_and_keeps_the_input(aws):
    """Spec, "Pass State": Result is the state's output, "filtered by ResultPath"; "ResultPath": "$.b" writes it
    into the input (section "ResultPath": "the state's input ... with the result at the path")."""
    execution, events = run(
        aws, one_state({"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.b", "End": True}), {"a": 0}
    )
    assert output(execution) == {"a": 0, "b": {"x": 1}}
    assert types(events)[0] == "ExecutionStarted" and types(events)[-1] == "ExecutionSucceeded"
    assert "PassStateEntered" in types(events) and "PassStateExited" in types(events)


def test_result_path_null_discards_the_result(aws):
    """Spec, "ResultPath": "If the value of ResultPath is null, that means that the state's result is discarded
    and its raw input becomes its output"."""
    execution, _ = run(aws, one_state({"Type": "Pass", "Result": 7, "ResultPath": None, "End": True}), {"a": 1})
    assert output(execution) == {"a": 1}


def test_succeed_state_ends_the_execution_with_its_output_path(aws):
    """Spec, "Succeed State": terminates the state machine successfully; it may have InputPath and OutputPath."""
    definition = {
        "StartAt": "Done",
        "States": {"Done": {"Type": "Succeed", "OutputPath": "$.report"}, "Never": {"Type": "Pass", "End": True}},
    }
    execution, events = run(aws, definition, {"report": {"best": 3}, "noise": True})
    assert output(execution) == {"best": 3}
    assert "SucceedStateEntered" in types(events) and "PassStateEntered" not in types(events)


def test_fail_state_fails_the_execution_with_its_error_and_cause(aws):
    """Spec, "Fail State": stops the execution and marks it as a failure, with "Error" and "Cause"."""
    execution, events = run(aws, one_state({"Type": "Fail", "Error": "Sweep.Incomplete", "Cause": "3 of 4"}))
    assert execution["status"] == "FAILED"
    assert (execution["error"], execution["cause"]) == ("Sweep.Incomplete", "3 of 4")
    assert events[-1]["type"] == "ExecutionFailed"
    assert events[-1]["executionFailedEventDetails"] == {"error": "Sweep.Incomplete", "cause": "3 of 4"}


def test_fail_state_cause_path_reads_the_cause_from_the_input(aws):
    """Spec, "Fail State": "CausePath" (and "ErrorPath") give the cause (error) as a path into the state's input."""
    definition = one_state({"Type": "Fail", "Error": "Sweep.Failed", "CausePath": "$.error.Cause"})
    execution, _ = run(aws, definition, {"error": {"Error": "States.TaskFailed", "Cause": "job 42 FAILED"}})
    assert (execution["error"], execution["cause"]) == ("Sweep.Failed", "job 42 FAILED")


# -- Input and output processing ---------------------------------------------------------------------------------


def test_input_path_parameters_and_output_path_apply_in_order(aws):
    """Spec, "Input and Output Processing": InputPath selects the input, Parameters (keys ending ".$" are paths,
    "$$" the context object) build the effective input, OutputPath selects the output."""
    state = {
        "Type": "Pass",
        "InputPath": "$.sweep",
        "Parameters": {
            "size.$": "$.size",
            "fixed": "x",
            "execution.$": "$$.Execution.Name",
            "nested": {"lr.$": "$.lr"},
        },
        "ResultPath": "$.built",
        "OutputPath": "$.built",
        "End": True,
    }
    execution, _ = run(aws, one_state(state), {"sweep": {"size": 4, "lr": 0.01}, "other": 1})
    got = output(execution)
    assert got["size"] == 4 and got["fixed"] == "x" and got["nested"] == {"lr": 0.01}
    assert got["execution"] == "run-1"


def test_intrinsic_functions_format_and_string_to_json(aws):
    """Spec, "Intrinsic Functions": States.Format fills "{}" with its arguments in order; States.StringToJson
    parses a JSON string."""
    state = {
        "Type": "Pass",
        "Parameters": {
            "prefix.$": "States.Format('sweeps/{}/{}', $.lab, $.run)",
            "config.$": "States.StringToJson($.raw)",
        },
        "End": True,
    }
    execution, _ = run(aws, one_state(state), {"lab": "batch", "run": "r1", "raw": '{"lr": 0.1, "bs": [32, 64]}'})
    assert output(execution) == {"prefix": "sweeps/batch/r1", "config": {"lr": 0.1, "bs": [32, 64]}}


# -- Choice ----------------------------------------------------------------------------------------------------


CHOICE = {
    "StartAt": "C",
    "States": {
        "C": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.status", "StringEquals": "complete"},
                        {"Variable": "$.completed", "NumericEqualsPath": "$.size"},
                        {"Not": {"Variable": "$.best", "IsNull": True}},
                    ],
                    "Next": "Good",
                },
                {
                    "Or": [
                        {"Variable": "$.completed", "NumericLessThan": 1},
                        {"Variable": "$.status", "StringEquals": "failed"},
                    ],
                    "Next": "Bad",
                },
                {"Variable": "$.completed", "NumericGreaterThanEquals": 1, "Next": "Partial"},
            ],
            "Default": "Other",
        },
        "Good": {"Type": "Pass", "Result": {"branch": "good"}, "End": True},
        "Bad": {"Type": "Pass", "Result": {"branch": "bad"}, "End": True},
        "Partial": {"Type": "Pass", "Result": {"branch": "partial"}, "End": True},
        "Other": {"Type": "Pass", "Result": {"branch": "default"}, "End": True},
    },
}


@pytest.mark.parametrize(
    ("payload", "branch"),
    [
        ({"status": "complete", "completed": 4, "size": 4, "best": {"i": 3}}, "good"),
        ({"status": "complete", "completed": 4, "size": 4, "best": None}, "partial"),  # Not IsNull fails
        ({"status": "complete", "completed": 3, "size": 4, "best": {"i": 3}}, "partial"),  # NumericEqualsPath fails
        ({"status": "complete", "completed": 0, "size": 4, "best": None}, "bad"),  # Or: first operand
        ({"status": "failed", "completed": 2, "size": 4, "best": None}, "bad"),  # Or: second operand
        ({"status": "incomplete", "completed": -1.5, "size": 4, "best": None}, "bad"),
        ({"status": "x", "completed": 0.5, "size": 4, "best": None}, "bad"),  # 0.5 < 1: numbers, not integers
    ],
)
def test_choice_rules_take_the_first_matching_branch(aws, payload, branch):
    """Spec, "Choice State" / "Choice Rules": rules are evaluated in order and the first match wins; And, Or and
    Not combine rules; StringEquals, NumericEqualsPath, NumericLessThan, NumericGreaterThanEquals, IsNull."""
    execution, _ = run(aws, CHOICE, payload)
    assert output(execution) == {"branch": branch}


def test_choice_without_a_match_takes_the_default(aws):
    """Spec, "Choice State": "Default" names the state to go to when no Choice Rule matches."""
    execution, events = run(aws, CHOICE, {"status": "x", "size": 1})  # no $.completed: every numeric rule fails
    assert output(execution) == {"branch": "default"}
    assert [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e] == ["C", "Other"]


# -- Task: batch:submitJob.sync ------------------------------------------------------------------------------


def test_batch_sync_output_is_the_described_job_in_step_functions_casing(aws, queue):
    """Spec, "Task State": the result is the resource's output; ResultSelector ("Input and Output Processing")
    builds a new result from it with ".$" paths. AWS's batch:submitJob.sync returns the DescribeJobs job with
    PascalCase keys (JobId, Status, ArrayProperties.Size) and takes the Parameters in that casing."""
    state = batch_task(
        queue,
        ResultSelector={"JobId.$": "$.JobId", "Status.$": "$.Status", "Size.$": "$.ArrayProperties.Size"},
        ResultPath="$.sweep",
        End=True,
    )
    execution, events = run(aws, one_state(state), {"run": 1})
    got = output(execution)
    assert got["run"] == 1 and got["sweep"]["Status"] == "SUCCEEDED" and got["sweep"]["Size"] == 2
    job = aws("batch").describe_jobs(jobs=[got["sweep"]["JobId"]])["jobs"][0]
    assert job["jobName"] == "sweep" and job["arrayProperties"]["size"] == 2
    assert types(events)[:6] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSubmitted",
        "TaskSucceeded",
    ]


def test_a_failed_batch_job_is_states_task_failed_and_each_retry_submits_again(aws, queue, monkeypatch):
    """Spec, "Retrying after error": a retrier matching the error (States.TaskFailed) runs the state again up to
    MaxAttempts more times, IntervalSeconds before the first retry and BackoffRate times longer before each next
    one; then the error propagates. (That a retry waits for its own job, not a task token, needs a job that is still
    running at the first poll: the integration test's failing sweep checks it.)"""
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    state = batch_task(
        queue,
        Retry=[{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0}],
        End=True,
    )
    execution, events = run(aws, one_state(state))
    assert execution["status"] == "FAILED" and execution["error"] == "States.TaskFailed"
    failed = [e for e in events if e["type"] == "TaskFailed"]
    assert [e["taskFailedEventDetails"]["error"] for e in failed] == ["States.TaskFailed"] * 3
    assert json.loads(failed[0]["taskFailedEventDetails"]["cause"])["Status"] == "FAILED"
    scheduled = [at(e) for e in events if e["type"] == "TaskScheduled"]
    gaps = [b - a for a, b in zip(scheduled, scheduled[1:], strict=False)]
    assert len(scheduled) == 3 and gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps  # 1 s, then 1 s x 2.0


def test_max_delay_seconds_caps_the_backoff(aws, queue, monkeypatch):
    """Spec, "Retrying after error": "MaxDelaySeconds" is the maximum time a retrier waits, whatever BackoffRate
    computes (here 1 s, then 1 s instead of 5 s)."""
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    retrier = {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 5.0}
    execution, events = run(aws, one_state(batch_task(queue, Retry=[dict(retrier, MaxDelaySeconds=1)], End=True)))
    scheduled = [at(e) for e in events if e["type"] == "TaskScheduled"]
    assert execution["status"] == "FAILED" and len(scheduled) == 3
    assert scheduled[2] - scheduled[1] < 3.5, scheduled  # capped at 1 s (5 s uncapped)


def test_a_retrier_that_does_not_match_leaves_the_error_to_catch(aws, queue, monkeypatch):
    """Spec, "Retrying after error" and "Fallback states": retriers and catchers are tried in order, the first whose
    ErrorEquals names the error (or States.ALL) applies; a caught error's output is {"Error", "Cause"} placed at the
    catcher's ResultPath in the state's input, and the execution goes on at its Next."""
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    definition = {
        "StartAt": "Sweep",
        "States": {
            "Sweep": batch_task(
                queue,
                Retry=[{"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 3}],
                Catch=[
                    {"ErrorEquals": ["States.Timeout"], "Next": "Wrong"},
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Report"},
                ],
                Next="Wrong",
            ),
            "Report": {"Type": "Pass", "End": True},
            "Wrong": {"Type": "Fail", "Error": "Unexpected"},
        },
    }
    execution, events = run(aws, definition, {"size": 2})
    got = output(execution)
    assert got["size"] == 2 and got["error"]["Error"] == "States.TaskFailed"
    assert json.loads(got["error"]["Cause"])["Status"] == "FAILED"
    assert types(events).count("TaskScheduled") == 1  # the retrier did not match: no retry


def test_task_timeout_seconds_fails_the_state_with_states_timeout(aws, queue, monkeypatch):
    """Spec, "Task State": "TimeoutSeconds": if the task runs longer, it fails with States.Timeout."""
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "3")  # the simple backend's SubmitJob takes 3 s
    started = time.monotonic()
    execution, events = run(aws, one_state(batch_task(queue, TimeoutSeconds=1, End=True)))
    assert execution["status"] == "FAILED" and execution["error"] == "States.Timeout"
    assert "TaskTimedOut" in types(events)
    assert time.monotonic() - started < 10


# -- the lab's definition ------------------------------------------------------------------------------------


def test_the_sweep_definition_is_valid_and_every_failure_reaches_the_failure_report(aws):
    """files/stepfunctions/batch_sweep.asl.json: its placeholders are the documented DefinitionSubstitutions, the
    interpreter accepts it (CreateStateMachine validates), and both Tasks catch States.ALL into ReportFailure,
    which ends in a Fail state with the caught Cause (spec, "Fallback states", "Fail State")."""
    import re

    from kumolab.paths import REPO_ROOT

    text = (REPO_ROOT / "files" / "stepfunctions" / "batch_sweep.asl.json").read_text()
    names = set(re.findall(r"\$\{(\w+)\}", text))
    assert names == {"JobNamePrefix", "JobQueue", "JobDefinition", "ResultsBucket", "ResultsPrefix"} | {
        "AggregateFunction",
        "Metric",
        "Goal",
    }
    for name in names:
        text = text.replace("${" + name + "}", "x")
    definition = json.loads(text)
    aws("stepfunctions").create_state_machine(name="sweep", definition=text, roleArn=ROLE)
    states = definition["States"]
    assert states["RunSweep"]["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    assert states["Aggregate"]["Resource"] == "arn:aws:states:::lambda:invoke"
    assert states["RunSweep"]["Retry"][0]["ErrorEquals"] == ["States.TaskFailed"]
    for task in ("RunSweep", "Aggregate"):
        assert states[task]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ReportFailure"}
        ]
    assert states[states["ReportFailure"]["Next"]] == {
        "Type": "Fail",
        "Error": "Sweep.Failed",
        "CausePath": "$.error.Cause",
    }
    assert states["AllConfigurationsDone"]["Default"] == "SweepIncomplete"
