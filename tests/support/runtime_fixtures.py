"""Helpers for tests: deploy functions, tables and the Bashoutter API straight through boto3.

The playbooks are the real deployment path (and the integration tests run them); these helpers let
unit tests of the runtime and the handlers set up the same resources in milliseconds instead of the
~1.2 s per Ansible task.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.lambda_invoke import artifact_dir
from kumolab.local.runtime.package import package
from kumolab.paths import REPO_ROOT

OPENAPI = REPO_ROOT / "files" / "api" / "bashoutter.openapi.yaml"
BASHOUTTER_SRC = REPO_ROOT / "files" / "lambda" / "bashoutter"
BASHOUTTER_FUNCTIONS = ("get_haiku", "post_haiku", "patch_haiku", "delete_haiku")
#: What each function's role may do on the table (playbooks/bashoutter.yml's ``actions``).
BASHOUTTER_ACTIONS = {
    "get_haiku": ["dynamodb:Scan"],
    "post_haiku": ["dynamodb:PutItem"],
    "patch_haiku": ["dynamodb:UpdateItem"],
    "delete_haiku": ["dynamodb:DeleteItem"],
}
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def role_arn(aws: AwsConfig, name: str = "kumolab-test-lambda") -> str:
    iam = aws.client("iam")
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]


def policy_role(aws: AwsConfig, name: str, statements: list[dict]) -> str:
    """A function role of its own with ``statements`` as its inline policy (the emulator enforces it for the
    function's code: fidelity rule iam-role-authorization)."""
    arn = role_arn(aws, name)
    aws.client("iam").put_role_policy(
        RoleName=name,
        PolicyName="least-privilege",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    return arn


def until_assumable(call, timeout: float = 20.0):
    """``call()``, retried while a new role cannot be assumed yet (IAM propagation, fidelity rule iam-propagation)."""
    import time

    import botocore.exceptions

    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            if "cannot be assumed" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def deploy_function(
    aws: AwsConfig,
    name: str,
    source: Path,
    include: list[str],
    handler: str,
    env: dict | None = None,
    timeout: int = 10,
    memory: int = 128,
    dlq_arn: str | None = None,
    statements: list[dict] | None = None,
) -> str:
    """Deploy ``name``; its role is the shared test role, or one of its own allowing ``statements``."""
    zipped = package(source, include, artifact_dir() / f"{name}.zip")
    code = Path(zipped["path"]).read_bytes()
    client = aws.client("lambda")
    role = policy_role(aws, name, statements) if statements else role_arn(aws)
    kwargs = dict(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler=handler,
        Timeout=timeout,
        MemorySize=memory,
        Environment={"Variables": env or {}},
    )
    if dlq_arn:
        kwargs["DeadLetterConfig"] = {"TargetArn": dlq_arn}
    try:
        client.get_function(FunctionName=name)
        client.update_function_code(FunctionName=name, ZipFile=code)
        return until_assumable(
            lambda: client.update_function_configuration(
                **{k: v for k, v in kwargs.items() if k != "Runtime"} | {"Runtime": "python3.13"}
            )
        )["FunctionArn"]
    except client.exceptions.ResourceNotFoundException:
        return until_assumable(lambda: client.create_function(Code={"ZipFile": code}, **kwargs))["FunctionArn"]


def create_haiku_table(aws: AwsConfig, name: str) -> None:
    ddb = aws.client("dynamodb")
    try:
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "item_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
        )
    except ddb.exceptions.ResourceInUseException:
        pass


def render_openapi(region: str, function_arns: dict) -> dict:
    """The OpenAPI file with its placeholders filled the way the playbook's template lookup does."""
    import jinja2

    text = jinja2.Template(OPENAPI.read_text()).render(aws_region=region, bashoutter_function_arns=function_arns)
    return yaml.safe_load(text)


def deploy_bashoutter(aws: AwsConfig, prefix: str, stage: str = "prod", throttle: tuple | None = None) -> dict:
    """Table, four functions and the REST API (named ``prefix``) with a deployed stage."""
    table = f"{prefix}-haiku"
    create_haiku_table(aws, table)
    table_arn = aws.client("dynamodb").describe_table(TableName=table)["Table"]["TableArn"]
    # Each function's role allows what playbooks/bashoutter.yml allows it: its one action on the table.
    arns = {
        fn: deploy_function(
            aws,
            f"{prefix}-{fn}",
            BASHOUTTER_SRC,
            [f"{fn}.py", "haiku_common.py"],
            f"{fn}.handler",
            {"TABLE_NAME": table},
            statements=[
                {"Sid": "HaikuTable", "Effect": "Allow", "Action": BASHOUTTER_ACTIONS[fn], "Resource": table_arn}
            ],
        )
        for fn in BASHOUTTER_FUNCTIONS
    }
    apigw = aws.client("apigateway")
    spec = render_openapi(aws.region, arns)
    api_id = apigw.create_rest_api(name=prefix, description=spec["info"]["description"])["id"]
    apigw.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(spec).encode())
    deployment = apigw.create_deployment(restApiId=api_id, stageName=stage)
    if throttle:
        apigw.update_stage(
            restApiId=api_id,
            stageName=stage,
            patchOperations=[
                {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(throttle[0])},
                {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(throttle[1])},
            ],
        )
    return {"table": table, "function_arns": arns, "api_id": api_id, "deployment": deployment["id"]}
