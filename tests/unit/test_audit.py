"""kumolab_audit: a deliberately bad resource of each kind fails its check, a good one passes."""

from __future__ import annotations

import json

import pytest
from cost_safety_support import REGION, aws_args, clients, load_library_module, run_module, start_emulator

audit = load_library_module("kumolab_audit")


def test_policy_rules():
    assert audit.policy_problems({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}) == [
        "action *",
        "resource * without condition for *",
    ]
    assert audit.policy_problems(
        {"Statement": [{"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": "arn:aws:dynamodb:*:*:table/t"}]}
    ) == ["action dynamodb:*"]
    assert audit.policy_problems(
        {"Statement": {"Effect": "Allow", "Action": "ec2:TerminateInstances", "Resource": "*"}}
    ) == ["resource * without condition for ec2:TerminateInstances"]
    # Scoped by a tag condition, or read-only: fine. Deny statements are never a problem.
    assert (
        audit.policy_problems(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "ec2:TerminateInstances",
                        "Resource": "*",
                        "Condition": {"StringEquals": {"aws:ResourceTag/Project": "kumolab"}},
                    },
                    {"Effect": "Allow", "Action": ["ec2:DescribeInstances", "tag:GetResources"], "Resource": "*"},
                    {"Effect": "Deny", "Action": "*", "Resource": "*"},
                ]
            }
        )
        == []
    )
    # Actions without resource-level permissions can only be granted on "*" (review M2: DeregisterTaskDefinition).
    assert (
        audit.policy_problems(
            {"Statement": [{"Effect": "Allow", "Action": "ecs:DeregisterTaskDefinition", "Resource": "*"}]}
        )
        == []
    )
    assert audit.policy_problems('{"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}') == [
        "Allow with NotAction/NotResource"
    ]


def test_ssh_rule_sees_all_protocols_and_port_ranges():
    assert (
        audit.sg_world_ssh(
            [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}]
        )
        == []
    )
    assert audit.sg_world_ssh(
        [{"IpProtocol": "tcp", "FromPort": 0, "ToPort": 1024, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    ) == ["0.0.0.0/0"]
    assert audit.sg_world_ssh([{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]) == ["::/0"]
    assert (
        audit.sg_world_ssh(
            [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        )
        == []
    )


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("audit-emulator"))
    try:
        yield emu
    finally:
        emu.stop()


def deploy(aws, lab, good):
    tags = [{"Key": "Project", "Value": "kumolab"}, {"Key": "Lab", "Value": lab}]
    spec_ = lambda kind: [{"ResourceType": kind, "Tags": tags}]  # noqa: E731
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/23", TagSpecifications=spec_("vpc"))["Vpc"]["VpcId"]
    sg = ec2.create_security_group(
        GroupName=f"{lab}-ssh", Description="ssh", VpcId=vpc, TagSpecifications=spec_("security-group")
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "203.0.113.7/32" if good else "0.0.0.0/0"}],
            }
        ],
    )
    ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=spec_("instance"),
        MetadataOptions={"HttpTokens": "required" if good else "optional", "HttpPutResponseHopLimit": 1},
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3", "Encrypted": good}}
        ],
    )
    s3 = aws("s3")
    bucket = f"kumolab-audit-{lab}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    if good:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={k: True for k in audit.BPA_KEYS})
        website = f"kumolab-audit-{lab}-site"
        s3.create_bucket(Bucket=website, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_tagging(
            Bucket=website, Tagging={"TagSet": tags + [{"Key": "kumolab:public-website", "Value": "true"}]}
        )
    else:
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": False,
                "RestrictPublicBuckets": False,
            },
        )
    ddb = aws("dynamodb")
    table = f"{lab}-table"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        Tags=tags,
    )
    if good:
        ddb.update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    iam = aws("iam")
    role = f"{lab}-role"
    iam.create_role(
        RoleName=role,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
        Tags=tags,
    )
    statement = (
        {
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem", "dynamodb:Query"],
            "Resource": f"arn:aws:dynamodb:{REGION}:123456789012:table/{table}",
        }
        if good
        else {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}
    )
    iam.put_role_policy(
        RoleName=role,
        PolicyName="inline",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    managed = iam.create_policy(
        PolicyName=f"{lab}-managed",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "logs:CreateLogStream" if good else "s3:PutObject",
                        "Resource": "arn:aws:logs:*:*:log-group:/kumolab/*" if good else "*",
                    }
                ],
            }
        ),
    )
    iam.attach_role_policy(RoleName=role, PolicyArn=managed["Policy"]["Arn"])


def by_check(findings):
    out = {}
    for f in findings:
        out.setdefault(f["check"], []).append(f)
    return out


def test_good_lab_passes_and_bad_lab_fails_each_check(emulator):
    aws = clients(emulator.endpoint)
    deploy(aws, "goodlab", good=True)
    deploy(aws, "badlab", good=False)

    good = run_module("kumolab_audit", dict(aws_args(emulator.endpoint), lab="goodlab"), check=True)
    assert good.get("failed") is not True, good.get("msg")
    assert good["passed"] is True and good["changed"] is False
    checks = by_check(good["findings"])
    assert set(checks) == set(audit.ALL_CHECKS)
    assert all(f["status"] in ("PASS", "EXEMPT") for f in good["findings"])
    assert [f["status"] for f in checks["s3-public-access"]] == ["PASS", "EXEMPT"]
    assert good["summary"] == {"PASS": 6, "FAIL": 0, "EXEMPT": 1}

    bad = run_module("kumolab_audit", dict(aws_args(emulator.endpoint), lab="badlab", fail_on_findings=False))
    assert bad["passed"] is False and bad.get("failed") is not True
    checks = by_check(bad["findings"])
    assert {check: [f["status"] for f in rows] for check, rows in checks.items()} == {
        c: ["FAIL"] for c in audit.ALL_CHECKS
    }
    assert "0.0.0.0/0" in checks["ssh-open"][0]["detail"]
    assert checks["imdsv2"][0]["detail"] == "HttpTokens=optional"
    assert "BlockPublicPolicy" in checks["s3-public-access"][0]["detail"]
    assert (
        "action dynamodb:*" in checks["iam-wildcard"][0]["detail"]
        and "resource * without condition for s3:PutObject" in checks["iam-wildcard"][0]["detail"]
    )
    assert "FAIL" in bad["table"] and "CIS 6.3 / EC2.13" in bad["table"]

    strict = run_module("kumolab_audit", dict(aws_args(emulator.endpoint), lab="badlab", checks=["dynamodb-pitr"]))
    assert (
        strict["failed"] is True
        and "DynamoDB.2 dynamodb-pitr badlab-table: point-in-time recovery DISABLED" in strict["msg"]
    )


def test_audit_playbook_prints_the_table_writes_results_and_fails_on_findings(emulator, tmp_path):
    import subprocess
    import sys

    from cost_safety_support import REPO, profile_env

    env = dict(
        profile_env(emulator, tmp_path),
        KUMOLAB_RESULTS_DIR=str(tmp_path),
        KUMOLAB_STATE_DIR=str(tmp_path / "state"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )

    def play(*extra):
        proc = subprocess.run(
            [
                str(REPO / ".venv/bin/ansible-playbook"),
                "playbooks/audit.yml",
                "-i",
                "inventories/local/hosts.yml",
                *extra,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        return proc.returncode, proc.stdout + proc.stderr

    rc, out = play("-e", "lab=badlab")
    assert rc != 0 and "control(s) failed" in out and "CIS 6.3 / EC2.13" in out, out
    saved = json.loads((tmp_path / "audit/badlab.json").read_text())
    assert saved["summary"]["FAIL"] == 6
    assert (tmp_path / "audit/badlab.txt").read_text().count("FAIL") == 6
    rc, out = play("-e", "lab=badlab", "-e", "audit_fail_on_findings=false")
    assert rc == 0 and "PASS 0, FAIL 6, EXEMPT 0" in out, out
