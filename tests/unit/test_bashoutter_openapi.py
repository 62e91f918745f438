"""files/api/bashoutter.openapi.yaml against the rules API Gateway's importer enforces and moto does not.

moto stores an imported spec without validating it and the local runtime serves whatever moto stored, so a
spec that PutRestApi rejects on AWS passes every local test (real-AWS review B1: the preflight mapped
``Access-Control-Max-Age`` without declaring it, and the import failed). ``apigateway_import_problems``
(:mod:`kumolab.local.apigateway_import`, which the emulator's PutRestApi also enforces) checks the rendered spec
the way the importer does.
"""

from __future__ import annotations

import copy

import jinja2
import pytest
import yaml

from kumolab.local.apigateway_import import apigateway_import_problems
from kumolab.paths import REPO_ROOT

OPENAPI = REPO_ROOT / "files" / "api" / "bashoutter.openapi.yaml"
HANDLER_DIR = REPO_ROOT / "files" / "lambda" / "bashoutter"
REGION = "ap-northeast-1"
ARNS = {
    fn: f"arn:aws:lambda:{REGION}:123456789012:function:kumolab-bashoutter-{fn}"
    for fn in ("get_haiku", "post_haiku", "patch_haiku", "delete_haiku")
}


def rendered_text() -> str:
    """The spec as the role's template lookup renders it (what the import step sends)."""
    return jinja2.Template(OPENAPI.read_text()).render(aws_region=REGION, bashoutter_function_arns=ARNS)


def rendered_spec() -> dict:
    return yaml.safe_load(rendered_text())


def test_the_rendered_spec_passes_the_import_rules():
    assert apigateway_import_problems(rendered_spec()) == []


def test_the_checker_finds_the_b1_import_error():
    """The shape that failed on AWS: the preflight maps Access-Control-Max-Age but does not declare it."""
    spec = rendered_spec()
    del spec["paths"]["/haiku"]["options"]["responses"]["200"]["headers"]["Access-Control-Max-Age"]
    assert apigateway_import_problems(spec) == [
        (
            "OPTIONS /haiku: integration response maps method.response.header.Access-Control-Max-Age, "
            "but response 200 does not declare the header Access-Control-Max-Age"
        )
    ]


def test_the_checker_finds_ref_headers_undeclared_statuses_and_bad_values():
    spec = rendered_spec()
    spec["components"]["headers"] = {"AllowOrigin": {"schema": {"type": "string"}}}
    options = spec["paths"]["/haiku/{item_id}"]["options"]
    options["responses"]["200"]["headers"]["Access-Control-Allow-Origin"] = {"$ref": "#/components/headers/AllowOrigin"}
    options["x-amazon-apigateway-integration"]["responses"]["default"]["responseParameters"][
        "method.response.header.Access-Control-Allow-Headers"
    ] = "Content-Type"  # not quoted
    spec["paths"]["/haiku"]["options"]["x-amazon-apigateway-integration"]["responses"]["default"]["statusCode"] = "204"
    spec["x-amazon-apigateway-gateway-responses"]["DEFAULT_4xx"] = {
        "responseParameters": {"method.response.header.X": "'*'"}
    }
    problems = apigateway_import_problems(spec)
    assert any("header Access-Control-Allow-Origin is a $ref" in p for p in problems)
    assert any("Access-Control-Allow-Headers is not 'quoted'" in p for p in problems)
    assert any("selects status '204'" in p for p in problems)
    assert any("DEFAULT_4xx: not a gateway response type" in p for p in problems)
    assert any("is not gatewayresponse.header.*" in p for p in problems)


def test_the_preflight_declares_and_maps_the_four_cors_headers():
    spec = rendered_spec()
    for path in ("/haiku", "/haiku/{item_id}"):
        options = spec["paths"][path]["options"]
        declared = set(options["responses"]["200"]["headers"])
        mapped = {
            k.rsplit(".", 1)[1]
            for k in options["x-amazon-apigateway-integration"]["responses"]["default"]["responseParameters"]
        }
        assert (
            declared
            == mapped
            == {
                "Access-Control-Allow-Origin",
                "Access-Control-Allow-Methods",
                "Access-Control-Allow-Headers",
                "Access-Control-Max-Age",
            }
        )


def test_api_gateway_errors_carry_cors():
    """403/429/502/504 answered by API Gateway itself must be readable by the GUI (real-AWS review, minor)."""
    responses = rendered_spec()["x-amazon-apigateway-gateway-responses"]
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        assert responses[kind]["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"] == "'*'"


def test_the_text_has_no_yaml_aliases_and_no_header_refs():
    """The playbook sends the rendered text as is; keep it free of YAML anchors and of components/headers."""
    text = rendered_text()
    data = yaml.safe_load(text)
    assert not any(
        isinstance(event, (yaml.AliasEvent,)) or getattr(event, "anchor", None) for event in yaml.parse(text)
    ), "YAML anchors/aliases in the spec"
    assert "#/components/headers/" not in text and "headers" not in data.get("components", {})


def test_every_integration_has_uri_and_http_method_for_moto():
    """moto's put_rest_api passes both to put_integration as required arguments (a TypeError, 500, without them),
    so the mock preflights keep ``uri: ""`` and ``httpMethod: OPTIONS`` although they mean nothing for a mock."""
    spec = rendered_spec()
    for path, item in spec["paths"].items():
        assert "parameters" not in item, f"{path}: moto's import cannot read path-level parameters"
        for method, op in item.items():
            integration = op["x-amazon-apigateway-integration"]
            assert "uri" in integration and integration.get("httpMethod"), f"{method.upper()} {path}"


def test_moto_imports_the_rendered_text_with_the_mock_preflight(monkeypatch):
    import boto3
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE"):  # in-process moto, not the emulator
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("apigateway", region_name=REGION)
        api = client.create_rest_api(name="spec-check", description="d")["id"]
        client.put_rest_api(restApiId=api, mode="overwrite", body=rendered_text().encode(), failOnWarnings=True)
        resources = {r["path"]: r["id"] for r in client.get_resources(restApiId=api)["items"]}
        preflight = client.get_integration(
            restApiId=api, resourceId=resources["/haiku/{item_id}"], httpMethod="OPTIONS"
        )
        assert preflight["type"].upper() == "MOCK"
        assert (
            preflight["integrationResponses"]["200"]["responseParameters"][
                "method.response.header.Access-Control-Max-Age"
            ]
            == "'600'"
        )


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_the_item_id_parameter_matches_the_handlers_rule(method):
    import importlib.util

    loader = importlib.util.spec_from_file_location("_haiku_common_for_spec", HANDLER_DIR / "haiku_common.py")
    haiku_common = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(haiku_common)
    (param,) = rendered_spec()["paths"]["/haiku/{item_id}"][method]["parameters"]
    schema = param["schema"]
    assert (schema["minLength"], schema["maxLength"]) == (1, 64)
    assert schema["pattern"] == "^[A-Za-z0-9_-]+$"
    assert haiku_common.ITEM_ID_PATTERN.pattern == r"[A-Za-z0-9_-]{1,64}"
    assert "404" in rendered_spec()["paths"]["/haiku/{item_id}"][method]["responses"]


def test_the_spec_is_valid_openapi():
    from openapi_spec_validator import validate

    validate(copy.deepcopy(rendered_spec()))
