#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A monthly AWS Budgets cost budget with e-mail/SNS notifications at chosen percentages.

Why a custom module: neither amazon.aws nor community.aws has an AWS Budgets module (there is no
``budget``/``budgets`` module in either collection as of amazon.aws 10 / community.aws 10), and the
AWS CLI through ``command`` would be neither idempotent nor check-mode aware.
"""

DOCUMENTATION = r"""
---
module: kumolab_budget
short_description: Manage a monthly AWS Budgets cost budget and its notifications
description:
  - Creates, updates or deletes a C(COST) budget with C(MONTHLY) time unit in the caller's account, with one
    notification per threshold (percent of the limit) sent to e-mail addresses and/or an SNS topic.
  - Idempotent; honours check mode (reports what would change, changes nothing) and returns a diff.
  - Notifications are matched by type, comparison and threshold; missing ones are created, extra ones deleted.
    Subscribers of an existing notification are compared when the API can describe them.
  - The Budgets API is global; the region option only picks the endpoint.
options:
  name:
    description: Budget name (unique in the account).
    type: str
    required: true
  state:
    description: Whether the budget should exist.
    type: str
    choices: [present, absent]
    default: present
  limit_usd:
    description: Monthly limit in USD. Required with O(state=present).
    type: float
  thresholds:
    description: Percentages of the limit at which to notify.
    type: list
    elements: float
    default: [50, 80, 100]
  notification_type:
    description: C(ACTUAL) spend, or C(FORECASTED) spend for the month.
    type: str
    choices: [ACTUAL, FORECASTED]
    default: ACTUAL
  email_addresses:
    description: E-mail subscribers (AWS sends them the alert; no confirmation needed).
    type: list
    elements: str
    default: []
  sns_topic_arn:
    description: SNS topic subscriber (its policy must allow C(budgets.amazonaws.com) to publish).
    type: str
  cost_filters:
    description:
      - 'Budgets C(CostFilters), for example C({"TagKeyValue": ["user:Project$kumolab"]}) to count only kumolab-tagged
        cost (the tag must be activated as a cost allocation tag first). Empty counts all cost in the account.'
    type: dict
    default: {}
  account_id:
    description: Account that owns the budget. Default is the caller's account (STS GetCallerIdentity).
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Warn at 50/80/100 % of 30 USD a month
  kumolab_budget:
    name: kumolab-gpu
    limit_usd: 30
    thresholds: [50, 80, 100]
    email_addresses: [student@example.com]

- name: Remove it
  kumolab_budget:
    name: kumolab-gpu
    state: absent
"""

RETURN = r"""
budget:
  description: The budget as Budgets describes it (limit, time unit, filters), after the change.
  returned: when O(state=present)
  type: dict
  sample: {"BudgetName": "kumolab-gpu", "BudgetLimit": {"Amount": "30", "Unit": "USD"}, "TimeUnit": "MONTHLY"}
notifications:
  description: Thresholds that notify, after the change.
  returned: when O(state=present)
  type: list
  elements: dict
  sample: [{"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN", "Threshold": 50.0, "ThresholdType": "PERCENTAGE"}]
actions:
  description: What was (or in check mode would be) done.
  returned: always
  type: list
  elements: str
  sample: ["create budget kumolab-gpu (30.00 USD/month)", "add notification at 50%"]
subscribers_verified:
  description: False when the API could not describe the subscribers of existing notifications (they were left as they are).
  returned: when O(state=present)
  type: bool
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible.module_utils.kumolab_aws import client, error_code, fail

NOT_FOUND = ("NotFoundException",)


def desired_budget(name, limit_usd, cost_filters):
    budget = {"BudgetName": name, "BudgetLimit": {"Amount": f"{limit_usd:.2f}", "Unit": "USD"}, "TimeUnit": "MONTHLY", "BudgetType": "COST"}
    if cost_filters:
        budget["CostFilters"] = cost_filters
    return budget


def notification(threshold, notification_type):
    return {"NotificationType": notification_type, "ComparisonOperator": "GREATER_THAN", "Threshold": float(threshold),
            "ThresholdType": "PERCENTAGE"}


def subscribers(emails, sns_topic_arn):
    subs = [{"SubscriptionType": "EMAIL", "Address": address} for address in emails]
    if sns_topic_arn:
        subs.append({"SubscriptionType": "SNS", "Address": sns_topic_arn})
    return subs


def key(notif):
    return (notif["NotificationType"], notif["ComparisonOperator"], float(notif["Threshold"]), notif.get("ThresholdType", "PERCENTAGE"))


def sub_key(subs):
    return sorted((s["SubscriptionType"], s["Address"]) for s in subs)


def budget_differs(current, wanted):
    return (float(current["BudgetLimit"]["Amount"]) != float(wanted["BudgetLimit"]["Amount"])
            or current.get("TimeUnit") != wanted["TimeUnit"]
            or (current.get("CostFilters") or {}) != (wanted.get("CostFilters") or {}))


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            limit_usd=dict(type="float"),
            thresholds=dict(type="list", elements="float", default=[50, 80, 100]),
            notification_type=dict(type="str", choices=["ACTUAL", "FORECASTED"], default="ACTUAL"),
            email_addresses=dict(type="list", elements="str", default=[]),
            sns_topic_arn=dict(type="str"),
            cost_filters=dict(type="dict", default={}),
            account_id=dict(type="str"),
        ),
        required_if=[("state", "present", ["limit_usd"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "present":
        if not p["email_addresses"] and not p["sns_topic_arn"]:
            module.fail_json(msg="A budget alert needs someone to tell: set email_addresses or sns_topic_arn (or state=absent).")
        if p["limit_usd"] <= 0:
            module.fail_json(msg=f"limit_usd must be positive, got {p['limit_usd']}")
        bad = [t for t in p["thresholds"] if not 0 < t <= 1000]
        if bad:
            module.fail_json(msg=f"thresholds are percentages of the limit in (0, 1000]; got {bad}")

    budgets = client(module, "budgets")
    account = p["account_id"]
    if not account:
        try:
            account = client(module, "sts").get_caller_identity(aws_retry=True)["Account"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            fail(module, exc, "find the account id (sts:GetCallerIdentity)")

    try:
        current = budgets.describe_budget(AccountId=account, BudgetName=p["name"], aws_retry=True)["Budget"]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) not in NOT_FOUND:
            fail(module, exc, f"describe budget {p['name']}")
        current = None
    except botocore.exceptions.BotoCoreError as exc:
        fail(module, exc, f"describe budget {p['name']}")

    actions = []
    if p["state"] == "absent":
        if current is None:
            module.exit_json(changed=False, actions=[])
        actions.append(f"delete budget {p['name']}")
        if not module.check_mode:
            try:
                budgets.delete_budget(AccountId=account, BudgetName=p["name"], aws_retry=True)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) not in NOT_FOUND:
                    fail(module, exc, f"delete budget {p['name']}")
        module.exit_json(changed=True, actions=actions, diff={"before": {"budget": p["name"]}, "after": {}})

    wanted = desired_budget(p["name"], p["limit_usd"], p["cost_filters"])
    wanted_notifs = {key(n): n for n in (notification(t, p["notification_type"]) for t in p["thresholds"])}
    wanted_subs = subscribers(p["email_addresses"], p["sns_topic_arn"])
    verified = True

    if current is None:
        actions.append(f"create budget {p['name']} ({p['limit_usd']:.2f} USD/month)")
        actions += [f"add notification at {k[2]:g}%" for k in sorted(wanted_notifs, key=lambda k: k[2])]
        if not module.check_mode:
            try:
                budgets.create_budget(AccountId=account, Budget=wanted, aws_retry=True,
                                      NotificationsWithSubscribers=[{"Notification": n, "Subscribers": wanted_subs} for n in wanted_notifs.values()])
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                fail(module, exc, f"create budget {p['name']}")
        before = {}
    else:
        before = {"limit_usd": float(current["BudgetLimit"]["Amount"]), "cost_filters": current.get("CostFilters") or {}}
        if budget_differs(current, wanted):
            actions.append(f"update budget {p['name']} to {p['limit_usd']:.2f} USD/month")
            if not module.check_mode:
                try:
                    budgets.update_budget(AccountId=account, NewBudget=wanted, aws_retry=True)
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                    fail(module, exc, f"update budget {p['name']}")
        try:
            existing = budgets.describe_notifications_for_budget(AccountId=account, BudgetName=p["name"], aws_retry=True).get("Notifications", [])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            fail(module, exc, f"list the notifications of budget {p['name']}")
        existing = {key(n): n for n in existing}
        before["thresholds"] = sorted(k[2] for k in existing)
        for k in sorted(set(existing) - set(wanted_notifs), key=lambda k: k[2]):
            actions.append(f"remove notification at {k[2]:g}%")
            if not module.check_mode:
                try:
                    budgets.delete_notification(AccountId=account, BudgetName=p["name"], Notification=existing[k], aws_retry=True)
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                    fail(module, exc, f"remove the {k[2]:g}% notification of budget {p['name']}")
        for k in sorted(set(wanted_notifs) - set(existing), key=lambda k: k[2]):
            actions.append(f"add notification at {k[2]:g}%")
            if not module.check_mode:
                try:
                    budgets.create_notification(AccountId=account, BudgetName=p["name"], Notification=wanted_notifs[k],
                                                Subscribers=wanted_subs, aws_retry=True)
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                    fail(module, exc, f"add the {k[2]:g}% notification to budget {p['name']}")
        for k in sorted(set(wanted_notifs) & set(existing), key=lambda k: k[2]):
            try:
                subs = budgets.describe_subscribers_for_notification(AccountId=account, BudgetName=p["name"], Notification=existing[k],
                                                                     aws_retry=True).get("Subscribers", [])
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                verified = False  # e.g. an emulator without this API: leave the subscribers as they are
                continue
            for sub in [s for s in wanted_subs if sub_key([s])[0] not in sub_key(subs)]:
                actions.append(f"subscribe {sub['Address']} to the {k[2]:g}% notification")
                if not module.check_mode:
                    try:
                        budgets.create_subscriber(AccountId=account, BudgetName=p["name"], Notification=existing[k], Subscriber=sub, aws_retry=True)
                    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                        fail(module, exc, f"subscribe {sub['Address']}")
            for sub in [s for s in subs if sub_key([s])[0] not in sub_key(wanted_subs)]:
                actions.append(f"unsubscribe {sub['Address']} from the {k[2]:g}% notification")
                if not module.check_mode:
                    try:
                        budgets.delete_subscriber(AccountId=account, BudgetName=p["name"], Notification=existing[k], Subscriber=sub, aws_retry=True)
                    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                        fail(module, exc, f"unsubscribe {sub['Address']}")

    after = {"limit_usd": float(wanted["BudgetLimit"]["Amount"]), "cost_filters": p["cost_filters"], "thresholds": sorted(k[2] for k in wanted_notifs)}
    result = dict(changed=bool(actions), actions=actions, subscribers_verified=verified, diff={"before": before, "after": after})
    if module.check_mode:
        result.update(budget=wanted, notifications=list(wanted_notifs.values()))
    else:
        try:
            result["budget"] = budgets.describe_budget(AccountId=account, BudgetName=p["name"], aws_retry=True)["Budget"]
            result["notifications"] = budgets.describe_notifications_for_budget(AccountId=account, BudgetName=p["name"], aws_retry=True).get("Notifications", [])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            fail(module, exc, f"read back budget {p['name']}")
    if not verified:
        module.warn("Could not describe the subscribers of existing notifications; they were left unchanged.")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
