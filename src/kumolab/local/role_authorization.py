"""IAM authorization of role sessions: the emulator enforces a role's policies for requests signed with its keys.

The local runtime runs a Lambda handler with its execution role's keys and an ECS task with its task role's
(``sts:AssumeRole`` against this emulator, :mod:`kumolab.local.runtime.role_credentials`), as AWS does. For a
request signed with such keys (an ``ASIA...`` key id this emulator's STS issued), the front door's
``iam-role-authorization`` rule marks the request, and moto's own authorization step
(``BaseResponse.call_action`` -> ``_authenticate_and_authorize_normal_action``; S3:
``_authenticate_and_authorize_s3_action``), which moto runs only in its global IAM mode, runs for that request
alone: moto's ``IAMRequest`` checks the session token (not the signature: moto's recomputation disagrees
with botocore's for REST-JSON requests), and moto's ``IAMPolicy``
evaluates the role's inline and attached policies (explicit Deny wins, else an Allow is needed). Requests
signed with the project's own key (the operator, the playbooks, the tests) are not evaluated: that key is
the account's administrator.

What this adds to moto's evaluation:

- **the IAM action name**: moto builds ``<signing name>:<operation>``; IAM's prefix differs for some services
  (``monitoring`` -> ``cloudwatch``, ``tagging`` -> ``tag``) and API Gateway's actions are HTTP methods on
  paths (``apigateway:GET`` on ``arn:aws:apigateway:<region>::/restapis/...``);
- **the resource**: moto passes ``*`` for every service but SQS, IAM roles, STS and S3, which would match no
  statement with a resource ARN. :data:`RESOURCES` names the ARN AWS authorizes for DynamoDB (tables, indexes,
  streams), Lambda (functions), CloudWatch Logs (log groups and streams), ECR (repositories) and SSM
  (parameters); for the other services the statement's ``Resource`` is not compared (action-level only);
- **AWS's error shape per protocol**: moto raises an XML ``AccessDenied`` for every service; here JSON services
  answer ``AccessDeniedException`` (HTTP 400, ``__type``), REST-JSON ones 403 ``AccessDeniedException``,
  query ones ``AccessDenied`` (403, ``ErrorResponse``), EC2 ``UnauthorizedOperation``; S3 keeps moto's.

Not evaluated (moto does not): ``Condition`` elements (except ``StringEquals`` on ``sts:ExternalId``),
``NotResource``, resource-based policies, permission boundaries, SCPs, session policies.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from urllib.parse import unquote

#: The role session of the request in progress (set by the front door's rule, per request and thread).
CURRENT = threading.local()

#: Signing name (SigV4 credential scope) -> IAM action prefix, where they differ.
ACTION_PREFIX = {"monitoring": "cloudwatch", "tagging": "tag", "email": "ses", "execute-api": "execute-api"}
#: Operation names whose IAM action is named otherwise.
ACTION_NAME = {
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "InvokeAsync"): "InvokeAsync",
    ("lambda", "GetFunctionConfiguration"): "GetFunctionConfiguration",
    # SQS authorizes a batch call as its single action ("permissions for DeleteMessageBatch ... are the
    # same as for DeleteMessage"; there is no sqs:*Batch action in IAM).
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}
#: S3 Control operations (signed as ``s3``) whose IAM action is named otherwise (the account-level block).
S3CONTROL_ACTION_NAME = {
    "GetPublicAccessBlock": "GetAccountPublicAccessBlock",
    "PutPublicAccessBlock": "PutAccountPublicAccessBlock",
    "DeletePublicAccessBlock": "PutAccountPublicAccessBlock",
}
LAMBDA_FUNCTION_PATH = re.compile(r"^/[^/]+/functions/(?P<name>[^/]+)")
ACCESS_DENIED = "because no identity-based policy allows the {action} action"


def enabled() -> bool:
    """The fidelity switch (``KUMOLAB_FIDELITY=off`` or ``KUMOLAB_FIDELITY_IAM_ROLE_AUTHORIZATION=off``)."""
    import os

    from kumolab.local.fidelity import _truthy

    return _truthy(os.environ.get("KUMOLAB_FIDELITY", "on")) and _truthy(
        os.environ.get("KUMOLAB_FIDELITY_IAM_ROLE_AUTHORIZATION", "on")
    )


def issued_role_session(key_id: str | None):
    """The moto ``AssumedRole`` this emulator's STS issued for ``key_id``, or None (the operator's key, or unknown)."""
    if not key_id or not key_id.startswith("ASIA"):
        return None
    from moto.sts.models import sts_backends

    for account in list(sts_backends.keys()):
        for backend in list(sts_backends[account].values()):
            found = backend.get_assumed_role_from_access_key(key_id)
            if found is not None:
                return found
    return None


def mark(key_id: str | None) -> None:
    """Called by the front door for every request: evaluate this one when its key is a role session's."""
    CURRENT.session = issued_role_session(key_id) if enabled() else None


# -- the role's policies -------------------------------------------------------------------------------


def role_policies(session) -> list:
    """The role's inline and attached policies (what moto's ``AssumedRoleAccessKey.collect_policies`` returns)."""
    from moto.iam.models import iam_backends

    account, partition = session.role_arn.split(":")[4], session.role_arn.split(":")[1]
    backend = iam_backends[account][partition]
    name = session.role_arn.split("/")[-1]
    found = [backend.get_role_policy(name, policy)[1] for policy in backend.list_role_policies(name)]
    return found + list(backend.list_attached_role_policies(name)[0])


def _any_resource(policy) -> str:
    """The policy's document with every statement's ``Resource`` as ``*`` (action-level evaluation)."""
    from moto.iam.access_control import IAMPolicy

    document = IAMPolicy(policy)._policy_json
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    return json.dumps(dict(document, Statement=[dict(s, Resource="*") for s in statements]))


def permitted(policies: list, action: str, resources: list[str] | None) -> bool:
    """moto's IAMPolicy evaluation: no explicit Deny and an Allow, for every resource (None: action-level only)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    documents = policies if resources is not None else [_any_resource(p) for p in policies]
    for resource in resources if resources is not None else ["*"]:
        allowed = False
        for policy in documents:
            result = IAMPolicy(policy).is_action_permitted(action, resource)
            if result == PermissionResult.DENIED:
                return False
            allowed = allowed or result == PermissionResult.PERMITTED
        if not allowed:
            return False
    return True


# -- action and resource of a request -------------------------------------------------------------------


def _param(response, name: str):
    try:
        value = response._get_param(name)
    except Exception:  # noqa: BLE001 - a body that is not JSON, a protocol without that parameter
        value = None
    return value


def _dynamodb(response, region: str, account: str, operation: str) -> list[str] | None:
    base = f"arn:aws:dynamodb:{region}:{account}:table/"
    if operation in ("ListTables", "DescribeLimits", "DescribeEndpoints", "ListBackups", "ListGlobalTables"):
        return ["*"]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        items = _param(response, "RequestItems") or {}
        return [name if name.startswith("arn:") else base + name for name in items]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        names = []
        for item in _param(response, "TransactItems") or []:
            for body in item.values():
                if isinstance(body, dict) and body.get("TableName"):
                    names.append(body["TableName"])
        return [name if name.startswith("arn:") else base + name for name in names] or None
    name = _param(response, "TableName") or _param(response, "ResourceArn")
    if not name:
        return None
    arn = name if name.startswith("arn:") else base + name
    index = _param(response, "IndexName")
    return [f"{arn}/index/{index}" if index else arn]


def _lambda(response, region: str, account: str, operation: str) -> list[str] | None:
    if operation in (
        "ListFunctions",
        "GetAccountSettings",
        "ListEventSourceMappings",
        "CreateEventSourceMapping",
        "ListLayers",
    ):
        return ["*"]
    found = LAMBDA_FUNCTION_PATH.match(getattr(response, "path", "") or "")
    if not found:
        return None
    return [function_arn(unquote(found["name"]), region, account)]


def function_arn(name: str, region: str, account: str) -> str:
    """A function's ARN (no qualifier) from a name, a partial ARN or an ARN."""
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:7])
    parts = name.split(":")
    if len(parts) >= 3 and parts[1] == "function":  # 123456789012:function:name[:qualifier]
        return f"arn:aws:lambda:{region}:{parts[0]}:function:{parts[2]}"
    return f"arn:aws:lambda:{region}:{account}:function:{parts[0]}"


def _logs(response, region: str, account: str, operation: str) -> list[str] | None:
    group = _param(response, "logGroupName")
    if not group:
        return ["*"] if operation == "DescribeLogGroups" else None
    stream = _param(response, "logStreamName")
    base = f"arn:aws:logs:{region}:{account}:log-group:{group}"
    return [f"{base}:log-stream:{stream}" if stream else f"{base}:*"]


def _ecr(response, region: str, account: str, operation: str) -> list[str] | None:
    if operation == "GetAuthorizationToken":
        return ["*"]
    name = _param(response, "repositoryName")
    if not name:
        return ["*"] if operation == "DescribeRepositories" else None
    return [f"arn:aws:ecr:{region}:{_param(response, 'registryId') or account}:repository/{name}"]


def _ssm(response, region: str, account: str, operation: str) -> list[str] | None:
    names = _param(response, "Names") or ([_param(response, "Name")] if _param(response, "Name") else [])
    if not names:
        return None
    return [f"arn:aws:ssm:{region}:{account}:parameter/{n.lstrip('/')}" for n in names]


#: Signing name -> the ARNs AWS authorizes an operation on (None from a resolver: action-level only).
RESOURCES = {"dynamodb": _dynamodb, "lambda": _lambda, "logs": _logs, "ecr": _ecr, "ssm": _ssm}


def operation_name(service_model: str, operation: str) -> str:
    """The API's own spelling of an operation: moto's Batch reads it from the URL (``/v1/submitjob`` ->
    ``submitjob``), and IAM matches action names case-insensitively on AWS where moto's evaluation does not."""
    from moto.core.utils import get_service_model

    try:
        names = get_service_model(service_model).operation_names
    except Exception:  # noqa: BLE001 - a service without a botocore model: as moto spells it
        return operation
    if operation in names:
        return operation
    return {name.lower(): name for name in names}.get((operation or "").lower(), operation)


def request_action(service: str, operation: str, method: str = "GET") -> str:
    if service == "apigateway":
        return f"apigateway:{method.upper()}"
    prefix = ACTION_PREFIX.get(service, service)
    return f"{prefix}:{ACTION_NAME.get((service, operation), operation)}"


# -- AWS's AccessDenied, per protocol ------------------------------------------------------------------


def denial_message(session, action: str, resource: str | None) -> str:
    where = f" on resource: {resource}" if resource and resource != "*" else ""
    return f"User: {session.arn} is not authorized to perform: {action}{where} " + ACCESS_DENIED.format(action=action)


def denial(protocol: str, service: str, message: str) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of AWS's access-denied answer for a service of ``protocol``."""
    if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        status = 403 if protocol == "rest-json" else 400
        body = json.dumps({"__type": "AccessDeniedException", "message": message, "Message": message})
        content = "application/json" if protocol == "rest-json" else "application/x-amz-json-1.0"
        headers = {"Content-Type": content, "x-amzn-ErrorType": "AccessDeniedException"}
        headers["x-amzn-RequestId"] = request_id()
        return status, headers, body
    from xml.sax.saxutils import escape

    if protocol == "ec2":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>UnauthorizedOperation</Code>'
            f"<Message>You are not authorized to perform this operation. {escape(message)}</Message></Error>"
            f"</Errors><RequestID>kumolab</RequestID></Response>"
        )
        return 403, {"Content-Type": "text/xml"}, body
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{escape(message)}</Message>"
        f"</Error><RequestId>kumolab</RequestId></ErrorResponse>"
    )
    return 403, {"Content-Type": "text/xml"}, body


def request_id() -> str:
    """A request id, as every AWS answer carries (SDKs and Step Functions quote it in their error messages)."""
    return str(uuid.uuid4())


class RoleAccessDenied(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: str):
        super().__init__(body)
        self.status, self.headers, self.body = status, headers, body


# -- moto's authorization step, for marked requests only --------------------------------------------------


def authorize(response, resource: str = "*") -> None:
    """moto's ``_authenticate_and_authorize_normal_action`` for a role session: token, signature, policies."""
    session = getattr(CURRENT, "session", None)
    if session is None:
        return
    from moto.core.utils import get_service_model
    from moto.iam.access_control import IAMRequest

    path = response.raw_path + (f"?{response.uri.split('?', 1)[1]}" if "?" in response.uri else "")
    request = IAMRequest(
        account_id=response.current_account,
        method=response.method,
        path=path,
        data=response.data,
        body=response.raw_body,
        headers=response.headers,
        action=response._get_action(),
    )
    # The session token is checked (moto's AssumedRoleAccessKey: it must be the session's); the signature is not:
    # moto's recomputation disagrees with botocore's for REST-JSON requests (Lambda, API Gateway).
    service, region = request._service, request._region
    operation = operation_name(getattr(response, "boto3_service_name", service), response._get_action())
    action = request_action(service, operation, response.method)
    if getattr(response, "boto3_service_name", "") == "s3control":
        action = f"s3:{S3CONTROL_ACTION_NAME.get(operation, operation)}"
    if action == "sts:GetCallerIdentity":
        return  # always allowed, even under an explicit Deny (AWS, and moto)
    account = session.role_arn.split(":")[4]
    if service == "apigateway":
        resources = [f"arn:aws:apigateway:{region}::{unquote(response.raw_path)}"]
    elif resource != "*":
        resources = [resource]  # moto's own (SQS queues, IAM roles, STS AssumeRole)
    else:
        resolver = RESOURCES.get(service)
        resources = resolver(response, region, account, operation) if resolver else None
    if permitted(role_policies(session), action, resources):
        return
    try:
        protocol = get_service_model(response.boto3_service_name).protocol
        if protocol == "query" and getattr(response, "request_json", False):
            protocol = "json"
    except Exception:  # noqa: BLE001 - a service without a botocore model: the IAM error
        protocol = "query"
    shown = resources[0] if resources else None
    raise RoleAccessDenied(*denial(protocol, service, denial_message(session, action, shown)))


def check_invoke(session, function: str, region: str, qualifier: str | None = None) -> str | None:
    """The denial message when the role may not ``lambda:InvokeFunction`` the function (the front door answers Invoke)."""  # noqa: E501
    account = session.role_arn.split(":")[4]
    arn = function_arn(function, region, account)
    resources = [arn] if not qualifier else [arn, f"{arn}:{qualifier}"]
    if permitted(role_policies(session), "lambda:InvokeFunction", resources[:1]) or (
        qualifier and permitted(role_policies(session), "lambda:InvokeFunction", resources[1:])
    ):
        return None
    return denial_message(session, "lambda:InvokeFunction", arn)


def install() -> None:
    """Patch moto's authorization step (it runs for every request; it evaluates only marked ones)."""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse

    if getattr(ActionAuthenticatorMixin._authenticate_and_authorize_normal_action, "_kumolab", False):
        return
    original_s3 = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action
    original_call_action = BaseResponse.call_action

    def normal_action(self, resource: str = "*") -> None:
        authorize(self, resource)

    def s3_action(self, bucket_name=None, key_name=None) -> None:
        if getattr(CURRENT, "session", None) is None:
            return
        from moto import settings

        saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # moto's own S3 evaluation, for this call
        try:
            original_s3(self, bucket_name, key_name)
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = saved

    def call_action(self):
        try:
            return original_call_action(self)
        except RoleAccessDenied as denied:
            headers = dict(self.response_headers, **denied.headers)
            headers["status"] = str(denied.status)
            return denied.status, headers, denied.body

    normal_action._kumolab = True  # type: ignore[attr-defined]
    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = normal_action
    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = s3_action
    BaseResponse.call_action = call_action
