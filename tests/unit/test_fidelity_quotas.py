"""Fidelity rule vpc-quota (kumolab.local.fidelity): an account's default quota of 5 VPCs per region, the default
VPC included, which moto does not enforce and class mode depends on (issue 17: one class network, not a VPC per
student). Against a private emulator over HTTP with plain boto3."""

from __future__ import annotations

import botocore.exceptions
import pytest
from cost_safety_support import clients, start_emulator


@pytest.fixture(scope="module")
def ec2(tmp_path_factory):
    emulator = start_emulator(tmp_path_factory.mktemp("quota-emulator"))
    try:
        yield clients(emulator.endpoint)("ec2")
    finally:
        emulator.stop()


def test_the_vpc_past_the_regions_quota_is_refused(ec2):
    existing = ec2.describe_vpcs()["Vpcs"]
    assert [v["IsDefault"] for v in existing] == [True], "a fresh region holds only its default VPC"
    made = [ec2.create_vpc(CidrBlock=f"10.{20 + n}.0.0/24")["Vpc"]["VpcId"] for n in range(4)]
    assert len(ec2.describe_vpcs()["Vpcs"]) == 5
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        ec2.create_vpc(CidrBlock="10.99.0.0/24")
    assert refused.value.response["Error"]["Code"] == "VpcLimitExceeded"
    assert "L-F678F1CE" in refused.value.response["Error"]["Message"]
    assert len(ec2.describe_vpcs()["Vpcs"]) == 5, "the refused VPC was not created"
    ec2.delete_vpc(VpcId=made.pop())
    made.append(ec2.create_vpc(CidrBlock="10.98.0.0/24")["Vpc"]["VpcId"])  # a freed slot can be used again
    for vpc in made:
        ec2.delete_vpc(VpcId=vpc)
