"""The IAM policies kumolab writes, checked offline with parliament (tests/support/iam_lint.py).

Policies rendered by a deployed lab are linted where the labs deploy (tests/conftest.py ``audit``); here the
templates are rendered directly, so a wrong resource or condition key fails in seconds.
"""

from __future__ import annotations

import json

import jinja2
import pytest
from conftest import REPO
from support.iam_lint import lint

TEMPLATES = REPO / "playbooks" / "templates"
ACCOUNT, REGION = "123456789012", "ap-northeast-1"
TAG_CONDITION = {"StringEquals": {"aws:ResourceTag/Project": "kumolab"}}


def render(name: str, **values) -> dict:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    env.filters["regex_replace"] = lambda value, pattern, replacement: __import__("re").sub(pattern, replacement, value)
    text = env.from_string((TEMPLATES / name).read_text()).render(**values)
    return json.loads(text)


def reaper_policy(webhook_parameter: str = "") -> dict:
    return render(
        "reaper_policy.json.j2",
        aws_region=REGION,
        reaper_account=ACCOUNT,
        reaper_tag_condition=TAG_CONDITION,
        kumolab_project="kumolab",
        reaper_name="kumolab-reaper",
        reaper_name_pattern="kumolab-*",
        reaper_notify_ssm_parameter=webhook_parameter,
    )


def statements_allowing(policy: dict, action: str) -> list[dict]:
    found = []
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if action in actions:
            found.append(statement)
    return found


@pytest.mark.parametrize("webhook_parameter", ["", "/kumolab/reaper/webhook"])
def test_m2_reaper_policy_passes_the_iam_linter(webhook_parameter):
    assert lint(reaper_policy(webhook_parameter)) == []


def test_m2_reaper_reads_tags_of_foreign_resources_without_a_tag_condition():
    # Listing a kind lists every resource in the region, then reads each one's tags: a tag condition on the read
    # would deny it for the first foreign resource and hide the whole kind.
    policy = reaper_policy()
    for action in (
        "lambda:ListTags",
        "dynamodb:DescribeTable",
        "dynamodb:ListTagsOfResource",
        "sqs:ListQueueTags",
        "ecr:ListTagsForResource",
        "cloudwatch:ListTagsForResource",
        "events:ListTagsForResource",
        "ec2:DescribeLaunchTemplates",
    ):
        (statement,) = statements_allowing(policy, action)
        assert statement["Resource"] == "*" and "Condition" not in statement, action


def test_m2_reaper_can_delete_launch_templates_and_deregister_task_definitions():
    policy = reaper_policy()
    (template,) = statements_allowing(policy, "ec2:DeleteLaunchTemplate")
    assert template["Condition"] == TAG_CONDITION
    (deregister,) = statements_allowing(policy, "ecs:DeregisterTaskDefinition")
    assert deregister["Resource"] == "*" and "Condition" not in deregister  # no resource-level permissions


def test_m3_reaper_deletes_only_within_the_project_prefix_or_under_the_tag_condition():
    policy = reaper_policy()
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        deletes = [
            a
            for a in actions
            if any(verb in a.split(":", 1)[1] for verb in ("Delete", "DELETE", "Terminate", "Remove"))
        ]
        if not deletes or statement["Sid"] == "OwnLogs" or deletes == ["ecs:DeregisterTaskDefinition"]:
            continue
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        scoped_by_name = all(
            "kumolab-*" in r or r.endswith(":event-source-mapping:*") or ":scalable-target/" in r for r in resources
        )
        assert statement.get("Condition") == TAG_CONDITION or scoped_by_name, statement["Sid"]
    (buckets,) = statements_allowing(policy, "s3:DeleteBucket")
    assert buckets["Resource"] == ["arn:aws:s3:::kumolab-*", "arn:aws:s3:::kumolab-*/*"]


def test_the_linter_catches_a_resource_that_the_action_cannot_apply_to():
    wrong = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Wrong",
                "Effect": "Allow",
                "Action": "ecs:DeregisterTaskDefinition",
                "Resource": "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/*",
            },
            {
                "Sid": "WrongKey",
                "Effect": "Allow",
                "Action": "iam:DeleteRole",
                "Resource": "arn:aws:iam::123456789012:role/*",
                "Condition": {"StringEquals": {"iam:ResourceTag/Project": "kumolab"}},
            },
            {"Sid": "Open", "Effect": "Allow", "Action": "s3:DeleteBucket", "Resource": "*"},
        ],
    }
    issues = {f.issue for f in lint(wrong)}
    assert issues == {"RESOURCE_MISMATCH", "UNKNOWN_CONDITION_FOR_ACTION", "RESOURCE_STAR"}


TRUST_TEMPLATES = sorted(
    p.relative_to(REPO)
    for p in [*REPO.glob("playbooks/templates/*trust*.json.j2"), *REPO.glob("roles/*/templates/*trust*.json.j2")]
)


@pytest.mark.parametrize("template", TRUST_TEMPLATES, ids=str)
def test_trust_policies_name_only_their_service(template):
    env = jinja2.Environment()
    text = env.from_string((REPO / template).read_text()).render(
        aws_region=REGION, lab_target_caller={"account": ACCOUNT}, kumolab_project="kumolab"
    )
    policy = json.loads(text)
    principals = [s["Principal"] for s in policy["Statement"]]
    assert principals and all(set(p) == {"Service"} for p in principals)
    assert [s["Action"] for s in policy["Statement"]] == ["sts:AssumeRole"] * len(principals)
