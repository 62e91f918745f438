#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Before a lab creates anything, ask IAM whether the caller may do what the lab will do.

Why a custom module: amazon.aws has no policy-simulation module. Without this check, a caller who cannot
create IAM roles (AWS Academy Learner Lab, many SSO "student" roles) finds out half way through a deploy,
from an AccessDenied on the tenth task, with resources already created. The lab's operator policy
(files/iam/operator/<lab>.json, documented in docs/aws-permissions.md) says what it needs; this module runs
``iam:SimulatePrincipalPolicy`` for the caller's identity against it and names what is missing.
"""

DOCUMENTATION = r"""
---
module: kumolab_permissions
short_description: Check with the IAM policy simulator that the caller has a lab's operator permissions
description:
  - Reads an IAM policy document (the lab's operator policy) and simulates each of its statements' actions, on
    their resources, for the caller's identity (C(iam:SimulatePrincipalPolicy)), with the context a kumolab
    deploy has (C(aws:RequestedRegion), C(aws:ResourceTag/Project) and C(aws:RequestTag/Project)).
  - An assumed-role caller is simulated as its IAM role (C(iam:GetRole) finds the role's path; without that
    permission the path is assumed to be C(/)).
  - Fails naming every action that is denied and what to do. When the caller may not run the simulation
    itself (AccessDenied), it warns and succeeds with RV(simulated=false); the deploy then finds out on its own.
  - Read-only; safe in check mode.
options:
  policy_file:
    description: Path of the operator policy (JSON) on the controller.
    type: path
    required: true
  lab:
    description: The lab's name, for messages.
    type: str
    required: true
  caller_arn:
    description: The caller's ARN (C(amazon.aws.aws_caller_info)'s C(arn)). Asked from STS when unset.
    type: str
  project:
    description: Value of the C(Project) tag in the simulated context.
    type: str
    default: kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Check the caller's permissions for a lab
  kumolab_permissions:
    policy_file: "{{ kumolab_repo_dir }}/files/iam/operator/mylab.json"
    lab: mylab
    caller_arn: "{{ caller.arn }}"
"""

RETURN = r"""
simulated:
  description: Whether the simulation ran (false when the caller may not call iam:SimulatePrincipalPolicy, or is root).
  returned: always
  type: bool
principal_arn:
  description: The identity simulated (the IAM role of an assumed-role session).
  returned: always
  type: str
  sample: arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Student_0123
denied:
  description: The actions the simulation denied, with the resource and the decision.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "iam:CreateRole", "resource": "arn:aws:iam::123456789012:role/kumolab-mylab-*", "decision": "implicitDeny"}]
checked:
  description: How many actions were simulated.
  returned: always
  type: int
"""

import json

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import client, error_code, fail
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

DOCS = "docs/aws-permissions.md"
SIMULATION_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "NotImplemented")


def statements(document):
    found = document.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def _listify(value):
    return [value] if isinstance(value, str) else list(value or [])


def localize(resource, account, region):
    """``arn:aws:iam::*:role/x`` -> ``arn:aws:iam::<account>:role/x``: the account and region fields of a
    policy's ARN pattern filled in, so the simulator gets a real ARN (name wildcards stay: they match as text)."""
    parts = resource.split(":", 5)
    if resource == "*" or len(parts) < 6:
        return resource
    if parts[3] == "*":
        parts[3] = region
    if parts[4] == "*":
        parts[4] = account
    return ":".join(parts)


def principal_of(caller_arn, get_role=None):
    """The IAM identity to simulate for a caller ARN: users and roles as they are, an STS assumed-role session
    as its role (with the role's path when ``get_role(name)`` can tell it), None for the account root."""
    parts = caller_arn.split(":", 5)
    account, resource = parts[4], parts[5]
    if resource == "root":
        return None
    if parts[2] == "sts" and resource.startswith("assumed-role/"):
        role = resource.split("/")[1]
        if get_role is not None:
            try:
                return get_role(role)
            except Exception:  # AccessDenied on iam:GetRole: assume the default path
                pass
        return f"arn:{parts[1]}:iam::{account}:role/{role}"
    return caller_arn


def context(region, project):
    return [
        {"ContextKeyName": "aws:RequestedRegion", "ContextKeyValues": [region], "ContextKeyType": "string"},
        {"ContextKeyName": "aws:ResourceTag/Project", "ContextKeyValues": [project], "ContextKeyType": "string"},
        {"ContextKeyName": "aws:RequestTag/Project", "ContextKeyValues": [project], "ContextKeyType": "string"},
    ]


def simulate(iam, principal, document, account, region, project="kumolab"):
    """(denied [{action, resource, decision}], number of actions checked), one simulation per statement."""
    denied, checked = [], 0
    for statement in statements(document):
        actions = sorted(set(_listify(statement.get("Action"))))
        resources = [localize(r, account, region) for r in _listify(statement.get("Resource", "*"))]
        request = {"PolicySourceArn": principal, "ActionNames": actions, "ContextEntries": context(region, project)}
        if resources != ["*"]:
            request["ResourceArns"] = resources
        checked += len(actions)
        while True:
            answer = iam.simulate_principal_policy(**request)
            for result in answer.get("EvaluationResults", []):
                if result["EvalDecision"] != "allowed":
                    denied.append(
                        {
                            "action": result["EvalActionName"],
                            "resource": result.get("EvalResourceName", "*"),
                            "decision": result["EvalDecision"],
                        }
                    )
            if not answer.get("IsTruncated"):
                break
            request["Marker"] = answer["Marker"]
    return denied, checked


def advice(lab, principal, denied):
    """What to tell the person: what is missing, why it matters, and what to do."""
    actions = sorted({d["action"] for d in denied})
    msg = (
        f"The {lab} lab needs {len(actions)} permission(s) that {principal} does not have: {', '.join(actions)}. "
        f"Nothing was created."
    )
    if any(a in ("iam:CreateRole", "iam:PassRole", "iam:PutRolePolicy") for a in actions):
        msg += (
            " This identity cannot create or pass IAM roles, as on AWS Academy Learner Lab and many SSO student "
            "roles: use a lab without IAM roles (ec2, gpu), or ask your administrator for a role with the "
            f"{lab} operator policy."
        )
    if any(d["decision"] == "explicitDeny" for d in denied):
        msg += " Some are denied explicitly (a policy, permissions boundary or an organization SCP says Deny): only its owner can lift that."
    return msg + f" The policy, and how to attach it: {DOCS} (files/iam/operator/{lab}.json)."


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            policy_file=dict(type="path", required=True),
            lab=dict(type="str", required=True),
            caller_arn=dict(type="str"),
            project=dict(type="str", default="kumolab"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        with open(params["policy_file"]) as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot read the operator policy {params['policy_file']}: {exc}")

    try:
        caller = params["caller_arn"] or client(module, "sts").get_caller_identity(aws_retry=True)["Arn"]
        iam = client(module, "iam")
        principal = principal_of(caller, lambda name: iam.get_role(RoleName=name, aws_retry=True)["Role"]["Arn"])
        if principal is None:
            module.warn(
                "These are the account's root credentials: IAM allows them everything, so nothing is simulated. "
                "Use an IAM user or role instead of root for labs."
            )
            module.exit_json(changed=False, simulated=False, principal_arn=caller, denied=[], checked=0)
        account = caller.split(":")[4]
        try:
            denied, checked = simulate(iam, principal, document, account, module.region, params["project"])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in SIMULATION_DENIED:
                raise
            module.warn(
                f"Could not check the {params['lab']} lab's permissions: {principal} may not call "
                f"iam:SimulatePrincipalPolicy ({error_code(exc)}). Continuing; if the deploy stops with "
                f"AccessDenied, compare your permissions with {DOCS}."
            )
            module.exit_json(changed=False, simulated=False, principal_arn=principal, denied=[], checked=0)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"check the permissions of the {params['lab']} lab")
    if denied:
        module.fail_json(
            msg=advice(params["lab"], principal, denied),
            simulated=True,
            principal_arn=principal,
            denied=denied,
            checked=checked,
        )
    module.exit_json(changed=False, simulated=True, principal_arn=principal, denied=[], checked=checked)


if __name__ == "__main__":
    main()
