"""The runtime daemon that ``kumolab-runtime start`` runs in the background.

One process per lab serves, on loopback:
- the Lambda Invoke API (``POST /2015-03-31/functions/<name>/invocations``, the path boto3 uses), so a
  client points its Lambda endpoint here and everything else at the emulator; ``GET /health``. Invoke
  needs a request signed with the runtime's own profile key (or the ``X-Kumolab-Emulator-Key`` header
  with its secret), as the emulator does (:mod:`kumolab.local.guard`): another account on the machine
  cannot run the lab's functions through this port;
- optionally an API Gateway stage (``--rest-api``/``--stage``) on its own port;
- optionally an S3 website (``--bucket``) on its own port.
When listening it writes ``--info`` (JSON with the URLs), which is also its health signal.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sys
import threading
from pathlib import Path

from kumolab.local import guard
from kumolab.local.runtime import invoke_api
from kumolab.local.runtime.apigateway import ApiGatewayStage
from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.httpserve import Request, Response, serve
from kumolab.local.runtime.lambda_invoke import LambdaRuntime
from kumolab.local.runtime.website import S3Website


def invoke_refusal(request: Request, key_id: str, secret: str) -> Response | None:
    """403 in Lambda's shape unless ``request`` is signed with ``key_id`` or carries ``secret``; else None."""
    given = request.header(guard.SECRET_HEADER)
    if given and hmac.compare_digest(given.encode(), secret.encode()):
        return None
    key = guard.request_key_id({"authorization": request.header("authorization", "") or ""}, request.query)
    if key is not None and hmac.compare_digest(key.encode(), key_id.encode()):
        return None
    error, message = (
        ("MissingAuthenticationTokenException", "Request is not signed; sign it with the lab's AWS profile")
        if key is None
        else ("UnrecognizedClientException", "The security token included in the request is invalid.")
    )
    return Response(
        403,
        json.dumps({"Type": "User", "message": message}).encode(),
        [("Content-Type", "application/json"), ("x-amzn-ErrorType", error)],
    )


def lambda_api(runtime: LambdaRuntime, key_id: str, secret: str):
    """The Invoke API (:func:`kumolab.local.runtime.invoke_api.route`, shared with the emulator's endpoint), for
    requests signed with the runtime's profile key."""

    def app(request: Request) -> Response:
        if request.path == "/health":
            return Response(
                200, json.dumps({"ok": True, "pools": runtime.stats()}).encode(), [("Content-Type", "application/json")]
            )
        refused = invoke_refusal(request, key_id, secret)
        if refused is not None:
            return refused
        answer = invoke_api.route(runtime, request)
        if answer is None:
            return Response(
                404, b'{"Type":"User","message":"Unknown operation"}', [("Content-Type", "application/json")]
            )
        return answer

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab.local.runtime.server")
    parser.add_argument("--info", required=True, type=Path)
    parser.add_argument("--profile", help="AWS profile (default $AWS_PROFILE, else the local emulator's)")
    parser.add_argument("--region")
    parser.add_argument("--lambda-port", type=int, default=0)
    parser.add_argument("--rest-api")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--bucket")
    parser.add_argument("--web-port", type=int, default=0)
    parser.add_argument("--max-workers", type=int, default=int(os.environ.get("KUMOLAB_LAMBDA_MAX_WORKERS", "8")))
    parser.add_argument("--retry-delays", default="1,2", help="seconds between async retries (AWS: ~60,120)")
    args = parser.parse_args(argv)

    aws = AwsConfig.from_environment(args.profile or None, args.region)
    runtime = LambdaRuntime(
        aws, max_workers=args.max_workers, retry_delays=tuple(float(x) for x in args.retry_delays.split(","))
    )
    credentials = aws.session.get_credentials().get_frozen_credentials()
    servers = [serve(lambda_api(runtime, credentials.access_key, credentials.secret_key), args.lambda_port)]
    info = {
        "pid": os.getpid(),
        "profile": aws.profile,
        "endpoint_url": aws.endpoint_url,
        "region": aws.region,
        "lambda_endpoint": f"http://127.0.0.1:{servers[0].server_address[1]}",
    }
    if args.rest_api:
        stage = ApiGatewayStage(aws, runtime, args.rest_api, args.stage)
        servers.append(serve(stage, args.api_port))
        info.update(
            rest_api_id=stage.api_id,
            stage=args.stage,
            api_url=f"http://127.0.0.1:{servers[-1].server_address[1]}/{args.stage}",
        )
    if args.bucket:
        servers.append(serve(S3Website(aws, args.bucket), args.web_port))
        info.update(bucket=args.bucket, website_url=f"http://127.0.0.1:{servers[-1].server_address[1]}/")

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    tmp = args.info.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(args.info)
    print(f"serving {json.dumps(info)}", flush=True)
    done.wait()
    for server in servers:
        server.shutdown()
    runtime.shutdown()
    args.info.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
