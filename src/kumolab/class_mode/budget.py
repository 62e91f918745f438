"""A budget that acts: each student's estimated spend, and what to do about it at a given moment.

Spend is integrated from the price table (:mod:`.pricing`) over each evaluation interval: a running instance pays
for itself, its volume and its public IPv4 address, a stopped one for its volume only. The ledger
(``<state>/class/<class>/ledger.json``) keeps, per student, the spend so far, when it was last evaluated, its series
over time (the instructor page's chart) and which notices were sent. Every figure carries its source:
``estimate (price table)``; Cost Explorer (which lags hours) replaces it when asked for and it reports more.

Decisions (:func:`decide`), with ``now`` given by the caller (tests set the clock):

- spend >= ``warn_at`` x budget (once): a warning to the roster's e-mail address / the class webhook;
- spend >= budget: the student's running instances stop (and a notice);
- now > expiry: the student's environment is torn down (by the playbook, with a receipt).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from kumolab.class_mode import pricing
from kumolab.class_mode.roster import Student, iso, parse_expiry

ACTIVE = ["pending", "running", "stopping", "stopped"]


def class_instances(aws, class_name: str) -> dict[str, list[dict]]:
    """The class's live instances by owner (its students)."""
    filters = [
        {"Name": "tag:Project", "Values": ["kumolab"]},
        {"Name": "tag:Class", "Values": [class_name]},
        {"Name": "instance-state-name", "Values": ACTIVE},
    ]
    out: dict[str, list[dict]] = {}
    for page in aws("ec2").get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                out.setdefault(tags.get("Owner", ""), []).append(
                    {
                        "id": instance["InstanceId"],
                        "state": instance["State"]["Name"],
                        "type": instance["InstanceType"],
                        "lab": tags.get("Lab", ""),
                        "launched_at": iso(instance["LaunchTime"]),
                    }
                )
    return out


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"students": {}}


def save(path: Path, ledger: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ledger, indent=2) + "\n")
    tmp.replace(path)


def accrue(entry: dict, instances: list[dict], now: _dt.datetime, region: str) -> None:
    """Add what ``instances`` cost since the entry's last evaluation (or their launch) up to ``now``."""
    spent = float(entry.get("spend_usd", 0.0))
    if entry.get("last_at") and parse_expiry(entry["last_at"]) >= now:
        return  # already evaluated up to a later moment (a clock set ahead); the ledger never runs backwards
    for instance in instances:
        since = parse_expiry(entry.get("last_at") or instance["launched_at"])
        since = max(since, parse_expiry(instance["launched_at"]))
        hours = max(0.0, (now - since).total_seconds() / 3600)
        rate = pricing.hourly(instance["lab"] or "ec2", region, running=instance["state"] in ("pending", "running"))
        spent += rate * hours
    entry["spend_usd"] = round(spent, 6)
    entry["last_at"] = iso(now)
    entry.setdefault("series", []).append([iso(now), entry["spend_usd"]])
    entry["source"] = pricing.SOURCE


def decide(student: Student, entry: dict, instances: list[dict], now: _dt.datetime, warn_at: float) -> dict:
    """What to do for one student now (each notice once)."""
    sent = entry.setdefault("notices", {})
    spend, budget = entry.get("spend_usd", 0.0), student.budget_usd
    actions: dict = {
        "student": student.student_id,
        "email": student.email,
        "spend_usd": round(spend, 4),
        "budget_usd": budget,
        "source": entry.get("source", pricing.SOURCE),
    }
    if now > parse_expiry(student.expiry) and (instances or "expired" not in sent):
        actions["expire"] = True
        sent.setdefault("expired", iso(now))
        return actions
    running = [i["id"] for i in instances if i["state"] in ("pending", "running")]
    if spend >= budget and running:
        actions["stop"] = running
        sent["stopped"] = iso(now)
    elif spend >= warn_at * budget and "warning" not in sent and spend < budget:
        actions["warn"] = True
        sent["warning"] = iso(now)
    return actions


def evaluate(
    aws,
    students: list[Student],
    class_name: str,
    region: str,
    ledger_path: Path,
    now: _dt.datetime,
    warn_at: float = 0.8,
    cost_explorer=None,
    save_ledger: bool = True,
) -> dict:
    """Accrue every student's spend up to ``now``, record it and return the actions (``warn``, ``stop``, ``expire``)."""
    ledger = load(ledger_path)
    by_owner = class_instances(aws, class_name)
    decisions = []
    for student in students:
        entry = ledger["students"].setdefault(student.student_id, {})
        instances = by_owner.get(student.student_id, [])
        accrue(entry, instances, now, region)
        if cost_explorer is not None:
            billed = cost_explorer(student.student_id)
            if billed is not None and billed > entry["spend_usd"]:
                entry["spend_usd"], entry["source"] = round(billed, 6), "Cost Explorer (tag Owner)"
        entry["status"] = (
            "running"
            if any(i["state"] in ("pending", "running") for i in instances)
            else "stopped"
            if instances
            else entry.get("status", "not deployed")
        )
        decision = decide(student, entry, instances, now, warn_at)
        decisions.append(decision)
    ledger["evaluated_at"] = iso(now)
    if save_ledger:  # a look ahead (check mode) leaves the ledger as it was
        save(ledger_path, ledger)
    return {
        "evaluated_at": iso(now),
        "warn": [d for d in decisions if d.get("warn")],
        "stop": [d for d in decisions if d.get("stop")],
        "expire": [d for d in decisions if d.get("expire")],
        "students": decisions,
    }


def cost_explorer_by_owner(aws, since: str, until: str):
    """A function owner -> USD billed (None when Cost Explorer has nothing yet: it lags hours and needs the Owner
    tag activated as a cost allocation tag)."""

    def billed(owner: str):
        try:
            result = aws("ce").get_cost_and_usage(
                TimePeriod={"Start": since[:10], "End": until[:10]},
                Granularity="DAILY",
                Metrics=["UnblendedCost"],
                Filter={"Tags": {"Key": "Owner", "Values": [owner]}},
            )
        except Exception:  # noqa: BLE001 - no data or no access: keep the estimate, which says its source
            return None
        total = sum(float(r["Total"]["UnblendedCost"]["Amount"]) for r in result.get("ResultsByTime", []))
        return total or None

    return billed
