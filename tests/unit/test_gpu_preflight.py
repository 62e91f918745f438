"""GPU preflight: quota arithmetic and messages, Deep Learning AMI parameter names, Service Quotas reads."""

from __future__ import annotations

import boto3
import pytest
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from botocore.stub import Stubber
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
    assert (
        preflight.dlami_parameter(
            "/aws/service/deeplearning/ami/", architecture, "base-oss-nvidia-driver-gpu-ubuntu-24.04"
        )
        == expected
    )


def test_dlami_parameter_refuses_unknown_architectures():
    with pytest.raises(preflight.PreflightError, match="i386"):
        preflight.dlami_parameter("/aws/service/deeplearning/ami", "i386", "x")


def test_architecture_prefers_what_the_type_supports():
    assert (
        preflight.architecture_of(
            {"InstanceType": "g5g.xlarge", "ProcessorInfo": {"SupportedArchitectures": ["arm64"]}}
        )
        == "arm64"
    )
    assert (
        preflight.architecture_of(
            {"InstanceType": "g4dn.xlarge", "ProcessorInfo": {"SupportedArchitectures": ["i386", "x86_64"]}}
        )
        == "x86_64"
    )


@pytest.mark.parametrize(
    ("instance_type", "code"),
    [
        ("g4dn.xlarge", "L-DB2E81BA"),
        ("g6.12xlarge", "L-DB2E81BA"),
        ("p5.48xlarge", "L-417A185B"),
        ("vt1.3xlarge", "L-DB2E81BA"),
    ],
)
def test_quota_code_by_family(instance_type, code):
    assert preflight.quota_for(instance_type)[0] == code


@pytest.mark.parametrize(
    ("instance_type", "code", "name"),
    [
        ("g4dn.xlarge", "L-3819A6DF", "All G and VT Spot Instance Requests"),
        ("p4d.24xlarge", "L-7212CCBC", "All P Spot Instance Requests"),
    ],
)
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
    stub.add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": value}},
        {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"},
    )
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


# -- review M7: the instance type is offered per availability zone, not per region ------------------------


def ec2_client():
    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def offerings(*zones, instance_type="g4dn.xlarge"):
    return {
        "InstanceTypeOfferings": [
            {"InstanceType": instance_type, "LocationType": "availability-zone", "Location": z} for z in zones
        ]
    }


def zones_response(*zones):
    return {
        "AvailabilityZones": [{"ZoneName": z, "State": "available", "ZoneType": "availability-zone"} for z in zones]
    }


OFFERINGS_REQUEST = {
    "LocationType": "availability-zone",
    "Filters": [{"Name": "instance-type", "Values": ["g4dn.xlarge"]}],
}
ZONES_REQUEST = {
    "Filters": [{"Name": "zone-type", "Values": ["availability-zone"]}, {"Name": "state", "Values": ["available"]}]
}


def test_m7_zone_comes_from_the_offerings_by_availability_zone():
    # us-east-1e offers no current GPU type: a subnet AWS placed there made RunInstances fail with "Unsupported".
    client, stub = ec2_client()
    stub.add_response("describe_instance_type_offerings", offerings("us-east-1d", "us-east-1a"), OFFERINGS_REQUEST)
    stub.add_response(
        "describe_availability_zones",
        zones_response("us-east-1a", "us-east-1b", "us-east-1d", "us-east-1e"),
        ZONES_REQUEST,
    )
    with stub:
        zones = preflight.offered_zones(RetryingBotoClientWrapper(client, RETRY), "g4dn.xlarge")
    stub.assert_no_pending_responses()
    assert zones == ["us-east-1a", "us-east-1d"]
    assert preflight.pick_zone(zones, "g4dn.xlarge", "us-east-1") == "us-east-1a"


def test_m7_offerings_are_paged_and_local_zones_left_out():
    client, stub = ec2_client()
    stub.add_response(
        "describe_instance_type_offerings", dict(offerings("us-east-1b"), NextToken="t"), OFFERINGS_REQUEST
    )
    stub.add_response(
        "describe_instance_type_offerings",
        offerings("us-east-1-bos-1a", "us-east-1c"),
        dict(OFFERINGS_REQUEST, NextToken="t"),
    )
    stub.add_response("describe_availability_zones", zones_response("us-east-1b", "us-east-1c"), ZONES_REQUEST)
    with stub:
        assert preflight.offered_zones(RetryingBotoClientWrapper(client, RETRY), "g4dn.xlarge") == [
            "us-east-1b",
            "us-east-1c",
        ]


def test_m7_requested_zone_must_offer_the_type():
    assert preflight.pick_zone(["us-east-1a", "us-east-1d"], "g4dn.xlarge", "us-east-1", "us-east-1d") == "us-east-1d"
    with pytest.raises(preflight.PreflightError) as info:
        preflight.pick_zone(["us-east-1a", "us-east-1d"], "g4dn.xlarge", "us-east-1", "us-east-1e")
    assert "not offered in us-east-1e" in str(
        info.value
    ) and "us-east-1a, us-east-1d (-e lab_network_az=<zone>)" in str(info.value)


def test_m7_type_offered_nowhere_says_choose_another():
    with pytest.raises(preflight.PreflightError, match="not offered in any availability zone of ap-northeast-1"):
        preflight.pick_zone([], "g6.xlarge", "ap-northeast-1")


def test_m7_gpu_lab_passes_the_zone_to_the_network():
    import yaml
    from library_loader import REPO

    plays = yaml.safe_load((REPO / "playbooks/gpu_lab.yml").read_text())
    task = next(t for t in plays[0]["tasks"] if "kumolab_gpu_preflight" in t)
    assert task["kumolab_gpu_preflight"]["availability_zone"] == "{{ lab_network_az | default(omit, true) }}"
    network = next(
        r for p in plays for r in p.get("roles", []) if isinstance(r, dict) and r.get("role") == "lab_network"
    )
    assert network["lab_network_az"] == "{{ gpu_lab_preflight.availability_zone }}"


def test_m7_the_emulator_offers_gpu_types_per_zone():
    # What the local target answers (moto): the preflight's zone lookup works there unchanged.
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("ec2", region_name="ap-northeast-1")
        zones = preflight.offered_zones(RetryingBotoClientWrapper(client, RETRY), "g4dn.xlarge")
    assert zones and all(z.startswith("ap-northeast-1") for z in zones)


# -- review minor "Quota preflight ignores current usage" ------------------------------------------------


def instance(iid, itype, name="other", lifecycle=None):
    item = {"InstanceId": iid, "InstanceType": itype, "Tags": [{"Key": "Name", "Value": name}]}
    if lifecycle:
        item["InstanceLifecycle"] = lifecycle
    return item


RUNNING_REQUEST = {"Filters": [{"Name": "instance-state-name", "Values": ["pending", "running"]}]}


def test_quota_usage_counts_running_instances_of_the_same_quota():
    client, stub = ec2_client()
    stub.add_response(
        "describe_instances",
        {
            "Reservations": [
                {
                    "Instances": [
                        instance("i-1", "g4dn.xlarge"),
                        instance("i-2", "vt1.3xlarge"),
                        instance("i-3", "t3.micro"),
                        instance("i-4", "g5.xlarge", lifecycle="spot"),
                        instance("i-5", "p3.2xlarge"),
                        instance("i-6", "g4dn.xlarge", name="kumolab-gpu"),
                    ]
                }
            ]
        },
        RUNNING_REQUEST,
    )
    stub.add_response(
        "describe_instance_types",
        {
            "InstanceTypes": [
                {"InstanceType": "g4dn.xlarge", "VCpuInfo": {"DefaultVCpus": 4}},
                {"InstanceType": "vt1.3xlarge", "VCpuInfo": {"DefaultVCpus": 12}},
            ]
        },
        {"InstanceTypes": ["g4dn.xlarge", "vt1.3xlarge"]},
    )
    with stub:
        used, by = preflight.vcpus_in_use(
            RetryingBotoClientWrapper(client, RETRY), "L-DB2E81BA", "on-demand", "kumolab-gpu"
        )
    assert used == 16  # g4dn 4 + vt1 12; not t3 (no GPU quota), not the Spot g5, not P, not the lab's own host
    assert by == ["i-1 (g4dn.xlarge, 4 vCPUs)", "i-2 (vt1.3xlarge, 12 vCPUs)"]


def test_quota_usage_of_spot_counts_only_spot_instances():
    client, stub = ec2_client()
    stub.add_response(
        "describe_instances",
        {
            "Reservations": [
                {"Instances": [instance("i-1", "g4dn.xlarge"), instance("i-4", "g5.xlarge", lifecycle="spot")]}
            ]
        },
        RUNNING_REQUEST,
    )
    stub.add_response(
        "describe_instance_types",
        {"InstanceTypes": [{"InstanceType": "g5.xlarge", "VCpuInfo": {"DefaultVCpus": 4}}]},
        {"InstanceTypes": ["g5.xlarge"]},
    )
    with stub:
        assert preflight.vcpus_in_use(RetryingBotoClientWrapper(client, RETRY), "L-3819A6DF", "spot")[0] == 4


def test_quota_preflight_subtracts_vcpus_in_use():
    # Quota 8 with a g4dn.2xlarge (8 vCPUs) running: the old check compared 8 >= 4 and passed, and the launch
    # then failed with VcpuLimitExceeded.
    with pytest.raises(preflight.PreflightError) as info:
        preflight.check_quota(
            8.0, 4, "g4dn.xlarge", *G_QUOTA, "us-east-1", in_use_vcpus=8, in_use_by=["i-1 (g4dn.2xlarge, 8 vCPUs)"]
        )
    message = str(info.value)
    assert "8 of them are in use by running instances (i-1 (g4dn.2xlarge, 8 vCPUs)), so 0 are left" in message
    assert "VcpuLimitExceeded" in message and "Stop or terminate one of those instances" in message
    assert "--desired-value 12 " in message
    assert preflight.check_quota(8.0, 4, "g4dn.xlarge", *G_QUOTA, "us-east-1", in_use_vcpus=4) is None


def run_main_on_moto(args, setup=lambda ec2, ssm: None):
    """The module's main() in-process against moto (mock_aws): what the local target's emulator answers."""
    import io
    import json
    from contextlib import redirect_stdout

    from ansible.module_utils import basic
    from moto import mock_aws

    region = "ap-northeast-1"
    base = {
        "region": region,
        "access_key": "testing",
        "secret_key": "testing",
        "quota_source": "ssm-parameter",
        "quota_parameter_prefix": "/kumolab/emulator/service-quotas/ec2",
    }
    with mock_aws():
        ec2, ssm = (
            boto3.client(s, region_name=region, aws_access_key_id="x", aws_secret_access_key="x")
            for s in ("ec2", "ssm")
        )
        ssm.put_parameter(Name="/kumolab/emulator/service-quotas/ec2/L-DB2E81BA", Value="8", Type="String")
        setup(ec2, ssm)
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": dict(base, **args)}).encode()
        basic._ANSIBLE_PROFILE = "legacy"
        out = io.StringIO()
        with redirect_stdout(out), pytest.raises(SystemExit):
            preflight.main()
    basic._ANSIBLE_ARGS = basic._ANSIBLE_PROFILE = None
    return json.loads(out.getvalue())


def test_m7_module_on_the_emulator_returns_a_zone_that_offers_the_type():
    result = run_main_on_moto({"instance_type": "g4dn.xlarge"})
    assert not result.get("failed"), result
    assert result["availability_zone"] == result["availability_zones"][0]
    assert result["quota"]["in_use_vcpus"] == 0 and result["quota"]["vcpus"] == 8.0

    wrong = run_main_on_moto({"instance_type": "g4dn.xlarge", "availability_zone": "ap-northeast-1b"})
    assert wrong["failed"] and "not offered in ap-northeast-1b" in wrong["msg"]


def test_quota_usage_module_fails_when_running_gpu_hosts_use_the_quota():
    def two_running(ec2, _ssm):
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2.run_instances(ImageId=image, InstanceType="g4dn.xlarge", MinCount=2, MaxCount=2)

    result = run_main_on_moto({"instance_type": "g4dn.xlarge"}, two_running)
    assert result["failed"] and "8 of them are in use by running instances" in result["msg"]
