"""Receipts: what one deployment of one lab, for one owner, created, cost, and left behind.

A receipt is built from plain facts that a run collects (no AWS calls here) and written as JSON for
machines and Markdown for people. ``make aws-check`` writes one per acceptance run; class mode will write
one per student, which is why the owner and the account are fields and nothing assumes a single run.

JSON layout (``schema: kumolab.receipt/1``)::

    schema, kind ("aws-check", ...), lab, owner, account, caller_arn, region, started_at, ended_at, duration_s,
    verdict ("pass" | "fail" | "refused"), problems [str],
    cost: {estimate_usd_per_hour, cap_usd_per_hour, over_cap, priced_region, prices_as_of, hours_run,
           estimate_for_run_usd, items [{name, detail, hourly_usd}], warnings [str]},
    steps: [{name, started_at, ended_at, duration_s, rc, ok, detail}],
    resources: [{kind, id, name, arn, source, seen_after_deploy_at, deleted_by_teardown, teardown_kind,
                 deleted_between [start, end], absent_at}],
    teardown: {started_at, ended_at, ok, deleted [{kind, id, name}]},
    leftovers: {checked_at, ok, tags, prefix, sources, leftovers [...], stale [...]},   (the independent count)
    before: {... the same, before deploying ...}

Times are ISO-8601 UTC strings. ``deleted_between`` is the teardown task's window: the teardown module
reports what it deleted, not when each delete finished.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

SCHEMA = "kumolab.receipt/1"

# The teardown catalogue's kind names (module_utils/kumolab_resources.py) -> the independent count's kinds.
TEARDOWN_KINDS = {
    "ec2_instance": "ec2:instance",
    "ec2_volume": "ec2:volume",
    "ec2_vpc": "ec2:vpc",
    "ec2_subnet": "ec2:subnet",
    "ec2_security_group": "ec2:security-group",
    "ec2_internet_gateway": "ec2:internet-gateway",
    "ec2_route_table": "ec2:route-table",
    "ec2_key_pair": "ec2:key-pair",
    "ec2_launch_template": "ec2:launch-template",
    "ec2_nat_gateway": "ec2:natgateway",
    "cloudwatch_alarm": "cloudwatch:alarm",
    "events_rule": "events:rule",
    "ecs_service": "ecs:service",
    "ecs_cluster": "ecs:cluster",
    "ecs_task_definition": "ecs:task-definition",
    "ecr_repository": "ecr:repository",
    "lambda_function": "lambda:function",
    "iam_role": "iam:role",
    "iam_instance_profile": "iam:instance-profile",
    "logs_log_group": "logs:log-group",
    "sqs_queue": "sqs:queue",
    "dynamodb_table": "dynamodb:table",
    "s3_bucket": "s3:bucket",
    "apigateway_rest_api": "apigateway:restapi",
    "iam_policy": "iam:policy",
}


def parse_time(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((parse_time(end) - parse_time(start)).total_seconds(), 1)


def _identities(entry: dict) -> set[str]:
    """Every string one resource may be known by (id, name, ARN, and the last part of each)."""
    names = {str(entry.get(k)) for k in ("id", "name", "arn") if entry.get(k)}
    return names | {n.rsplit("/", 1)[-1] for n in names} | {n.rsplit(":", 1)[-1] for n in names if n.startswith("arn:")}


def match_deleted(resource: dict, deleted: list[dict]) -> dict | None:
    """The teardown's record of deleting ``resource`` (same kind, a shared id/name/ARN), if any."""
    mine = _identities(resource)
    for record in deleted:
        if TEARDOWN_KINDS.get(record.get("kind"), record.get("kind")) == resource["kind"] and mine & _identities(
            record
        ):
            return record
    return None


def cost_section(estimate: dict | None, cap: float | None, hours_run: float | None) -> dict:
    if not estimate:
        return {
            "estimate_usd_per_hour": None,
            "cap_usd_per_hour": cap,
            "over_cap": False,
            "hours_run": hours_run,
            "estimate_for_run_usd": None,
            "items": [],
            "warnings": ["no cost estimate was written (the deploy stopped earlier)"],
        }
    hourly = float(estimate["total_hourly_usd"])
    return {
        "estimate_usd_per_hour": hourly,
        "cap_usd_per_hour": cap,
        "over_cap": bool(estimate.get("over_cap")) or (cap is not None and hourly > float(cap)),
        "priced_region": estimate.get("priced_region", estimate.get("region")),
        "prices_as_of": estimate.get("prices_as_of"),
        "hours_run": hours_run,
        "estimate_for_run_usd": round(hourly * hours_run, 4) if hours_run is not None else None,
        "items": [{k: i.get(k) for k in ("name", "detail", "hourly_usd")} for i in estimate.get("items", [])],
        "warnings": list(estimate.get("warnings_list", [])),
    }


def build(
    *,
    kind: str,
    lab: str,
    owner: str,
    region: str,
    started_at: str,
    ended_at: str,
    steps: list[dict],
    account: str = "",
    caller_arn: str = "",
    estimate: dict | None = None,
    cap: float | None = None,
    before: dict | None = None,
    after_deploy: dict | None = None,
    teardown: dict | None = None,
    after_teardown: dict | None = None,
) -> dict:
    """The receipt of one run, from what it collected. ``after_deploy``/``after_teardown``/``before`` are
    :meth:`kumolab.leftovers.Count.as_dict` results; ``teardown`` is ``{started_at, ended_at, ok, deleted}``."""
    recorded, teardown = teardown, teardown or {}
    deleted = teardown.get("deleted", [])
    gone_after = after_teardown is not None
    still_there = {(r["kind"], r["id"]) for r in (after_teardown or {}).get("leftovers", [])}
    resources = []
    for entry in (after_deploy or {}).get("leftovers", []):
        record = match_deleted(entry, deleted)
        absent = gone_after and (entry["kind"], entry["id"]) not in still_there
        resources.append(
            dict(
                entry,
                seen_after_deploy_at=after_deploy.get("checked_at"),
                deleted_by_teardown=record is not None,
                teardown_kind=(record or {}).get("kind"),
                deleted_between=[teardown.get("started_at"), teardown.get("ended_at")] if record else None,
                absent_at=after_teardown.get("checked_at") if absent else None,
            )
        )
    hours_run = None
    deploy = next((s for s in steps if s["name"] == "deploy"), None)
    if deploy and teardown.get("ended_at"):
        hours_run = round((seconds_between(deploy["started_at"], teardown["ended_at"]) or 0) / 3600, 4)
    cost = cost_section(estimate, cap, hours_run)

    problems = []
    if before and not before.get("ok", True):
        problems.append(
            f"the lab already had {len(before['leftovers'])} resource(s) before the run; nothing was deployed"
        )
    problems += [
        f"step {s['name']} failed (rc {s['rc']}): {s.get('detail', '')}".rstrip(": ") for s in steps if not s["ok"]
    ]
    if not recorded:
        problems.append("no teardown record (the teardown's JSON output is missing)")
    if after_teardown is None:
        problems.append("no independent count after the teardown")
    elif not after_teardown.get("ok"):
        listing = ", ".join(f"{r['kind']} {r.get('name') or r['id']}" for r in after_teardown["leftovers"])
        problems.append(f"{len(after_teardown['leftovers'])} resource(s) left after the teardown: {listing}")
    if cost["over_cap"]:
        verdict = "refused"
        problems.insert(
            0,
            f"the estimate, {cost['estimate_usd_per_hour']:.4f} USD/h, is above the cap of {cap} USD/h: "
            "refused before anything was created",
        )
    elif before and not before.get("ok", True):
        verdict = "refused"
    else:
        verdict = "fail" if problems else "pass"
    return {
        "schema": SCHEMA,
        "kind": kind,
        "lab": lab,
        "owner": owner,
        "account": account,
        "caller_arn": caller_arn,
        "region": region,
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_s": seconds_between(started_at, ended_at),
        "verdict": verdict,
        "problems": problems,
        "cost": cost,
        "steps": steps,
        "resources": resources,
        "teardown": teardown,
        "leftovers": after_teardown,
        "before": before,
    }


def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(receipt: dict) -> str:
    cost = receipt["cost"]
    out = [
        f"# kumolab {receipt['kind']} receipt: {receipt['lab']} — **{receipt['verdict'].upper()}**",
        "",
        f"- owner: {receipt['owner']}; account: {receipt['account'] or '?'}; region: {receipt['region']}",
        f"- caller: {receipt['caller_arn'] or '?'}",
        f"- started {receipt['started_at']}, ended {receipt['ended_at']} ({receipt['duration_s']} s)",
        "",
    ]
    if receipt["problems"]:
        out += ["## Problems", ""] + [f"- {p}" for p in receipt["problems"]] + [""]
    hourly = cost["estimate_usd_per_hour"]
    out += [
        "## Cost",
        "",
        f"- estimate: {f'{hourly:.4f}' if hourly is not None else '?'} USD/hour "
        f"(cap {cost['cap_usd_per_hour']} USD/hour; list prices of {cost.get('priced_region', '?')} as of {cost.get('prices_as_of', '?')})",  # noqa: E501
        f"- for this run ({cost['hours_run']} h): about {cost['estimate_for_run_usd']} USD",
    ]
    out += [f"- {w}" for w in cost["warnings"]] + [""]
    out += ["## Steps", "", "| step | started | ended | s | rc | ok | detail |", "|---|---|---|---|---|---|---|"]
    out += [
        f"| {s['name']} | {s['started_at']} | {s['ended_at']} | {_cell(s.get('duration_s'))} | {s['rc']} | "
        f"{'yes' if s['ok'] else 'NO'} | {_cell(s.get('detail'))} |"
        for s in receipt["steps"]
    ]
    out += [
        "",
        f"## Resources seen after deploy ({len(receipt['resources'])})",
        "",
        "| kind | id | name | found by | deleted by teardown | absent at |",
        "|---|---|---|---|---|---|",
    ]
    for r in receipt["resources"]:
        when = " – ".join(r["deleted_between"]) if r["deleted_between"] and all(r["deleted_between"]) else ""
        out.append(
            f"| {r['kind']} | {_cell(r['id'])} | {_cell(r.get('name'))} | {r['source']} | "
            f"{('yes, ' + when) if r['deleted_by_teardown'] else 'no'} | {_cell(r['absent_at']) or 'STILL THERE'} |"
        )
    left = receipt["leftovers"]
    out += ["", "## Independent count after teardown", ""]
    if left is None:
        out.append("Not made.")
    else:
        out.append(
            f"At {left['checked_at']}, tags {left['tags']} and name prefix `{left['prefix']}` "
            f"({'; '.join(left['sources'])}): **{'nothing left' if left['ok'] else str(len(left['leftovers'])) + ' left'}**."  # noqa: E501
        )
        out += [f"- LEFT: {r['kind']} {r.get('name') or r['id']} ({r['source']})" for r in left["leftovers"]]
        out += [
            f"- stale tagging-API entry (the service says it is gone): {r['kind']} {r['id']}" for r in left["stale"]
        ]
    return "\n".join(out) + "\n"


def write(receipt: dict, directory: Path, stem: str) -> tuple[Path, Path]:
    """``<directory>/<stem>.json`` and ``.md``; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps(receipt, indent=2, sort_keys=False) + "\n")
    md_path.write_text(to_markdown(receipt))
    return json_path, md_path


__all__ = ["SCHEMA", "build", "to_markdown", "write", "match_deleted", "cost_section"]
