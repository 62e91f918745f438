"""IAM policy lint with parliament: what every policy kumolab writes must pass.

parliament checks each statement against IAM's service-authorization data: unknown actions, resource ARNs
that the action cannot apply to (RESOURCE_MISMATCH), condition keys the action does not support
(UNKNOWN_CONDITION_FOR_ACTION), malformed documents. Those fail. ``Resource: "*"`` on an action that has
resource-level permissions is allowed only for read-only actions or under a condition (a tag condition):
that is how kumolab's policies are meant to be written.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # parliament imports pkg_resources, which warns that it is deprecated
    from parliament import analyze_policy_string

# Findings that mean the policy does not do what it says on AWS.
FAILING = {
    "RESOURCE_MISMATCH",
    "UNKNOWN_ACTION",
    "UNKNOWN_PREFIX",
    "UNKNOWN_CONDITION_FOR_ACTION",
    "UNKNOWN_OPERATOR",
    "MISMATCHED_TYPE",
    "MALFORMED",
    "MALFORMED_JSON",
    "INVALID_ARN",
    "UNKNOWN_FEDERATION_SOURCE",
    "BAD_PATTERN_FOR_MFA",
}
READ_ONLY_VERBS = ("Describe", "List", "Get", "GET")


@dataclass(frozen=True)
class Finding:
    issue: str
    detail: str

    def __str__(self) -> str:
        return f"{self.issue}: {self.detail}"


def _read_only(action: str) -> bool:
    return action.split(":", 1)[1].startswith(READ_ONLY_VERBS)


def _statements(document: dict) -> list[dict]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def lint(document: dict | str) -> list[Finding]:
    """The findings that make ``document`` wrong on AWS (an empty list when it is fine).

    Each statement is analysed on its own, so that a finding is tied to the statement it is about."""
    parsed = json.loads(document) if isinstance(document, str) else document
    findings = []
    for statement in _statements(parsed):
        single = json.dumps({"Version": parsed.get("Version", "2012-10-17"), "Statement": [statement]}, indent=1)
        sid = statement.get("Sid", "")
        for finding in analyze_policy_string(single, include_community_auditors=False).findings:
            if finding.issue in FAILING:
                findings.append(Finding(finding.issue, f"{sid}: {json.dumps(finding.detail, default=str)}"))
            elif finding.issue == "RESOURCE_STAR" and not statement.get("Condition"):
                writes = [a for a in finding.detail if not _read_only(a)] if isinstance(finding.detail, list) else []
                if writes:
                    findings.append(Finding("RESOURCE_STAR", f"{sid}: unconditioned Resource '*' for {writes}"))
    return findings
