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


def lab_vpcs(aws):
    return aws("ec2").describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["kumolab"]}])["Vpcs"]


def test_aws_target_without_credentials_explains_how_to_configure_them(run_playbook):
    run = run_playbook("ec2_lab.yml", inventory="inventories/aws", env=NO_AWS)
    assert run.rc != 0
    assert "No usable AWS credentials" in run.output
    assert "aws configure" in run.output and "inventories/local" in run.output


def test_unknown_region_lists_the_usable_ones(run_playbook, aws):
    run = run_playbook("ec2_lab.yml", env={"KUMOLAB_AWS_REGION": "xx-nowhere-1"})
    assert run.rc != 0
    assert "Region 'xx-nowhere-1' is not an AWS region this account can use" in run.output
    assert "ap-northeast-1" in run.output
    assert lab_vpcs(aws) == []


def test_missing_ami_parameter_names_the_parameter_and_the_region(run_playbook, aws):
    bogus = "/aws/service/ami-amazon-linux-latest/no-such-image"
    run = run_playbook("ec2_lab.yml", "-e", f"lab_instance_ami_parameter={bogus}")
    assert run.rc != 0
    assert f"Could not read the public SSM parameter {bogus} in region ap-northeast-1" in run.output
    instances = aws("ec2").describe_instances(Filters=[{"Name": "tag:Lab", "Values": ["ec2"]}, {"Name": "instance-state-name", "Values": ["running"]}])
    assert instances["Reservations"] == []
    cleanup = run_playbook("teardown.yml", "-e", "lab=ec2")
    assert cleanup.rc == 0, cleanup.output[-2000:]
