#!/usr/bin/python
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
    name: kumolab-monthly
    limit_usd: 30
    thresholds: [50, 80, 100]
    email_addresses: [student@example.com]

- name: Remove it
  kumolab_budget:
    name: kumolab-monthly
    state: absent
"""

RETURN = r"""
budget:
  description: The budget as Budgets describes it (limit, time unit, filters), after the change.
  returned: when O(state=present)
  type: dict
  sample: {"BudgetName": "kumolab-monthly", "BudgetLimit": {"Amount": "30", "Unit": "USD"}, "TimeUnit": "MONTHLY"}
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
  sample: ["create budget kumolab-monthly (30.00 USD/month)", "add notification at 50%"]
subscribers_verified:
  description: False when the API could not describe the subscribers of existing notifications (they were left as they are).
  returned: when O(state=present)
  type: bool
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import client, error_code, fail
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

NOT_FOUND = ("NotFoundException",)


def desired_budget(name, limit_usd, cost_filters):
    budget = {
        "BudgetName": name,
        "BudgetLimit": {"Amount": f"{limit_usd:.2f}", "Unit": "USD"},
        "TimeUnit": "MONTHLY",
        "BudgetType": "COST",
    }
    if cost_filters:
        budget["CostFilters"] = cost_filters
    return budget


def notification(threshold, notification_type):
    return {
        "NotificationType": notification_type,
        "ComparisonOperator": "GREATER_THAN",
        "Threshold": float(threshold),
        "ThresholdType": "PERCENTAGE",
    }


def subscribers(emails, sns_topic_arn):
    subs = [{"SubscriptionType": "EMAIL", "Address": address} for address in emails]
    if sns_topic_arn:
        subs.append({"SubscriptionType": "SNS", "Address": sns_topic_arn})
    return subs


def key(notif):
    return (
        notif["NotificationType"],
        notif["ComparisonOperator"],
        float(notif["Threshold"]),
        notif.get("ThresholdType", "PERCENTAGE"),
    )


def sub_key(subs):
    return sorted((s["SubscriptionType"], s["Address"]) for s in subs)


def budget_differs(current, wanted):
    return (
        float(current["BudgetLimit"]["Amount"]) != float(wanted["BudgetLimit"]["Amount"])
        or current.get("TimeUnit") != wanted["TimeUnit"]
        or (current.get("CostFilters") or {}) != (wanted.get("CostFilters") or {})
    )


CLIENT_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


class BudgetApi:
    """The Budgets calls of one budget; every mutator is skipped in check mode and fails the module with a hint."""

    def __init__(self, module, budgets, account, name):
        self.module, self.budgets, self.account, self.name = module, budgets, account, name

    def call(self, doing, method, mutates=True, **kwargs):
        if mutates and self.module.check_mode:
            return None
        try:
            return getattr(self.budgets, method)(AccountId=self.account, aws_retry=True, **kwargs)
        except CLIENT_ERRORS as exc:
            fail(self.module, exc, doing)

    def describe(self):
        try:
            return self.budgets.describe_budget(AccountId=self.account, BudgetName=self.name, aws_retry=True)["Budget"]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in NOT_FOUND:
                fail(self.module, exc, f"describe budget {self.name}")
        except botocore.exceptions.BotoCoreError as exc:
            fail(self.module, exc, f"describe budget {self.name}")
        return None

    def notifications(self):
        found = self.call(
            f"list the notifications of budget {self.name}",
            "describe_notifications_for_budget",
            mutates=False,
            BudgetName=self.name,
        )
        return {key(n): n for n in found.get("Notifications", [])}


def delete_budget(api, current):
    """state=absent: (changed, actions)."""
    if current is None:
        return False, []
    if not api.module.check_mode:
        try:
            api.budgets.delete_budget(AccountId=api.account, BudgetName=api.name, aws_retry=True)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in NOT_FOUND:
                fail(api.module, exc, f"delete budget {api.name}")
    return True, [f"delete budget {api.name}"]


def ensure_budget(api, current, wanted, limit_usd, wanted_notifs, wanted_subs):
    """Create the budget (with its notifications) or bring its limit and filters up to date: (created, actions)."""
    if current is None:
        actions = [f"create budget {api.name} ({limit_usd:.2f} USD/month)"]
        actions += [f"add notification at {k[2]:g}%" for k in sorted(wanted_notifs, key=lambda k: k[2])]
        api.call(
            f"create budget {api.name}",
            "create_budget",
            Budget=wanted,
            NotificationsWithSubscribers=[
                {"Notification": n, "Subscribers": wanted_subs} for n in wanted_notifs.values()
            ],
        )
        return True, actions
    if not budget_differs(current, wanted):
        return False, []
    api.call(f"update budget {api.name}", "update_budget", NewBudget=wanted)
    return False, [f"update budget {api.name} to {limit_usd:.2f} USD/month"]


def ensure_notifications(api, existing, wanted_notifs, wanted_subs):
    """Remove the thresholds nobody asked for, add the missing ones: actions."""
    actions = []
    for k in sorted(set(existing) - set(wanted_notifs), key=lambda k: k[2]):
        actions.append(f"remove notification at {k[2]:g}%")
        api.call(
            f"remove the {k[2]:g}% notification of budget {api.name}",
            "delete_notification",
            BudgetName=api.name,
            Notification=existing[k],
        )
    for k in sorted(set(wanted_notifs) - set(existing), key=lambda k: k[2]):
        actions.append(f"add notification at {k[2]:g}%")
        api.call(
            f"add the {k[2]:g}% notification to budget {api.name}",
            "create_notification",
            BudgetName=api.name,
            Notification=wanted_notifs[k],
            Subscribers=wanted_subs,
        )
    return actions


def ensure_subscribers(api, existing, wanted_notifs, wanted_subs):
    """Subscribe and unsubscribe on the notifications that stay: (actions, verified)."""
    actions, verified = [], True
    for k in sorted(set(wanted_notifs) & set(existing), key=lambda k: k[2]):
        try:
            subs = api.budgets.describe_subscribers_for_notification(
                AccountId=api.account, BudgetName=api.name, Notification=existing[k], aws_retry=True
            ).get("Subscribers", [])
        except CLIENT_ERRORS:
            verified = False  # e.g. an emulator without this API: leave the subscribers as they are
            continue
        for sub in [s for s in wanted_subs if sub_key([s])[0] not in sub_key(subs)]:
            actions.append(f"subscribe {sub['Address']} to the {k[2]:g}% notification")
            api.call(
                f"subscribe {sub['Address']}",
                "create_subscriber",
                BudgetName=api.name,
                Notification=existing[k],
                Subscriber=sub,
            )
        for sub in [s for s in subs if sub_key([s])[0] not in sub_key(wanted_subs)]:
            actions.append(f"unsubscribe {sub['Address']} from the {k[2]:g}% notification")
            api.call(
                f"unsubscribe {sub['Address']}",
                "delete_subscriber",
                BudgetName=api.name,
                Notification=existing[k],
                Subscriber=sub,
            )
    return actions, verified


def validate(module, p):
    if p["state"] != "present":
        return
    if not p["email_addresses"] and not p["sns_topic_arn"]:
        module.fail_json(
            msg="A budget alert needs someone to tell: set email_addresses or sns_topic_arn (or state=absent)."
        )
    if p["limit_usd"] <= 0:
        module.fail_json(msg=f"limit_usd must be positive, got {p['limit_usd']}")
    bad = [t for t in p["thresholds"] if not 0 < t <= 1000]
    if bad:
        module.fail_json(msg=f"thresholds are percentages of the limit in (0, 1000]; got {bad}")


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
    validate(module, p)
    account = p["account_id"]
    if not account:
        try:
            account = client(module, "sts").get_caller_identity(aws_retry=True)["Account"]
        except CLIENT_ERRORS as exc:
            fail(module, exc, "find the account id (sts:GetCallerIdentity)")
    api = BudgetApi(module, client(module, "budgets"), account, p["name"])
    current = api.describe()

    if p["state"] == "absent":
        changed, actions = delete_budget(api, current)
        diff = {"before": {"budget": p["name"]}, "after": {}} if changed else {"before": {}, "after": {}}
        module.exit_json(changed=changed, actions=actions, diff=diff)

    wanted = desired_budget(p["name"], p["limit_usd"], p["cost_filters"])
    wanted_notifs = {key(n): n for n in (notification(t, p["notification_type"]) for t in p["thresholds"])}
    wanted_subs = subscribers(p["email_addresses"], p["sns_topic_arn"])
    created, actions = ensure_budget(api, current, wanted, p["limit_usd"], wanted_notifs, wanted_subs)
    verified, before = True, {}
    if not created:
        existing = api.notifications()
        before = {
            "limit_usd": float(current["BudgetLimit"]["Amount"]),
            "cost_filters": current.get("CostFilters") or {},
            "thresholds": sorted(k[2] for k in existing),
        }
        actions += ensure_notifications(api, existing, wanted_notifs, wanted_subs)
        sub_actions, verified = ensure_subscribers(api, existing, wanted_notifs, wanted_subs)
        actions += sub_actions

    after = {
        "limit_usd": float(wanted["BudgetLimit"]["Amount"]),
        "cost_filters": p["cost_filters"],
        "thresholds": sorted(k[2] for k in wanted_notifs),
    }
    result = dict(
        changed=bool(actions), actions=actions, subscribers_verified=verified, diff={"before": before, "after": after}
    )
    if module.check_mode:
        result.update(budget=wanted, notifications=list(wanted_notifs.values()))
    else:
        result["budget"] = api.call(
            f"read back budget {p['name']}", "describe_budget", mutates=False, BudgetName=p["name"]
        )["Budget"]
        result["notifications"] = list(api.notifications().values())
    if not verified:
        module.warn("Could not describe the subscribers of existing notifications; they were left unchanged.")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
