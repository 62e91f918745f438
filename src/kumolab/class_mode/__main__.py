"""``python -m kumolab.class_mode <command>``: what playbooks/class.yml, class_budget.yml and class_teardown.yml run.

Every command prints one JSON object; on a problem it is ``{"failed": true, "msg": "..."}`` with exit status 1, the
message saying what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import kumolab.aws
from kumolab.class_mode import budget, page, preflight, receipts, roster


def _factory(args):
    cache = {}

    def aws(service: str):
        if service not in cache:
            cache[service] = kumolab.aws.client(service, args.profile or None, args.region or None)
        return cache[service]

    return aws


def _now(value: str) -> _dt.datetime:
    return roster.parse_expiry(value) if value else _dt.datetime.now(_dt.UTC)


def _students(args) -> tuple[str, list[roster.Student]]:
    students = roster.read(args.roster)
    return roster.class_name(args.roster, args.class_name), students


def cmd_roster(args, aws):
    name, students = _students(args)
    return {"class": name, "students": [s.as_dict() for s in students]}


def cmd_preflight(args, aws):
    name, students = _students(args)
    quotas = json.loads(args.quotas) if args.quotas else None
    policies = {lab: Path(args.policy_dir) / f"{lab}.json" for s in students for lab in s.labs}
    report = preflight.check(aws, students, name, args.region, quotas, policies, args.permission_check)
    report["summary"] = preflight.summary(report)
    if not report["ok"]:
        report.update(
            failed=True, msg="Class preflight failed; nothing was created:\n  - " + "\n  - ".join(report["problems"])
        )
    return report


def cmd_count(args, aws):
    """One student's count (``--out``: a file), or each one's in ``--out-dir``/<student>/resources.json."""
    counted = {}
    for student in args.student:
        result = receipts.count(aws, args.lab, student).as_dict()
        out = Path(args.out) if args.out else Path(args.out_dir) / student / "resources.json" if args.out_dir else None
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
        counted[student] = result
    if len(args.student) == 1:
        return {"changed": False, "resources": len(counted[args.student[0]]["leftovers"]), **counted[args.student[0]]}
    return {"changed": False, "resources": {s: len(r["leftovers"]) for s, r in counted.items()}}


def cmd_receipt(args, aws):
    name, students = _students(args)
    student = next(s for s in students if s.student_id == args.student).as_dict()
    teardown = json.loads(Path(args.teardown).read_text())
    deployed_path = Path(args.out_dir) / args.student / "resources.json"
    deployed = json.loads(deployed_path.read_text()) if deployed_path.exists() else None
    before = teardown.get("before")
    if before:  # what the teardown found: the deploy's count plus anything added since
        known = {(r["kind"], r["id"]) for r in (deployed or {}).get("leftovers", [])}
        deployed = deployed or before
        deployed["leftovers"] = deployed.get("leftovers", []) + [
            r for r in before["leftovers"] if (r["kind"], r["id"]) not in known
        ]
    after = receipts.settle(aws, args.lab, args.student, wait_s=args.wait).as_dict()
    ledger = budget.load(Path(args.ledger)) if args.ledger else {"students": {}}
    rec = receipts.build(
        student, args.lab, args.region, name, deployed, teardown, after, ledger["students"].get(args.student)
    )
    json_path, html_path = receipts.write(rec, Path(args.out_dir) / args.student)
    result = {
        "changed": True,
        "verdict": rec["verdict"],
        "json": str(json_path),
        "html": str(html_path),
        "resources": len(rec["resources"]),
        "left": len(after["leftovers"]),
    }
    if rec["verdict"] != "pass":
        result.update(failed=True, msg=f"receipt of {args.student}: {rec['verdict']}: " + "; ".join(rec["problems"]))
    return result


def cmd_budget(args, aws):
    name, students = _students(args)
    now = _now(args.now)
    explorer = None
    if args.cost_explorer:
        explorer_start = (now - _dt.timedelta(days=30)).strftime("%Y-%m-%d")
        explorer = budget.cost_explorer_by_owner(
            aws, explorer_start, (now + _dt.timedelta(days=1)).strftime("%Y-%m-%d")
        )
    result = budget.evaluate(
        aws, students, name, args.region, Path(args.ledger), now, args.warn_at, explorer, not args.dry_run
    )
    result["changed"] = False
    return result


def cmd_page(args, aws):
    name, students = _students(args)
    ledger = budget.load(Path(args.ledger))
    index = page.write(Path(args.out_dir), name, students, ledger, budget.class_instances(aws, name), _now(args.now))
    return {"changed": False, "index": str(index), "png": str(index.parent / "spend.png")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kumolab.class_mode", description=__doc__)
    parser.add_argument("--profile", default="")
    parser.add_argument("--region", default="")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, fn, *options):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        for option in options:
            p.add_argument(*option[0], **option[1])
        return p

    ros = ([("--roster",), {"required": True}], [("--class-name",), {"default": ""}])
    add("roster", cmd_roster, *ros)
    add(
        "preflight",
        cmd_preflight,
        *ros,
        [("--quotas",), {"default": ""}],
        [("--policy-dir",), {"required": True}],
        [("--permission-check",), {"default": "none", "choices": ["none", "simulate"]}],
    )
    add(
        "count",
        cmd_count,
        [("--lab",), {"required": True}],
        [("--student",), {"required": True, "nargs": "+"}],
        [("--out",), {"default": ""}],
        [("--out-dir",), {"default": ""}],
    )
    add(
        "receipt",
        cmd_receipt,
        *ros,
        [("--lab",), {"required": True}],
        [("--student",), {"required": True}],
        [("--teardown",), {"required": True}],
        [("--out-dir",), {"required": True}],
        [("--ledger",), {"default": ""}],
        [("--wait",), {"type": float, "default": 60}],
    )
    add(
        "budget",
        cmd_budget,
        *ros,
        [("--ledger",), {"required": True}],
        [("--now",), {"default": ""}],
        [("--warn-at",), {"type": float, "default": 0.8}],
        [("--cost-explorer",), {"action": "store_true"}],
        [("--dry-run",), {"action": "store_true", "help": "decide without recording (check mode)"}],
    )
    add(
        "page",
        cmd_page,
        *ros,
        [("--ledger",), {"required": True}],
        [("--out-dir",), {"required": True}],
        [("--now",), {"default": ""}],
    )
    args = parser.parse_args(argv)
    try:
        result = args.fn(args, _factory(args))
    except roster.RosterError as exc:
        result = {"failed": True, "msg": str(exc), "problems": exc.problems}
    print(json.dumps(result, default=str))
    return 1 if result.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
