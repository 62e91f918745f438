"""What one student's lab costs per hour, from the price table that ``roles/cost_estimate`` uses.

The arithmetic is the cost-estimate module's (``library/kumolab_cost_estimate.py``), loaded from the checkout so
that a price is looked up one way only.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

from kumolab.paths import REPO_ROOT

PRICE_FILE = REPO_ROOT / "files" / "pricing" / "aws_prices.yml"
SOURCE = "estimate (price table)"


@dataclass(frozen=True)
class LabShape:
    """What one student's copy of a lab runs (the line items its playbook gives roles/cost_estimate)."""

    instance_type: str
    vcpus: int
    root_gb: int
    public_ipv4: int
    #: Service Quotas code of the vCPU quota its instance family counts against.
    vcpu_quota: str


#: Class labs (roster.CLASS_LABS) and what each student's copy runs.
SHAPES = {"ec2": LabShape("t3.micro", 2, 8, 1, "L-1216C47A")}


@functools.cache
def _estimator():
    spec = importlib.util.spec_from_file_location(
        "kumolab_cost_estimate", REPO_ROOT / "library" / "kumolab_cost_estimate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def prices(path: str = str(PRICE_FILE)) -> dict:
    return _estimator().load_prices(path)


def items(shape: LabShape, running: bool = True) -> list[dict]:
    """Line items of one copy; a stopped instance still pays for its volume (and nothing else here)."""
    out = [{"name": "root volume", "kind": "ebs", "gb": shape.root_gb, "type": "gp3"}]
    if running:
        out += [
            {"name": "server", "kind": "ec2", "type": shape.instance_type},
            {"name": "public IPv4", "kind": "public_ipv4", "count": shape.public_ipv4},
        ]
    return out


def estimate(item_list: list[dict], region: str, price_file: str = str(PRICE_FILE)) -> dict:
    result = _estimator().estimate(prices(price_file), region, item_list)
    result.pop("table", None)
    return result


def hourly(lab: str, region: str, running: bool = True, price_file: str = str(PRICE_FILE)) -> float:
    return float(estimate(items(SHAPES[lab], running), region, price_file)["total_hourly_usd"])
