"""The class preflight: before anything is created, can this account hold the whole class, and what will it cost?

Checks, each reported with what was found, what is needed and what to do:

- **vCPU quotas**: the vCPUs already running in the region plus every student's instances, against each quota
  they count against (Service Quotas on AWS; on the embedded default the inventory's ``class_preflight_quotas``,
  the account defaults AWS documents);
- **VPCs per region**: the class network needs one VPC (none when it exists already) next to those the region has;
- **key pairs per region**: one per student;
- **instance-type offerings**: every lab's instance type must be offered in at least one availability zone of the
  region (``DescribeInstanceTypeOfferings``); the zones that offer it are reported, and the class network goes in
  the first one;
- **cost**: the class's estimated total per hour and per day from the price table, and each student's hours until
  their budget is spent;
- **permissions**: what the operator needs (the lab's operator policy plus class mode's own calls), simulated with
  IAM's policy simulator on AWS; the embedded default has no simulator and says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from kumolab.class_mode import pricing
from kumolab.class_mode.roster import Student

VPC_QUOTA = "L-F678F1CE"
KEY_PAIR_QUOTA = "L-0263D0A3"
QUOTA_NAMES = {
    "L-1216C47A": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, vCPUs",
    "L-DB2E81BA": "Running On-Demand G and VT instances, vCPUs",
    VPC_QUOTA: "VPCs per Region",
    KEY_PAIR_QUOTA: "EC2 key pairs per Region",
}
#: Calls class mode makes beyond a lab's own operator policy (budgets stop instances; quotas; Cost Explorer).
CLASS_ACTIONS = ["ec2:StopInstances", "servicequotas:GetServiceQuota", "ce:GetCostAndUsage", "ec2:TerminateInstances"]
ACTIVE_STATES = ["pending", "running", "stopping", "stopped"]


def service_quota(aws, code: str) -> float:
    client = aws("service-quotas")
    try:
        return float(
            client.get_service_quota(ServiceCode="ec2" if code != VPC_QUOTA else "vpc", QuotaCode=code)["Quota"][
                "Value"
            ]
        )
    except client.exceptions.NoSuchResourceException:
        return float(
            client.get_aws_default_service_quota(ServiceCode="ec2" if code != VPC_QUOTA else "vpc", QuotaCode=code)[
                "Quota"
            ]["Value"]
        )


def running_vcpus(aws, exclude_class: str) -> dict[str, int]:
    """vCPUs of the region's active instances by instance type, leaving out this class's own (a re-run)."""
    ec2 = aws("ec2")
    counts: dict[str, int] = defaultdict(int)
    for page in ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    ):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if tags.get("Class") == exclude_class and tags.get("Project") == "kumolab":
                    continue
                counts[instance["InstanceType"]] += 1
    if not counts:
        return {}
    types = ec2.describe_instance_types(InstanceTypes=sorted(counts))["InstanceTypes"]
    vcpus = {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in types}
    return {kind: n * vcpus.get(kind, 0) for kind, n in counts.items()}


def offered_zones(aws, instance_type: str) -> list[str]:
    pages = (
        aws("ec2")
        .get_paginator("describe_instance_type_offerings")
        .paginate(LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [instance_type]}])
    )
    return sorted({o["Location"] for page in pages for o in page["InstanceTypeOfferings"]})


def simulate(aws, actions: list[str]) -> list[str]:
    """Actions the caller may not do, by IAM's policy simulator (an assumed role is simulated as its role)."""
    arn = aws("sts").get_caller_identity()["Arn"]
    if ":assumed-role/" in arn:
        account, rest = arn.split(":")[4], arn.split(":assumed-role/", 1)[1]
        arn = f"arn:aws:iam::{account}:role/{rest.split('/', 1)[0]}"
    denied = []
    for start in range(0, len(actions), 100):
        result = aws("iam").simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions[start : start + 100])
        denied += [r["EvalActionName"] for r in result["EvaluationResults"] if r["EvalDecision"] != "allowed"]
    return denied


def policy_actions(path: Path) -> list[str]:
    document = json.loads(path.read_text())
    actions = []
    for statement in document.get("Statement", []):
        if statement.get("Effect") == "Allow":
            value = statement.get("Action", [])
            actions += [value] if isinstance(value, str) else value
    return sorted(set(actions))


def check(
    aws,
    students: list[Student],
    class_name: str,
    region: str,
    quotas: dict[str, float] | None,
    operator_policies: dict[str, Path],
    permission_check: str = "none",
    price_file: str = str(pricing.PRICE_FILE),
) -> dict:
    """The preflight report: ``ok`` and, when not, ``problems`` (each says what to do)."""
    problems: list[str] = []
    copies: dict[str, int] = defaultdict(int)
    for student in students:
        for lab in student.labs:
            copies[lab] += 1

    def quota(code: str) -> tuple[float, str]:
        if quotas is not None:
            if code not in quotas:
                raise KeyError(f"class_preflight_quotas has no {code} ({QUOTA_NAMES.get(code, code)})")
            return float(quotas[code]), "inventory (class_preflight_quotas)"
        return service_quota(aws, code), "Service Quotas"

    report: dict = {"class": class_name, "region": region, "students": len(students), "labs": dict(copies)}

    # vCPUs
    in_use = running_vcpus(aws, class_name)
    needed_by_quota: dict[str, int] = defaultdict(int)
    for lab, n in copies.items():
        shape = pricing.SHAPES[lab]
        needed_by_quota[shape.vcpu_quota] += n * shape.vcpus
    vcpu_rows = []
    for code, needed in needed_by_quota.items():
        limit, source = quota(code)
        used = sum(v for kind, v in in_use.items() if code == "L-1216C47A" and kind[:1] not in "gpv")
        row = {
            "quota": code,
            "name": QUOTA_NAMES.get(code, code),
            "limit": limit,
            "source": source,
            "in_use": used,
            "class_needs": needed,
            "ok": used + needed <= limit,
        }
        vcpu_rows.append(row)
        if not row["ok"]:
            problems.append(
                f"vCPUs: the class needs {needed} and {used} are running, above the quota {code} ({row['name']}) of "
                f"{limit:g} in {region}: request at least {used + needed:g} in Service Quotas, or deploy fewer students"
            )
    report["vcpus"] = vcpu_rows

    # VPCs: one class network
    ec2 = aws("ec2")
    vpcs = ec2.describe_vpcs()["Vpcs"]
    has_network = any({t["Key"]: t["Value"] for t in v.get("Tags", [])}.get("Class") == class_name for v in vpcs)
    limit, source = quota(VPC_QUOTA)
    needed = 0 if has_network else 1
    report["vpcs"] = {
        "quota": VPC_QUOTA,
        "limit": limit,
        "source": source,
        "in_region": len(vpcs),
        "class_needs": needed,
        "ok": len(vpcs) + needed <= limit,
    }
    if not report["vpcs"]["ok"]:
        problems.append(
            f"VPCs: {region} has {len(vpcs)} of its {limit:g} (quota {VPC_QUOTA}, the default VPC included) and the "
            "class network needs one more: delete an unused VPC or request more in Service Quotas"
        )

    # Key pairs: one per student copy with a key
    pairs = len(ec2.describe_key_pairs()["KeyPairs"])
    limit, source = quota(KEY_PAIR_QUOTA)
    report["key_pairs"] = {
        "quota": KEY_PAIR_QUOTA,
        "limit": limit,
        "source": source,
        "in_region": pairs,
        "class_needs": sum(copies.values()),
        "ok": pairs + sum(copies.values()) <= limit,
    }
    if not report["key_pairs"]["ok"]:
        problems.append(f"key pairs: {pairs} exist and the class needs {sum(copies.values())}, above {limit:g}")

    # Offerings
    offerings = {}
    for lab in copies:
        kind = pricing.SHAPES[lab].instance_type
        zones = offered_zones(aws, kind)
        offerings[kind] = zones
        if not zones:
            problems.append(
                f"{kind} (lab {lab}) is not offered in any availability zone of {region}; pick another region"
            )
    report["offerings"] = offerings
    report["network_zone"] = (
        next(iter(sorted(set.intersection(*(set(z) for z in offerings.values())))), "") if offerings else ""
    )

    # Cost
    per_lab = {lab: pricing.hourly(lab, region, price_file=price_file) for lab in copies}
    hourly = sum(per_lab[lab] * n for lab, n in copies.items())
    report["cost"] = {
        "source": pricing.SOURCE,
        "per_lab_hourly_usd": per_lab,
        "class_hourly_usd": round(hourly, 4),
        "class_daily_usd": round(hourly * 24, 2),
        "budget_hours": {s.student_id: round(s.budget_usd / sum(per_lab[lab] for lab in s.labs), 1) for s in students},
        "prices_as_of": str(pricing.prices(price_file).get("as_of")),
    }

    # Permissions
    actions = sorted({a for lab in copies for a in policy_actions(operator_policies[lab])} | set(CLASS_ACTIONS))
    report["permissions"] = {
        "actions": len(actions),
        "policies": sorted(str(p) for p in operator_policies.values()),
        "extra": CLASS_ACTIONS,
        "checked": permission_check,
    }
    if permission_check == "simulate":
        denied = simulate(aws, actions)
        report["permissions"]["denied"] = denied
        if denied:
            problems.append(
                f"permissions: the operator may not {', '.join(denied[:10])}{' ...' if len(denied) > 10 else ''}; "
                "attach the policies above (docs/aws-permissions.md) and run again"
            )
    else:
        report["permissions"]["note"] = (
            "not simulated on this target (no IAM policy simulator); the policies are linted offline"
        )

    report["problems"] = problems
    report["ok"] = not problems
    return report


def summary(report: dict) -> list[str]:
    cost = report["cost"]
    lines = [
        f"Class {report['class']}: {report['students']} student(s), labs {report['labs']} in {report['region']}.",
        *(
            f"vCPUs ({r['quota']}, {r['source']}): {r['in_use']} running + {r['class_needs']} for the class "
            f"of {r['limit']:g}"
            for r in report["vcpus"]
        ),
        f"VPCs ({report['vpcs']['source']}): {report['vpcs']['in_region']} + {report['vpcs']['class_needs']} of "
        f"{report['vpcs']['limit']:g} (one class network, shared)",
        f"Offered in: {', '.join(f'{k}: {len(v)} zone(s)' for k, v in report['offerings'].items())}",
        f"Cost ({cost['source']}, prices of {cost['prices_as_of']}): {cost['class_hourly_usd']:.4f} USD/hour, "
        f"{cost['class_daily_usd']:.2f} USD/day for the class",
        f"Permissions: {report['permissions']['actions']} actions; check: {report['permissions']['checked']}",
    ]
    return lines + [f"PROBLEM: {p}" for p in report["problems"]]
