"""Contract test: schemathesis drives the local stage from files/api/bashoutter.openapi.yaml.

The API is deployed to the emulator straight through boto3 (the same OpenAPI file the playbook uses)
and served by the runtime's stage server; schemathesis generates valid and invalid requests for every
operation (examples, coverage, fuzzing and stateful phases) and checks: no 5xx, only documented status
codes, content types, headers and bodies that match the spec, invalid input rejected.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.runtime_fixtures import OPENAPI, deploy_bashoutter

from kumolab.local.runtime.apigateway import ApiGatewayStage
from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.httpserve import serve
from kumolab.local.runtime.lambda_invoke import LambdaRuntime

pytestmark = pytest.mark.integration

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


@pytest.fixture(scope="module")
def stage_url(emulator):
    aws = AwsConfig.from_environment(region="ap-northeast-1")
    stack = deploy_bashoutter(aws, f"contract-{uuid.uuid4().hex[:6]}")
    runtime = LambdaRuntime(aws, max_workers=4)
    server = serve(ApiGatewayStage(aws, runtime, stack["api_id"], "prod"), 0)
    yield f"http://127.0.0.1:{server.server_address[1]}/prod"
    server.shutdown()
    runtime.shutdown()


def test_every_operation_conforms_to_the_openapi_file(stage_url, tmp_path):
    report = tmp_path / "schemathesis.json"
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            str(OPENAPI),
            "--url",
            stage_url,
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--seed",
            "20261123",
            "--workers",
            "1",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(report.read_text())
    cases, ops = result["test_cases"], result["operations"]
    print(
        f"\nschemathesis: {ops['tested']}/{ops['total']} operations, {cases['generated']} test cases, "
        f"{cases['with_failures']} with failures, {cases['errored']} errored; phases "
        f"{ {k: v.get('status') if isinstance(v, dict) else v for k, v in result['phases'].items()} }"
    )
    assert ops["tested"] == ops["total"] == 6
    assert cases["generated"] >= 100
    assert proc.returncode == 0 and cases["with_failures"] == 0 and not result["failures"], (
        f"errors: {result.get('errors')}\n" + proc.stdout[-6000:]
    )


def _get(url: str) -> tuple[int, dict, bytes]:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_stage_throttling_answers_429_beyond_the_burst(emulator):
    aws = AwsConfig.from_environment(region="ap-northeast-1")
    stack = deploy_bashoutter(aws, f"throttle-{uuid.uuid4().hex[:6]}", throttle=(0.5, 3))
    runtime = LambdaRuntime(aws, max_workers=2)
    server = serve(ApiGatewayStage(aws, runtime, stack["api_id"], "prod"), 0)
    try:
        statuses = [_get(f"http://127.0.0.1:{server.server_address[1]}/prod/haiku")[0] for _ in range(6)]
    finally:
        server.shutdown()
        runtime.shutdown()
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429, 429]


def test_a_misconfigured_function_is_a_502_like_api_gateway(emulator):
    aws = AwsConfig.from_environment(region="ap-northeast-1")
    stack = deploy_bashoutter(aws, f"broken-{uuid.uuid4().hex[:6]}")
    client = aws.client("lambda")
    client.update_function_configuration(
        FunctionName=stack["function_arns"]["get_haiku"], Environment={"Variables": {}}
    )
    client.update_function_configuration(FunctionName=stack["function_arns"]["post_haiku"], Handler="post_haiku.nope")
    runtime = LambdaRuntime(aws, max_workers=2)
    server = serve(ApiGatewayStage(aws, runtime, stack["api_id"], "prod"), 0)
    base = f"http://127.0.0.1:{server.server_address[1]}/prod"
    try:
        status, headers, body = _get(f"{base}/haiku")  # TABLE_NAME missing -> KeyError in the function
        assert status == 502 and json.loads(body) == {"message": "Internal server error"}
        assert headers["x-amzn-ErrorType"] == "InternalServerErrorException"
        import urllib.request

        req = urllib.request.Request(f"{base}/haiku", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("a missing handler must not succeed")
        except urllib.error.HTTPError as exc:
            assert exc.code == 502
    finally:
        server.shutdown()
        runtime.shutdown()
