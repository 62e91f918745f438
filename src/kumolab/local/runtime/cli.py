"""kumolab-runtime: the lab's local serverless services (Lambda, API Gateway stage, S3 website).

    kumolab-runtime start --lab <lab> --rest-api <api id> --bucket <bucket>   # prints the URLs
    kumolab-runtime status [--lab <lab>]
    kumolab-runtime stop --lab <lab>
    kumolab-runtime invoke FUNCTION [--payload JSON] [--invocation-type RequestResponse|Event|DryRun]
    kumolab-runtime ecs start|stop|sync|status --cluster C --service S [--lab L]  # local ECS service workers
    kumolab-runtime package --source DIR --include FILE... --name NAME   # deterministic Lambda zip

``start`` runs one background process per lab (reused while it is up with the same arguments) and
writes its URLs to ``<state dir>/runtime/<lab>/info.json``; ``--json`` prints them (with ``changed``)
for Ansible. Ports default to the lab's ``ports`` in the lab registry (``inventories/shared/labs.yml``,
fixed so that a deployed GUI keeps working across restarts); ``--*-port 0`` picks free ones. Every AWS
call goes through an AWS profile: ``--profile``, else ``$AWS_PROFILE``, else the local emulator's.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from kumolab import labs
from kumolab.local.process import BackgroundService, ServiceError, python_module_argv
from kumolab.local.runtime.aws import AwsConfig
from kumolab.paths import state_dir

# For a lab the registry gives no port of that kind (a lab under development, a test's own lab name).
FALLBACK_PORTS = {"lambda": 5151, "api": 5152, "web": 5153}


def default_ports(lab: str) -> dict[str, int]:
    registered = labs.labs().get(lab)
    return dict(FALLBACK_PORTS, **(registered.ports if registered else {}))


def _healthy(service: BackgroundService) -> bool:
    info = service.info()
    if not info:
        return False
    try:
        with urllib.request.urlopen(info["lambda_endpoint"] + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, KeyError):
        return False


def service_for(lab: str, server_args: list[str] | None = None) -> BackgroundService:
    directory = state_dir() / "runtime" / lab
    argv = python_module_argv(
        "kumolab.local.runtime.server", "--info", str(directory / "info.json"), *(server_args or [])
    )
    return BackgroundService(name=lab, argv=argv, healthy=_healthy, directory=directory)


def start(
    lab: str,
    rest_api: str | None,
    stage: str,
    bucket: str | None,
    ports: dict,
    profile: str | None = None,
    region: str | None = None,
) -> dict:
    aws = AwsConfig.from_environment(profile, region)
    server_args = ["--profile", aws.profile or "", "--region", aws.region, "--lambda-port", str(ports["lambda"])]
    if rest_api:
        server_args += ["--rest-api", rest_api, "--stage", stage, "--api-port", str(ports["api"])]
    if bucket:
        server_args += ["--bucket", bucket, "--web-port", str(ports["web"])]
    service = service_for(lab, server_args)
    args_file = service.directory / "args.json"
    changed = False
    if service.running():
        try:
            same = json.loads(args_file.read_text()) == server_args
        except (OSError, ValueError):
            same = False
        if not same:
            service.stop()
    if not service.running():
        service.start()
        args_file.write_text(json.dumps(server_args))
        changed = True
    return dict(
        service.info() or {}, changed=changed, lab=lab, info_file=str(service.info_file), log=str(service.log_file)
    )


def stop(lab: str) -> bool:
    service = service_for(lab)
    stopped = service.stop()
    service.info_file.unlink(missing_ok=True)
    return stopped


def running_labs() -> list[str]:
    root = state_dir() / "runtime"
    labs = []
    for info in sorted(root.glob("*/info.json")) if root.is_dir() else []:
        if service_for(info.parent.name).running():
            labs.append(info.parent.name)
    return labs


def signed_request(url: str, body: bytes, headers: dict, aws: AwsConfig) -> urllib.request.Request:
    """A POST signed (SigV4, service lambda) with the profile's key: the runtime's Invoke API wants it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    signed = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(aws.session.get_credentials(), "lambda", aws.region).add_auth(signed)
    return urllib.request.Request(url, data=body, headers=dict(signed.headers.items()), method="POST")


def invoke(function: str, payload: str, invocation_type: str, lab: str | None) -> tuple[int, dict]:
    """Invoke through a running runtime (so Event invocations finish in the background), else in-process."""
    labs = [lab] if lab else running_labs()
    for name in labs:
        service = service_for(name)
        info = service.info() if service.running() else None
        if not info:
            continue
        request = signed_request(
            f"{info['lambda_endpoint']}/2015-03-31/functions/{function}/invocations",
            payload.encode(),
            {"X-Amz-Invocation-Type": invocation_type},
            AwsConfig.from_environment(info.get("profile"), info.get("region")),
        )
        try:
            with urllib.request.urlopen(request, timeout=960) as resp:
                body, status, error = resp.read(), resp.status, resp.headers.get("X-Amz-Function-Error")
        except urllib.error.HTTPError as exc:
            body, status, error = exc.read(), exc.code, None
        return status, {"StatusCode": status, "FunctionError": error, "Payload": body.decode(errors="replace")}
    from kumolab.local.runtime.lambda_invoke import LambdaRuntime

    runtime = LambdaRuntime(AwsConfig.from_environment())
    try:
        if invocation_type == "Event":
            # No background runtime to finish it: run the event (with retries and DLQ) before exiting.
            spec = runtime.spec(function)
            runtime._run_event(spec.name, json.loads(payload or "{}"), "local-event")
            return 202, {"StatusCode": 202, "FunctionError": None, "Payload": ""}
        result = runtime.invoke(function, payload, invocation_type)
        return result.status_code, {
            "StatusCode": result.status_code,
            "FunctionError": result.function_error,
            "Payload": result.payload.decode(errors="replace"),
        }
    finally:
        runtime.shutdown()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ecs"]:
        from kumolab.local.runtime.ecs import main as ecs_main

        return ecs_main(argv[1:])
    if argv[:1] == ["package"]:
        from kumolab.local.runtime.package import main as package_main

        return package_main(argv[1:])
    parser = argparse.ArgumentParser(prog="kumolab-runtime", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start (or reuse) the lab's local services")
    p_start.add_argument("--lab", required=True)
    p_start.add_argument("--rest-api", help="REST API name or id to serve as a stage")
    p_start.add_argument("--stage", default="prod")
    p_start.add_argument("--bucket", help="S3 website bucket to serve")
    p_start.add_argument("--profile", help="AWS profile (default $AWS_PROFILE, else the local emulator's)")
    p_start.add_argument("--region")
    for kind in ("lambda", "api", "web"):
        p_start.add_argument(f"--{kind}-port", type=int, help=f"{kind} port on 127.0.0.1 (0: any free port)")
    p_start.add_argument("--json", action="store_true")
    p_stop = sub.add_parser("stop", help="stop the lab's local services")
    p_stop.add_argument("--lab", required=True)
    p_stop.add_argument("--json", action="store_true")
    p_status = sub.add_parser("status", help="show what is running")
    p_status.add_argument("--lab")
    p_status.add_argument("--json", action="store_true")
    p_invoke = sub.add_parser("invoke", help="invoke a deployed function locally")
    p_invoke.add_argument("function")
    p_invoke.add_argument("--payload", default="{}")
    p_invoke.add_argument(
        "--invocation-type", default="RequestResponse", choices=["RequestResponse", "Event", "DryRun"]
    )
    p_invoke.add_argument("--lab", help="use this lab's running runtime")
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            defaults = default_ports(args.lab)
            ports = {
                k: getattr(args, f"{k}_port") if getattr(args, f"{k}_port") is not None else defaults[k]
                for k in defaults
            }
            result = start(args.lab, args.rest_api, args.stage, args.bucket, ports, args.profile, args.region)
            if args.json:
                print(json.dumps(result))
            else:
                print(
                    f"runtime for {args.lab} {'started' if result['changed'] else 'already running'} (pid {result.get('pid')})"  # noqa: E501
                )
                for key in ("lambda_endpoint", "api_url", "website_url"):
                    if key in result:
                        print(f"  {key}: {result[key]}")
                print(f"  written to {result['info_file']}")
            return 0
        if args.command == "stop":
            changed = stop(args.lab)
            print(
                json.dumps({"changed": changed, "lab": args.lab})
                if args.json
                else f"runtime for {args.lab} {'stopped' if changed else 'was not running'}"
            )
            return 0
        if args.command == "status":
            labs = [args.lab] if args.lab else running_labs()
            statuses = {lab: service_for(lab).status() for lab in labs}
            if args.json:
                print(json.dumps(statuses))
            else:
                for lab, st in statuses.items():
                    print(f"{lab}: {'running' if st['running'] else 'not running'} {json.dumps(st['info'] or {})}")
                if not statuses:
                    print("no lab runtime is running")
            return 0 if all(st["running"] for st in statuses.values()) and statuses else 1
        status, out = invoke(args.function, args.payload, args.invocation_type, args.lab)
        print(json.dumps(out, indent=2))
        return 0 if status < 300 and not out["FunctionError"] else 1
    except (ServiceError, LookupError, RuntimeError) as exc:
        print(f"kumolab-runtime: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
