"""library/kumolab_lambda_concurrency.py against the emulator (security review M3): amazon.aws's pattern -
set in check mode (changed, nothing set), set (changed), set again (not changed), change, remove in check
mode, remove, remove again (not changed); a function that does not exist is a clear error."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from cost_safety_support import aws_args, clients, run_module, start_emulator

NAME = "kumolab-concurrency-test"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("concurrency-emulator"))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def function(emulator):
    aws = clients(emulator.endpoint)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = aws("iam").create_role(RoleName=NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return event\n")
    from support.runtime_fixtures import until_assumable

    until_assumable(  # a role younger than a few seconds cannot be assumed yet (the iam-propagation rule)
        lambda: aws("lambda").create_function(
            FunctionName=NAME,
            Runtime="python3.13",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": buf.getvalue()},
        )
    )
    return aws("lambda")


def reserved(lam):
    return lam.get_function_concurrency(FunctionName=NAME).get("ReservedConcurrentExecutions")


def test_security_m3_reserved_concurrency_is_set_idempotently_and_removed(emulator, function):
    args = dict(aws_args(emulator.endpoint), function_name=NAME, reserved_concurrent_executions=2)
    check = run_module("kumolab_lambda_concurrency", args, check=True)
    assert check["changed"] and reserved(function) is None
    first = run_module("kumolab_lambda_concurrency", args)
    assert first["changed"] and first["reserved_concurrent_executions"] == 2 and reserved(function) == 2
    again = run_module("kumolab_lambda_concurrency", args)
    assert not again.get("failed") and not again["changed"], again
    changed = run_module("kumolab_lambda_concurrency", dict(args, reserved_concurrent_executions=3))
    assert changed["changed"] and reserved(function) == 3
    remove = dict(args, reserved_concurrent_executions=None)
    assert run_module("kumolab_lambda_concurrency", remove, check=True)["changed"] and reserved(function) == 3
    assert run_module("kumolab_lambda_concurrency", remove)["changed"] and reserved(function) is None
    assert not run_module("kumolab_lambda_concurrency", remove)["changed"]


def test_a_missing_function_is_a_clear_error(emulator):
    result = run_module(
        "kumolab_lambda_concurrency",
        dict(aws_args(emulator.endpoint), function_name="kumolab-nope", reserved_concurrent_executions=1),
    )
    assert result.get("failed") and "does not exist" in result["msg"], result
