"""Bad input stops a deploy early, says what is wrong and what to do, and creates nothing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

NO_AWS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
    "AWS_PROFILE": "",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_REGION": "ap-northeast-1",
}


def lab_vpcs(aws) -> set[str]:
    return {
        v["VpcId"] for v in aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["kumolab"]}])["Vpcs"]
    }


def running_ec2_lab_instances(aws) -> set[str]:
    filters = [{"Name": "tag:Lab", "Values": ["ec2"]}, {"Name": "instance-state-name", "Values": ["running"]}]
    return {
        i["InstanceId"] for r in aws("ec2").describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]
    }


def test_aws_target_without_credentials_explains_how_to_configure_them(run_playbook):
    run = run_playbook("ec2_lab.yml", inventory="inventories/aws", env=NO_AWS)
    assert run.rc != 0
    assert "No usable AWS credentials" in run.output
    assert "aws configure" in run.output and "inventories/local" in run.output


def test_unknown_region_lists_the_usable_ones(run_playbook, aws):
    before = lab_vpcs(aws)
    run = run_playbook("ec2_lab.yml", env={"KUMOLAB_AWS_REGION": "xx-nowhere-1"})
    assert run.rc != 0
    assert "Region 'xx-nowhere-1' is not an AWS region this account can use" in run.output
    assert "ap-northeast-1" in run.output
    assert lab_vpcs(aws) == before


def test_missing_ami_parameter_names_the_parameter_and_the_region(run_playbook, aws):
    bogus = "/aws/service/ami-amazon-linux-latest/no-such-image"
    before = running_ec2_lab_instances(aws)
    run = run_playbook("ec2_lab.yml", "-e", f"lab_instance_ami_parameter={bogus}")
    assert run.rc != 0
    assert f"Could not read the public SSM parameter {bogus} in region ap-northeast-1" in run.output
    assert running_ec2_lab_instances(aws) == before
    cleanup = run_playbook("teardown.yml", "-e", "lab=ec2")
    assert cleanup.rc == 0, cleanup.output[-2000:]


def test_unknown_purchase_option_is_refused_before_anything_is_created(run_playbook, aws):
    before = lab_vpcs(aws)
    run = run_playbook("gpu_lab.yml", "-e", "gpu_lab_market=reserved")
    assert run.rc != 0
    assert "gpu_lab_market is 'reserved'; use on-demand or spot" in run.output
    assert lab_vpcs(aws) == before


@pytest.mark.parametrize(
    ("market", "quota"), [("on-demand", "Running On-Demand P instances"), ("spot", "All P Spot Instance Requests")]
)
def test_gpu_quota_of_zero_says_what_to_request_and_creates_nothing(run_playbook, aws, market, quota):
    # The emulator seeds the P quotas at 0 vCPUs, as on a new account.
    before = lab_vpcs(aws)
    run = run_playbook("gpu_lab.yml", "-e", "gpu_lab_instance_type=p4d.24xlarge", "-e", f"gpu_lab_market={market}")
    assert run.rc != 0
    assert f"may run 0 vCPUs of '{quota}' in ap-northeast-1, but one p4d.24xlarge needs 96" in run.output
    assert "request-service-quota-increase --service-code ec2" in run.output
    assert lab_vpcs(aws) == before
