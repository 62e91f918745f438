"""GPU preflight: quota arithmetic and messages, Deep Learning AMI parameter names, Service Quotas reads."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper

from library_loader import load_library_module

preflight = load_library_module("kumolab_gpu_preflight")
from ansible.module_utils.kumolab_aws import RETRY  # noqa: E402  (registered by the loader)
G_QUOTA = ("L-DB2E81BA", "Running On-Demand G and VT instances")


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [
        ("x86_64", "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"),
        ("arm64", "/aws/service/deeplearning/ami/arm64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"),
    ],
)
def test_dlami_parameter_follows_the_architecture(architecture, expected):
    assert preflight.dlami_parameter("/aws/service/deeplearning/ami/", architecture, "base-oss-nvidia-driver-gpu-ubuntu-24.04") == expected


def test_dlami_parameter_refuses_unknown_architectures():
    with pytest.raises(preflight.PreflightError, match="i386"):
        preflight.dlami_parameter("/aws/service/deeplearning/ami", "i386", "x")


def test_architecture_prefers_what_the_type_supports():
    assert preflight.architecture_of({"InstanceType": "g5g.xlarge", "ProcessorInfo": {"SupportedArchitectures": ["arm64"]}}) == "arm64"
    assert preflight.architecture_of({"InstanceType": "g4dn.xlarge", "ProcessorInfo": {"SupportedArchitectures": ["i386", "x86_64"]}}) == "x86_64"


@pytest.mark.parametrize(("instance_type", "code"), [("g4dn.xlarge", "L-DB2E81BA"), ("g6.12xlarge", "L-DB2E81BA"), ("p5.48xlarge", "L-417A185B"), ("vt1.3xlarge", "L-DB2E81BA")])
def test_quota_code_by_family(instance_type, code):
    assert preflight.quota_for(instance_type)[0] == code


@pytest.mark.parametrize(("instance_type", "code", "name"), [
    ("g4dn.xlarge", "L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p4d.24xlarge", "L-7212CCBC", "All P Spot Instance Requests")])
def test_spot_has_its_own_quota(instance_type, code, name):
    assert preflight.quota_for(instance_type, "spot") == (code, name)


def test_non_gpu_type_is_refused():
    with pytest.raises(preflight.PreflightError, match="not a GPU instance type"):
        preflight.quota_for("t3.micro")


def test_quota_of_zero_says_what_to_request_and_how():
    with pytest.raises(preflight.PreflightError) as info:
        preflight.check_quota(0.0, 4, "g4dn.xlarge", *G_QUOTA, "ap-northeast-1")
    message = str(info.value)
    assert "may run 0 vCPUs of 'Running On-Demand G and VT instances' in ap-northeast-1" in message
    assert "one g4dn.xlarge needs 4" in message
    assert "--quota-code L-DB2E81BA --desired-value 4 --region ap-northeast-1" in message
    assert "New accounts start at 0" in message


def test_request_is_at_least_four_and_at_least_one_instance():
    with pytest.raises(preflight.PreflightError, match="--desired-value 8 "):
        preflight.check_quota(4.0, 8, "g4dn.2xlarge", *G_QUOTA, "us-east-1")


def test_quota_equal_to_the_need_passes():
    assert preflight.check_quota(4.0, 4, "g4dn.xlarge", *G_QUOTA, "us-east-1") is None


def test_missing_quota_says_where_to_look():
    with pytest.raises(preflight.PreflightError, match="Could not find the quota"):
        preflight.check_quota(None, 4, "g4dn.xlarge", *G_QUOTA, "us-east-1")


def quotas_client():
    client = boto3.client("service-quotas", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


@pytest.mark.parametrize("value", [0.0, 4.0])
def test_service_quota_is_read(value):
    client, stub = quotas_client()
    stub.add_response("get_service_quota", {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": value}}, {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    with stub:
        assert preflight.read_service_quota(RetryingBotoClientWrapper(client, RETRY), "L-DB2E81BA") == value


def test_default_quota_is_used_when_the_account_has_no_applied_value():
    client, stub = quotas_client()
    stub.add_client_error("get_service_quota", service_error_code="NoSuchResourceException")
    stub.add_response("get_aws_default_service_quota", {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 0.0}})
    with stub:
        assert preflight.read_service_quota(RetryingBotoClientWrapper(client, RETRY), "L-DB2E81BA") == 0.0


def test_quota_missing_everywhere_is_none():
    client, stub = quotas_client()
    stub.add_client_error("get_service_quota", service_error_code="NoSuchResourceException")
    stub.add_client_error("get_aws_default_service_quota", service_error_code="NoSuchResourceException")
    with stub:
        assert preflight.read_service_quota(RetryingBotoClientWrapper(client, RETRY), "L-DB2E81BA") is None
