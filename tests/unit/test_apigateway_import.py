"""API Gateway on the emulator as on AWS: the import rules of PutRestApi, deployments as snapshots, and
library/kumolab_apigateway_import.py (real-AWS review B1 and M1).

Fidelity rules ``apigateway-import-validation`` and ``apigateway-deployment-snapshot``
(:mod:`kumolab.local.apigateway_import`); every client is a plain boto3 client on the session's emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import jinja2
import pytest
import yaml
from botocore.exceptions import ClientError

from kumolab.local import settings
from kumolab.local.apigateway_import import import_failure
from kumolab.paths import REPO_ROOT, state_dir

REGION = "ap-northeast-1"
ARNS = {
    fn: f"arn:aws:lambda:{REGION}:123456789012:function:kumolab-bashoutter-{fn}"
    for fn in ("get_haiku", "post_haiku", "patch_haiku", "delete_haiku")
}
#: files/api/bashoutter.openapi.yaml as it was at 406e919, the commit the real-AWS review read.
SPEC_406E919 = REPO_ROOT / "tests" / "support" / "data" / "bashoutter.openapi.406e919.yaml"
SPEC_NOW = REPO_ROOT / "files" / "api" / "bashoutter.openapi.yaml"


def render(path) -> str:
    return jinja2.Template(path.read_text()).render(aws_region=REGION, bashoutter_function_arns=ARNS)


def mock_api(header_value: str, declare: bool = True) -> dict:
    """One MOCK GET /ping whose response carries X-Version: header_value (declared, unless ``declare`` is false)."""
    headers = {"X-Version": {"schema": {"type": "string"}}} if declare else {}
    return {
        "openapi": "3.0.1",
        "info": {"title": "snapshot", "version": "1", "description": "d"},
        "paths": {
            "/ping": {
                "get": {
                    "responses": {"200": {"description": "ok", "headers": headers}},
                    "x-amazon-apigateway-integration": {
                        "type": "mock",
                        "httpMethod": "GET",
                        "uri": "",
                        "requestTemplates": {"application/json": '{"statusCode": 200}'},
                        "responses": {
                            "default": {
                                "statusCode": "200",
                                "responseParameters": {"method.response.header.X-Version": f"'{header_value}'"},
                            }
                        },
                    },
                }
            }
        },
    }


def execute(emulator: str, api_id: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{emulator}/restapis/{api_id}/prod/_user_request_{path}", timeout=30) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


# -- the import rules ---------------------------------------------------------------------------------


def test_b1_the_reviewed_spec_fails_the_import_rule_and_the_current_one_passes():
    """406e919's preflight mapped Access-Control-Max-Age without declaring it: AWS's exact import error."""
    old = import_failure(yaml.safe_load(render(SPEC_406E919)), fail_on_warnings=True)
    assert old is not None and old.startswith("Errors found during import:")
    assert (
        "Unable to put integration response on 'OPTIONS' for resource at path '/haiku': Invalid mapping expression "
        "specified: Validation Result: warnings : [], errors : [Invalid mapping expression parameter specified: "
        "method.response.header.Access-Control-Max-Age]"
    ) in old
    assert import_failure(yaml.safe_load(render(SPEC_NOW)), fail_on_warnings=True) is None


def test_b1_the_emulator_rejects_the_reviewed_spec_and_imports_the_current_one(aws):
    client = aws("apigateway")
    api_id = client.create_rest_api(name=f"b1-{uuid.uuid4().hex[:6]}")["id"]
    with pytest.raises(ClientError) as info:
        client.put_rest_api(restApiId=api_id, mode="overwrite", failOnWarnings=True, body=render(SPEC_406E919).encode())
    assert info.value.response["Error"]["Code"] == "BadRequestException"
    assert "method.response.header.Access-Control-Max-Age" in info.value.response["Error"]["Message"]
    client.put_rest_api(restApiId=api_id, mode="overwrite", failOnWarnings=True, body=render(SPEC_NOW).encode())
    assert "/haiku/{item_id}" in {r["path"] for r in client.get_resources(restApiId=api_id)["items"]}


def test_put_rest_api_rejects_a_mapping_to_an_undeclared_header(aws):
    client = aws("apigateway")
    api_id = client.create_rest_api(name=f"undeclared-{uuid.uuid4().hex[:6]}")["id"]
    with pytest.raises(ClientError) as info:
        client.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(mock_api("1", declare=False)).encode())
    error = info.value.response["Error"]
    assert error["Code"] == "BadRequestException" and error["Message"].startswith("Errors found during import:")
    assert "Invalid mapping expression parameter specified: method.response.header.X-Version" in error["Message"]
    with pytest.raises(ClientError, match="Errors found during import"):
        client.import_rest_api(failOnWarnings=False, body=json.dumps(mock_api("1", declare=False)).encode())


def test_import_warnings_fail_only_with_fail_on_warnings(aws):
    client = aws("apigateway")
    api_id = client.create_rest_api(name=f"warn-{uuid.uuid4().hex[:6]}")["id"]
    spec = mock_api("1")
    spec["paths"]["/bare"] = {"get": {"responses": {"200": {"description": "no integration"}}}}
    with pytest.raises(ClientError, match="Warnings found during import"):
        client.put_rest_api(restApiId=api_id, mode="overwrite", failOnWarnings=True, body=json.dumps(spec).encode())
    client.put_rest_api(restApiId=api_id, mode="overwrite", failOnWarnings=False, body=json.dumps(spec).encode())


# -- deployments are snapshots ---------------------------------------------------------------------


def test_the_stage_serves_the_deployed_snapshot_not_the_current_api(aws, emulator):
    client = aws("apigateway")
    api_id = client.create_rest_api(name=f"snap-{uuid.uuid4().hex[:6]}")["id"]
    client.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(mock_api("one")).encode())
    client.create_deployment(restApiId=api_id, stageName="prod")
    status, headers = execute(emulator, api_id, "/ping")
    assert status == 200 and headers.get("X-Version") == "one"

    client.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(mock_api("two")).encode())
    status, headers = execute(emulator, api_id, "/ping")
    assert status == 200 and headers.get("X-Version") == "one", "a PutRestApi without a deployment changed the stage"

    client.create_deployment(restApiId=api_id, stageName="prod")
    import time

    deadline = time.monotonic() + 10  # the stage re-reads its deployment every couple of seconds
    while time.monotonic() < deadline and execute(emulator, api_id, "/ping")[1].get("X-Version") != "two":
        time.sleep(0.5)
    assert execute(emulator, api_id, "/ping")[1].get("X-Version") == "two"


def test_get_export_of_a_stage_is_its_deployment(aws):
    client = aws("apigateway")
    api_id = client.create_rest_api(name=f"export-{uuid.uuid4().hex[:6]}")["id"]
    client.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(mock_api("one")).encode())
    client.create_deployment(restApiId=api_id, stageName="prod")
    client.put_rest_api(
        restApiId=api_id,
        mode="overwrite",
        body=json.dumps(dict(mock_api("two"), paths={"/other": mock_api("two")["paths"]["/ping"]})).encode(),
    )
    export = json.loads(
        client.get_export(
            restApiId=api_id, stageName="prod", exportType="oas30", parameters={"extensions": "integrations"}
        )["body"].read()
    )
    assert "/ping" in export["paths"] and "/other" not in export["paths"]
    integration = export["paths"]["/ping"]["get"]["x-amazon-apigateway-integration"]
    assert integration["responses"]["default"]["responseParameters"]["method.response.header.X-Version"] == "'one'"


def test_import_keeps_the_cognito_authorizer_on_the_secured_methods(aws, emulator):
    """Fidelity rule apigateway-import-authorizers: moto's import drops securitySchemes and security; AWS's keeps
    them, and the stage (here through the emulator's execute-api URL) then wants the pool's ID token."""
    idp = aws("cognito-idp")
    pool = idp.create_user_pool(PoolName=f"authz-{uuid.uuid4().hex[:6]}")["UserPool"]
    try:
        client_id = idp.create_user_pool_client(
            UserPoolId=pool["Id"], ClientName="web", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
        )["UserPoolClient"]["ClientId"]
        doc = mock_api("secured")
        doc["paths"]["/ping"]["get"]["security"] = [{"pool": []}]
        doc["components"] = {
            "securitySchemes": {
                "pool": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authtype": "cognito_user_pools",
                    "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools", "providerARNs": [pool["Arn"]]},
                }
            }
        }
        api = aws("apigateway")
        api_id = api.create_rest_api(name=f"authz-{uuid.uuid4().hex[:6]}")["id"]
        api.put_rest_api(restApiId=api_id, mode="overwrite", failOnWarnings=True, body=json.dumps(doc).encode())
        authorizers = api.get_authorizers(restApiId=api_id)["items"]
        assert [(a["name"], a["type"], a["providerARNs"]) for a in authorizers] == [
            ("pool", "COGNITO_USER_POOLS", [pool["Arn"]])
        ]
        resource = next(r for r in api.get_resources(restApiId=api_id)["items"] if r["path"] == "/ping")
        method = api.get_method(restApiId=api_id, resourceId=resource["id"], httpMethod="GET")
        assert (method["authorizationType"], method["authorizerId"]) == ("COGNITO_USER_POOLS", authorizers[0]["id"])
        api.create_deployment(restApiId=api_id, stageName="prod")
        export = json.loads(
            api.get_export(
                restApiId=api_id, stageName="prod", exportType="oas30", parameters={"extensions": "integrations"}
            )["body"].read()
        )
        assert export["paths"]["/ping"]["get"]["security"] == [{"pool": []}]
        assert execute(emulator, api_id, "/ping")[0] == 401  # no token
        idp.admin_create_user(UserPoolId=pool["Id"], Username="u", TemporaryPassword="Temp-pass-1!")
        idp.admin_set_user_password(UserPoolId=pool["Id"], Username="u", Password="Good-pass-1!", Permanent=True)
        token = idp.admin_initiate_auth(
            UserPoolId=pool["Id"],
            ClientId=client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "u", "PASSWORD": "Good-pass-1!"},
        )["AuthenticationResult"]["IdToken"]
        req = urllib.request.Request(
            f"{emulator}/restapis/{api_id}/prod/_user_request_/ping", headers={"Authorization": token}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200 and resp.headers.get("X-Version") == "secured"
        # Overwriting with a document without the scheme removes the authorizer, as AWS's overwrite does.
        api.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(mock_api("open")).encode())
        assert api.get_authorizers(restApiId=api_id)["items"] == []
    finally:
        idp.delete_user_pool(UserPoolId=pool["Id"])


# -- library/kumolab_apigateway_import.py ------------------------------------------------------------


@pytest.fixture
def module(emulator, tmp_path):
    def run(check: bool = False, **params) -> dict:
        keys = settings.credentials(state_dir() / "emulator")  # the only key the emulator accepts
        params.update(
            endpoint_url=emulator,
            access_key=keys["aws_access_key_id"],
            secret_key=keys["aws_secret_access_key"],
            region=REGION,
        )
        command = [
            f"{os.path.dirname(sys.executable)}/ansible",
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-m",
            "kumolab_apigateway_import",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-a",
            json.dumps(params),
        ]
        if check:
            command.append("--check")
        env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
        proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        text = proc.stdout
        result = json.JSONDecoder().raw_decode(text[text.index("{") :])[0]
        return result["plays"][0]["tasks"][0]["hosts"]["localhost"]

    return run


def hash_tag(aws, api_id: str) -> str | None:
    return (aws("apigateway").get_rest_api(restApiId=api_id).get("tags") or {}).get("kumolab:spec-sha256")


def test_m1_editing_the_spec_deploys_it_on_the_next_run(module, aws, emulator):
    lab = f"m1-{uuid.uuid4().hex[:6]}"
    want = dict(name=lab, stage="prod", lookup_tags={"Lab": lab}, tags={"Project": "kumolab", "Lab": lab})
    planned = module(check=True, spec=json.dumps(mock_api("one")), **want)
    assert planned["changed"] and planned["api_id"] == ""

    first = module(spec=json.dumps(mock_api("one")), **want)
    assert first["changed"] and first.get("deployment_id"), first.get("msg")
    assert hash_tag(aws, first["api_id"]) == first["spec_sha256"]
    assert execute(emulator, first["api_id"], "/ping")[1].get("X-Version") == "one"

    again = module(spec=json.dumps(mock_api("one")), **want)
    assert not again["changed"] and again["api_id"] == first["api_id"] and "deployment_id" not in again

    edited = module(spec=json.dumps(mock_api("two")), **want)
    assert (
        edited["changed"] and edited["api_id"] == first["api_id"] and edited["deployment_id"] != first["deployment_id"]
    )
    assert hash_tag(aws, first["api_id"]) == edited["spec_sha256"] != first["spec_sha256"]
    stage = aws("apigateway").get_stage(restApiId=first["api_id"], stageName="prod")
    assert stage["deploymentId"] == edited["deployment_id"]


def test_m1_a_failed_import_leaves_no_hash_tag_and_the_next_run_retries(module, aws, emulator):
    lab = f"m1f-{uuid.uuid4().hex[:6]}"
    want = dict(name=lab, stage="prod", lookup_tags={"Lab": lab}, tags={"Project": "kumolab", "Lab": lab})
    failed = module(spec=json.dumps(mock_api("one", declare=False)), **want)
    assert failed.get("failed") and "Errors found during import" in failed["msg"]
    assert "re-run" in failed["msg"]
    api_id = failed["api_id"]
    assert hash_tag(aws, api_id) is None  # community.aws.api_gateway had tagged it already
    fixed = module(spec=json.dumps(mock_api("one")), **want)
    assert fixed["changed"] and fixed["api_id"] == api_id and fixed.get("deployment_id"), fixed.get("msg")
    assert hash_tag(aws, api_id) == fixed["spec_sha256"]
    assert execute(emulator, api_id, "/ping")[1].get("X-Version") == "one"


TOKEN_AUTHORIZER = """
def handler(event, context):
    token = event["authorizationToken"]
    if token == "bad":
        raise Exception("Unauthorized")
    if token == "crash":
        raise ValueError("boom")
    effect = {"allow": "Allow", "deny": "Deny"}.get(token)
    if effect is None:
        return {"principalId": "p", "policyDocument": {"Version": "2012-10-17", "Statement": []}}
    head, _, _ = event["methodArn"].partition("/")
    return {
        "principalId": "user-" + token,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}]},
        "context": {"who": token},
    }
"""


def test_the_stage_invokes_a_token_authorizer_as_api_gateway_does(aws, emulator, tmp_path):
    """Fidelity rule apigateway-import-authorizers with a Lambda TOKEN authorizer: created from the document, invoked by
    the stage only with its Lambda permission (500 without), 401 without the header or on Unauthorized, 403 on a
    Deny or a policy that allows nothing, the method served on an Allow."""
    from support.runtime_fixtures import deploy_function

    from kumolab.local.runtime.aws import AwsConfig

    (tmp_path / "authz.py").write_text(TOKEN_AUTHORIZER)
    name = f"unit-authz-{uuid.uuid4().hex[:6]}"
    function_arn = deploy_function(
        AwsConfig.from_environment(region=REGION), name, tmp_path, ["authz.py"], "authz.handler"
    )
    doc = mock_api("secured")
    doc["paths"]["/ping"]["get"]["security"] = [{"gate": []}]
    uri = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    doc["components"] = {
        "securitySchemes": {
            "gate": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authtype": "custom",
                "x-amazon-apigateway-authorizer": {
                    "type": "token",
                    "authorizerUri": uri,
                    "authorizerResultTtlInSeconds": 0,
                    "identitySource": "method.request.header.Authorization",
                },
            }
        }
    }
    api = aws("apigateway")
    awslambda = aws("lambda")
    api_id = api.create_rest_api(name=f"authz-{uuid.uuid4().hex[:6]}")["id"]
    try:
        api.put_rest_api(restApiId=api_id, mode="overwrite", failOnWarnings=True, body=json.dumps(doc).encode())
        [authorizer] = api.get_authorizers(restApiId=api_id)["items"]
        assert (authorizer["type"], authorizer["authorizerUri"], authorizer["authorizerResultTtlInSeconds"]) == (
            "TOKEN",
            uri,
            0,
        )
        api.create_deployment(restApiId=api_id, stageName="prod")

        def call(token: str | None) -> int:
            headers = {"Authorization": token} if token is not None else {}
            req = urllib.request.Request(f"{emulator}/restapis/{api_id}/prod/_user_request_/ping", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return resp.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert call(None) == 401  # no identity: nothing is invoked, permission or not
        assert call("allow") == 500  # API Gateway may not invoke the function yet
        awslambda.add_permission(
            FunctionName=name,
            StatementId="apigateway-authorizer",
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=f"arn:aws:execute-api:{REGION}:{function_arn.split(':')[4]}:{api_id}/authorizers/*",
        )
        assert [call(t) for t in ("allow", "deny", "bad", "crash", "nothing")] == [200, 403, 401, 500, 403]
    finally:
        api.delete_rest_api(restApiId=api_id)
        awslambda.delete_function(FunctionName=name)
