"""The local serverless runtime: Lambda invocation, API Gateway stage, S3 website, ECS workers, packaging."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from support.runtime_fixtures import deploy_function

from kumolab.local.runtime.apigateway import ApiGatewayStage, Route
from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.httpserve import serve
from kumolab.local.runtime.lambda_invoke import CodeNotAvailable, LambdaRuntime
from kumolab.local.runtime.package import build_zip, package
from kumolab.local.runtime.website import S3Website, allows_anonymous_get


@pytest.fixture(scope="module")
def aws_config(emulator):
    return AwsConfig.from_environment(region="ap-northeast-1")


@pytest.fixture(scope="module")
def runtime(aws_config):
    rt = LambdaRuntime(aws_config, max_workers=4, config_ttl=0.0, retry_delays=(0.1, 0.1))
    yield rt
    rt.shutdown()


def fn(aws_config, tmp_path, source: str, handler="app.handler", **kwargs) -> str:
    name = f"rt-{uuid.uuid4().hex[:10]}"
    (tmp_path / "app.py").write_text(source)
    deploy_function(aws_config, name, tmp_path, ["app.py"], handler, **kwargs)
    return name


ECHO = """
import os, time
def handler(event, context):
    return {"event": event, "pid": os.getpid(), "name": context.function_name, "memory": context.memory_limit_in_mb,
            "request_id": context.aws_request_id, "remaining": context.get_remaining_time_in_millis(),
            "greeting": os.environ.get("GREETING"), "region": os.environ.get("AWS_REGION")}
"""


def test_invocation_gets_the_event_context_and_environment(aws_config, runtime, tmp_path):
    name = fn(aws_config, tmp_path, ECHO, env={"GREETING": "konnichiwa"}, timeout=7, memory=256)
    result = runtime.invoke(name, {"a": 1})
    assert result.status_code == 200 and result.function_error is None
    out = result.json()
    assert out["event"] == {"a": 1} and out["name"] == name and out["memory"] == "256"
    assert out["greeting"] == "konnichiwa" and out["region"] == "ap-northeast-1"
    assert 6000 < out["remaining"] <= 7000
    uuid.UUID(out["request_id"])


def test_warm_worker_is_reused_and_a_config_change_starts_a_fresh_one(aws_config, runtime, tmp_path):
    name = fn(aws_config, tmp_path, ECHO, env={"GREETING": "one"})
    first, second = runtime.invoke(name).json(), runtime.invoke(name).json()
    assert first["pid"] == second["pid"]
    aws_config.client("lambda").update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "two"}}
    )
    third = runtime.invoke(name).json()
    assert third["greeting"] == "two" and third["pid"] != first["pid"]


@pytest.mark.parametrize(
    "source, handler, error_type, message",
    [
        (
            "def handler(e, c): return 1",
            "missing_module.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing_module'",
        ),
        (
            "def handler(e, c): return 1",
            "app.nope",
            "Runtime.HandlerNotFound",
            "Handler 'nope' missing on module 'app'",
        ),
        (
            "import os\nTABLE = os.environ['TABLE_NAME']\ndef handler(e, c): return 1",
            "app.handler",
            "KeyError",
            "'TABLE_NAME'",
        ),
        ("def handler(e, c): raise ValueError('boom')", "app.handler", "ValueError", "boom"),
        ("def handler(e, c) return 1", "app.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"),
        ("def handler(e, c): return {1, 2}", "app.handler", "Runtime.MarshalError", "Unable to marshal response"),
    ],
)
def test_errors_are_reported_like_aws(aws_config, runtime, tmp_path, source, handler, error_type, message):
    name = fn(aws_config, tmp_path, source, handler=handler)
    result = runtime.invoke(name)
    assert result.status_code == 200 and result.function_error == "Unhandled"
    out = result.json()
    assert out["errorType"] == error_type and message in out["errorMessage"]


def test_timeout_kills_the_handler(aws_config, runtime, tmp_path):
    name = fn(aws_config, tmp_path, "import time\ndef handler(e, c): time.sleep(30)", timeout=1)
    started = time.monotonic()
    result = runtime.invoke(name)
    assert time.monotonic() - started < 5
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result.json()["errorMessage"]
    ok = fn(aws_config, tmp_path, "def handler(e, c): return 'fine'", timeout=1)
    assert runtime.invoke(ok).json() == "fine"


def test_failed_event_invocations_go_to_the_dead_letter_queue_after_two_retries(aws_config, runtime, tmp_path):
    sqs = aws_config.client("sqs")
    queue = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    counter = tmp_path / "attempts"
    source = f"def handler(e, c):\n    open({str(counter)!r}, 'a').write('x')\n    raise RuntimeError('always fails')\n"
    name = fn(aws_config, tmp_path, source)
    aws_config.client("lambda").tag_resource(Resource=runtime.spec(name).arn, Tags={"kumolab:dead-letter-target": arn})
    result = runtime.invoke(name, {"order": 7}, invocation_type="Event")
    assert result.status_code == 202 and not result.payload
    messages = []
    deadline = time.monotonic() + 15
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"], WaitTimeSeconds=1).get(
            "Messages", []
        )
    assert messages, "nothing reached the dead-letter queue"
    assert json.loads(messages[0]["Body"]) == {"order": 7}
    assert "always fails" in messages[0]["MessageAttributes"]["ErrorMessage"]["StringValue"]
    assert counter.read_text() == "xxx"  # the first attempt and two retries


def test_successful_event_invocation_leaves_the_queue_empty(aws_config, runtime, tmp_path):
    marker = tmp_path / "ran"
    name = fn(aws_config, tmp_path, f"def handler(e, c):\n    open({str(marker)!r}, 'w').write('ok')\n")
    assert runtime.invoke(name, {}, invocation_type="Event").status_code == 202
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "ok"


def test_code_that_was_not_packaged_locally_is_refused(aws_config, runtime):
    client = aws_config.client("lambda")
    from support.runtime_fixtures import role_arn

    name = f"rt-{uuid.uuid4().hex[:10]}"
    client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role_arn(aws_config),
        Handler="app.handler",
        Code={"ZipFile": build_zip({"app.py": f"# {uuid.uuid4()}\n".encode()})},
    )
    with pytest.raises(CodeNotAvailable, match="not available locally"):
        runtime.invoke(name)


def test_packages_are_byte_for_byte_reproducible(tmp_path):
    (tmp_path / "a.py").write_text("A = 1\n")
    first = package(tmp_path, ["a.py"], tmp_path / "out" / "a.zip")
    time.sleep(1.1)
    (tmp_path / "a.py").touch()
    second = package(tmp_path, ["a.py"], tmp_path / "out" / "a.zip")
    assert first["changed"] and not second["changed"] and first["code_sha256"] == second["code_sha256"]


def test_vendored_distributions_come_with_what_they_require_and_stay_reproducible(tmp_path):
    import subprocess
    import sys
    import zipfile

    (tmp_path / "h.py").write_text("import jwt\n\ndef handler(event, context):\n    return jwt.__version__\n")
    first = package(tmp_path, ["h.py"], tmp_path / "out" / "h.zip", vendor=["PyJWT", "cryptography"])
    second = package(tmp_path, ["h.py"], tmp_path / "out" / "h.zip", vendor=["PyJWT", "cryptography"])
    assert first["changed"] and not second["changed"] and first["code_sha256"] == second["code_sha256"]
    assert first["files"] == ["h.py"] and first["vendored_files"] > 0
    names = zipfile.ZipFile(first["path"]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {"jwt", "cryptography", "cffi", "pycparser"} <= tops  # cryptography needs cffi, which needs pycparser
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.endswith("/RECORD")]
    # the unpacked zip imports PyJWT and signs with cryptography from itself (the runtime runs `python -I`)
    code = tmp_path / "code"
    zipfile.ZipFile(first["path"]).extractall(code)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import jwt, cryptography;"
        "from cryptography.hazmat.primitives.asymmetric import rsa;"
        "k = rsa.generate_private_key(public_exponent=65537, key_size=2048);"
        "t = jwt.encode({'sub': 'x'}, k, algorithm='RS256');"
        "assert jwt.decode(t, k.public_key(), algorithms=['RS256'])['sub'] == 'x';"
        "print(jwt.__file__, cryptography.__file__)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(code)], capture_output=True, text=True, check=True)
    assert all(path.startswith(str(code)) for path in out.stdout.split()), out.stdout
    with pytest.raises(FileNotFoundError, match="not installed"):
        package(tmp_path, ["h.py"], tmp_path / "out" / "x.zip", vendor=["no-such-distribution-kumolab"])


# -- API Gateway ------------------------------------------------------------------------------------


def test_a_lambda_authorizers_policy_allows_denies_or_leaves_out_a_method():
    from kumolab.local.runtime.apigateway import arn_like, policy_decision

    method = "arn:aws:execute-api:ap-northeast-1:123456789012:a1b2/prod/POST/haiku"
    allow_stage = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": method.rsplit("/", 2)[0] + "/*"}
    assert policy_decision({"Statement": [allow_stage]}, method) == "Allow"
    assert policy_decision({"Statement": [allow_stage]}, method.replace("/prod/", "/dev/")) == "None"
    deny = {"Effect": "Deny", "Action": ["execute-api:*"], "Resource": [method]}
    assert policy_decision({"Statement": [allow_stage, deny]}, method) == "Deny"  # an explicit deny wins
    assert policy_decision({"Statement": allow_stage}, method) == "Allow"  # one statement, not a list
    assert policy_decision({"Statement": [dict(allow_stage, Action="s3:GetObject")]}, method) == "None"
    assert policy_decision({}, method) == "None"
    # IAM's wildcards only: "?" is one character, brackets are literal (not fnmatch's character classes)
    assert arn_like("a1b2/prod", "a1b?/prod") and not arn_like("a1b2/prod", "a1b/prod")
    assert not arn_like("x1", "x[0-9]") and arn_like("x[0-9]", "x[0-9]")


def test_routes_prefer_literal_then_parameter_then_greedy():
    routes = [
        Route("/haiku/{item_id}", "a", ["haiku", "{item_id}"], {}),
        Route("/haiku/top", "b", ["haiku", "top"], {}),
        Route("/{proxy+}", "c", ["{proxy+}"], {}),
    ]

    def best(path):
        found = [(r.match(path.split("/")), r) for r in routes]
        return max(((m[0], m[1], r.path) for m, r in found if m), key=lambda x: x[0])

    assert best("haiku/top")[2] == "/haiku/top"
    assert best("haiku/42")[1:] == ({"item_id": "42"}, "/haiku/{item_id}")
    assert best("other/deep/path")[1:] == ({"proxy": "other/deep/path"}, "/{proxy+}")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1]",
        b'{"body": "x"}',
        b'{"statusCode": "abc"}',
        b'{"statusCode": 200, "body": {"a": 1}}',
        b'{"statusCode": 200, "headers": []}',
    ],
)
def test_malformed_proxy_results_are_502(payload):
    response = ApiGatewayStage._proxy_response(payload)
    assert response.status == 502 and json.loads(response.body) == {"message": "Internal server error"}


def test_proxy_result_headers_and_base64_bodies():
    response = ApiGatewayStage._proxy_response(
        json.dumps(
            {
                "statusCode": 201,
                "headers": {"X-One": "1"},
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
                "body": "aGk=",
                "isBase64Encoded": True,
            }
        ).encode()
    )
    assert response.status == 201 and response.body == b"hi"
    assert ("X-One", "1") in response.headers and ("Set-Cookie", "b=2") in response.headers


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_stage_serves_proxy_events_mock_preflight_and_403s(aws_config, runtime, tmp_path):
    name = fn(
        aws_config, tmp_path, "import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps(e)}\n"
    )
    arn = runtime.spec(name).arn
    api = aws_config.client("apigateway")
    api_id = api.create_rest_api(name=f"stage-{uuid.uuid4().hex[:6]}")["id"]
    uri = f"arn:aws:apigateway:ap-northeast-1:lambda:path/2015-03-31/functions/{arn}/invocations"
    spec = {
        "openapi": "3.0.1",
        "info": {"title": "t", "version": "1", "description": "t"},
        "paths": {
            "/items/{id}": {
                "post": {
                    "responses": {"200": {"description": "ok"}},
                    "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST", "uri": uri},
                },
                "options": {
                    # Declared, or API Gateway's importer refuses the mapping below (review B1).
                    "responses": {
                        "200": {
                            "description": "ok",
                            "headers": {"Access-Control-Allow-Origin": {"schema": {"type": "string"}}},
                        }
                    },
                    "x-amazon-apigateway-integration": {
                        "type": "mock",
                        "httpMethod": "OPTIONS",
                        "uri": "",
                        "requestTemplates": {"application/json": '{"statusCode": 200}'},
                        "responses": {
                            "default": {
                                "statusCode": "200",
                                "responseParameters": {"method.response.header.Access-Control-Allow-Origin": "'*'"},
                            }
                        },
                    },
                },
            }
        },
    }
    api.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(spec).encode())
    stage = ApiGatewayStage(aws_config, runtime, api_id, "prod", refresh_s=0)
    server = serve(stage, 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert http("POST", f"{base}/prod/items/1")[0] == 403  # no stage deployed yet
        api.create_deployment(restApiId=api_id, stageName="prod", variables={"color": "blue"})
        status, _, body = http(
            "POST", f"{base}/prod/items/a%20b?x=1&x=2&y=", b'{"k": 1}', {"Content-Type": "application/json"}
        )
        assert status == 200
        ev = json.loads(body)
        assert ev["resource"] == "/items/{id}" and ev["path"] == "/items/a b" and ev["httpMethod"] == "POST"
        assert ev["pathParameters"] == {"id": "a b"} and ev["queryStringParameters"] == {"x": "2", "y": ""}
        assert ev["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
        assert ev["body"] == '{"k": 1}' and ev["isBase64Encoded"] is False
        assert ev["stageVariables"] == {"color": "blue"} and ev["requestContext"]["stage"] == "prod"
        assert ev["headers"]["Content-Type"] == "application/json"
        assert http("POST", f"{base}/prod/items/1", b"\xff\xfe")[0] == 200
        status, headers, _ = http("OPTIONS", f"{base}/prod/items/1")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        status, _, body = http("GET", f"{base}/prod/items/1")
        assert status == 403 and json.loads(body) == {"message": "Missing Authentication Token"}
        assert http("POST", f"{base}/prod/nothing")[0] == 403
        assert http("POST", f"{base}/dev/items/1")[0] == 403
    finally:
        server.shutdown()


def test_stage_throttles_with_429(aws_config, runtime, tmp_path):
    from kumolab.local.runtime.apigateway import TokenBucket

    bucket = TokenBucket(rate=1, burst=3)
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]


# -- S3 website -------------------------------------------------------------------------------------


def test_website_index_error_document_content_types_and_policy(aws_config):
    s3 = aws_config.client("s3")
    bucket = f"site-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"<h1>home</h1>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="docs/index.html", Body=b"docs", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="app.js", Body=b"export {}", ContentType="text/javascript")
    s3.put_object(Bucket=bucket, Key="404.html", Body=b"lost", ContentType="text/html")
    server = serve(S3Website(aws_config, bucket), 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert http("GET", f"{base}/")[0] == 404  # no website configuration yet
        s3.put_bucket_website(
            Bucket=bucket,
            WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "404.html"}},
        )
        assert http("GET", f"{base}/")[0] == 403  # not public
        s3.put_bucket_policy(
            Bucket=bucket,
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{bucket}/*",
                        }
                    ],
                }
            ),
        )
        status, headers, body = http("GET", f"{base}/")
        assert (status, body) == (200, b"<h1>home</h1>") and headers["Content-Type"].startswith("text/html")
        assert http("GET", f"{base}/app.js")[1]["Content-Type"].startswith("text/javascript")
        assert http("GET", f"{base}/docs/")[2] == b"docs"
        status, headers, _ = http("GET", f"{base}/docs")
        assert status == 200  # urllib follows the 302 to /docs/
        assert http("GET", f"{base}/missing.png")[:3:2] == (404, b"lost")
        assert http("POST", f"{base}/")[0] == 405
    finally:
        server.shutdown()


def test_anonymous_read_needs_an_allow_for_everyone():
    allow = {
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]
    }
    assert allows_anonymous_get(allow, "b", "x.html")
    assert not allows_anonymous_get(allow, "other", "x.html")
    only_role = {"Statement": [dict(allow["Statement"][0], Principal={"AWS": "arn:aws:iam::1:role/r"})]}
    assert not allows_anonymous_get(only_role, "b", "x.html")
    denied = {"Statement": allow["Statement"] + [dict(allow["Statement"][0], Effect="Deny")]}
    assert not allows_anonymous_get(denied, "b", "x.html")


# -- Lambda Invoke API served by the runtime daemon ---------------------------------------------------


def test_boto3_can_invoke_through_the_runtime_endpoint(aws_config, runtime, tmp_path):
    from kumolab.local.runtime.server import lambda_api

    name = fn(aws_config, tmp_path, "def handler(e, c): return {'got': e}")
    bad = fn(aws_config, tmp_path, "def handler(e, c): raise KeyError('X')")
    keys = aws_config.session.get_credentials().get_frozen_credentials()
    server = serve(lambda_api(runtime, keys.access_key, keys.secret_key), 0)
    try:
        # The profile's keys; the Lambda endpoint is the runtime's (the rest would go to the emulator).
        client = aws_config.client("lambda", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}")
        resp = client.invoke(FunctionName=name, Payload=b'{"x": 1}')
        assert resp["StatusCode"] == 200 and json.loads(resp["Payload"].read()) == {"got": {"x": 1}}
        resp = client.invoke(FunctionName=bad, Payload=b"{}")
        assert resp["FunctionError"] == "Unhandled" and json.loads(resp["Payload"].read())["errorType"] == "KeyError"
        assert client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName="does-not-exist", Payload=b"{}")
    finally:
        server.shutdown()


def test_the_runtime_invoke_api_runs_nothing_for_another_key_or_an_unsigned_request(aws_config, runtime, tmp_path):
    """Security review C2: another account on the machine reaches loopback too; the port needs the profile's key."""
    import urllib.error
    import urllib.request

    import boto3

    from kumolab.local.runtime.cli import signed_request
    from kumolab.local.runtime.server import lambda_api

    marker = tmp_path / "ran"
    name = fn(aws_config, tmp_path, f"def handler(e, c):\n    open({str(marker)!r}, 'a').write('x')\n    return 1")
    keys = aws_config.session.get_credentials().get_frozen_credentials()
    server = serve(lambda_api(runtime, keys.access_key, keys.secret_key), 0)
    url = f"http://127.0.0.1:{server.server_address[1]}/2015-03-31/functions/{name}/invocations"
    try:
        with pytest.raises(urllib.error.HTTPError) as unsigned:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=30)
        assert unsigned.value.code == 403
        assert unsigned.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        stranger = boto3.session.Session(
            aws_access_key_id="AKIASTRANGER00000000", aws_secret_access_key="x" * 40, region_name=aws_config.region
        ).client("lambda", endpoint_url=url.split("/2015")[0])
        with pytest.raises(stranger.exceptions.ClientError) as wrong:
            stranger.invoke(FunctionName=name, Payload=b"{}")
        assert wrong.value.response["Error"]["Code"] == "UnrecognizedClientException"
        assert not marker.exists(), "nothing ran"
        with urllib.request.urlopen(signed_request(url, b"{}", {}, aws_config), timeout=30) as ok:
            assert ok.status == 200 and ok.read() == b"1"
        assert marker.read_text() == "x", "the signed request (what kumolab-runtime invoke sends) ran it once"
    finally:
        server.shutdown()


# -- ECS service workers ------------------------------------------------------------------------------


def test_ecs_service_workers_follow_desired_count(aws_config, tmp_path):
    from kumolab.local.runtime.ecs import EcsService

    program = tmp_path / "programs" / "sleeper"
    program.mkdir(parents=True)
    (program / "sleeper.py").write_text(
        "import os, time\nopen(os.environ['MARK_DIR'] + '/' + os.environ['ECS_TASK_INDEX'], 'w').write(os.getcwd())\ntime.sleep(120)\n"  # noqa: E501
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    ecs = aws_config.client("ecs")
    cluster = f"c{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    taskdef = ecs.register_task_definition(
        family=f"f{uuid.uuid4().hex[:6]}",
        containerDefinitions=[
            {
                "name": "worker",
                "image": "python:3.13-slim",
                "cpu": 256,
                "memory": 512,
                "command": ["python", "-m", "sleeper"],
                "environment": [{"name": "MARK_DIR", "value": str(marks)}],
                "dockerLabels": {"kumolab.runtime.source": "programs/sleeper"},
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName="svc", taskDefinition=taskdef, desiredCount=2)
    runner = EcsService(aws_config, cluster, "svc", repo_root=tmp_path)
    try:
        assert runner.sync()["started"] == 2
        deadline = time.monotonic() + 10
        while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(p.name for p in marks.iterdir()) == ["0", "1"]
        assert (marks / "0").read_text() == str(program)
        assert runner.sync() == {"desired": 2, "running": 2, "started": 0, "stopped": 0, "task_definition": taskdef}
        ecs.update_service(cluster=cluster, service="svc", desiredCount=1)
        state = runner.sync()
        assert (state["stopped"], state["running"]) == (1, 1)
    finally:
        runner.stop_all()
    assert runner.tasks() == []


# -- the emulator's fixes to moto (kumolab.local.moto_atomic) ----------------------------------------


def test_emulator_loses_no_concurrent_add(aws_config):
    """moto alone loses ADD updates under concurrency (seen: 994-999 of 1,000); the emulator must not."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.config import Config

    ddb = aws_config.client("dynamodb", config=Config(max_pool_connections=96))
    table = f"race-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
    )
    try:
        ddb.put_item(TableName=table, Item={"k": {"S": "a"}, "n": {"N": "0"}})

        def add(_):
            ddb.update_item(
                TableName=table,
                Key={"k": {"S": "a"}},
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

        with ThreadPoolExecutor(96) as pool:
            list(pool.map(add, range(1000)))
        assert ddb.get_item(TableName=table, Key={"k": {"S": "a"}})["Item"]["n"]["N"] == "1000"
    finally:
        ddb.delete_table(TableName=table)


def test_emulator_keeps_a_launch_templates_own_tags_out_of_its_data(aws):
    """AWS keeps CreateLaunchTemplate's TagSpecifications (the template's own tags) out of the version
    data; plain moto copies them in, which made amazon.aws.ec2_launch_template add a version on re-run."""
    ec2 = aws("ec2")
    instance_tags = [{"ResourceType": "instance", "Tags": [{"Key": "Role", "Value": "lab_host"}]}]
    for data in (
        {"InstanceMarketOptions": {"MarketType": "spot"}},
        {"InstanceType": "t3.micro", "TagSpecifications": instance_tags},
    ):
        name = f"fidelity-{uuid.uuid4().hex[:8]}"
        ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData=data,
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "Project", "Value": "kumolab"}]}],
        )
        try:
            template = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"][0]
            version = ec2.describe_launch_template_versions(LaunchTemplateName=name)["LaunchTemplateVersions"][0]
            assert template["Tags"] == [{"Key": "Project", "Value": "kumolab"}]
            assert version["LaunchTemplateData"].get("TagSpecifications") == data.get("TagSpecifications"), data
        finally:
            ec2.delete_launch_template(LaunchTemplateName=name)
