"""The local target's trust boundary (review C2, L3): the emulator answers only the project's key, on its own Host.

Each test reproduces an attack of the security review (docs/security.md, "Local target") against the session's
emulator or a runtime server, and shows it refused.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid

import boto3
import pytest
from botocore.config import Config

from kumolab.local import guard, settings
from kumolab.paths import state_dir

REGION = "ap-northeast-1"


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def raw(port: int, request: bytes, timeout: float = 5) -> bytes:
    """Send ``request`` as is and return what comes back (the connection is closed by us after the reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data:
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = [
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ]
                    if length and len(body) >= length[0]:
                        break
        except TimeoutError:
            pass
        return data


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


@pytest.fixture(scope="module")
def own_keys(emulator):
    return settings.credentials(state_dir() / "emulator")


def foreign_client(emulator, service: str):
    """A client with a well-formed key pair that is not the project's."""
    return boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x" * 40, region_name=REGION
    ).client(service, endpoint_url=emulator, config=Config(retries={"max_attempts": 1}))


# -- the access key ------------------------------------------------------------------------------


def test_a_wrong_key_cannot_read_or_change_emulator_state(emulator, aws):
    name = f"sec-{uuid.uuid4().hex[:8]}"
    for call in (
        lambda c: c.describe_instances(),
        lambda c: c.import_key_pair(KeyName=name, PublicKeyMaterial=b"x"),
        lambda c: c.create_vpc(CidrBlock="10.99.0.0/24"),
    ):
        with pytest.raises(Exception) as info:
            call(foreign_client(emulator, "ec2"))
        assert "403" in str(info.value) or "InvalidClientTokenId" in str(info.value)
    ddb = foreign_client(emulator, "dynamodb")
    with pytest.raises(ddb.exceptions.ClientError, match="InvalidClientTokenId"):
        ddb.list_tables()
    assert name not in {k["KeyName"] for k in aws("ec2").describe_key_pairs()["KeyPairs"]}
    assert aws("ec2").describe_vpcs()  # the project's own key still works


def test_unsigned_requests_and_moto_api_need_the_project_key(emulator, own_keys):
    port = port_of(emulator)
    for method, path in (
        ("GET", "/moto-api/data.json"),
        ("POST", "/moto-api/reset"),
        ("POST", "/moto-api/reset-auth"),
        ("POST", "/moto-api/config"),
        ("GET", "/?Action=DescribeInstances&Version=2016-11-15"),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request(method, path, body=b"{}" if method == "POST" else None)
        resp = conn.getresponse()
        assert resp.status == 403, (method, path, resp.status)
        assert json.loads(resp.read())["__type"] in ("AccessDenied", "MissingAuthenticationToken")
    # The project's own CLI (the secret-key header) keeps using moto-api; the dashboard page stays the health check.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)  # moto dumps every backend: slow
    conn.request("GET", "/moto-api/data.json", headers={guard.SECRET_HEADER: own_keys["aws_secret_access_key"]})
    assert conn.getresponse().status != 403  # past the guard (moto's dump may answer 500 on a busy session)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/moto-api/")
    assert conn.getresponse().status == 200


def test_only_an_object_its_bucket_policy_makes_public_is_readable_without_a_key(emulator, aws):
    s3 = aws("s3")
    public, private = f"sec-pub-{uuid.uuid4().hex[:8]}", f"sec-priv-{uuid.uuid4().hex[:8]}"
    for bucket in (public, private):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=bucket, Key="index.html", Body=b"<p>hi</p>")
    s3.put_bucket_policy(
        Bucket=public,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{public}/*",
                    }
                ],
            }
        ),
    )

    def anonymous(method: str, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port_of(emulator), timeout=10)
        conn.request(method, path, body=b"x" if method == "PUT" else None)
        return conn.getresponse().status

    assert anonymous("GET", f"/{public}/index.html") == 200
    assert anonymous("GET", f"/{private}/index.html") == 403  # no policy for everyone
    assert anonymous("GET", f"/{public}/") == 403  # no anonymous listing
    assert anonymous("PUT", f"/{public}/other.html") == 403  # no anonymous writes


def test_a_presigned_url_with_another_key_is_refused(emulator, aws):
    bucket = f"sec-{uuid.uuid4().hex[:8]}"
    aws("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    aws("s3").put_object(Bucket=bucket, Key="k", Body=b"secret")
    url = foreign_client(emulator, "s3").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    conn = http.client.HTTPConnection("127.0.0.1", port_of(emulator), timeout=5)
    conn.request("GET", url.split(str(port_of(emulator)), 1)[1])
    assert conn.getresponse().status == 403
    own = aws("s3").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    conn = http.client.HTTPConnection("127.0.0.1", port_of(emulator), timeout=5)
    conn.request("GET", own.split(str(port_of(emulator)), 1)[1])
    assert conn.getresponse().read() == b"secret"


# -- CORS, Host, lengths -------------------------------------------------------------------------


def test_no_cors_for_another_origin(emulator, own_keys):
    conn = http.client.HTTPConnection("127.0.0.1", port_of(emulator), timeout=5)
    conn.request(
        "OPTIONS",
        "/",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,x-amz-target,content-type",
        },
    )
    resp = conn.getresponse()
    assert resp.getheader("Access-Control-Allow-Origin") is None
    conn = http.client.HTTPConnection("127.0.0.1", port_of(emulator), timeout=120)
    conn.request(
        "GET",
        "/moto-api/data.json",
        headers={"Origin": "https://evil.example", guard.SECRET_HEADER: own_keys["aws_secret_access_key"]},
    )
    resp = conn.getresponse()
    # Past the guard (403 is its refusal); moto's state dump may itself answer 500 once the session's emulator holds
    # objects it cannot serialise. Either way no CORS header.
    assert resp.status != 403 and resp.getheader("Access-Control-Allow-Origin") is None


def test_the_emulator_refuses_another_host_and_bad_lengths(emulator):
    port = port_of(emulator)
    assert status_of(raw(port, b"GET /moto-api/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")) == 421
    assert (
        status_of(
            raw(port, f"GET /moto-api/ HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n".encode())
        )
        == 421
    )
    assert (
        status_of(raw(port, f"GET /moto-api/ HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode()))
        == 200
    )
    for length in (b"-1", b"abc"):
        reply = raw(
            port,
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %s\r\nConnection: close\r\n\r\n"
            % (port, length),
        )
        assert status_of(reply) == 400, reply[:200]
    huge = guard.EMULATOR_MAX_BODY + 1
    reply = raw(
        port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (port, huge)
    )
    assert status_of(reply) == 413


def test_guard_turns_a_header_with_crlf_into_502():
    def app(environ, start_response):
        start_response("200 OK", [("X-Injected", "a\r\nSet-Cookie: x=1")])
        return [b"body"]

    seen = []
    wrapped = guard.EmulatorGuard(app, 1234, {"aws_access_key_id": "AKIAOWN", "aws_secret_access_key": "s"})
    body = wrapped(
        {
            "HTTP_HOST": "127.0.0.1:1234",
            "PATH_INFO": "/",
            "REQUEST_METHOD": "GET",
            "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKIAOWN/20261202/ap-northeast-1/ec2/aws4_request",
        },
        lambda status, headers, exc_info=None: seen.append((status, headers)),
    )
    assert seen[-1][0].startswith("502") and b"CR or LF" in b"".join(body)


# -- the runtime runs only the deployed code ---------------------------------------------------------

HANDLER = "def handler(event, context):\n    return {'ran': True}\n"


@pytest.fixture(scope="module")
def aws_config(emulator):
    from kumolab.local.runtime.aws import AwsConfig

    return AwsConfig.from_environment(region=REGION)


def deployed(aws_config, tmp_path, handler: str, env: dict | None = None) -> str:
    from support.runtime_fixtures import deploy_function

    name = f"sec-{uuid.uuid4().hex[:10]}"
    (tmp_path / "app.py").write_text(HANDLER)
    deploy_function(aws_config, name, tmp_path, ["app.py"], handler, env=env)
    return name


def test_a_handler_outside_the_functions_code_does_not_run(aws_config, tmp_path):
    marker = tmp_path / "pwned"
    lam = aws_config.client("lambda")
    name = deployed(aws_config, tmp_path, "app.handler")
    assert json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == {"ran": True}
    # The review's chain: the configuration (not the code) changed to a standard-library function.
    for handler in ("pty.spawn", "os.system", "subprocess.run"):
        lam.update_function_configuration(FunctionName=name, Handler=handler)
        time.sleep(1.5)  # the runtime reads a function's configuration again after 1 s (lambda_invoke config_ttl)
        resp = lam.invoke(FunctionName=name, Payload=json.dumps(["sh", "-c", f"id > {marker}"]).encode())
        error = json.loads(resp["Payload"].read())
        assert resp["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ImportModuleError", error
        assert "not part of the function's code" in error["errorMessage"]
        assert not marker.exists()


def test_a_function_whose_environment_sets_ld_preload_does_not_run(aws_config, tmp_path):
    from botocore.exceptions import ClientError

    marker = tmp_path / "ran"
    (tmp_path / "app.py").write_text(f"def handler(event, context):\n    open({str(marker)!r}, 'w').write('x')\n")
    from support.runtime_fixtures import deploy_function

    lam = aws_config.client("lambda")
    for variable in ("LD_PRELOAD", "PYTHONSTARTUP", "BASH_ENV"):
        name = f"sec-{uuid.uuid4().hex[:10]}"
        deploy_function(aws_config, name, tmp_path, ["app.py"], "app.handler", env={variable: str(tmp_path / "x.so")})
        with pytest.raises(ClientError) as info:
            lam.invoke(FunctionName=name, Payload=b"{}")
        assert variable in str(info.value) and "not allowed" in str(info.value)
        assert not marker.exists()


def test_the_ecs_runner_runs_only_the_labs_python_programs(tmp_path):
    from kumolab.local.process import ServiceError
    from kumolab.local.runtime.ecs import container_argv, container_environment, container_source
    from kumolab.paths import REPO_ROOT

    label = {"kumolab.runtime.source": "files/containers/qa_bot"}
    assert container_source({"name": "ok", "dockerLabels": label}) == REPO_ROOT / "files/containers/qa_bot"
    for escape in ("/tmp", "../..", "files/../../"):
        with pytest.raises(ServiceError, match="not inside the repository"):
            container_source({"name": "x", "dockerLabels": {"kumolab.runtime.source": escape}})
    source = REPO_ROOT / "files/containers/qa_bot"
    for argv in (["sh", "-c", "id"], ["/bin/bash"], ["env", "python"]):
        with pytest.raises(ServiceError, match="only Python container programs"):
            container_argv({"name": "x", "command": argv}, source)
    assert container_argv({"name": "ok", "command": ["python", "-m", "qa_worker"]}, source)[1:] == ["-m", "qa_worker"]
    assert container_argv({"name": "ok", "command": ["python", "-u", "-m", "qa_worker.ask", "c", "q"]}, source)
    # The residual of the security review: inline code and modules from elsewhere ran with the project's key.
    for argv in (
        ["python", "-c", "import os; os.system('id')"],
        ["python3", "-"],
        ["python", "-m", "http.server"],
        ["python", "-m", "pip", "install", "x"],
        ["python", "../../../tmp/x.py"],
        ["python", "-X", "importtime", "-m", "qa_worker"],
        ["python"],
    ):
        with pytest.raises(ServiceError, match="nothing was run"):
            container_argv({"name": "x", "command": argv}, source)

    class Target:
        def function_environment(self):
            return {"AWS_REGION": REGION}

    with pytest.raises(ServiceError, match="LD_PRELOAD"):
        container_environment(
            Target(),
            {"name": "x", "environment": [{"name": "LD_PRELOAD", "value": "/tmp/x.so"}]},
            REPO_ROOT / "files/containers/qa_bot",
        )


@pytest.mark.parametrize("command", [["sh", "-c", "touch {marker}"], ["python", "-c", "open('{marker}', 'w')"]])
def test_an_ecs_task_with_sh_c_does_not_run(aws_config, tmp_path, command):
    ecs = aws_config.client("ecs")
    cluster = f"sec-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    marker = tmp_path / "pwned"
    taskdef = ecs.register_task_definition(
        family=cluster,
        containerDefinitions=[
            {
                "name": "main",
                "image": "x",
                "cpu": 256,
                "memory": 512,
                "command": [part.format(marker=marker) for part in command],
                "dockerLabels": {"kumolab.runtime.source": "files/containers/qa_bot"},
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    arn = ecs.run_task(cluster=cluster, taskDefinition=taskdef, launchType="FARGATE")["tasks"][0]["taskArn"]
    import time

    deadline = time.monotonic() + 30
    while (task := ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0])["lastStatus"] != "STOPPED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert task["stopCode"] == "TaskFailedToStart" and "nothing was run" in task["stoppedReason"]
    assert not marker.exists()


# -- every loopback server of the runtime -----------------------------------------------------------


def test_a_runtime_server_refuses_another_host_bad_lengths_and_crlf_headers():
    from kumolab.local.runtime.httpserve import Response, serve

    def app(request):
        if request.path == "/split":
            return Response(200, b"x", [("X-Echo", "a\r\nSet-Cookie: evil=1")])
        return Response(200, b"ok")

    server = serve(app, 0)
    port = server.server_address[1]
    try:
        assert (
            status_of(raw(port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()))
            == 200
        )
        assert status_of(raw(port, b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")) == 421
        for length in (b"-1", b"abc", b"1e3"):
            reply = raw(port, b"POST / HTTP/1.1\r\nHost: localhost:%d\r\nContent-Length: %s\r\n\r\n" % (port, length))
            assert status_of(reply) == 400, reply
        reply = raw(port, b"POST / HTTP/1.1\r\nHost: localhost:%d\r\nContent-Length: 999999999\r\n\r\n" % port)
        assert status_of(reply) == 413
        reply = raw(port, f"GET /split HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        assert status_of(reply) == 502 and b"Set-Cookie" not in reply
    finally:
        server.shutdown()


# -- Cognito's unsigned sign-in surface (issue 15) ----------------------------------------------------


def test_only_cognitos_unsigned_sign_in_calls_and_pool_documents_pass_without_a_key():
    """InitiateAuth, RespondToAuthChallenge, SignUp and a pool's JWKS / OpenID configuration are unsigned on AWS;
    every other Cognito action (AdminCreateUser, ListUserPools, DeleteUserPool, ...) still needs the key."""
    keys = {"aws_access_key_id": "AKIAKUMOLABTEST00001", "aws_secret_access_key": "s" * 40}
    gate = guard.EmulatorGuard(lambda environ, start: [b""], 4566, keys)

    def environ(method: str, path: str, target: str | None = None, auth: str | None = None) -> dict:
        env = {"HTTP_HOST": "127.0.0.1:4566", "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""}
        if target:
            env["HTTP_X_AMZ_TARGET"] = target
        if auth:
            env["HTTP_AUTHORIZATION"] = auth
        return env

    def passes(env: dict) -> bool:
        try:
            gate.authorize(env)
        except guard.Refused as refused:
            assert refused.status == 403
            return False
        return True

    prefix = "AWSCognitoIdentityProviderService."
    for action in ("InitiateAuth", "RespondToAuthChallenge", "SignUp"):
        assert passes(environ("POST", "/", prefix + action)), action
    for document in ("jwks.json", "openid-configuration"):
        assert passes(environ("GET", f"/ap-northeast-1_AbC123xyz/.well-known/{document}")), document
    for action in ("AdminCreateUser", "AdminInitiateAuth", "ListUserPools", "DeleteUserPool", "CreateUserPoolClient"):
        assert not passes(environ("POST", "/", prefix + action)), action
    assert not passes(environ("POST", "/", "DynamoDB_20120810.ListTables"))
    assert not passes(environ("POST", "/sub/path", prefix + "InitiateAuth"))  # only at the service's root
    assert not passes(environ("PUT", "/ap-northeast-1_AbC123xyz/.well-known/jwks.json"))
    assert not passes(environ("GET", "/some-bucket/.well-known/jwks.json"))  # not a pool id: S3's, needs a key
    # A signed call with a foreign key is judged by its key, not let through as "unsigned sign-in".
    foreign = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/ap-northeast-1/cognito-idp/aws4_request"
    assert not passes(environ("POST", "/", prefix + "InitiateAuth", auth=foreign))


def test_a_page_may_call_cognitos_sign_in_across_origins_but_never_send_a_signature():
    """Cognito answers browsers' sign-in calls with CORS; the preflight never allows Authorization (review C2)."""
    keys = {"aws_access_key_id": "AKIAKUMOLABTEST00001", "aws_secret_access_key": "s" * 40}
    seen: list = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    def send(env: dict) -> tuple[str, dict]:
        base = {"HTTP_HOST": "127.0.0.1:4566", "PATH_INFO": "/", "QUERY_STRING": ""}
        body = guard.EmulatorGuard(app, 4566, keys)(dict(base, **env), lambda s, h, e=None: seen.append((s, dict(h))))
        list(body)
        return seen[-1]

    preflight = {
        "REQUEST_METHOD": "OPTIONS",
        "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
        "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "content-type,x-amz-target",
    }
    status, headers = send(preflight)
    assert status.startswith("200") and headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" not in headers["Access-Control-Allow-Headers"].lower()
    status, headers = send(dict(preflight, HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,authorization"))
    assert status.startswith("403") and "Access-Control-Allow-Origin" not in headers
    target = "AWSCognitoIdentityProviderService."
    status, headers = send({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": target + "InitiateAuth"})
    assert status.startswith("200") and headers.get("Access-Control-Allow-Origin") == "*"
    signed = f"AWS4-HMAC-SHA256 Credential={keys['aws_access_key_id']}/20260101/ap-northeast-1/cognito-idp/aws4_request"
    status, headers = send(
        {"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": target + "ListUserPools", "HTTP_AUTHORIZATION": signed}
    )
    assert status.startswith("200") and "Access-Control-Allow-Origin" not in headers  # signed calls: no CORS
