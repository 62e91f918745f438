"""The emulator's front door: every request to the emulator endpoint passes here before it reaches moto.

moto stores what it is told and, without Docker, executes nothing: its Lambda ``Invoke`` answers a
canned ``"Simple Lambda happy path OK"``, its ECS tasks are RUNNING for ever, its API Gateway has no
``execute-api``. The front door is a WSGI middleware around moto's own server application
(``DomainDispatcherApplication(create_backend_app)``, served threaded by werkzeug as ``moto_server``
does) that makes the one endpoint tell the truth to any client — the AWS CLI, a user's boto3 script, the
amazon.aws modules:

1. **Request rules** (:data:`RULES`, in order): each has a ``name`` and a docstring, looks at a request
   and either answers it or passes (returns None); a request no rule answers goes to moto unchanged.
   Later rules (fidelity checks, issue 12; authentication and Host checks, issue 13) are added here, in
   the order they must apply.
2. **Backend hooks** (:data:`HOOKS`): changes to moto's backends inside this process, for what moto
   does itself rather than over HTTP (the Lambda backend's own invoke, ECS task state, DynamoDB writes).

What the endpoint executes itself comes from the local runtime (:mod:`kumolab.local.runtime`), hosted
here and created on first use: :class:`LambdaRuntime` per region (it reads the function from this
emulator, like any client), :class:`ApiGatewayStage` per deployed stage, and the ECS task runner
(:mod:`kumolab.local.ecs_tasks`), the Batch job runner (:mod:`kumolab.local.batch_jobs`) and moto's States
Language interpreter, pointed back at this endpoint (:mod:`kumolab.local.step_functions`). Run it with
``python -m kumolab.local.front_door -H 127.0.0.1 -p PORT``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import quote, urlsplit

from kumolab.local.runtime import invoke_api
from kumolab.local.runtime.httpserve import Request, Response
from kumolab.paths import state_dir

DEFAULT_REGION = "ap-northeast-1"
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/(?P<region>[a-z0-9-]+)/")
#: ``/restapis/<id>/<stage>/_user_request_/<path>``: how moto (and LocalStack) spell an execute-api URL.
EXECUTE_API_PATH = re.compile(r"^/restapis/(?P<api>[^/]+)/(?P<stage>[^/]+)/_user_request_(?P<path>/.*)?$")


def _json(status: int, body: dict, error_type: str | None = None) -> Response:
    """A JSON answer with a request id, as every AWS answer has (SDKs and Step Functions quote it in errors)."""
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    headers += [("x-amzn-ErrorType", error_type)] if error_type else []
    return Response(status, json.dumps(body).encode(), headers)


# -- the emulator as the runtime's AWS target -------------------------------------------------------


@dataclass(frozen=True)
class EmulatorTarget:
    """:class:`kumolab.local.runtime.aws.AwsConfig`'s interface, bound to this emulator's own endpoint.

    The runtime hosted here reaches the emulator it runs in over loopback, whatever profile the user has
    set; the processes it starts (Lambda workers, ECS tasks) get the same endpoint and the emulator's keys.
    """

    endpoint_url: str
    region: str

    @property
    def is_emulator(self) -> bool:
        return True

    @functools.cached_property
    def keys(self) -> dict[str, str]:
        return emulator_keys()

    def client(self, service: str, **kwargs):
        import boto3
        from botocore.config import Config

        kwargs.setdefault("config", Config(max_pool_connections=64, retries={"max_attempts": 8, "mode": "standard"}))
        return boto3.session.Session(region_name=self.region, **self.keys).client(
            service, endpoint_url=self.endpoint_url, **kwargs
        )

    def function_environment(self) -> dict[str, str]:
        """The local profile when it names this emulator (as every other local process gets), else its endpoint and keys."""  # noqa: E501
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        try:
            import kumolab.aws
            from kumolab.local import settings

            if kumolab.aws.endpoint_url(settings.profile_name()) == self.endpoint_url:
                return dict(env, **settings.profile_environment())
        except Exception:  # noqa: BLE001, S110 - no profile (yet), or a broken one: the endpoint and keys below
            pass
        return dict(
            env,
            AWS_ENDPOINT_URL=self.endpoint_url,
            AWS_ACCESS_KEY_ID=self.keys["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=self.keys["aws_secret_access_key"],
        )

    @functools.cached_property
    def role_credentials(self):
        from kumolab.local.runtime.role_credentials import RoleCredentials

        return RoleCredentials(self.client("sts"))

    def role_environment(self, role_arn: str | None, name: str) -> tuple[dict[str, str], float | None]:
        """The role's own keys for a function or task (AssumeRole here), as :meth:`AwsConfig.role_environment`."""
        from kumolab.local.runtime.aws import role_environment

        return role_environment(self, role_arn, name)


class LocalServices:
    """The local runtime inside the emulator process, each part created on first use."""

    def __init__(self, endpoint_url: str, default_region: str | None = None):
        self.endpoint_url = endpoint_url
        self.default_region = default_region or os.environ.get("KUMOLAB_AWS_REGION") or DEFAULT_REGION
        self._lambdas: dict[str, object] = {}
        self._stages: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()
        self._tasks = None
        self._batch = None

    def target(self, region: str | None = None) -> EmulatorTarget:
        return EmulatorTarget(self.endpoint_url, region or self.default_region)

    def lambdas(self, region: str | None = None):
        from kumolab.local.runtime.lambda_invoke import LambdaRuntime

        region = region or self.default_region
        with self._lock:
            if region not in self._lambdas:
                workers = int(os.environ.get("KUMOLAB_LAMBDA_MAX_WORKERS", "8"))
                self._lambdas[region] = LambdaRuntime(self.target(region), max_workers=workers)
            return self._lambdas[region]

    def stage(self, api_id: str, stage: str):
        """The deployed stage, or None when no region of this emulator has that REST API."""
        from kumolab.local.runtime.apigateway import ApiGatewayStage

        with self._lock:
            if (api_id, stage) in self._stages:
                return self._stages[(api_id, stage)]
        region = api_region(api_id)
        if region is None:
            return None
        served = ApiGatewayStage(self.target(region), self.lambdas(region), api_id, stage)
        with self._lock:
            return self._stages.setdefault((api_id, stage), served)

    @property
    def tasks(self):
        from kumolab.local.ecs_tasks import TaskRunner

        with self._lock:
            if self._tasks is None:
                self._tasks = TaskRunner(self.target())
            return self._tasks

    @property
    def batch(self):
        from kumolab.local.batch_jobs import BatchRunner

        with self._lock:
            if self._batch is None:
                self._batch = BatchRunner(self.target())
            return self._batch

    def shutdown(self) -> None:
        if self._batch is not None:
            self._batch.shutdown()
        for runtime in list(self._lambdas.values()):
            runtime.shutdown()
        if self._tasks is not None:
            self._tasks.shutdown()


def credentials_file() -> os.PathLike[str]:
    """The emulator's key file: the one ``main`` was given (``$KUMOLAB_EMULATOR_CREDENTIALS``), else the state dir's."""
    from pathlib import Path

    return Path(os.environ.get("KUMOLAB_EMULATOR_CREDENTIALS") or state_dir() / "emulator" / "credentials.json")


def emulator_keys() -> dict[str, str]:
    """The access key the project generated (the local profile's); the only one the emulator accepts (guard.py)."""
    from kumolab.local import settings

    return settings.credentials(credentials_file().parent)


def api_region(api_id: str) -> str | None:
    """The region of this emulator that holds REST API ``api_id`` (execute-api URLs name no region here)."""
    from moto.apigateway.models import apigateway_backends

    for account in list(apigateway_backends.keys()):
        for region, backend in list(apigateway_backends[account].items()):
            if api_id in getattr(backend, "apis", {}):
                return region
    return None


def request_region(request: Request, default: str) -> str:
    """The region a signed request is for (its SigV4 credential scope), else ``default``."""
    found = CREDENTIAL_SCOPE.search(request.header("Authorization") or "")
    return found["region"] if found else default


# -- request rules ------------------------------------------------------------------------------


class Rule:
    """A front-door rule: ``rule(request)`` answers the request (a Response) or passes it on (None)."""

    name = "rule"

    def __init__(self, services: LocalServices):
        self.services = services

    def __call__(self, request: Request) -> Response | None:
        raise NotImplementedError


class RoleAuthorization(Rule):
    """IAM authorization of role sessions (fidelity rule ``iam-role-authorization``, issue 12 Part 2).

    A request signed with keys this emulator's STS issued for a role (what the local runtime gives a Lambda
    handler or an ECS task: its execution / task role's) is evaluated against that role's policies by moto's
    own authorization step, for that request alone (:mod:`kumolab.local.role_authorization`, installed by
    :mod:`kumolab.local.fidelity`); a missing permission is AWS's AccessDenied / AccessDeniedException for
    that service. Lambda ``Invoke``, which the front door answers itself, is checked here
    (``lambda:InvokeFunction``). Requests signed with the project's key (the operator) are not evaluated.
    """

    name = "iam-role-authorization"

    def __call__(self, request: Request) -> Response | None:
        from kumolab.local import guard, role_authorization

        key = guard.request_key_id({"authorization": request.header("Authorization") or ""}, request.query)
        role_authorization.mark(key)
        session = getattr(role_authorization.CURRENT, "session", None)
        found = invoke_api.INVOKE_PATH.match(request.path) if session is not None and request.method == "POST" else None
        if found is None:
            return None
        from urllib.parse import parse_qs, unquote

        qualifier = (parse_qs(request.query).get("Qualifier") or [None])[0]
        denied = role_authorization.check_invoke(
            session, unquote(found["function"]), request_region(request, self.services.default_region), qualifier
        )
        if denied is None:
            return None
        return _json(
            403, {"__type": "AccessDeniedException", "Type": "User", "message": denied}, "AccessDeniedException"
        )


class LambdaInvoke(Rule):
    """Lambda ``Invoke`` and ``InvokeAsync`` run the deployed handler in the local runtime.

    ``POST /2015-03-31/functions/<name>/invocations`` (what ``aws lambda invoke`` and boto3 send) and the
    legacy ``/2014-11-13/functions/<name>/invoke-async/`` are answered by the region's
    :class:`LambdaRuntime` through :func:`kumolab.local.runtime.invoke_api.invoke_response`, the same code
    as the lab runtime's port: the function's real result, AWS's error shape and status codes,
    ``LogType: Tail``, Event invocations with retries and the dead-letter queue. moto's canned reply is
    never reached.
    """

    name = "lambda-invoke"

    def __call__(self, request: Request) -> Response | None:
        if request.method != "POST" or not (
            invoke_api.INVOKE_PATH.match(request.path) or invoke_api.INVOKE_ASYNC_PATH.match(request.path)
        ):
            return None  # the rest of the Lambda API (create, publish, ...) is moto's
        runtime = self.services.lambdas(request_region(request, self.services.default_region))
        return invoke_api.route(runtime, request)


class ExecuteApi(Rule):
    """``/restapis/<id>/<stage>/_user_request_/<path>`` calls the deployed REST API stage.

    The URL form moto documents for execute-api. The stage is served in-process by
    :class:`ApiGatewayStage` (routing, proxy events, MOCK preflights, throttling, 403s as API Gateway
    answers them), so a client given only the API id and stage can call the API. An unknown API id is a
    404 that says so.
    """

    name = "execute-api"

    def __call__(self, request: Request) -> Response | None:
        found = EXECUTE_API_PATH.match(request.path)
        if not found:
            return None
        stage = self.services.stage(found["api"], found["stage"])
        if stage is None:
            return _json(404, {"message": f"No REST API with id {found['api']} on this emulator"}, "NotFoundException")
        path = f"/{found['stage']}{found['path'] or '/'}"
        return stage(Request(request.method, path, request.query, request.headers, request.body, request.client_ip))


class RestApiTags(Rule):
    """``TagResource``/``UntagResource``/``GetTags`` on a REST API's ARN (``arn:aws:apigateway:<region>::/restapis/<id>``),
    as AWS supports them; moto routes only stage ARNs there (a 404). See :func:`apigateway_import.rest_api_tags`."""  # noqa: E501

    name = "rest-api-tags"

    def __call__(self, request: Request) -> Response | None:
        if not request.path.startswith("/tags/"):
            return None
        from kumolab.local.apigateway_import import rest_api_tags

        answer = rest_api_tags(request.method, request.path, request.query, request.body)
        if answer is None:
            return None
        status, body = answer
        return Response(status, b"", []) if status == 204 else _json(status, body)


class EfsLegacyTags(Rule):
    """EFS's first tag API — ``DescribeTags``, ``CreateTags``, ``DeleteTags`` on a file system — answered from moto's
    EFS backend (moto serves only ``ListTagsForResource``/``TagResource``; ``community.aws.efs`` calls the old
    ones, which AWS still serves). See :func:`kumolab.local.efs.legacy_tags`."""

    name = "efs-legacy-tags"

    def __call__(self, request: Request) -> Response | None:
        if not request.path.startswith("/2015-02-01/"):
            return None
        from kumolab.local.efs import legacy_tags

        answer = legacy_tags(request.method, request.path, request.body)
        if answer is None:
            return None
        status, body = answer
        if status == 204:
            return Response(204, b"", [])
        return _json(status, body, body.get("ErrorCode") if status >= 400 else None)


#: The request rules, in the order they apply. Insert new ones where they belong (checks before executors).
RULES: list[type[Rule]] = [RoleAuthorization, LambdaInvoke, ExecuteApi, RestApiTags, EfsLegacyTags]


# -- backend hooks ------------------------------------------------------------------------------


def hook_dynamodb_atomic_writes(services: LocalServices) -> None:
    """DynamoDB item writes are serialised, so concurrent ``ADD`` updates lose nothing (see moto_atomic)."""
    from kumolab.local.moto_atomic import install

    install()


def hook_scaling_policy_names(services: LocalServices) -> None:
    """``DescribeScalingPolicies`` filters by ``PolicyNames``, as on AWS (see moto_atomic)."""
    from kumolab.local.moto_atomic import install_scaling_policy_names_filter

    install_scaling_policy_names_filter()


def hook_launch_template_data(services: LocalServices) -> None:
    """``CreateLaunchTemplate``'s own tags stay out of version 1's data (see moto_atomic)."""
    from kumolab.local.moto_atomic import install_launch_template_fix

    install_launch_template_fix()


def hook_lambda_backend_invoke(services: LocalServices) -> None:
    """moto's own Lambda invoke (used by its other services: SNS, SQS event sources, Step Functions) runs the
    handler in the local runtime too, or raises the error; the canned "happy path" reply is gone."""
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.exceptions import JsonRESTError

    def invoke(backend, function_name, qualifier, body, headers, response_headers):
        headers = dict(headers or {})
        data = body.encode() if isinstance(body, str) else (body or b"")
        request = Request("POST", "", "", list(headers.items()), data, "127.0.0.1")
        answer = invoke_api.invoke_response(services.lambdas(backend.region_name), function_name, request, qualifier)
        names = {k.lower(): v for k, v in answer.headers}
        if answer.status >= 300:
            error = JsonRESTError(
                names.get("x-amzn-errortype", "ServiceException"), json.loads(answer.body).get("message", "")
            )
            error.code = answer.status
            raise error
        for key in ("x-amz-function-error", "x-amz-log-result", "x-amz-executed-version"):
            if key in names:
                response_headers[key] = names[key]
        return answer.body

    for cls in (LambdaBackend, LambdaSimpleBackend):
        cls.invoke = invoke


def hook_lambda_file_system_configs(services: LocalServices) -> None:
    """Lambda keeps a function's ``FileSystemConfigs`` (moto drops it), so the runtime can mount its EFS
    access point (see :mod:`kumolab.local.efs`)."""
    from kumolab.local.efs import install_file_system_configs

    install_file_system_configs()


def hook_ecs_tasks(services: LocalServices) -> None:
    """``RunTask`` runs the task's containers as local processes; ``DescribeTasks`` and ``StopTask`` follow
    them (:mod:`kumolab.local.ecs_tasks`)."""
    services.tasks.install()


def hook_batch_jobs(services: LocalServices) -> None:
    """``SubmitJob`` runs the job (each child of an array job) as a local process; ``DescribeJobs``,
    ``ListJobs`` and ``TerminateJob`` follow it (:mod:`kumolab.local.batch_jobs`)."""
    services.batch.install()


def hook_step_functions(services: LocalServices) -> None:
    """``StartExecution`` runs the state machine (moto's States Language interpreter), its Task states calling
    this emulator as the state machine's role: Lambda runs the handler, Batch the job
    (:mod:`kumolab.local.step_functions`)."""
    from kumolab.local.step_functions import StepFunctionsRunner

    StepFunctionsRunner(services.target).install()


def hook_eni_private_dns_name(services: LocalServices) -> None:
    """Every network interface has a private DNS name, as on AWS (moto sets one only in VPCs with DNS hostnames,
    and its ``RunTask`` with ``awsvpc`` networking then fails with HTTP 500 in every other VPC)."""
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ec2.utils import generate_dns_from_ip

    if isinstance(getattr(NetworkInterface, "private_dns_name", None), property):
        return

    def get(eni):
        return eni.__dict__.get("_private_dns_name") or (
            generate_dns_from_ip(eni.private_ip_address) if eni.private_ip_address else None
        )

    def set_(eni, value):
        eni.__dict__["_private_dns_name"] = value

    NetworkInterface.private_dns_name = property(get, set_)


#: Changes to moto's backends in this process, applied once at start.
HOOKS: list[Callable[[LocalServices], None]] = [
    hook_dynamodb_atomic_writes,
    hook_launch_template_data,
    hook_scaling_policy_names,
    hook_eni_private_dns_name,
    hook_lambda_backend_invoke,
    hook_lambda_file_system_configs,
    hook_ecs_tasks,
    hook_batch_jobs,
    hook_step_functions,
    lambda services: __import__("kumolab.local.fidelity", fromlist=["install"]).install(),  # AWS rules (fidelity.py)
]


# -- the WSGI middleware ------------------------------------------------------------------------


def _request_from_environ(environ: dict) -> Request:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        parts = urlsplit(raw)
        path, query = parts.path or "/", parts.query
    else:
        path, query = quote(environ.get("PATH_INFO", "/"), safe="/:@!$&'()*+,;=-._~"), environ.get("QUERY_STRING", "")
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").title(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").title(), value))
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads the body again
    return Request(
        environ.get("REQUEST_METHOD", "GET"), path, query, headers, body, environ.get("REMOTE_ADDR", "127.0.0.1")
    )


@dataclass
class FrontDoor:
    """WSGI middleware: the first rule that answers a request wins; otherwise moto's app answers it."""

    app: Callable
    rules: list[Rule] = field(default_factory=list)

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        request = _request_from_environ(environ)
        for rule in self.rules:
            try:
                response = rule(request)
            except Exception as exc:  # noqa: BLE001 - a bug in a rule must not look like an AWS answer
                import traceback

                traceback.print_exc()
                response = _json(
                    500,
                    {"message": f"kumolab front door, rule {rule.name}: {type(exc).__name__}: {exc}"},
                    "ServiceException",
                )
            if response is not None:
                return self._send(response, start_response, environ.get("REQUEST_METHOD") == "HEAD")
        return self.app(environ, start_response)

    @staticmethod
    def _send(response: Response, start_response, head: bool) -> list[bytes]:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        headers = list(response.headers)
        if "content-length" not in {k.lower() for k, _ in headers}:
            headers.append(("Content-Length", str(len(response.body) if response.status not in (204, 304) else 0)))
        start_response(f"{response.status} {phrase}", headers)
        return [] if head or response.status in (204, 304) else [response.body]


def build(endpoint_url: str) -> tuple[FrontDoor, LocalServices]:
    """moto's server application behind the front door, with the hooks installed."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        create_backend_app,
    )

    services = LocalServices(endpoint_url)
    for hook in HOOKS:
        hook(services)
    moto_app = DomainDispatcherApplication(create_backend_app)
    moto_app.debug = True  # type: ignore[attr-defined]  # as moto_server: tracebacks in the log
    return FrontDoor(moto_app, [rule(services) for rule in RULES]), services


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kumolab.local.front_door", description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", "5000")))
    parser.add_argument("--credentials", help="the emulator's key file (default <state dir>/emulator/credentials.json)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds its own URLs (SQS queue URLs) from it
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"  # no Access-Control-Allow-Origin for other origins (review C2)
    if args.credentials:
        os.environ["KUMOLAB_EMULATOR_CREDENTIALS"] = os.path.abspath(args.credentials)

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from kumolab.local import guard

    door, services = build(f"http://{args.host}:{args.port}")
    # Host, body size, the project's access key and header checks come first (kumolab.local.guard, issue 13).
    app = guard.EmulatorGuard(door, args.port, emulator_keys())
    server = guard.bound_threads(
        make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        services.shutdown()


if __name__ == "__main__":
    main()
