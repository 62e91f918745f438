#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Read-only security audit of kumolab's resources against the controls labs are judged by.

Why a custom module: the checks span EC2, EBS, S3, DynamoDB and IAM, and need to be evaluated per
resource against named controls (CIS / Security Hub) to give one pass/fail table. The *_info modules
of amazon.aws/community.aws would need a dozen tasks and Jinja logic per check (and there is no
DynamoDB continuous-backups info module); AWS Security Hub / Config are paid, account-wide services
not available offline. This module lists kumolab-tagged resources and evaluates each check.
"""

DOCUMENTATION = r"""
---
module: kumolab_audit
short_description: Audit kumolab-tagged resources against CIS / Security Hub controls (read-only)
description:
  - Finds resources tagged C(Project=<project>) (and C(Lab=<lab>) when O(lab) is given) and checks
  - "C(ssh-open): no security group allows port 22 from 0.0.0.0/0 or ::/0 (CIS 6.3 / Security Hub EC2.13)."
  - "C(imdsv2): every instance requires IMDSv2 tokens (Security Hub EC2.8)."
  - "C(ebs-encrypted): every EBS volume of those instances, and every tagged volume, is encrypted (Security Hub EC2.3)."
  - "C(s3-public-access): every bucket blocks public access with all four settings (Security Hub S3.8, S3.1 at bucket
    level), except a bucket tagged C(kumolab:public-website=true), reported as EXEMPT."
  - "C(dynamodb-pitr): every table has point-in-time recovery on (Security Hub DynamoDB.2)."
  - "C(iam-wildcard): no inline or attached customer-managed policy of a tagged role allows action C(*) or C(service:*),
    or resource C(*) without a condition for actions other than read-only Describe/List/Get ones."
  - Read-only (never changes anything); C(changed) is always false; safe in check mode.
  - Fails when any check fails, unless O(fail_on_findings=false).
options:
  project:
    description: Value of the C(Project) tag that selects resources.
    type: str
    default: kumolab
  lab:
    description: Audit only this lab (its C(Lab) tag). Default is every lab.
    type: str
  checks:
    description: Which checks to run.
    type: list
    elements: str
    choices: [ssh-open, imdsv2, ebs-encrypted, s3-public-access, dynamodb-pitr, iam-wildcard]
    default: [ssh-open, imdsv2, ebs-encrypted, s3-public-access, dynamodb-pitr, iam-wildcard]
  fail_on_findings:
    description: Fail the task when a check fails (the table is in the failure message and result).
    type: bool
    default: true
  public_website_tag:
    description: Tag key that marks the one bucket allowed to be public (value C(true)).
    type: str
    default: "kumolab:public-website"
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Audit one lab
  kumolab_audit:
    lab: mylab
  register: audit

- name: Audit everything, report without failing
  kumolab_audit:
    fail_on_findings: false
  register: audit
"""

RETURN = r"""
findings:
  description: One row per (check, resource).
  returned: always
  type: list
  elements: dict
  sample: [{"check": "ssh-open", "control": "CIS 6.3 / EC2.13", "resource": "sg-0123", "lab": "mylab", "status": "PASS",
            "detail": "port 22 open only to 203.0.113.7/32"}]
summary:
  description: Counts of PASS, FAIL and EXEMPT rows.
  returned: always
  type: dict
  sample: {"PASS": 7, "FAIL": 0, "EXEMPT": 1}
passed:
  description: True when no row failed.
  returned: always
  type: bool
table:
  description: The findings as a printable table.
  returned: always
  type: str
table_lines:
  description: RV(table) split into lines.
  returned: always
  type: list
  elements: str
"""

import json

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import client, error_code, fail
from ansible.module_utils.six.moves.urllib.parse import unquote
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

CONTROLS = {
    "ssh-open": "CIS 6.3 / EC2.13",
    "imdsv2": "EC2.8",
    "ebs-encrypted": "EC2.3",
    "s3-public-access": "S3.8 / S3.1",
    "dynamodb-pitr": "DynamoDB.2",
    "iam-wildcard": "IAM.1 / IAM.21",
}
ALL_CHECKS = list(CONTROLS)
WORLD = ("0.0.0.0/0", "::/0")
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "BatchGet", "Head")
# Reads whose names follow no verb prefix: API Gateway's actions are HTTP methods (apigateway:GET reads).
READ_ONLY_ACTIONS = frozenset({"apigateway:GET"})
BPA_KEYS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def row(check, resource, lab, ok, detail, status=None):
    return {
        "check": check,
        "control": CONTROLS[check],
        "resource": resource,
        "lab": lab or "",
        "status": status or ("PASS" if ok else "FAIL"),
        "detail": detail,
    }


def tag_dict(items, key="Key", value="Value"):
    return {item[key]: item[value] for item in items or []}


# --- pure evaluations (unit-testable) -------------------------------------------------------------


def sg_world_ssh(permissions):
    """The CIDRs that open port 22 to the world in a list of IpPermissions."""
    opened = []
    for perm in permissions:
        proto = str(perm.get("IpProtocol"))
        if proto == "-1":
            covers = True
        elif proto in ("tcp", "6"):
            covers = perm.get("FromPort", 0) <= 22 <= perm.get("ToPort", 65535)
        else:
            covers = False
        if not covers:
            continue
        opened += [r["CidrIp"] for r in perm.get("IpRanges", []) if r.get("CidrIp") in WORLD]
        opened += [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", []) if r.get("CidrIpv6") in WORLD]
    return opened


def _as_list(value):
    return value if isinstance(value, list) else [value]


# Write actions that IAM authorizes only on Resource "*" (no resource types, no condition keys in the service
# authorization reference): "*" is the narrowest a policy can say for them.
NO_RESOURCE_LEVEL_ACTIONS = frozenset(
    {"ecs:DeregisterTaskDefinition", "ecs:RegisterTaskDefinition", "ecr:GetAuthorizationToken"}
)


def policy_problems(document):
    """Human-readable reasons a policy document is too broad (empty list = fine)."""
    if isinstance(document, str):
        document = json.loads(unquote(document) if document.startswith("%7B") else document)
    problems = []
    for statement in _as_list(document.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            problems.append("Allow with NotAction/NotResource")
            continue
        actions = [str(a) for a in _as_list(statement.get("Action", []))]
        resources = [str(r) for r in _as_list(statement.get("Resource", []))]
        for action in actions:
            if action == "*" or action.endswith(":*"):
                problems.append(f"action {action}")
        if "*" in resources and not statement.get("Condition"):
            writes = [
                a
                for a in actions
                if a != "*"
                and not a.split(":", 1)[-1].startswith(READ_ONLY_PREFIXES)
                and a not in READ_ONLY_ACTIONS
                and a not in NO_RESOURCE_LEVEL_ACTIONS
            ]
            if writes or "*" in actions:
                problems.append(f"resource * without condition for {', '.join(writes or ['*'])}")
    return problems


def format_table(findings):
    header = ("status", "control", "check", "lab", "resource", "detail")
    rows = [(f["status"], f["control"], f["check"], f["lab"], f["resource"], f["detail"]) for f in findings]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(6)]

    def line(cells):
        return "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    out = [line(header), "-" * len(line(header))] + [line(r) for r in rows]
    if not rows:
        out.append("(no kumolab resources matched)")
    return "\n".join(out)


# --- collection -----------------------------------------------------------------------------------


def matches(tags, project, lab):
    return tags.get("Project") == project and (lab is None or tags.get("Lab") == lab)


def audit_ec2(ec2, project, lab, checks):
    findings = []
    filters = [{"Name": "tag:Project", "Values": [project]}] + ([{"Name": "tag:Lab", "Values": [lab]}] if lab else [])
    if "ssh-open" in checks:
        for sg in ec2.describe_security_groups(Filters=filters, aws_retry=True)["SecurityGroups"]:
            opened = sg_world_ssh(sg.get("IpPermissions", []))
            sg_lab = tag_dict(sg.get("Tags")).get("Lab")
            findings.append(
                row(
                    "ssh-open",
                    f"{sg['GroupId']} ({sg['GroupName']})",
                    sg_lab,
                    not opened,
                    f"port 22 open to {', '.join(opened)}" if opened else "port 22 not open to the world",
                )
            )
    instances = []
    paginator = ec2.get_paginator("describe_instances")
    for page in paginator.paginate(
        Filters=filters + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    ):
        for reservation in page["Reservations"]:
            instances += reservation["Instances"]
    volume_ids = {}
    for inst in instances:
        inst_lab = tag_dict(inst.get("Tags")).get("Lab")
        if "imdsv2" in checks:
            tokens = inst.get("MetadataOptions", {}).get("HttpTokens", "optional")
            findings.append(row("imdsv2", inst["InstanceId"], inst_lab, tokens == "required", f"HttpTokens={tokens}"))
        for mapping in inst.get("BlockDeviceMappings", []):
            if "Ebs" in mapping:
                volume_ids[mapping["Ebs"]["VolumeId"]] = inst_lab
    if "ebs-encrypted" in checks:
        for vol in ec2.describe_volumes(Filters=filters, aws_retry=True)["Volumes"]:
            volume_ids.setdefault(vol["VolumeId"], tag_dict(vol.get("Tags")).get("Lab"))
        if volume_ids:
            for vol in ec2.describe_volumes(VolumeIds=sorted(volume_ids), aws_retry=True)["Volumes"]:
                findings.append(
                    row(
                        "ebs-encrypted",
                        vol["VolumeId"],
                        volume_ids[vol["VolumeId"]],
                        bool(vol.get("Encrypted")),
                        "encrypted" + (f" with {vol['KmsKeyId'].rsplit('/', 1)[-1]}" if vol.get("KmsKeyId") else "")
                        if vol.get("Encrypted")
                        else "NOT encrypted",
                    )
                )
    return findings


def audit_s3(s3, project, lab, website_tag):
    findings = []
    for bucket in s3.list_buckets(aws_retry=True).get("Buckets", []):
        name = bucket["Name"]
        try:
            tags = tag_dict(s3.get_bucket_tagging(Bucket=name, aws_retry=True).get("TagSet"))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("NoSuchTagSet", "NoSuchBucket"):
                continue
            raise
        if not matches(tags, project, lab):
            continue
        try:
            config = s3.get_public_access_block(Bucket=name, aws_retry=True)["PublicAccessBlockConfiguration"]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
            config = {}
        missing = [k for k in BPA_KEYS if not config.get(k)]
        if str(tags.get(website_tag, "")).lower() == "true":
            findings.append(
                row(
                    "s3-public-access",
                    name,
                    tags.get("Lab"),
                    True,
                    f"public website bucket ({website_tag}=true)",
                    status="EXEMPT",
                )
            )
        else:
            findings.append(
                row(
                    "s3-public-access",
                    name,
                    tags.get("Lab"),
                    not missing,
                    f"not blocked: {', '.join(missing)}" if missing else "all four Block Public Access settings on",
                )
            )
    return findings


def audit_dynamodb(dynamodb, project, lab):
    findings = []
    for page in dynamodb.get_paginator("list_tables").paginate():
        for name in page["TableNames"]:
            arn = dynamodb.describe_table(TableName=name, aws_retry=True)["Table"]["TableArn"]
            tags = tag_dict(dynamodb.list_tags_of_resource(ResourceArn=arn, aws_retry=True).get("Tags"))
            if not matches(tags, project, lab):
                continue
            backups = dynamodb.describe_continuous_backups(TableName=name, aws_retry=True)[
                "ContinuousBackupsDescription"
            ]
            status = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus", "DISABLED")
            findings.append(
                row("dynamodb-pitr", name, tags.get("Lab"), status == "ENABLED", f"point-in-time recovery {status}")
            )
    return findings


def audit_iam(iam, project, lab):
    findings = []
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            name = role["RoleName"]
            tags = tag_dict(iam.list_role_tags(RoleName=name, aws_retry=True).get("Tags"))
            if not matches(tags, project, lab):
                continue
            problems = []
            for policy_name in iam.list_role_policies(RoleName=name, aws_retry=True)["PolicyNames"]:
                doc = iam.get_role_policy(RoleName=name, PolicyName=policy_name, aws_retry=True)["PolicyDocument"]
                problems += [f"inline {policy_name}: {p}" for p in policy_problems(doc)]
            for attached in iam.list_attached_role_policies(RoleName=name, aws_retry=True)["AttachedPolicies"]:
                arn = attached["PolicyArn"]
                if arn.startswith("arn:aws:iam::aws:policy/"):
                    continue  # AWS managed: judged by AWS, e.g. AWSLambdaBasicExecutionRole
                version = iam.get_policy(PolicyArn=arn, aws_retry=True)["Policy"]["DefaultVersionId"]
                doc = iam.get_policy_version(PolicyArn=arn, VersionId=version, aws_retry=True)["PolicyVersion"][
                    "Document"
                ]
                problems += [f"{attached['PolicyName']}: {p}" for p in policy_problems(doc)]
            findings.append(
                row("iam-wildcard", name, tags.get("Lab"), not problems, "; ".join(problems) or "no wildcard grants")
            )
    return findings


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            project=dict(type="str", default="kumolab"),
            lab=dict(type="str"),
            checks=dict(type="list", elements="str", choices=ALL_CHECKS, default=ALL_CHECKS),
            fail_on_findings=dict(type="bool", default=True),
            public_website_tag=dict(type="str", default="kumolab:public-website"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    checks = set(p["checks"])
    findings = []
    doing = "audit"
    try:
        if checks & {"ssh-open", "imdsv2", "ebs-encrypted"}:
            doing = "list EC2 security groups, instances and volumes"
            findings += audit_ec2(client(module, "ec2"), p["project"], p["lab"], checks)
        if "s3-public-access" in checks:
            doing = "read S3 bucket tags and Block Public Access settings"
            findings += audit_s3(client(module, "s3"), p["project"], p["lab"], p["public_website_tag"])
        if "dynamodb-pitr" in checks:
            doing = "read DynamoDB tables and their continuous backups"
            findings += audit_dynamodb(client(module, "dynamodb"), p["project"], p["lab"])
        if "iam-wildcard" in checks:
            doing = "read IAM roles and their policies"
            findings += audit_iam(client(module, "iam"), p["project"], p["lab"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, doing)

    order = {c: i for i, c in enumerate(ALL_CHECKS)}
    findings.sort(key=lambda f: (order[f["check"]], f["lab"], f["resource"]))
    summary = {status: sum(1 for f in findings if f["status"] == status) for status in ("PASS", "FAIL", "EXEMPT")}
    table = format_table(findings)
    result = dict(
        changed=False,
        findings=findings,
        summary=summary,
        passed=summary["FAIL"] == 0,
        table=table,
        table_lines=table.splitlines(),
    )
    if summary["FAIL"] and p["fail_on_findings"]:
        failed = [
            f"{f['control']} {f['check']} {f['resource']}: {f['detail']}" for f in findings if f["status"] == "FAIL"
        ]
        module.fail_json(msg=f"Security audit failed {summary['FAIL']} check(s): " + " | ".join(failed), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
