"""The pieces of ``make aws-check`` (``playbooks/aws_check.yml``) that are plain Python.

    python -m kumolab.aws_check step --run-dir D --name deploy [--stdout F] -- ansible-playbook ...
    python -m kumolab.aws_check count --lab <lab> --region R --owner O [--wait 300] --out D/after_teardown.json
    python -m kumolab.aws_check receipt --run-dir D --lab <lab> --region R --owner O --cap 0.25 --out-dir results/<owner>/aws-check

``step`` runs one command and appends what happened (times, exit status, the last lines of its output) to
``<run-dir>/steps.jsonl``; it exits with the command's status. ``count`` is the independent leftover check
(:mod:`kumolab.leftovers`). ``receipt`` builds the receipt (:mod:`kumolab.receipt`) from the run directory.
"""  # noqa: E501

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
from pathlib import Path

from kumolab import leftovers, receipt
from kumolab.labs import PROJECT, default_owner
from kumolab.labs import lab as registry_lab

DETAIL_LINES = 3


def now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(output: str, rc: int) -> str:
    """A line or three a person can act on: Ansible's fatal message when there is one, else the last lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "FAILED", "ERROR", "[ERROR]", "failed:"))]
    if not rc:
        recap = [line for line in lines if line.startswith("localhost") and "ok=" in line]
        return recap[-1] if recap else ""
    chosen = fatal[-1:] if fatal else lines[-DETAIL_LINES:]
    return " / ".join(chosen)[:600]


def run_step(run_dir: Path, name: str, argv: list[str], stdout_file: Path | None = None, runner=subprocess.run) -> dict:
    started = now()
    proc = runner(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stdout_file is None else subprocess.PIPE,
        text=True,
        check=False,
    )
    ended = now()
    out = proc.stdout or ""
    if stdout_file is not None:
        stdout_file.write_text(out)
        out = (proc.stderr or "") + ("" if proc.returncode == 0 else teardown_message(out))
    record = {
        "name": name,
        "started_at": started,
        "ended_at": ended,
        "duration_s": receipt.seconds_between(started, ended),
        "rc": proc.returncode,
        "ok": proc.returncode == 0,
        "detail": summarize(out, proc.returncode),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "steps.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    (run_dir / f"{name}.log").write_text(out)
    return record


def teardown_message(json_stdout: str) -> str:
    """The failure message in an ansible.posix.json callback run's output."""
    try:
        run = _json_document(json_stdout)
    except (json.JSONDecodeError, ValueError):
        return json_stdout[-2000:]
    return "\n".join(
        f"fatal: {host}: {result.get('msg', '')}" for _task, host, result in _task_results(run) if result.get("failed")
    )


def _task_results(run: dict):
    for play in run.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                yield task, host, result


def _json_document(text: str) -> dict:
    """The JSON callback's document, even when another callback (profile_tasks) printed lines before it."""
    start = text.find("\n{") + 1 if not text.lstrip().startswith("{") else text.find("{")
    return json.JSONDecoder().raw_decode(text[start:])[0]


def teardown_record(json_stdout: str) -> dict:
    """``{started_at, ended_at, ok, deleted}`` of the kumolab_teardown task in a JSON-callback teardown run."""
    try:
        run = _json_document(json_stdout)
    except (json.JSONDecodeError, ValueError):
        return {"ok": False, "deleted": [], "error": "the teardown printed no JSON"}
    for task, _host, result in _task_results(run):
        name = task.get("task", {}).get("name", "")
        if (
            str(result.get("action", "")).endswith("kumolab_teardown")
            or name.startswith("Delete everything tagged")
            or ("deleted" in result and "resources" in result)
        ):
            duration = task.get("task", {}).get("duration", {})
            return {
                "started_at": _iso(duration.get("start")),
                "ended_at": _iso(duration.get("end")),
                "ok": not result.get("failed"),
                "deleted": result.get("deleted", []),
                "remaining": result.get("remaining", []),
                "msg": result.get("msg", ""),
            }
    return {"ok": False, "deleted": [], "error": "the teardown run has no kumolab_teardown task"}


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    return receipt.parse_time(value).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def build_from_run_dir(
    run_dir: Path,
    *,
    lab: str,
    region: str,
    owner: str,
    cap: float | None,
    started_at: str,
    account: str = "",
    caller_arn: str = "",
) -> dict:
    steps = (
        [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
        if (run_dir / "steps.jsonl").exists()
        else []
    )
    teardown_out = run_dir / "teardown.json"
    teardown = teardown_record(teardown_out.read_text()) if teardown_out.exists() else None
    return receipt.build(
        kind="aws-check",
        lab=lab,
        owner=owner,
        region=region,
        started_at=started_at,
        ended_at=now(),
        steps=steps,
        account=account,
        caller_arn=caller_arn,
        estimate=_read_json(run_dir / "estimate.json"),
        cap=cap,
        before=_read_json(run_dir / "before.json"),
        after_deploy=_read_json(run_dir / "after_deploy.json"),
        teardown=teardown,
        after_teardown=_read_json(run_dir / "after_teardown.json"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kumolab.aws_check", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    step = sub.add_parser("step", help="run one command of the check and record it")
    step.add_argument("--run-dir", type=Path, required=True)
    step.add_argument("--name", required=True)
    step.add_argument("--stdout", type=Path, help="keep the command's stdout in this file (stderr goes to the log)")
    step.add_argument("argv", nargs=argparse.REMAINDER)
    cnt = sub.add_parser("count", help="the independent leftover count of a lab")
    cnt.add_argument("--lab", required=True)
    cnt.add_argument("--region", required=True)
    cnt.add_argument("--owner", help="whose resources (the lab's name prefix ends with it); default: $KUMOLAB_OWNER")
    cnt.add_argument("--profile")
    cnt.add_argument(
        "--wait", type=float, default=0, help="count again for up to this many seconds while something is left"
    )
    cnt.add_argument("--interval", type=float, default=30)
    cnt.add_argument("--out", type=Path, required=True)
    rec = sub.add_parser("receipt", help="build the receipt from a run directory")
    rec.add_argument("--run-dir", type=Path, required=True)
    rec.add_argument("--lab", required=True)
    rec.add_argument("--region", required=True)
    rec.add_argument("--owner", required=True)
    rec.add_argument("--started-at", required=True)
    rec.add_argument("--cap", type=float)
    rec.add_argument("--account", default="")
    rec.add_argument("--caller-arn", default="")
    rec.add_argument("--out-dir", type=Path, required=True)
    rec.add_argument("--stem", required=True)
    args = parser.parse_args(argv)

    if args.command == "step":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        record = run_step(args.run_dir, args.name, command, args.stdout)
        print(json.dumps(record))
        return record["rc"]
    if args.command == "count":
        from kumolab import aws

        clients: dict = {}

        def factory(service):
            if service not in clients:
                clients[service] = aws.client(service, args.profile, args.region)
            return clients[service]

        result = leftovers.settle(
            factory,
            PROJECT,
            args.lab,
            registry_lab(args.lab).prefix(args.owner),
            wait_s=args.wait,
            interval_s=args.interval,
            owner=args.owner or default_owner(),
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        print(
            json.dumps(
                {"ok": result.ok, "leftovers": len(result.leftovers), "stale": len(result.stale), "out": str(args.out)}
            )
        )
        return 0
    built = build_from_run_dir(
        args.run_dir,
        lab=args.lab,
        region=args.region,
        owner=args.owner,
        cap=args.cap,
        started_at=args.started_at,
        account=args.account,
        caller_arn=args.caller_arn,
    )
    json_path, md_path = receipt.write(built, args.out_dir, args.stem)
    print(
        json.dumps(
            {
                "verdict": built["verdict"],
                "problems": built["problems"],
                "json": str(json_path),
                "markdown": str(md_path),
                "resources": len(built["resources"]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
