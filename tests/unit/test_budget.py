"""kumolab_budget against moto's Budgets, amazon.aws-style: check, create, again, modify, delete, again."""

from __future__ import annotations

import pytest
from cost_safety_support import aws_args, clients, run_module, start_emulator

ACCOUNT = "123456789012"  # moto's account


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("budget-emulator"))
    try:
        yield emu
    finally:
        emu.stop()


def thresholds(budgets, name):
    return sorted(
        n["Threshold"]
        for n in budgets.describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName=name)["Notifications"]
    )


def names(budgets):
    return [b["BudgetName"] for b in budgets.describe_budgets(AccountId=ACCOUNT).get("Budgets", [])]


def test_budget_lifecycle(emulator):
    budgets = clients(emulator.endpoint)("budgets")
    args = dict(aws_args(emulator.endpoint), name="kumolab-gpu", limit_usd=30, email_addresses=["student@example.com"])

    checked = run_module("kumolab_budget", args, check=True)
    assert checked["changed"] is True and "create budget kumolab-gpu (30.00 USD/month)" in checked["actions"]
    assert "kumolab-gpu" not in names(budgets)

    created = run_module("kumolab_budget", args)
    assert created["changed"] is True and created["budget"]["BudgetLimit"] == {"Amount": "30.00", "Unit": "USD"}
    assert created["budget"]["TimeUnit"] == "MONTHLY" and created["budget"]["BudgetType"] == "COST"
    assert thresholds(budgets, "kumolab-gpu") == [50.0, 80.0, 100.0]
    notif = budgets.describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName="kumolab-gpu")["Notifications"][0]
    assert (
        notif["NotificationType"] == "ACTUAL"
        and notif["ThresholdType"] == "PERCENTAGE"
        and notif["ComparisonOperator"] == "GREATER_THAN"
    )

    again = run_module("kumolab_budget", args)
    assert again["changed"] is False and again["actions"] == []

    modified_args = dict(args, thresholds=[50, 90, 100])
    modified = run_module("kumolab_budget", modified_args)
    assert modified["actions"] == ["remove notification at 80%", "add notification at 90%"]
    assert thresholds(budgets, "kumolab-gpu") == [50.0, 90.0, 100.0]

    absent = dict(aws_args(emulator.endpoint), name="kumolab-gpu", state="absent")
    assert run_module("kumolab_budget", absent, check=True)["changed"] is True
    assert "kumolab-gpu" in names(budgets)
    assert run_module("kumolab_budget", absent)["changed"] is True
    assert "kumolab-gpu" not in names(budgets)
    assert run_module("kumolab_budget", absent)["changed"] is False


def test_budget_without_anyone_to_tell_fails_clearly(emulator):
    result = run_module("kumolab_budget", dict(aws_args(emulator.endpoint), name="kumolab-x", limit_usd=5))
    assert result["failed"] and "set email_addresses or sns_topic_arn" in result["msg"]


def test_budget_alert_role_creates_the_budget_and_skips_without_anyone_to_tell(emulator, tmp_path):
    import os
    import subprocess
    import sys

    from cost_safety_support import REPO, VENV_BIN

    play = tmp_path / "budget.yml"
    play.write_text(f"""
- name: Budget alert role
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    kumolab_aws: {{endpoint_url: "{emulator.endpoint}", access_key: "{emulator.credentials()["aws_access_key_id"]}", secret_key: "{emulator.credentials()["aws_secret_access_key"]}", region: ap-northeast-1}}
  roles:
    - role: budget_alert
      vars:
        budget_alert_limit_usd: 25
""")  # noqa: E501
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        KUMOLAB_BUDGET_EMAIL="",
    )

    def run(*extra):
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(play), *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    budgets = clients(emulator.endpoint)("budgets")
    out = run()
    assert "No budget alert: nobody to notify" in out and "kumolab-monthly" not in names(budgets)
    run("-e", '{"budget_alert_email_addresses": ["student@example.com"]}')
    budget = budgets.describe_budget(AccountId=ACCOUNT, BudgetName="kumolab-monthly")["Budget"]
    assert budget["BudgetLimit"]["Amount"] == "25.00" and thresholds(budgets, "kumolab-monthly") == [50.0, 80.0, 100.0]
    run("-e", "budget_alert_state=absent")
    assert "kumolab-monthly" not in names(budgets)
