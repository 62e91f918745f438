"""Serve a deployed API Gateway REST API stage on loopback: ``http://127.0.0.1:<port>/<stage>/...``.

Everything comes from the emulator: the stage's deployment (``GetExport`` of the stage with its
integrations: the API as it was when it was deployed, not as it is now, and never the file on disk), the
stage (its variables and ``*/*`` throttling settings). Routes are re-read when the stage's deployment
changes (checked every ``refresh_s`` seconds), so a redeploy is picked up while the server runs, and a
``PutRestApi`` without a new deployment changes nothing that is served.

Behaviour copied from API Gateway (REST APIs):
- Routing: literal path parts win over ``{param}``, which wins over ``{proxy+}``; a trailing slash is
  ignored. Unknown stage -> 403 ``{"message":"Forbidden"}``; no resource or no such method on it -> 403
  ``{"message":"Missing Authentication Token"}`` (that is what API Gateway answers, not 404).
- ``AWS_PROXY`` integrations invoke the Lambda function named in the integration URI (through
  :class:`LambdaRuntime`) with a proxy event v1.0; the function's result must be
  ``{"statusCode": int, "headers"?, "multiValueHeaders"?, "body"?: str, "isBase64Encoded"?}``. A
  function error or a malformed result -> 502 ``{"message": "Internal server error"}``; a result after
  29 s -> 504.
- ``MOCK`` integrations (CORS preflight): the status of the default integration response and its
  ``responseParameters`` with static ``'value'`` header values.
- Throttling: a token bucket per stage from ``methodSettings['*/*']`` (rate/burst) -> 429
  ``{"message":"Too Many Requests"}``.
- Authorizers: a method whose deployed operation names a ``cognito_user_pools`` authorizer in its ``security``
  (``components.securitySchemes`` with ``x-amazon-apigateway-authorizer``) takes only a valid token in the
  scheme's header (``Authorization``), verified as API Gateway does (:mod:`kumolab.local.runtime.jwt_auth`:
  signature against the pool's JWKS, ``iss``, ``exp``, ``token_use``, the pool's app clients as audience);
  otherwise 401 ``{"message":"Unauthorized"}`` and the function is not invoked. The function sees the token's
  claims in ``requestContext.authorizer.claims``.
- Lambda ``TOKEN`` authorizers (``type: token``, ``authorizerUri``): the scheme's header missing (or not matching
  ``identityValidationExpression``) -> 401 ``{"message":"Unauthorized"}`` without invoking anything; otherwise
  the authorizer function is invoked as API Gateway does (``{"type": "TOKEN", "authorizationToken": <header>,
  "methodArn": ...}``), only when its resource policy lets ``apigateway.amazonaws.com`` invoke it from this API's
  authorizer (``.../<api>/authorizers/<id>``; else 500, ``AuthorizerConfigurationException``, as AWS answers). It
  raising ``Unauthorized`` -> 401; any other error or a result without ``principalId``/``policyDocument`` -> 500;
  a policy that denies the method (explicitly -> 403 "... with an explicit deny", or by not allowing it -> 403)
  -> 403; an allow -> the function runs with ``requestContext.authorizer`` = ``principalId`` and the result's
  ``context``. Results are cached by token for ``authorizerResultTtlInSeconds`` (default 300; 0: none) and the
  cached policy is evaluated against each method.
- Bodies: text when UTF-8 (``isBase64Encoded: false``), base64 when the API lists the content type in
  ``binaryMediaTypes`` or the bytes are not UTF-8.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote

from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.httpserve import Request, Response
from kumolab.local.runtime.jwt_auth import JwtAuthorizer, Unauthorized, bearer, claims_as_api_gateway_passes_them
from kumolab.local.runtime.lambda_invoke import LambdaRuntime

INTEGRATION_TIMEOUT_S = 29.0
FUNCTION_IN_URI = re.compile(r":lambda:path/2015-03-31/functions/(?P<arn>.+?)/invocations$")
USER_POOL_ARN = re.compile(r"^arn:aws[\w-]*:cognito-idp:(?P<region>[a-z0-9-]+):\d{12}:userpool/(?P<pool>[\w-]+)$")


def _json(status: int, message: str, error_type: str | None = None) -> Response:
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return Response(status, json.dumps({"message": message}).encode(), headers)


@dataclass
class Route:
    path: str  # resource path template, e.g. /haiku/{item_id}
    resource_id: str
    parts: list[str]
    methods: dict  # METHOD -> integration dict

    def match(self, segments: list[str]) -> tuple | None:
        """A score (higher = more specific) and the path parameters, or None."""
        params: dict[str, str] = {}
        score: list[int] = []
        for i, part in enumerate(self.parts):
            if part.startswith("{") and part.endswith("+}"):
                if i >= len(segments):
                    return None
                params[part[1:-2]] = "/".join(segments[i:])
                score.append(0)
                return tuple(score), params
            if i >= len(segments):
                return None
            if part.startswith("{") and part.endswith("}"):
                params[part[1:-1]] = segments[i]
                score.append(1)
            elif part == segments[i]:
                score.append(2)
            else:
                return None
        if len(segments) != len(self.parts):
            return None
        return tuple(score), params


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class ApiGatewayStage:
    def __init__(
        self, aws: AwsConfig, lambdas: LambdaRuntime, rest_api: str, stage: str = "prod", refresh_s: float = 2.0
    ):
        self.aws, self.lambdas, self.stage_name, self.refresh_s = aws, lambdas, stage, refresh_s
        self.client = aws.client("apigateway")
        self.api = self._find_api(rest_api)
        self.api_id = self.api["id"]
        self._routes: list[Route] = []
        self._version = None
        self._checked = 0.0
        self._bucket: TokenBucket | None = None
        self._stage_vars: dict | None = None
        self._authorizers: dict[tuple, JwtAuthorizer] = {}
        self._token_results: dict[tuple, tuple[float, dict]] = {}
        self._lock = threading.Lock()
        self.refresh(force=True)

    def _find_api(self, name_or_id: str) -> dict:
        for page in self.client.get_paginator("get_rest_apis").paginate():
            for api in page.get("items", []):
                if name_or_id in (api["id"], api.get("name")):
                    return api
        raise LookupError(f"No REST API named or with id {name_or_id!r} on {self.aws.endpoint_url or 'AWS'}")

    # -- loading -----------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_s:
            return
        with self._lock:
            if not force and now - self._checked < self.refresh_s:
                return
            self._checked = now
            try:
                stage = self.client.get_stage(restApiId=self.api_id, stageName=self.stage_name)
            except self.client.exceptions.NotFoundException:
                self._routes, self._version = [], None
                return
            version = (stage.get("deploymentId"), str(stage.get("lastUpdatedDate")))
            if version == self._version and not force:
                return
            self._routes = self._load_routes()
            self._stage_vars = stage.get("variables") or None
            throttle = (stage.get("methodSettings") or {}).get("*/*", {})
            rate, burst = throttle.get("throttlingRateLimit"), throttle.get("throttlingBurstLimit")
            self._bucket = TokenBucket(float(rate), int(burst)) if rate and burst else None
            self.api = self.client.get_rest_api(restApiId=self.api_id)
            self._version = version

    def _load_routes(self) -> list[Route]:
        """The routes of the stage's deployment: ``GetExport`` of the stage with its integrations (on AWS and on the
        emulator, the API as it was deployed, not as it is now); the API's current resources when the export
        carries no integrations (moto's own export, with the emulator's fidelity rules off)."""
        deployed = self._deployed_routes()
        return deployed if deployed is not None else self._current_routes()

    def _deployed_routes(self) -> list[Route] | None:
        try:
            export = self.client.get_export(
                restApiId=self.api_id,
                stageName=self.stage_name,
                exportType="oas30",
                parameters={"extensions": "integrations"},
                accepts="application/json",
            )
            doc = json.loads(export["body"].read())
        except Exception:  # noqa: BLE001 - no export: read the current API
            return None
        routes, integrated = [], False
        schemes = (doc.get("components") or {}).get("securitySchemes") or {}
        for path, item in (doc.get("paths") or {}).items():
            methods = {}
            for key, op in item.items():
                if not isinstance(op, dict) or key.startswith("x-") and key != "x-amazon-apigateway-any-method":
                    continue
                integration = op.get("x-amazon-apigateway-integration")
                verb = "ANY" if key == "x-amazon-apigateway-any-method" else key.upper()
                if integration is None:
                    methods[verb] = {}
                    continue
                integrated = True
                responses = {}
                for selection, response in (integration.get("responses") or {}).items():
                    response = dict(response or {})
                    if selection != "default":
                        response["selectionPattern"] = selection
                    responses[str(response.get("statusCode", "200"))] = response
                methods[verb] = {
                    "type": str(integration.get("type", "")).upper(),
                    "uri": integration.get("uri"),
                    "httpMethod": integration.get("httpMethod"),
                    "integrationResponses": responses,
                    "authorizer": self._method_authorizer(op, schemes),
                }
            parts = [p for p in path.split("/") if p]
            routes.append(Route(path, str(item.get("x-kumolab-resource-id", "")), parts, methods))
        return routes if integrated else None

    @staticmethod
    def _method_authorizer(op: dict, schemes: dict) -> dict | None:
        """The authorizer an operation's ``security`` names (its scheme, with the method's scopes), or None."""
        for entry in op.get("security") or []:
            for name, scopes in (entry or {}).items():
                scheme = schemes.get(name) or {}
                config = scheme.get("x-amazon-apigateway-authorizer")
                if isinstance(config, dict):
                    ttl = config.get("authorizerResultTtlInSeconds")
                    return {
                        "name": name,
                        "id": str(scheme.get("x-kumolab-authorizer-id") or name),
                        "type": str(config.get("type", "")).lower(),
                        "providerARNs": list(config.get("providerARNs") or []),
                        "uri": config.get("authorizerUri"),
                        "ttl": 300 if ttl is None else int(ttl),
                        "validation": config.get("identityValidationExpression"),
                        "header": scheme.get("name") or "Authorization",
                        "scopes": tuple(scopes or ()),
                    }
        return None

    def _jwt_authorizer(self, spec: dict) -> JwtAuthorizer:
        """The verifier of a ``cognito_user_pools`` authorizer: the first user pool of its providerARNs (its
        issuer, its JWKS - on the emulator at ``<endpoint>/<pool>/.well-known/jwks.json`` - and its app clients).
        Built once per deployment version."""
        key = (self._version, spec["name"])
        if key in self._authorizers:
            return self._authorizers[key]
        if spec["type"] != "cognito_user_pools":
            raise LookupError(f"authorizer type {spec['type']!r} is not served by the local runtime")
        found = next((m for m in map(USER_POOL_ARN.match, spec["providerARNs"]) if m), None)
        if found is None:
            raise LookupError(f"authorizer {spec['name']} names no user pool ARN: {spec['providerARNs']}")
        region, pool = found["region"], found["pool"]
        issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool}"
        base = self.aws.endpoint_url.rstrip("/") if self.aws.endpoint_url else issuer
        idp = self.aws.client("cognito-idp")
        clients = []
        for page in idp.get_paginator("list_user_pool_clients").paginate(UserPoolId=pool):
            clients += [c["ClientId"] for c in page.get("UserPoolClients", [])]
        verifier = JwtAuthorizer(
            issuer=issuer,
            jwks_url=f"{base}/{pool}/.well-known/jwks.json",
            audiences=tuple(clients),
            token_use="access" if spec["scopes"] else "id",
            scopes=spec["scopes"],
        )
        self._authorizers = {k: v for k, v in self._authorizers.items() if k[0] == self._version}
        self._authorizers[key] = verifier
        return verifier

    def _authorize(self, request: Request, spec: dict) -> dict | Response:
        """``requestContext.authorizer`` for the request (a Cognito token's claims, or a Lambda authorizer's
        principal and context), or API Gateway's 401/403 (500 when the authorizer cannot be set up)."""
        if spec["type"] == "token":
            return self._token_authorize(request, spec)
        try:
            verifier = self._jwt_authorizer(spec)
        except Exception as exc:  # noqa: BLE001 - a broken authorizer configuration: AWS answers 500
            print(f"[apigateway] authorizer {spec['name']}: {type(exc).__name__}: {exc}", flush=True)
            return _json(500, "Internal server error", "AuthorizerConfigurationException")
        try:
            claims = verifier.verify(bearer(request.headers, spec["header"]))
        except Unauthorized as denied:
            print(f"[apigateway] {request.method} {request.path}: 401 ({denied.reason})", flush=True)
            return _json(401, "Unauthorized", "UnauthorizedException")
        return {"claims": claims_as_api_gateway_passes_them(claims)}

    # -- Lambda TOKEN authorizers --------------------------------------------------------------------
    def _token_authorize(self, request: Request, spec: dict) -> dict | Response:
        token = next((v for k, v in request.headers if k.lower() == spec["header"].lower()), "").strip()
        if not token or (spec["validation"] and not re.fullmatch(spec["validation"], token)):
            print(f"[apigateway] {request.method} {request.path}: 401 (no {spec['header']} header)", flush=True)
            return _json(401, "Unauthorized", "UnauthorizedException")
        found = FUNCTION_IN_URI.search(spec.get("uri") or "")
        if found is None:
            print(f"[apigateway] authorizer {spec['name']}: no function in {spec.get('uri')!r}", flush=True)
            return _json(500, "Internal server error", "AuthorizerConfigurationException")
        function_arn = found["arn"]
        _, _, _, region, account, *_ = function_arn.split(":") + [""] * 6
        method_arn = (
            f"arn:aws:execute-api:{region}:{account}:{self.api_id}/{self.stage_name}/{request.method}"
            f"/{'/'.join(request.path.split('/')[2:])}"
        )
        key, now = (self._version, spec["id"], token), time.monotonic()
        cached = self._token_results.get(key)
        if cached is not None and cached[0] > now:
            result = cached[1]
        else:
            result = self._invoke_token_authorizer(spec, function_arn, region, account, token, method_arn)
            if isinstance(result, Response):
                return result
            if spec["ttl"] > 0:
                self._token_results = {k: v for k, v in self._token_results.items() if v[0] > now}
                self._token_results[key] = (now + spec["ttl"], result)
        decision = policy_decision(result["policyDocument"], method_arn)
        if decision != "Allow":
            print(f"[apigateway] {request.method} {request.path}: 403 ({decision})", flush=True)
            message = "User is not authorized to access this resource"
            if decision == "Deny":
                message += " with an explicit deny"
            return _json(403, message, "AccessDeniedException")
        context = {k: v for k, v in (result.get("context") or {}).items() if isinstance(v, (str, int, float, bool))}
        return {"principalId": str(result["principalId"]), **context, "integrationLatency": 0}

    def _invoke_token_authorizer(
        self, spec: dict, function_arn: str, region: str, account: str, token: str, method_arn: str
    ) -> dict | Response:
        """The authorizer function's result, or API Gateway's 401/500."""
        source_arn = f"arn:aws:execute-api:{region}:{account}:{self.api_id}/authorizers/{spec['id']}"
        broken = _json(500, "Internal server error", "AuthorizerConfigurationException")
        if not self._may_invoke(function_arn, source_arn):
            print(
                f"[apigateway] authorizer {spec['name']}: {function_arn} has no permission for "
                f"apigateway.amazonaws.com from {source_arn}",
                flush=True,
            )
            return broken
        event = {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
        try:
            invoked = self.lambdas.invoke(function_arn, json.dumps(event))
            payload = json.loads(invoked.payload or b"null")
        except Exception as exc:  # noqa: BLE001 - function missing, code not available, not JSON: AWS answers 500
            print(f"[apigateway] authorizer {spec['name']}: {type(exc).__name__}: {exc}", flush=True)
            return broken
        if invoked.function_error:
            if isinstance(payload, dict) and payload.get("errorMessage") == "Unauthorized":
                return _json(401, "Unauthorized", "UnauthorizedException")
            print(f"[apigateway] authorizer {spec['name']}: function error {str(payload)[:500]}", flush=True)
            return _json(500, "Internal server error", "AuthorizerFailureException")
        if not (
            isinstance(payload, dict) and payload.get("principalId") and isinstance(payload.get("policyDocument"), dict)
        ):
            print(f"[apigateway] authorizer {spec['name']}: invalid result {str(payload)[:500]}", flush=True)
            return _json(500, "Internal server error", "AuthorizerConfigurationException")
        return payload

    def _may_invoke(self, function_arn: str, source_arn: str) -> bool:
        """Whether the function's resource policy lets API Gateway invoke it from ``source_arn``."""
        try:
            policy = json.loads(self.aws.client("lambda").get_policy(FunctionName=function_arn)["Policy"])
        except Exception:  # noqa: BLE001 - no policy at all (ResourceNotFoundException): not allowed
            return False
        for statement in policy.get("Statement") or []:
            principal = statement.get("Principal")
            service = principal.get("Service") if isinstance(principal, dict) else principal
            actions = statement.get("Action")
            actions = actions if isinstance(actions, list) else [actions]
            if statement.get("Effect") != "Allow" or service != "apigateway.amazonaws.com":
                continue
            if not any(a in ("lambda:InvokeFunction", "lambda:*", "*") for a in actions):
                continue
            conditions = statement.get("Condition") or {}
            wanted = (conditions.get("ArnLike") or {}).get("AWS:SourceArn") or (conditions.get("ArnEquals") or {}).get(
                "AWS:SourceArn"
            )
            if wanted is None or arn_like(source_arn, str(wanted)):
                return True
        return False

    def _current_routes(self) -> list[Route]:
        routes = []
        for page in self.client.get_paginator("get_resources").paginate(restApiId=self.api_id):
            for res in page.get("items", []):
                methods = {}
                for method in res.get("resourceMethods") or {}:
                    try:
                        methods[method] = self.client.get_integration(
                            restApiId=self.api_id, resourceId=res["id"], httpMethod=method
                        )
                    except self.client.exceptions.NotFoundException:
                        methods[method] = {}
                parts = [p for p in res["path"].split("/") if p]
                routes.append(Route(res["path"], res["id"], parts, methods))
        return routes

    # -- serving -----------------------------------------------------------------------------------
    def __call__(self, request: Request) -> Response:
        self.refresh()
        segments = [unquote(s) for s in request.path.split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) > 1:
            segments = segments[:-1]
        if not segments or segments[0] != self.stage_name or self._version is None:
            return _json(403, "Forbidden", "ForbiddenException")
        segments = [s for s in segments[1:]] or []
        if segments == [""]:
            segments = []
        best = None
        for route in self._routes:
            found = route.match(segments)
            if found and (best is None or found[0] > best[0]):
                best = (found[0], found[1], route)
        if best is None:
            return _json(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        _, params, route = best
        integration = route.methods.get(request.method) or route.methods.get("ANY")
        if integration is None:
            return _json(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        if self._bucket is not None and not self._bucket.take():
            return _json(429, "Too Many Requests", "TooManyRequestsException")
        claims = None
        if integration.get("authorizer"):
            authorized = self._authorize(request, integration["authorizer"])
            if isinstance(authorized, Response):
                return authorized
            claims = authorized
        kind = (integration.get("type") or "").upper()
        if kind == "AWS_PROXY":
            return self._proxy(request, route, params, integration, claims)
        if kind == "MOCK":
            return self._mock(integration)
        return _json(
            500, f"Integration type {kind or 'none'} is not served by the local runtime", "InternalServerErrorException"
        )

    def _mock(self, integration: dict) -> Response:
        responses = integration.get("integrationResponses") or {}
        chosen = next((r for r in responses.values() if not r.get("selectionPattern")), None)
        if chosen is None:
            return _json(500, "Internal server error", "InternalServerErrorException")
        headers = []
        for key, value in (chosen.get("responseParameters") or {}).items():
            if key.startswith("method.response.header.") and value.startswith("'") and value.endswith("'"):
                headers.append((key[len("method.response.header.") :], value[1:-1]))
        body = ((chosen.get("responseTemplates") or {}).get("application/json") or "").encode()
        return Response(int(chosen.get("statusCode", 200)), body, headers)

    def _event(self, request: Request, route: Route, params: dict, authorizer: dict | None = None) -> dict:
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for key, value in request.headers:
            headers[key] = value
            multi_headers.setdefault(key, []).append(value)
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for key, value in parse_qsl(request.query, keep_blank_values=True):
            query[key] = value
            multi_query.setdefault(key, []).append(value)
        content_type = (request.header("content-type") or "").split(";")[0].strip()
        binary_types = self.api.get("binaryMediaTypes") or []
        body: str | None = None
        is_b64 = False
        if request.body:
            if content_type in binary_types or "*/*" in binary_types:
                body, is_b64 = base64.b64encode(request.body).decode(), True
            else:
                try:
                    body = request.body.decode("utf-8")
                except UnicodeDecodeError:
                    body, is_b64 = base64.b64encode(request.body).decode(), True
        now = datetime.now(UTC)
        path = "/" + "/".join(request.path.split("/")[2:])
        request_id = str(uuid.uuid4())
        event = {
            "resource": route.path,
            "path": unquote(path),
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params or None,
            "stageVariables": self._stage_vars,
            "requestContext": {
                "resourceId": route.resource_id,
                "resourcePath": route.path,
                "httpMethod": request.method,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "path": unquote(request.path),
                "accountId": "123456789012",
                "protocol": "HTTP/1.1",
                "stage": self.stage_name,
                "domainPrefix": self.api_id,
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "requestId": request_id,
                "identity": {"sourceIp": request.client_ip, "userAgent": request.header("user-agent")},
                "domainName": request.header("host", "127.0.0.1"),
                "apiId": self.api_id,
            },
            "body": body,
            "isBase64Encoded": is_b64,
        }
        if authorizer is not None:
            event["requestContext"]["authorizer"] = authorizer
        return event

    def _proxy(
        self, request: Request, route: Route, params: dict, integration: dict, claims: dict | None = None
    ) -> Response:
        found = FUNCTION_IN_URI.search(integration.get("uri") or "")
        if not found:
            return _json(500, "Internal server error", "InternalServerErrorException")
        started = time.monotonic()
        try:
            result = self.lambdas.invoke(found["arn"], json.dumps(self._event(request, route, params, claims)))
        except Exception as exc:  # function missing, code not available, ...
            print(f"[apigateway] {request.method} {request.path}: {type(exc).__name__}: {exc}", flush=True)
            return _json(502, "Internal server error", "InternalServerErrorException")
        if time.monotonic() - started > INTEGRATION_TIMEOUT_S:
            return _json(504, "Endpoint request timed out", "IntegrationTimeout")
        if result.function_error:
            print(f"[apigateway] {request.method} {request.path}: function error {result.payload[:500]!r}", flush=True)
            return _json(502, "Internal server error", "InternalServerErrorException")
        return self._proxy_response(result.payload)

    @staticmethod
    def _proxy_response(payload: bytes) -> Response:
        bad = _json(502, "Internal server error", "InternalServerErrorException")
        try:
            out = json.loads(payload)
        except ValueError:
            return bad
        if not isinstance(out, dict):
            return bad
        status = out.get("statusCode")
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            return bad
        body = out.get("body")
        if body is not None and not isinstance(body, str):
            return bad
        headers: list[tuple[str, str]] = []
        single = {} if out.get("headers") is None else out["headers"]
        multi = {} if out.get("multiValueHeaders") is None else out["multiValueHeaders"]
        if not isinstance(single, dict) or not isinstance(multi, dict):
            return bad
        for key, value in single.items():
            if key not in multi:
                headers.append((str(key), str(value)))
        for key, values in multi.items():
            if not isinstance(values, list):
                return bad
            headers.extend((str(key), str(v)) for v in values)
        raw = (body or "").encode()
        if out.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body or "", validate=True)
            except ValueError:
                return bad
        headers.append(("x-amzn-RequestId", str(uuid.uuid4())))
        return Response(status, raw, headers)


def arn_like(value: str, pattern: str) -> bool:
    """IAM's wildcard match (``*`` any run of characters, ``?`` one; nothing else is special)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def policy_decision(document: dict, method_arn: str) -> str:
    """``Allow``, ``Deny`` (an explicit deny) or ``None`` (nothing allows it) for ``execute-api:Invoke`` of
    ``method_arn`` under a Lambda authorizer's policy document (IAM's wildcards ``*`` and ``?``)."""
    allowed = False
    statements = document.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict):
            continue
        actions = statement.get("Action") or []
        resources = statement.get("Resource") or []
        actions = actions if isinstance(actions, list) else [actions]
        resources = resources if isinstance(resources, list) else [resources]
        if not any(arn_like("execute-api:Invoke", str(a)) for a in actions):
            continue
        if not any(arn_like(method_arn, str(r)) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return "Deny"
        allowed = allowed or statement.get("Effect") == "Allow"
    return "Allow" if allowed else "None"
