"""API Gateway's OpenAPI import rules, and its deployments, as the emulator enforces them (issue 12, Part 2).

moto stores an imported spec without validating it, and its ``CreateDeployment`` records no snapshot, so a
spec that ``PutRestApi`` rejects on AWS passed every local test (real-AWS review B1: the CORS preflight mapped
``Access-Control-Max-Age`` without declaring it) and the local stage served whatever the API held last.

- :func:`import_problems` checks a (rendered) OpenAPI 3 document the way the importer does. Each
  :class:`Problem` has a level: ``error`` (the import fails, ``BadRequestException: Errors found during
  import: ...``), ``warning`` (fails only with ``failOnWarnings=true``), or ``project`` (what this project
  avoids to be safe, which the emulator does not enforce). :func:`apigateway_import_problems` lists them all.
- :func:`install_import_validation` (fidelity rule ``apigateway-import-validation``): moto's ``PutRestApi``
  and ``ImportRestApi`` refuse a document with errors (and with warnings when ``failOnWarnings``).
- :func:`install_deployment_snapshot` (fidelity rule ``apigateway-deployment-snapshot``): ``CreateDeployment``
  snapshots the API at that moment; ``GetExport`` of a stage exports that stage's deployment (as on AWS,
  ``extensions=integrations`` adds the integrations), which is what the local stage serves
  (:class:`kumolab.local.runtime.apigateway.ApiGatewayStage`). A ``PutRestApi`` without a new deployment
  changes nothing the stage serves.
- :func:`apply_authorizers` (fidelity rule ``apigateway-import-authorizers``): moto's import drops
  ``components.securitySchemes`` with ``x-amazon-apigateway-authorizer`` and each operation's ``security``; AWS's
  importer creates the authorizers (overwrite mode replaces them) and sets each method's ``authorizationType``,
  ``authorizerId`` and ``authorizationScopes``. The export carries them back, so the local stage applies them:
  Cognito user pool authorizers and Lambda ``TOKEN`` authorizers (``authorizerUri``, ``authorizerResultTtlInSeconds``;
  the authorizer's id as ``x-kumolab-authorizer-id``, for the source ARN of its Lambda permission).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "x-amazon-apigateway-any-method"}
#: Gateway response types API Gateway knows (DEFAULT_4XX/5XX and the specific ones).
GATEWAY_RESPONSE_TYPES = {
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "ACCESS_DENIED",
    "API_CONFIGURATION_ERROR",
    "AUTHORIZER_CONFIGURATION_ERROR",
    "AUTHORIZER_FAILURE",
    "BAD_REQUEST_PARAMETERS",
    "BAD_REQUEST_BODY",
    "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
    "INVALID_API_KEY",
    "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN",
    "QUOTA_EXCEEDED",
    "REQUEST_TOO_LARGE",
    "RESOURCE_NOT_FOUND",
    "THROTTLED",
    "UNAUTHORIZED",
    "UNSUPPORTED_MEDIA_TYPE",
    "WAF_FILTERED",
}
#: A mapping value: a static 'literal' or a request/integration expression.
MAPPING_VALUE = re.compile(r"'[^']*'|(method\.request|integration\.response|context|stageVariables)\.[\w.$-]+")
LAMBDA_URI = re.compile(
    r"arn:aws:apigateway:[a-z0-9-]+:lambda:path/2015-03-31/functions/arn:aws:lambda:"
    r"[a-z0-9-]+:\d{12}:function:[\w-]+/invocations"
)


@dataclass(frozen=True)
class Problem:
    level: str  # "error" (the import fails), "warning" (fails with failOnWarnings), "project" (this project's rule)
    text: str  # what is wrong, for a person
    aws: str  # how API Gateway words it in "Errors found during import:" / "Warnings found during import:"


def _resolve(spec: dict, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return None
        node = spec
        for part in ref[2:].split("/"):
            node = node.get(part) if isinstance(node, dict) else None
    return node


def _mapping_error(method: str, path: str, expression: str) -> str:
    return (
        f"Unable to put integration response on '{method}' for resource at path '{path}': Invalid mapping "
        f"expression specified: Validation Result: warnings : [], errors : [Invalid mapping expression parameter "
        f"specified: {expression}]"
    )


def import_problems(spec: dict) -> list[Problem]:
    """What PutRestApi rejects (``error``), warns about (``warning``) or this project avoids (``project``).

    - every ``method.response.header.X`` an integration response maps must be declared in the method response
      of that integration response's status code (the B1 import error); a header given as a ``$ref`` to
      ``components/headers`` is a ``project`` problem (the importer's handling of it is not to be relied on);
    - the status code an integration response selects must be a declared method response;
    - mapping values are ``'static'`` literals or request/integration expressions;
    - ``x-amazon-apigateway-gateway-responses`` use known response types, and their ``responseParameters`` map
      ``gatewayresponse.header.*`` to valid values;
    - a method without ``x-amazon-apigateway-integration`` is a warning;
    - an aws_proxy integration has an ``httpMethod`` of POST and a Lambda invocation URI (``project``: AWS
      accepts the import and fails the calls).
    """
    problems: list[Problem] = []

    def add(level: str, text: str, aws: str | None = None) -> None:
        problems.append(Problem(level, text, aws or text))

    for path, item in (spec.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method, op in item.items():
            if method.lower() not in HTTP_METHODS or not isinstance(op, dict):
                continue
            verb = "ANY" if method.lower() == "x-amazon-apigateway-any-method" else method.upper()
            where = f"{verb} {path}"
            responses = op.get("responses") or {}
            integration = op.get("x-amazon-apigateway-integration")
            if integration is None:
                add(
                    "warning",
                    f"{where}: no x-amazon-apigateway-integration",
                    f"No integration defined for method '{verb}' at path '{path}'",
                )
                continue
            kind = str(integration.get("type", "")).lower()
            if kind == "aws_proxy":
                if integration.get("httpMethod") != "POST":
                    add("project", f"{where}: a Lambda proxy integration must use httpMethod POST")
                if not LAMBDA_URI.fullmatch(str(integration.get("uri", ""))):
                    add("project", f"{where}: uri is not a Lambda invocation URI: {integration.get('uri')!r}")
            for selection, config in (integration.get("responses") or {}).items():
                config = config or {}
                status = str(config.get("statusCode", ""))
                if status not in {str(code) for code in responses}:
                    add(
                        "error",
                        f"{where}: integration response {selection!r} selects status {status!r}, "
                        f"which is not a method response",
                        f"Unable to put integration response on '{verb}' for resource at path '{path}': Invalid "
                        f"Response status code specified",
                    )
                    continue
                raw = responses.get(status, responses.get(int(status)) if status.isdigit() else None)
                method_response = _resolve(spec, raw) or {}
                headers = method_response.get("headers") or {}
                for name, header in headers.items():
                    if isinstance(header, dict) and "$ref" in header:
                        add("project", f"{where}: response {status} header {name} is a $ref; write it inline")
                for target, value in (config.get("responseParameters") or {}).items():
                    if not target.startswith("method.response.header."):
                        add(
                            "error",
                            f"{where}: mapping target {target!r} is not method.response.header.*",
                            _mapping_error(verb, path, target),
                        )
                        continue
                    header = target[len("method.response.header.") :]
                    if header not in headers:
                        add(
                            "error",
                            f"{where}: integration response maps {target}, but response {status} "
                            f"does not declare the header {header}",
                            _mapping_error(verb, path, target),
                        )
                    if not isinstance(value, str) or not MAPPING_VALUE.fullmatch(value):
                        add(
                            "error",
                            f"{where}: mapping value of {target} is not 'quoted' or an expression: {value!r}",
                            _mapping_error(verb, path, str(value)),
                        )
    for kind, config in (spec.get("x-amazon-apigateway-gateway-responses") or {}).items():
        if kind not in GATEWAY_RESPONSE_TYPES:
            add(
                "error",
                f"gateway response {kind}: not a gateway response type",
                f"Invalid gateway response type specified: {kind}",
            )
        for target, value in ((config or {}).get("responseParameters") or {}).items():
            if not target.startswith("gatewayresponse.header."):
                add(
                    "error",
                    f"gateway response {kind}: mapping target {target!r} is not gatewayresponse.header.*",
                    f"Unable to put gateway response '{kind}': Invalid mapping expression specified: {target}",
                )
            if not isinstance(value, str) or not MAPPING_VALUE.fullmatch(value):
                add(
                    "error",
                    f"gateway response {kind}: mapping value of {target} is not 'quoted': {value!r}",
                    f"Unable to put gateway response '{kind}': Invalid mapping expression specified: {value}",
                )
    return problems


def apigateway_import_problems(spec: dict) -> list[str]:
    """Every problem (errors, warnings and the project's own rules), one message each."""
    return [problem.text for problem in import_problems(spec)]


def import_failure(spec: dict, fail_on_warnings: bool) -> str | None:
    """AWS's ``BadRequestException`` message for this import, or None when API Gateway accepts it."""
    found = import_problems(spec)
    errors = [p.aws for p in found if p.level == "error"]
    if errors:
        return "Errors found during import:\n\t" + "\n\t".join(errors)
    warnings = [p.aws for p in found if p.level == "warning"]
    if warnings and fail_on_warnings:
        return "Warnings found during import:\n\t" + "\n\t".join(warnings)
    return None


# -- fidelity rules (installed in the emulator process by kumolab.local.fidelity) --------------------


def install_import_validation() -> None:
    """PutRestApi and ImportRestApi fail with BadRequestException when the document breaks the import rules."""
    from moto.apigateway.exceptions import BadRequestException
    from moto.apigateway.models import APIGatewayBackend

    if getattr(APIGatewayBackend.put_rest_api, "_kumolab_fidelity", False):
        return
    original_put, original_import = APIGatewayBackend.put_rest_api, APIGatewayBackend.import_rest_api

    def check(api_doc: Any, fail_on_warnings: bool) -> None:
        if isinstance(api_doc, dict) and str(api_doc.get("openapi", "")).startswith("3"):
            message = import_failure(api_doc, bool(fail_on_warnings))
            if message:
                raise BadRequestException(message)

    def put_rest_api(backend, function_id, api_doc, fail_on_warnings, mode="merge"):
        check(api_doc, fail_on_warnings)
        return original_put(backend, function_id, api_doc, fail_on_warnings, mode)

    def import_rest_api(backend, api_doc, fail_on_warnings):
        check(api_doc, fail_on_warnings)
        return original_import(backend, api_doc, fail_on_warnings)

    put_rest_api._kumolab_fidelity = True  # type: ignore[attr-defined]
    APIGatewayBackend.put_rest_api, APIGatewayBackend.import_rest_api = put_rest_api, import_rest_api


#: x-amazon-apigateway-authorizer ``type`` -> the authorizer's and the method's type in API Gateway's API.
AUTHORIZER_TYPES = {"cognito_user_pools": "COGNITO_USER_POOLS", "token": "TOKEN", "request": "REQUEST"}


def apply_authorizers(backend, api_id: str, api_doc: Any, replace: bool) -> None:
    """What AWS's importer does with ``components.securitySchemes`` and ``security`` (moto drops both): one
    authorizer per scheme with ``x-amazon-apigateway-authorizer``, and on each operation whose ``security`` names
    one, the method's ``authorizationType``, ``authorizerId`` and ``authorizationScopes``."""
    if not isinstance(api_doc, dict):
        return
    api = backend.get_rest_api(api_id)
    schemes = (api_doc.get("components") or {}).get("securitySchemes") or {}
    if replace:
        api.authorizers = {}
    by_name = {a.name: a for a in api.authorizers.values()}
    for name, scheme in schemes.items():
        config = (scheme or {}).get("x-amazon-apigateway-authorizer")
        if not isinstance(config, dict):
            continue
        kind = AUTHORIZER_TYPES.get(str(config.get("type", "")).lower(), str(config.get("type", "")).upper())
        existing = by_name.get(name)
        authorizer_id = existing.id if existing is not None else uuid_id()
        by_name[name] = api.create_authorizer(
            authorizer_id,
            name,
            kind,
            config.get("providerARNs"),
            scheme.get("x-amazon-apigateway-authtype"),
            config.get("authorizerUri"),
            config.get("authorizerCredentials"),
            config.get("identitySource") or f"method.request.header.{scheme.get('name', 'Authorization')}",
            config.get("identityValidationExpression"),
            config.get("authorizerResultTtlInSeconds"),
        )
    for path, item in (api_doc.get("paths") or {}).items():
        resource = api.get_resource_for_path(path)
        if resource is None or not isinstance(item, dict):
            continue
        for key, op in item.items():
            if key.lower() not in HTTP_METHODS or not isinstance(op, dict):
                continue
            verb = "ANY" if key.lower() == "x-amazon-apigateway-any-method" else key.upper()
            method = resource.resource_methods.get(verb)
            chosen = next(
                ((n, scopes) for entry in op.get("security") or [] for n, scopes in entry.items() if n in by_name),
                None,
            )
            if method is None or chosen is None:
                continue
            authorizer = by_name[chosen[0]]
            method.authorization_type = authorizer.type
            method.authorizer_id = authorizer.id
            method.authorization_scopes = list(chosen[1] or []) or None


def install_import_authorizers() -> None:
    """PutRestApi and ImportRestApi keep the document's authorizers (:func:`apply_authorizers`)."""
    from moto.apigateway.models import APIGatewayBackend

    if getattr(APIGatewayBackend.put_rest_api, "_kumolab_authorizers", False):
        return
    original_put, original_import = APIGatewayBackend.put_rest_api, APIGatewayBackend.import_rest_api

    def put_rest_api(backend, function_id, api_doc, fail_on_warnings, mode="merge"):
        api = original_put(backend, function_id, api_doc, fail_on_warnings, mode)
        apply_authorizers(backend, function_id, api_doc, replace=mode == "overwrite")
        return api

    def import_rest_api(backend, api_doc, fail_on_warnings):
        api = original_import(backend, api_doc, fail_on_warnings)
        apply_authorizers(backend, api.id, api_doc, replace=True)
        return api

    put_rest_api._kumolab_authorizers = True  # type: ignore[attr-defined]
    APIGatewayBackend.put_rest_api, APIGatewayBackend.import_rest_api = put_rest_api, import_rest_api


def uuid_id() -> str:
    import uuid

    return uuid.uuid4().hex[:6]


def export_document(api) -> dict:
    """An OpenAPI 3 document of moto's RestAPI ``api`` as it is now, with its integrations (AWS's export shape)."""
    doc: dict = {"openapi": "3.0.1", "info": {"title": api.name, "version": "1"}, "paths": {}}
    if getattr(api, "binaryMediaTypes", None):
        doc["x-amazon-apigateway-binary-media-types"] = list(api.binaryMediaTypes)
    for resource in api.resources.values():
        item = doc["paths"].setdefault(resource.get_path(), {})
        item["x-kumolab-resource-id"] = resource.id
        for verb, method in resource.resource_methods.items():
            op: dict = {"responses": {}}
            for code, response in (method.method_responses or {}).items():
                data = response.to_json() if hasattr(response, "to_json") else dict(response)
                op["responses"][str(code)] = {
                    "description": f"{code} response",
                    "headers": {
                        key[len("method.response.header.") :]: {"schema": {"type": "string"}}
                        for key in (data.get("responseParameters") or {})
                    },
                }
            integration = method.method_integration
            if integration is not None:
                data = integration.to_json()
                op["x-amazon-apigateway-integration"] = {
                    "type": str(data.get("type", "")).lower(),
                    "uri": data.get("uri"),
                    "httpMethod": data.get("httpMethod"),
                    "requestTemplates": data.get("requestTemplates"),
                    "responses": {
                        (r.get("selectionPattern") or "default"): {
                            key: r[key]
                            for key in ("statusCode", "responseParameters", "responseTemplates")
                            if r.get(key)
                        }
                        for r in (data.get("integrationResponses") or {}).values()
                    },
                }
            authorizer = api.authorizers.get(method.authorizer_id) if method.authorizer_id else None
            if authorizer is not None:
                op["security"] = [{authorizer.name: list(method.authorization_scopes or [])}]
            key = "x-amazon-apigateway-any-method" if verb == "ANY" else verb.lower()
            item[key] = op
    schemes = {}
    for authorizer in api.authorizers.values():
        header = str(authorizer.identity_source or "method.request.header.Authorization").rsplit(".", 1)[-1]
        config: dict = {"type": str(authorizer.type or "").lower()}
        if authorizer.provider_arns:
            config["providerARNs"] = list(authorizer.provider_arns)
        if authorizer.authorizer_uri:
            config["authorizerUri"] = authorizer.authorizer_uri
        if authorizer.authorizer_result_ttl is not None:
            config["authorizerResultTtlInSeconds"] = int(authorizer.authorizer_result_ttl)
        if authorizer.identity_validation_expression:
            config["identityValidationExpression"] = authorizer.identity_validation_expression
        schemes[authorizer.name] = {
            "type": "apiKey",
            "name": header,
            "in": "header",
            "x-kumolab-authorizer-id": authorizer.id,
            "x-amazon-apigateway-authtype": authorizer.auth_type or str(authorizer.type or "").lower(),
            "x-amazon-apigateway-authorizer": config,
        }
    if schemes:
        doc["components"] = {"securitySchemes": schemes}
    return copy.deepcopy(doc)


def install_deployment_snapshot() -> None:
    """CreateDeployment snapshots the API; GetExport of a stage exports that stage's deployment."""
    import json

    from moto.apigateway.models import APIGatewayBackend
    from moto.apigateway.responses import APIGatewayResponse

    if getattr(APIGatewayBackend.create_deployment, "_kumolab_fidelity", False):
        return
    original_create = APIGatewayBackend.create_deployment
    original_export = APIGatewayResponse.get_export

    def create_deployment(backend, function_id, name, description="", stage_variables=None):
        deployment = original_create(backend, function_id, name, description, stage_variables)
        deployment.kumolab_snapshot = export_document(backend.get_rest_api(function_id))
        return deployment

    def get_export(response):
        parts = response.path.split("/")  # /restapis/<id>/stages/<stage>/exports/<type>
        api_id, stage_name = parts[-5], parts[-3]
        try:
            api = response.backend.get_rest_api(api_id)
            stage = api.stages.get(stage_name)
            deployment = api.deployments.get(stage.deployment_id) if stage is not None else None
        except Exception:  # noqa: BLE001 - unknown API: moto's own answer
            deployment = None
        snapshot = getattr(deployment, "kumolab_snapshot", None)
        if snapshot is None:
            return original_export(response)
        doc = copy.deepcopy(snapshot)
        extensions = (response.querystring.get("extensions") or [""])[0]
        doc["info"]["version"] = deployment.id
        if "integrations" not in extensions and "apigateway" not in extensions:
            for item in doc["paths"].values():
                for op in item.values():
                    if isinstance(op, dict):
                        op.pop("x-amazon-apigateway-integration", None)
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()

    create_deployment._kumolab_fidelity = True  # type: ignore[attr-defined]
    APIGatewayBackend.create_deployment = create_deployment
    APIGatewayResponse.get_export = get_export


#: ``/tags/arn:aws:apigateway:<region>::/restapis/<id>`` (the ARN URL-encoded or not).
REST_API_TAGS_PATH = re.compile(
    r"^/tags/arn(?::|%3A)aws(?::|%3A)apigateway(?::|%3A)(?P<region>[a-z0-9-]+)"
    r"(?::|%3A){2}(?:/|%2F)restapis(?:/|%2F)(?P<api>[A-Za-z0-9]+)$",
    re.IGNORECASE,
)


def rest_api_tags(method: str, path: str, query: str, body: bytes) -> tuple[int, dict] | None:
    """TagResource (POST/PUT), UntagResource (DELETE) and GetTags (GET) on a REST API's ARN, as AWS supports them
    (moto routes only stage ARNs there: a 404). ``(status, JSON body)``, or None when ``path`` is no REST API ARN.
    Not a fidelity rule: a gap in moto that :mod:`kumolab.local.front_door` fills (request rule rest-api-tags)."""
    import json
    from urllib.parse import parse_qs

    from moto.apigateway.models import apigateway_backends

    found = REST_API_TAGS_PATH.match(path)
    if not found:
        return None
    api = None
    for account in list(apigateway_backends.keys()):
        backend = (
            apigateway_backends[account].get(found["region"])
            if found["region"] in apigateway_backends[account]
            else None
        )
        if backend is not None and found["api"] in backend.apis:
            api = backend.apis[found["api"]]
            break
    if api is None:
        return 404, {"message": f"Invalid API identifier specified {found['api']}"}
    if method in ("POST", "PUT"):
        tags = (json.loads(body or b"{}") or {}).get("tags") or {}
        api.tags = dict(api.tags or {}, **tags)
        return 204, {}
    if method == "DELETE":
        keys = parse_qs(query).get("tagKeys", [])
        api.tags = {k: v for k, v in (api.tags or {}).items() if k not in keys}
        return 204, {}
    return 200, {"tags": dict(api.tags or {})}
