#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Estimate what a lab costs per hour/day/month on AWS, before anything is created.

Why a custom module: amazon.aws and community.aws have no pricing module (the AWS Price List API is
only in us-east-1/ap-south-1, needs credentials, and returns megabytes of JSON per service), and a lab
must print its estimate before deploying even offline and on the emulator. This module reads the
price table shipped in the repository (files/pricing/aws_prices.yml, list prices with their date) and
does the arithmetic. It makes no AWS call, so it is a plain AnsibleModule, read-only and check-mode safe.
"""

DOCUMENTATION = r"""
---
module: kumolab_cost_estimate
short_description: Hourly, daily and monthly cost estimate of a lab from a shipped AWS price table
description:
  - Computes the on-demand list-price cost of a list of line items (EC2 instances, EBS, Fargate tasks,
    Lambda, DynamoDB, S3, API Gateway, NAT gateways, public IPv4 addresses, CloudWatch alarms) in one region.
  - Prices come from a YAML price table (by default C(files/pricing/aws_prices.yml) of the repository),
    which records its source pages and date. The result is an estimate, not a bill.
  - Running resources are priced per hour. Usage-priced items (requests, GB-seconds, storage) are given
    per month and spread over the month's hours (730).
  - Sets RV(needs_confirmation) when the hourly total exceeds O(confirm_threshold_usd_per_hour).
  - Read-only, makes no AWS API call; always C(changed=false); safe in check mode.
options:
  region:
    description:
      - AWS region whose prices to use, for example C(ap-northeast-1).
      - A region the price table does not list is priced with the table's C(fallback_region) (us-east-1) and a
        warning saying so; the estimate is advisory, and a region must not stop a lab.
    type: str
    required: true
  items:
    description:
      - Line items. Each is a dict with C(kind) and the fields of that kind; unknown fields are an error.
      - C(ec2) needs C(type) (instance type); optional C(count) (default 1).
      - C(ebs) needs C(gb); optional C(type) (default C(gp3)), C(count).
      - C(fargate) needs C(vcpu) and C(memory_gb); optional C(count) (running tasks).
      - C(lambda) takes C(requests_per_month) and either C(gb_seconds_per_month) or C(memory_mb) with C(duration_ms).
      - C(dynamodb) takes C(write_units_per_month), C(read_units_per_month), C(gb).
      - C(s3) takes C(gb), C(put_requests_per_month), C(get_requests_per_month).
      - C(efs) takes C(gb) (EFS Standard storage; elastic throughput and IA not priced).
      - C(apigateway) takes C(requests_per_month) (REST API).
      - C(nat_gateway) takes C(count) (use 0 to print that there is none) and C(gb_per_month).
      - C(public_ipv4) takes C(count). C(cloudwatch_alarm) takes C(count).
      - Every item may have a C(name) shown in the table.
    type: list
    elements: dict
    required: true
  price_file:
    description: Path of the price table on the controller.
    type: path
    required: true
  confirm_threshold_usd_per_hour:
    description:
      - When the hourly total is above this, RV(needs_confirmation) is true.
      - Leave unset (null) to never ask, as on the local emulator target where nothing bills.
    type: float
  lab_hours:
    description: How long the lab is expected to live (its expiry); adds RV(total_for_lab_hours_usd).
    type: float
  max_usd_per_hour:
    description:
      - A hard cap. When the hourly total is above it, RV(over_cap) is true and RV(cap_message) says so (the
        C(cost_estimate) role then fails before anything is created; C(make aws-check) uses it).
      - Leave unset (null) for no cap.
    type: float
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Estimate the GPU lab in Tokyo
  kumolab_cost_estimate:
    region: ap-northeast-1
    price_file: "{{ playbook_dir }}/../files/pricing/aws_prices.yml"
    confirm_threshold_usd_per_hour: 0.10
    lab_hours: 4
    items:
      - {name: GPU host, kind: ec2, type: g4dn.xlarge}
      - {name: root volume, kind: ebs, type: gp3, gb: 100}
      - {name: public address, kind: public_ipv4, count: 1}
      - {name: NAT gateway, kind: nat_gateway, count: 0}
  register: estimate

- name: Show it
  ansible.builtin.debug:
    msg: "{{ estimate.table_lines }}"
"""

RETURN = r"""
items:
  description: One entry per line item, in input order.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "GPU host", "kind": "ec2", "detail": "1 x g4dn.xlarge @ $0.7100/h", "hourly_usd": 0.71,
            "daily_usd": 17.04, "monthly_usd": 518.3}]
total_hourly_usd:
  description: Sum of the items per hour.
  returned: always
  type: float
  sample: 0.7281
total_daily_usd:
  description: Hourly total times 24.
  returned: always
  type: float
total_monthly_usd:
  description: Hourly total times the table's hours per month (730).
  returned: always
  type: float
total_for_lab_hours_usd:
  description: Hourly total times O(lab_hours).
  returned: when O(lab_hours) is set
  type: float
needs_confirmation:
  description: True when O(confirm_threshold_usd_per_hour) is set and the hourly total exceeds it.
  returned: always
  type: bool
table:
  description: A printable table of the items and totals, with the price table's region and date.
  returned: always
  type: str
table_lines:
  description: RV(table) split into lines (reads well in C(ansible.builtin.debug)).
  returned: always
  type: list
  elements: str
priced_region:
  description: The region whose prices were used (O(region), or the fallback region when the table lacks it).
  returned: always
  type: str
  sample: us-east-1
warnings_list:
  description: What makes the estimate less exact, e.g. a region priced with the fallback region's prices.
  returned: always
  type: list
  elements: str
over_cap:
  description: True when O(max_usd_per_hour) is set and the hourly total is above it.
  returned: always
  type: bool
cap_message:
  description: Why the estimate is over (or within) O(max_usd_per_hour); empty without a cap.
  returned: always
  type: str
prices_as_of:
  description: The date of the price table.
  returned: always
  type: str
  sample: "2025-06-01"
"""

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None


class CostEstimateError(ValueError):
    """A problem with the input or the price table, worded for the person running the playbook."""


# kind -> (allowed fields, required fields)
KINDS = {
    "ec2": ({"type", "count"}, {"type"}),
    "ebs": ({"type", "gb", "count"}, {"gb"}),
    "fargate": ({"vcpu", "memory_gb", "count"}, {"vcpu", "memory_gb"}),
    "lambda": ({"requests_per_month", "gb_seconds_per_month", "memory_mb", "duration_ms"}, set()),
    "dynamodb": ({"write_units_per_month", "read_units_per_month", "gb"}, set()),
    "s3": ({"gb", "put_requests_per_month", "get_requests_per_month"}, set()),
    "efs": ({"gb"}, {"gb"}),
    "apigateway": ({"requests_per_month"}, set()),
    "nat_gateway": ({"count", "gb_per_month"}, set()),
    "public_ipv4": ({"count"}, set()),
    "cloudwatch_alarm": ({"count"}, set()),
}


def load_prices(path):
    if yaml is None:
        raise CostEstimateError("PyYAML is required to read the price table")
    try:
        with open(path) as handle:
            prices = yaml.safe_load(handle)
    except OSError as exc:
        raise CostEstimateError(f"cannot read the price table {path}: {exc.strerror}")  # noqa: B904
    if not isinstance(prices, dict) or not isinstance(prices.get("regions"), dict):
        raise CostEstimateError(f"{path} is not a kumolab price table (no 'regions' mapping)")
    return prices


DEFAULT_FALLBACK_REGION = "us-east-1"


def priced_region(prices, region):
    """(region whose prices to use, warning or None): the table's fallback region for a region it lacks."""
    if region in prices["regions"]:
        return region, None
    fallback = str(prices.get("fallback_region", DEFAULT_FALLBACK_REGION))
    known = ", ".join(sorted(prices["regions"]))
    if fallback not in prices["regions"]:
        raise CostEstimateError(
            f"no prices for region {region!r} in the price table, nor for its fallback region "
            f"{fallback!r}; known regions: {known}. Add the region's list prices to files/pricing/aws_prices.yml."
        )
    return fallback, (
        f"no prices for region {region!r} in the price table (known regions: {known}); the estimate uses "
        f"{fallback} list prices, which are often lower than elsewhere. It is advisory: check "
        f"https://aws.amazon.com/pricing/ for {region}, or add its prices to files/pricing/aws_prices.yml."
    )


def region_prices(prices, region):
    return prices["regions"][priced_region(prices, region)[0]]


def cost_cap(total_hourly, cap):
    """(over the cap?, message) for an hourly total against a hard cap in USD per hour (None: no cap)."""
    if cap is None:
        return False, ""
    cap = float(cap)
    if total_hourly > cap:
        return True, (
            f"The estimate, {total_hourly:.4f} USD/hour, is above the cap of {cap:g} USD/hour; nothing was created. "
            f"Raise the cap (-e aws_check_max_usd_per_hour=... for make aws-check, or -e cost_estimate_max_usd_per_hour=...) "
            f"if you mean to spend that much."
        )
    return False, f"The estimate, {total_hourly:.4f} USD/hour, is within the cap of {cap:g} USD/hour."


def _price(table, region, *path):
    node = table
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise CostEstimateError(f"the price table has no {'/'.join(path)} for region {region}")
        node = node[key]
    return float(node)


def _number(item, key, default=0.0):
    value = item.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CostEstimateError(f"item {item.get('name') or item.get('kind')!r}: {key}={value!r} is not a number")  # noqa: B904
    if number < 0:
        raise CostEstimateError(f"item {item.get('name') or item.get('kind')!r}: {key} must not be negative")
    return number


def item_hourly(prices, region, item):
    """(hourly USD, human-readable basis) of one line item."""
    region = priced_region(prices, region)[0]  # messages name the region whose prices are looked up
    table = prices["regions"][region]
    hours_per_month = float(prices.get("hours_per_month", 730))
    kind = item.get("kind")
    if kind not in KINDS:
        raise CostEstimateError(f"unknown item kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    allowed, required = KINDS[kind]
    extra = set(item) - allowed - {"kind", "name"}
    if extra:
        raise CostEstimateError(
            f"item {item.get('name') or kind!r} ({kind}): unknown field(s) {', '.join(sorted(extra))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    missing = required - set(item)
    if missing:
        raise CostEstimateError(f"item {item.get('name') or kind!r} ({kind}): missing {', '.join(sorted(missing))}")
    count = _number(item, "count", 1)

    if kind == "ec2":
        types = table.get("ec2_instance_hour", {})
        if item["type"] not in types:
            raise CostEstimateError(
                f"no price for EC2 instance type {item['type']!r} in {region}; known types: "
                f"{', '.join(sorted(types))}. Add it to files/pricing/aws_prices.yml."
            )
        rate = float(types[item["type"]])
        return count * rate, f"{count:g} x {item['type']} @ ${rate:.4f}/h"
    if kind == "ebs":
        volume_type = item.get("type", "gp3")
        rate = _price(table, region, "ebs", f"{volume_type}_gb_month")
        gb = _number(item, "gb")
        return count * gb * rate / hours_per_month, f"{count:g} x {gb:g} GB {volume_type} @ ${rate}/GB-month"
    if kind == "fargate":
        vcpu, memory = _number(item, "vcpu"), _number(item, "memory_gb")
        cpu_rate, gb_rate = _price(table, region, "fargate", "vcpu_hour"), _price(table, region, "fargate", "gb_hour")
        return count * (vcpu * cpu_rate + memory * gb_rate), f"{count:g} task(s) x ({vcpu:g} vCPU, {memory:g} GB)"
    if kind == "lambda":
        requests = _number(item, "requests_per_month")
        if "gb_seconds_per_month" in item:
            gb_seconds = _number(item, "gb_seconds_per_month")
        else:
            gb_seconds = (
                requests * _number(item, "memory_mb", 128) / 1024.0 * _number(item, "duration_ms", 100) / 1000.0
            )
        monthly = requests / 1e6 * _price(table, region, "lambda", "requests_million") + gb_seconds * _price(
            table, region, "lambda", "gb_second"
        )
        return monthly / hours_per_month, f"{requests:g} req + {gb_seconds:g} GB-s per month"
    if kind == "dynamodb":
        writes, reads, gb = (
            _number(item, "write_units_per_month"),
            _number(item, "read_units_per_month"),
            _number(item, "gb"),
        )
        monthly = (
            writes / 1e6 * _price(table, region, "dynamodb", "write_request_units_million")
            + reads / 1e6 * _price(table, region, "dynamodb", "read_request_units_million")
            + gb * _price(table, region, "dynamodb", "storage_gb_month")
        )
        return monthly / hours_per_month, f"{writes:g} WRU + {reads:g} RRU + {gb:g} GB per month (on-demand)"
    if kind == "s3":
        gb, puts, gets = (
            _number(item, "gb"),
            _number(item, "put_requests_per_month"),
            _number(item, "get_requests_per_month"),
        )
        monthly = (
            gb * _price(table, region, "s3", "standard_gb_month")
            + puts / 1e3 * _price(table, region, "s3", "put_requests_thousand")
            + gets / 1e3 * _price(table, region, "s3", "get_requests_thousand")
        )
        return monthly / hours_per_month, f"{gb:g} GB + {puts:g} PUT + {gets:g} GET per month"
    if kind == "efs":
        gb = _number(item, "gb")
        monthly = gb * _price(table, region, "efs", "standard_gb_month")
        return monthly / hours_per_month, f"{gb:g} GB-month EFS Standard"
    if kind == "apigateway":
        requests = _number(item, "requests_per_month")
        return requests / 1e6 * _price(
            table, region, "apigateway", "rest_requests_million"
        ) / hours_per_month, f"{requests:g} REST requests per month"
    if kind == "nat_gateway":
        if count == 0:
            return 0.0, "none (kumolab labs use public subnets; a NAT gateway bills hourly)"
        gb = _number(item, "gb_per_month")
        rate = _price(table, region, "nat_gateway", "hour")
        return count * rate + gb * _price(
            table, region, "nat_gateway", "gb_processed"
        ) / hours_per_month, f"{count:g} x NAT @ ${rate}/h + {gb:g} GB/month"
    if kind == "public_ipv4":
        rate = _price(table, region, "public_ipv4", "hour")
        return count * rate, f"{count:g} address(es) @ ${rate}/h"
    rate = _price(table, region, "cloudwatch", "alarm_month")  # cloudwatch_alarm
    return count * rate / hours_per_month, f"{count:g} alarm(s) @ ${rate}/month"


def estimate(prices, region, items, threshold=None, lab_hours=None, max_usd_per_hour=None):
    """The whole estimate as a dict (the module's return values, less ``changed``)."""
    used_region, region_warning = priced_region(prices, region)
    if not items:
        raise CostEstimateError("no line items to estimate; pass the lab's resources in 'items'")
    hours_per_month = float(prices.get("hours_per_month", 730))
    rows = []
    for item in items:
        if not isinstance(item, dict):
            raise CostEstimateError(f"each item must be a dict with a 'kind', got {item!r}")
        hourly, detail = item_hourly(prices, region, item)
        rows.append(
            {
                "name": str(item.get("name") or item["kind"]),
                "kind": item["kind"],
                "detail": detail,
                "hourly_usd": round(hourly, 6),
                "daily_usd": round(hourly * 24, 4),
                "monthly_usd": round(hourly * hours_per_month, 2),
            }
        )
    total = sum(item_hourly(prices, region, item)[0] for item in items)
    result = {
        "items": rows,
        "total_hourly_usd": round(total, 6),
        "total_daily_usd": round(total * 24, 4),
        "total_monthly_usd": round(total * hours_per_month, 2),
        "needs_confirmation": threshold is not None and total > float(threshold),
        "prices_as_of": str(prices.get("as_of", "unknown")),
        "region": region,
        "priced_region": used_region,
        "warnings_list": [region_warning] if region_warning else [],
    }
    result["over_cap"], result["cap_message"] = cost_cap(total, max_usd_per_hour)
    if lab_hours is not None:
        result["total_for_lab_hours_usd"] = round(total * float(lab_hours), 4)
        result["lab_hours"] = float(lab_hours)
    result["table"] = format_table(result, prices.get("currency", "USD"))
    result["table_lines"] = result["table"].splitlines()
    return result


def format_table(result, currency="USD"):
    header = ("item", "what", "per hour", "per day", "per month")
    rows = [
        (r["name"], r["detail"], f"{r['hourly_usd']:.4f}", f"{r['daily_usd']:.2f}", f"{r['monthly_usd']:.2f}")
        for r in result["items"]
    ]
    total = (
        "TOTAL",
        "",
        f"{result['total_hourly_usd']:.4f}",
        f"{result['total_daily_usd']:.2f}",
        f"{result['total_monthly_usd']:.2f}",
    )
    widths = [max(len(row[i]) for row in [header, total] + rows) for i in range(5)]

    def line(row):
        return "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()

    rule = "-" * len(line(header))
    priced = result.get("priced_region", result["region"])
    basis = (
        "on-demand list prices"
        if priced == result["region"]
        else f"{priced} on-demand list prices (none in the table for {result['region']})"
    )
    out = (
        [
            f"Estimated AWS cost in {result['region']} ({currency}, {basis} as of {result['prices_as_of']}; an estimate, not a bill)",
            line(header),
            rule,
        ]
        + [line(r) for r in rows]
        + [rule, line(total)]
    )
    if "total_for_lab_hours_usd" in result:
        out.append(
            f"For the lab's planned {result['lab_hours']:g} h until expiry: {result['total_for_lab_hours_usd']:.2f} {currency}"
        )
    return "\n".join(out)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            region=dict(type="str", required=True),
            items=dict(type="list", elements="dict", required=True),
            price_file=dict(type="path", required=True),
            confirm_threshold_usd_per_hour=dict(type="float"),
            lab_hours=dict(type="float"),
            max_usd_per_hour=dict(type="float"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        prices = load_prices(params["price_file"])
        result = estimate(
            prices,
            params["region"],
            params["items"],
            params["confirm_threshold_usd_per_hour"],
            params["lab_hours"],
            params["max_usd_per_hour"],
        )
    except CostEstimateError as exc:
        module.fail_json(msg=f"Cost estimate failed: {exc}")
    for warning in result["warnings_list"]:
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
