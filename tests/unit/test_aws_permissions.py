"""Review M12: the operator policies (files/iam/operator/<lab>.json, docs/aws-permissions.md) and the permission
preflight (library/kumolab_permissions.py, run by roles/lab_target), with botocore Stubbers for IAM."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from library_loader import REPO, load_library_module
from support.iam_lint import lint

perm = load_library_module("kumolab_permissions")
POLICIES = REPO / "files" / "iam" / "operator"
LABS = [
    name
    for name, spec in yaml.safe_load((REPO / "inventories/shared/labs.yml").read_text())["kumolab_labs"].items()
    if not spec.get("guard")
]
CALLER = "arn:aws:sts::123456789012:assumed-role/voclabs/user1=student"


def policy(lab: str) -> dict:
    return json.loads((POLICIES / f"{lab}.json").read_text())


def actions(document: dict) -> set[str]:
    return {a for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


@pytest.mark.parametrize("lab", LABS)
def test_m12_every_lab_publishes_an_operator_policy_that_passes_the_iam_linter(lab):
    document = policy(lab)
    assert lint(document) == []
    # An IAM managed policy holds at most 6,144 characters, whitespace not counted.
    assert len(json.dumps(document, separators=(",", ":"))) <= 6144


def test_m12_docs_show_each_policy_as_it_is():
    text = (REPO / "docs/aws-permissions.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", text, re.S)]
    assert blocks == [policy(lab) for lab in LABS]
    assert "AWS Academy Learner Lab" in text and "iam:SimulatePrincipalPolicy" in text


def test_m12_policies_cover_what_the_review_names():
    # iam:CreateRole/PutRolePolicy/PassRole (Lambda, ECS), service-linked roles, quotas, budgets, tag:GetResources,
    # ec2:DescribeRegions (the region check).
    for lab in LABS:
        assert {
            "tag:GetResources",
            "ec2:DescribeRegions",
            "sts:GetCallerIdentity",
            "iam:SimulatePrincipalPolicy",
        } <= actions(policy(lab))
    for lab, service in [
        ("qa_bot", "ecs-tasks.amazonaws.com"),
        ("serverless", "lambda.amazonaws.com"),
        ("bashoutter", "lambda.amazonaws.com"),
    ]:
        (passrole,) = [s for s in policy(lab)["Statement"] if s["Action"] == ["iam:PassRole"]]
        assert passrole["Resource"].startswith("arn:aws:iam::*:role/kumolab-") and passrole["Condition"] == {
            "StringEquals": {"iam:PassedToService": [service]}
        }
        assert {"iam:CreateRole", "iam:PutRolePolicy"} <= actions(policy(lab))
    assert "iam:CreateRole" not in actions(policy("ec2")) | actions(policy("gpu"))
    assert {"servicequotas:GetServiceQuota", "budgets:ModifyBudget", "iam:CreateServiceLinkedRole"} <= actions(
        policy("gpu")
    )
    assert "iam:CreateServiceLinkedRole" in actions(policy("qa_bot"))


def test_m12_each_target_says_how_to_check():
    aws = yaml.safe_load((REPO / "inventories/aws/group_vars/all/permissions.yml").read_text())
    local = yaml.safe_load((REPO / "inventories/local/group_vars/all/permissions.yml").read_text())
    assert aws["lab_target_permission_check"] == "simulate" and local["lab_target_permission_check"] == "none"


def iam_client():
    client = boto3.client("iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def evaluation(action, decision, resource="*"):
    return {"EvalActionName": action, "EvalDecision": decision, "EvalResourceName": resource}


def test_m12_assumed_role_is_simulated_as_its_role_with_its_path():
    assert (
        perm.principal_of(CALLER, lambda name: f"arn:aws:iam::123456789012:role/lab/{name}")
        == "arn:aws:iam::123456789012:role/lab/voclabs"
    )

    def denied(_name):
        raise RuntimeError("AccessDenied")

    assert perm.principal_of(CALLER, denied) == "arn:aws:iam::123456789012:role/voclabs"
    assert perm.principal_of("arn:aws:iam::123456789012:user/alice") == "arn:aws:iam::123456789012:user/alice"
    assert perm.principal_of("arn:aws:iam::123456789012:root") is None


def test_m12_resource_patterns_get_the_account_and_region():
    assert (
        perm.localize("arn:aws:iam::*:role/kumolab-serverless-*", "123456789012", "eu-west-1")
        == "arn:aws:iam::123456789012:role/kumolab-serverless-*"
    )
    assert (
        perm.localize("arn:aws:ssm:*:*:parameter/aws/service/*", "1", "eu-west-1")
        == "arn:aws:ssm:eu-west-1:1:parameter/aws/service/*"
    )
    assert perm.localize("*", "1", "r") == "*"


def test_m12_preflight_names_what_an_academy_role_lacks():
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["lambda:CreateFunction"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": ["iam:CreateRole", "iam:PutRolePolicy"],
                "Resource": "arn:aws:iam::*:role/kumolab-serverless-*",
            },
        ],
    }
    client, stub = iam_client()
    principal = "arn:aws:iam::123456789012:role/voclabs"
    stub.add_response(
        "simulate_principal_policy",
        {"EvaluationResults": [evaluation("lambda:CreateFunction", "allowed")]},
        {
            "PolicySourceArn": principal,
            "ActionNames": ["lambda:CreateFunction"],
            "ContextEntries": perm.context("us-east-1", "kumolab"),
        },
    )
    stub.add_response(
        "simulate_principal_policy",
        {
            "EvaluationResults": [
                evaluation("iam:CreateRole", "explicitDeny", "arn:aws:iam::123456789012:role/kumolab-serverless-*"),
                evaluation("iam:PutRolePolicy", "implicitDeny", "arn:aws:iam::123456789012:role/kumolab-serverless-*"),
            ]
        },
        {
            "PolicySourceArn": principal,
            "ActionNames": ["iam:CreateRole", "iam:PutRolePolicy"],
            "ResourceArns": ["arn:aws:iam::123456789012:role/kumolab-serverless-*"],
            "ContextEntries": perm.context("us-east-1", "kumolab"),
        },
    )
    with stub:
        denied, checked = perm.simulate(client, principal, document, "123456789012", "us-east-1")
    assert checked == 3 and [d["action"] for d in denied] == ["iam:CreateRole", "iam:PutRolePolicy"]
    message = perm.advice("serverless", principal, denied)
    assert (
        "needs 2 permission(s) that arn:aws:iam::123456789012:role/voclabs does not have: iam:CreateRole, iam:PutRolePolicy"  # noqa: E501
        in message
    )
    assert "AWS Academy Learner Lab" in message and "use a lab without IAM roles (ec2, gpu)" in message
    assert "denied explicitly" in message and "docs/aws-permissions.md (files/iam/operator/serverless.json)" in message


def test_m12_simulation_results_are_paged():
    client, stub = iam_client()
    stub.add_response(
        "simulate_principal_policy",
        {"EvaluationResults": [evaluation("a:B", "implicitDeny")], "IsTruncated": True, "Marker": "m"},
    )
    stub.add_response(
        "simulate_principal_policy", {"EvaluationResults": [evaluation("a:C", "implicitDeny")], "IsTruncated": False}
    )
    with stub:
        denied, _ = perm.simulate(
            client, "arn:aws:iam::1:user/u", {"Statement": {"Action": ["a:B", "a:C"], "Resource": "*"}}, "1", "r"
        )
    assert [d["action"] for d in denied] == ["a:B", "a:C"]


def run_main(monkeypatch, clients, **args):
    from ansible.module_utils import basic

    monkeypatch.setattr(perm, "client", lambda _module, service: clients[service])
    monkeypatch.setattr(
        basic,
        "_ANSIBLE_ARGS",
        json.dumps(
            {
                "ANSIBLE_MODULE_ARGS": dict(
                    {
                        "policy_file": str(POLICIES / "serverless.json"),
                        "lab": "serverless",
                        "caller_arn": "arn:aws:iam::123456789012:user/u",
                        "region": "us-east-1",
                    },
                    **args,
                )
            }
        ).encode(),
    )
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        perm.main()
    return json.loads(out.getvalue())


def test_m12_a_caller_who_may_not_simulate_is_told_and_the_deploy_goes_on(monkeypatch):
    client, stub = iam_client()
    stub.add_client_error("simulate_principal_policy", service_error_code="AccessDenied", http_status_code=403)
    with stub:
        result = run_main(monkeypatch, {"iam": client})
    assert not result.get("failed") and result["simulated"] is False
    assert any("may not call iam:SimulatePrincipalPolicy (AccessDenied)" in str(w) for w in result["warnings"]), result[
        "warnings"
    ]


def test_m12_preflight_fails_before_anything_is_created(monkeypatch):
    client, stub = iam_client()
    for statement in policy("serverless")["Statement"]:
        names = sorted(set(statement["Action"]))
        decision = "implicitDeny" if names[0].startswith("iam:") else "allowed"
        stub.add_response("simulate_principal_policy", {"EvaluationResults": [evaluation(a, decision) for a in names]})
    with stub:
        result = run_main(monkeypatch, {"iam": client})
    assert result["failed"] and "iam:CreateRole" in result["msg"] and "iam:PassRole" in result["msg"]
    assert {d["action"] for d in result["denied"]} >= {"iam:CreateRole", "iam:PassRole", "iam:PutRolePolicy"}
