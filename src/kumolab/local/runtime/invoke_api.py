"""The Lambda ``Invoke`` API over HTTP, answered by a :class:`LambdaRuntime`: one implementation for every endpoint.

Both the emulator's own endpoint (:mod:`kumolab.local.front_door`, what ``aws lambda invoke`` and a
user's boto3 ``invoke`` reach) and the per-lab runtime port (:mod:`.server`, what the lab CLIs use)
answer ``POST /2015-03-31/functions/<name>/invocations`` with :func:`invoke_response`, the way the
Lambda service does:

- ``X-Amz-Invocation-Type``: ``RequestResponse`` (200 with the function's result), ``Event`` (202 at
  once; the runtime retries a failed event and then dead-letters it), ``DryRun`` (204);
- a function error is still 200, with ``X-Amz-Function-Error: Unhandled`` and the payload
  ``{"errorMessage", "errorType", "stackTrace"?}``;
- ``X-Amz-Log-Type: Tail`` (synchronous only): ``X-Amz-Log-Result`` is the base64 of the last 4 KB of
  that invocation's log;
- ``?Qualifier=`` (version or alias) and ``X-Amz-Executed-Version``;
- errors of the API itself with AWS's codes: 404 ``ResourceNotFoundException``, 400
  ``InvalidRequestContentException`` (payload not JSON) / ``InvalidParameterValueException``, 502
  ``InvalidRuntimeException`` (a runtime the local target cannot run: not Python), 500
  ``ServiceException`` (the deployed code cannot be found locally). Never a made-up success.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from urllib.parse import parse_qsl, unquote

from kumolab.local.runtime.httpserve import Request, Response
from kumolab.local.runtime.lambda_invoke import (
    CodeNotAvailable,
    FunctionNotFound,
    LambdaRuntime,
    MountFailure,
    RuntimeNotSupported,
)

#: ``POST /2015-03-31/functions/<name or ARN>/invocations``
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations/?$")
#: The legacy ``InvokeAsync`` (``POST /2014-11-13/functions/<name>/invoke-async/``): an Event invocation.
INVOKE_ASYNC_PATH = re.compile(r"^/2014-11-13/functions/(?P<function>[^/]+)/invoke-async/?$")
#: What AWS returns in ``X-Amz-Log-Result``: the last 4 KB of the invocation's log.
LOG_TAIL_BYTES = 4096
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


def _error(status: int, error_type: str, message: str) -> Response:
    """An error as the Lambda service sends it: its type in ``x-amzn-ErrorType``, and a request id, as on every
    AWS answer (SDKs and Step Functions put it in their error messages)."""
    body = json.dumps({"Type": "User" if status < 500 else "Service", "message": message}).encode()
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)]
    headers.append(("x-amzn-RequestId", _request_id()))
    return Response(status, body, headers)


def _request_id() -> str:
    return str(uuid.uuid4())


def split_function(name: str, qualifier: str | None) -> tuple[str, str | None]:
    """``name:qualifier`` (or an ARN with a qualifier) -> (function, qualifier); a ``?Qualifier=`` wins."""
    name = unquote(name)
    parts = name.split(":")
    if name.startswith("arn:") and len(parts) == 8:
        return ":".join(parts[:7]), qualifier or parts[7]
    if not name.startswith("arn:") and len(parts) == 2:
        return parts[0], qualifier or parts[1]
    return name, qualifier


def invoke_response(
    runtime: LambdaRuntime,
    function: str,
    request: Request,
    qualifier: str | None = None,
    invocation_type: str | None = None,
) -> Response:
    """Run one ``Invoke`` request through ``runtime`` and answer it as the Lambda service would."""
    kind = invocation_type or request.header("X-Amz-Invocation-Type") or "RequestResponse"
    if kind not in INVOCATION_TYPES:
        return _error(
            400,
            "InvalidParameterValueException",
            f"1 validation error detected: Value '{kind}' at 'invocationType' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(INVOCATION_TYPES)}]",
        )
    function, qualifier = split_function(function, qualifier)
    try:
        result = runtime.invoke(function, request.body or b"{}", kind, qualifier=qualifier)
    except FunctionNotFound as exc:
        return _error(404, "ResourceNotFoundException", str(exc))
    except RuntimeNotSupported as exc:
        return _error(502, "InvalidRuntimeException", str(exc))
    except MountFailure as exc:
        return _error(403, "EFSMountFailureException", str(exc))
    except CodeNotAvailable as exc:
        return _error(500, "ServiceException", str(exc))
    except ValueError as exc:
        return _error(400, "InvalidParameterValueException", str(exc))
    if result.status_code == 400:
        return Response(
            400,
            result.payload,
            [
                ("Content-Type", "application/json"),
                ("x-amzn-ErrorType", "InvalidRequestContentException"),
                ("x-amzn-RequestId", result.request_id or _request_id()),
            ],
        )
    headers = [
        ("Content-Type", "application/json"),
        ("X-Amz-Executed-Version", result.executed_version),
        ("x-amzn-RequestId", result.request_id),
    ]
    if result.function_error:
        headers.append(("X-Amz-Function-Error", result.function_error))
    if kind == "RequestResponse" and (request.header("X-Amz-Log-Type") or "None") == "Tail":
        headers.append(("X-Amz-Log-Result", base64.b64encode(result.logs[-LOG_TAIL_BYTES:]).decode()))
    return Response(result.status_code, result.payload, headers)


def route(runtime: LambdaRuntime, request: Request) -> Response | None:
    """The answer to ``request`` when it is an ``Invoke`` or ``InvokeAsync`` call, else None."""
    if request.method != "POST":
        return None
    query = dict(parse_qsl(request.query))
    found = INVOKE_PATH.match(request.path)
    if found:
        return invoke_response(runtime, found["function"], request, query.get("Qualifier") or None)
    found = INVOKE_ASYNC_PATH.match(request.path)
    if found:
        answer = invoke_response(runtime, found["function"], request, invocation_type="Event")
        if answer.status == 202:
            answer.body = json.dumps({"Status": 202}).encode()
        return answer
    return None
