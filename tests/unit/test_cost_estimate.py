"""kumolab_cost_estimate: figures checked against sums done by hand from files/pricing/aws_prices.yml."""

from __future__ import annotations

import importlib.util

import pytest
from cost_safety_support import REPO, run_module

spec = importlib.util.spec_from_file_location("kumolab_cost_estimate", REPO / "library/kumolab_cost_estimate.py")
cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cost)

PRICE_FILE = REPO / "files/pricing/aws_prices.yml"
PRICES = cost.load_prices(PRICE_FILE)


def test_price_table_has_every_required_price_with_source_and_date():
    assert (
        PRICES["as_of"]
        and PRICES["currency"] == "USD"
        and PRICES["sources"]["ec2"].startswith("https://aws.amazon.com/")
    )
    for region in ("ap-northeast-1", "us-east-1"):
        table = PRICES["regions"][region]
        for itype in ("t3.micro", "t3.small", "g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g6.xlarge"):
            assert table["ec2_instance_hour"][itype] > 0
        for section, key in [
            ("fargate", "vcpu_hour"),
            ("fargate", "gb_hour"),
            ("ebs", "gp3_gb_month"),
            ("lambda", "gb_second"),
            ("lambda", "requests_million"),
            ("dynamodb", "write_request_units_million"),
            ("dynamodb", "read_request_units_million"),
            ("s3", "standard_gb_month"),
            ("s3", "put_requests_thousand"),
            ("apigateway", "rest_requests_million"),
            ("nat_gateway", "hour"),
            ("cloudwatch", "alarm_month"),
        ]:
            assert table[section][key] > 0, (region, section, key)


def test_gpu_lab_in_tokyo_matches_hand_computation():
    # g4dn.xlarge 0.71/h; 100 GB gp3 at 0.096/GB-month = 9.6/730 = 0.0131507/h; one IPv4 0.005/h; NAT none.
    result = cost.estimate(
        PRICES,
        "ap-northeast-1",
        [
            {"name": "GPU host", "kind": "ec2", "type": "g4dn.xlarge"},
            {"name": "root", "kind": "ebs", "gb": 100},
            {"kind": "public_ipv4", "count": 1},
            {"kind": "nat_gateway", "count": 0},
        ],
        threshold=0.10,
        lab_hours=4,
    )
    hourly = 0.71 + 9.6 / 730 + 0.005
    assert result["total_hourly_usd"] == pytest.approx(hourly, abs=1e-6)  # 0.728151
    assert result["total_daily_usd"] == pytest.approx(17.4756, abs=1e-3)
    assert result["total_monthly_usd"] == pytest.approx(531.55, abs=0.01)  # 518.30 + 9.60 + 3.65
    assert result["total_for_lab_hours_usd"] == pytest.approx(2.9126, abs=1e-3)
    assert [r["hourly_usd"] for r in result["items"]] == pytest.approx([0.71, 0.013151, 0.005, 0.0], abs=1e-6)
    assert result["items"][0]["daily_usd"] == pytest.approx(17.04)
    assert result["needs_confirmation"] is True
    assert "none" in result["items"][3]["detail"]


def test_ec2_lab_stays_below_the_aws_threshold():
    # t3.micro 0.0104/h in us-east-1, 8 GB gp3 = 0.64/730, one IPv4: 0.0104 + 0.000877 + 0.005 = 0.016277/h.
    result = cost.estimate(
        PRICES,
        "us-east-1",
        [{"kind": "ec2", "type": "t3.micro"}, {"kind": "ebs", "gb": 8}, {"kind": "public_ipv4", "count": 1}],
        threshold=0.10,
    )
    assert result["total_hourly_usd"] == pytest.approx(0.016277, abs=1e-6)
    assert result["needs_confirmation"] is False


def test_fargate_and_serverless_items():
    # Tokyo Fargate 1 vCPU + 4 GB: 0.05056 + 4*0.00553 = 0.07268/h, x2 tasks = 0.14536/h.
    fargate = cost.estimate(PRICES, "ap-northeast-1", [{"kind": "fargate", "vcpu": 1, "memory_gb": 4, "count": 2}])
    assert fargate["total_hourly_usd"] == pytest.approx(0.14536, abs=1e-6)
    # us-east-1 Lambda: 1M requests x 128 MB x 100 ms = 12,500 GB-s -> 0.2083 + 0.20 = 0.408334/month.
    # DynamoDB: 2M WRU x 0.625 + 4M RRU x 0.125 + 1 GB x 0.25 = 1.25 + 0.5 + 0.25 = 2.00/month.
    # S3: 2 GB x 0.023 + 10k PUT x 0.005/1k + 100k GET x 0.0004/1k = 0.046 + 0.05 + 0.04 = 0.136/month.
    # API Gateway: 1M REST x 3.50 = 3.50/month. Two alarms: 0.20/month. Sum 6.244334/month.
    serverless = cost.estimate(
        PRICES,
        "us-east-1",
        [
            {"kind": "lambda", "requests_per_month": 1_000_000, "memory_mb": 128, "duration_ms": 100},
            {"kind": "dynamodb", "write_units_per_month": 2e6, "read_units_per_month": 4e6, "gb": 1},
            {"kind": "s3", "gb": 2, "put_requests_per_month": 10_000, "get_requests_per_month": 100_000},
            {"kind": "apigateway", "requests_per_month": 1e6},
            {"kind": "cloudwatch_alarm", "count": 2},
        ],
    )
    assert [r["monthly_usd"] for r in serverless["items"]] == pytest.approx([0.41, 2.0, 0.14, 3.5, 0.2], abs=0.005)
    assert serverless["total_monthly_usd"] == pytest.approx(6.24, abs=0.01)


def test_nat_gateway_when_present_bills_hourly():
    result = cost.estimate(PRICES, "ap-northeast-1", [{"kind": "nat_gateway", "count": 1, "gb_per_month": 73}])
    assert result["total_hourly_usd"] == pytest.approx(0.062 + 73 * 0.062 / 730, abs=1e-6)


def test_no_threshold_never_asks():
    result = cost.estimate(PRICES, "ap-northeast-1", [{"kind": "ec2", "type": "g5.xlarge", "count": 4}], threshold=None)
    assert result["total_hourly_usd"] == pytest.approx(4 * 1.459) and result["needs_confirmation"] is False


def test_table_lists_items_totals_region_and_date():
    result = cost.estimate(
        PRICES, "ap-northeast-1", [{"name": "GPU host", "kind": "ec2", "type": "g4dn.xlarge"}], lab_hours=4
    )
    table = result["table"]
    assert "ap-northeast-1" in table and PRICES["as_of"] in table and "list prices" in table
    assert "GPU host" in table and "0.7100" in table and "17.04" in table and "518.30" in table
    assert result["table_lines"][-1].startswith("For the lab's planned 4 h")


@pytest.mark.parametrize(
    "region, items, message",
    [
        (
            "us-east-1",
            [{"kind": "ec2", "type": "p5.48xlarge"}],
            "no price for EC2 instance type 'p5.48xlarge' in us-east-1; known types: g4dn.2xlarge, g4dn.xlarge, g5.xlarge, g6.xlarge, t3.medium, t3.micro, t3.small",  # noqa: E501
        ),
        ("us-east-1", [{"kind": "quantum"}], "unknown item kind 'quantum'; known kinds:"),
        ("us-east-1", [{"kind": "ec2", "type": "t3.micro", "cuont": 2}], "unknown field(s) cuont"),
        ("us-east-1", [{"kind": "fargate", "vcpu": 1}], "missing memory_gb"),
        ("us-east-1", [{"kind": "ebs", "gb": "lots"}], "gb='lots' is not a number"),
        ("us-east-1", [], "no line items"),
    ],
)
def test_bad_input_fails_naming_what_is_known(region, items, message):
    with pytest.raises(cost.CostEstimateError, match=None) as info:
        cost.estimate(PRICES, region, items)
    assert message in str(info.value)


def test_module_through_ansible_in_check_mode():
    result = run_module(
        "kumolab_cost_estimate",
        {
            "region": "ap-northeast-1",
            "price_file": str(PRICE_FILE),
            "confirm_threshold_usd_per_hour": 0.1,
            "items": [{"kind": "ec2", "type": "g4dn.xlarge"}],
        },
        check=True,
    )
    assert result["changed"] is False and result["needs_confirmation"] is True
    assert result["total_hourly_usd"] == pytest.approx(0.71)
    bad = run_module(
        "kumolab_cost_estimate", {"region": "us-east-1", "price_file": str(PRICE_FILE), "items": [{"kind": "quantum"}]}
    )
    assert bad["failed"] and "unknown item kind 'quantum'" in bad["msg"]


def test_m10_unknown_region_is_priced_as_us_east_1_with_a_warning():
    # Review M10: every lab runs the estimate first, and an unknown region failed it, so only us-east-1 and
    # ap-northeast-1 could deploy at all. Now eu-west-1 is priced with us-east-1 list prices, and says so.
    items = [{"name": "host", "kind": "ec2", "type": "t3.micro"}, {"kind": "ebs", "gb": 8}]
    result = cost.estimate(PRICES, "eu-west-1", items)
    same = cost.estimate(PRICES, "us-east-1", items)
    assert result["total_hourly_usd"] == same["total_hourly_usd"] and result["priced_region"] == "us-east-1"
    assert result["region"] == "eu-west-1"
    (warning,) = result["warnings_list"]
    assert (
        "no prices for region 'eu-west-1'" in warning
        and "uses us-east-1 list prices" in warning
        and "advisory" in warning
    )
    assert "us-east-1 on-demand list prices (none in the table for eu-west-1)" in result["table_lines"][0]
    assert same["warnings_list"] == [] and "eu-west-1" not in same["table"]

    module = run_module(
        "kumolab_cost_estimate", {"region": "eu-west-1", "price_file": str(PRICE_FILE), "items": items}, check=True
    )
    assert not module.get("failed") and module["priced_region"] == "us-east-1"
    assert any("uses us-east-1 list prices" in w for w in module.get("warnings", []))


def test_m10_fallback_region_missing_from_the_table_still_fails_clearly():
    prices = {"regions": {"ap-northeast-1": PRICES["regions"]["ap-northeast-1"]}}
    with pytest.raises(cost.CostEstimateError, match="nor for its fallback region 'us-east-1'"):
        cost.estimate(prices, "eu-west-1", [{"kind": "ec2", "type": "t3.micro"}])


ROLE_PLAY = """
- name: Cost estimate role
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: cost_estimate
      vars:
        cost_estimate_region: ap-northeast-1
        cost_estimate_lab_hours: 4
        cost_estimate_items:
          - {name: GPU host, kind: ec2, type: g4dn.xlarge}
          - {name: NAT gateway, kind: nat_gateway, count: 0}
  post_tasks:
    - name: Reached only when the role let the deploy go on
      ansible.builtin.debug:
        msg: DEPLOY-WOULD-START
"""


def run_role(tmp_path, *extra):
    import os
    import subprocess
    import sys

    playbook = tmp_path / "cost.yml"
    playbook.write_text(ROLE_PLAY)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
    )
    proc = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", str(playbook), *extra],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_role_fails_non_interactive_run_above_threshold_and_passes_when_confirmed(tmp_path):
    rc, out = run_role(tmp_path, "-e", "cost_estimate_confirm_threshold_usd=0.10")
    assert rc != 0 and "DEPLOY-WOULD-START" not in out
    assert "Cost not confirmed" in out and "-e lab_confirm_cost=true" in out
    assert "GPU host" in out and "0.7100" in out  # the table was printed before asking

    rc, out = run_role(tmp_path, "-e", "cost_estimate_confirm_threshold_usd=0.10", "-e", "lab_confirm_cost=true")
    assert rc == 0 and "DEPLOY-WOULD-START" in out


def test_role_never_asks_with_a_null_threshold(tmp_path):
    rc, out = run_role(tmp_path, "-e", '{"cost_estimate_confirm_threshold_usd": null}')
    assert rc == 0 and "DEPLOY-WOULD-START" in out and "For the lab's planned 4 h" in out
