#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Check, before launching, that a GPU instance can start, and which Deep Learning AMI it should run.

Why a custom module: neither amazon.aws nor community.aws has a Service Quotas module, and new AWS
accounts have a GPU vCPU quota of 0, so without this check the launch fails with a terse
``VcpuLimitExceeded`` after the network is already built. The module also derives the public SSM
parameter of the current Deep Learning AMI for the instance type's architecture.
"""

DOCUMENTATION = r"""
---
module: kumolab_gpu_preflight
short_description: GPU quota preflight and Deep Learning AMI parameter for a GPU instance type
description:
  - Looks up the instance type (vCPUs, architecture, GPUs) in the region.
  - Reads the account's quota for that family and purchase option from Service Quotas, or from an SSM
    parameter where Service Quotas is not available (the local emulator). On-demand, C(Running On-Demand G
    and VT instances) (C(L-DB2E81BA)) for g4dn/g5/g6 and C(Running On-Demand P instances) (C(L-417A185B))
    for p*; Spot, C(All G and VT Spot Instance Requests) (C(L-3819A6DF)) and C(All P Spot Instance
    Requests) (C(L-7212CCBC)). Both kinds start at 0 on new accounts and are granted separately.
  - Subtracts the vCPUs of the running (and pending) instances that count against the same quota in the
    region (same family group and purchase option), less the lab's own instance (O(instance_name)), and fails
    with what to request, stop or terminate, and how, when what is left is below the instance type's vCPUs.
  - Finds the availability zones of the region that offer the instance type
    (C(DescribeInstanceTypeOfferings) by availability zone; the type is offered per zone, not per region) and
    returns one for the lab's subnet, O(availability_zone) when it offers the type (else it fails naming the
    zones that do), otherwise the first such zone in name order.
  - Returns the name of the public SSM parameter holding the current Deep Learning AMI for the
    instance type's architecture.
  - Read-only; safe in check mode.
options:
  instance_type:
    description: The GPU instance type to launch.
    type: str
    required: true
  market:
    description: The purchase option the instance will use; it decides which quota is checked.
    type: str
    choices: [on-demand, spot]
    default: on-demand
  dlami_flavor:
    description: The Deep Learning AMI flavour, as it appears in its SSM parameter path.
    type: str
    default: base-oss-nvidia-driver-gpu-ubuntu-24.04
  dlami_parameter_root:
    description: Where the Deep Learning AMI parameters live.
    type: str
    default: /aws/service/deeplearning/ami
  quota_source:
    description:
      - C(service-quotas) asks AWS Service Quotas; C(ssm-parameter) reads the quota (a number of vCPUs)
        from an SSM parameter under O(quota_parameter_prefix), for targets without Service Quotas.
    type: str
    choices: [service-quotas, ssm-parameter]
    default: service-quotas
  quota_parameter_prefix:
    description:
      - With O(quota_source=ssm-parameter), the quota is read from the SSM parameter
        C(<quota_parameter_prefix>/<quota code>), e.g. C(/kumolab/emulator/service-quotas/ec2/L-DB2E81BA).
    type: str
  minimum_request:
    description: Smallest quota increase worth requesting (AWS asks for at least 4 vCPUs).
    type: int
    default: 4
  availability_zone:
    description:
      - The zone the lab's subnet should be in (C(-e lab_network_az=...)). It must offer the instance type.
      - Unset, the module picks the first zone (in name order) that offers it.
    type: str
  instance_name:
    description:
      - C(Name) tag of the lab's own instance. A running instance with this name is the one the launch reuses,
        so its vCPUs are not counted as in use.
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Check the GPU quota and find the Deep Learning AMI parameter
  kumolab_gpu_preflight:
    instance_type: g4dn.xlarge
  register: preflight

- name: The same for a Spot instance (its own quota)
  kumolab_gpu_preflight:
    instance_type: g5.xlarge
    market: spot

- name: Read the AMI id
  ansible.builtin.set_fact:
    ami_id: "{{ lookup('amazon.aws.ssm_parameter', preflight.ami_parameter) }}"
"""

RETURN = r"""
ami_parameter:
  description: Public SSM parameter holding the current Deep Learning AMI id for the instance type.
  returned: success
  type: str
  sample: /aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id
architecture:
  description: The instance type's architecture (x86_64 or arm64).
  returned: success
  type: str
vcpus:
  description: vCPUs of one instance of the type (what the quota is counted in).
  returned: success
  type: int
gpus:
  description: GPUs of one instance, with their model and memory.
  returned: success
  type: list
  elements: dict
quota:
  description: The quota found, in vCPUs, its code and name, and the vCPUs already in use against it.
  returned: success
  type: dict
  sample: {"code": "L-DB2E81BA", "name": "Running On-Demand G and VT instances", "vcpus": 8.0, "market": "on-demand",
           "in_use_vcpus": 4, "in_use_by": ["i-0123456789abcdef0 (g4dn.xlarge, 4 vCPUs)"]}
availability_zone:
  description: The zone for the lab's subnet, one that offers the instance type.
  returned: success
  type: str
  sample: ap-northeast-1a
availability_zones:
  description: Every available zone of the region that offers the instance type, in name order.
  returned: success
  type: list
  elements: str
  sample: [ap-northeast-1a, ap-northeast-1c, ap-northeast-1d]
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import client, error_code, fail
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# Instance family prefix → purchase option → (quota code, quota name), all counted in vCPUs.
_G_AND_VT = {
    "on-demand": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "spot": ("L-3819A6DF", "All G and VT Spot Instance Requests"),
}
QUOTAS = {
    "g": _G_AND_VT,
    "vt": _G_AND_VT,
    "p": {
        "on-demand": ("L-417A185B", "Running On-Demand P instances"),
        "spot": ("L-7212CCBC", "All P Spot Instance Requests"),
    },
}
ARCHITECTURES = ("x86_64", "arm64")


class PreflightError(Exception):
    """A problem the user has to fix; the message says how."""


def quota_for(instance_type, market="on-demand"):
    family = instance_type.split(".", 1)[0]
    for prefix in sorted(QUOTAS, key=len, reverse=True):
        if family.startswith(prefix):
            return QUOTAS[prefix][market]
    raise PreflightError(
        f"{instance_type} is not a GPU instance type (expected a g*, p* or vt* family, e.g. g4dn.xlarge)"
    )


def dlami_parameter(root, architecture, flavor):
    if architecture not in ARCHITECTURES:
        raise PreflightError(f"no Deep Learning AMI is published for architecture {architecture!r}")
    return f"{root.rstrip('/')}/{architecture}/{flavor}/latest/ami-id"


def architecture_of(instance_info):
    supported = instance_info["ProcessorInfo"]["SupportedArchitectures"]
    for arch in ARCHITECTURES:
        if arch in supported:
            return arch
    raise PreflightError(f"{instance_info['InstanceType']} has no supported architecture among {supported}")


def check_quota(
    quota_vcpus,
    needed_vcpus,
    instance_type,
    quota_code,
    quota_name,
    region,
    minimum_request=4,
    in_use_vcpus=0,
    in_use_by=(),
):
    """Raise PreflightError with what to request (or stop) when the quota, less what is in use, does not cover
    one instance."""
    if quota_vcpus is None:
        raise PreflightError(
            f"Could not find the quota '{quota_name}' ({quota_code}) in {region}. Open Service Quotas → Amazon EC2 in "
            f"the console for {region} and check that the quota exists for your account."
        )
    if quota_vcpus - in_use_vcpus >= needed_vcpus:
        return
    desired = max(minimum_request, in_use_vcpus + needed_vcpus)
    request = (
        f"Request at least {desired} vCPUs (approval can take a day): "
        f"aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {quota_code} "
        f"--desired-value {desired} --region {region} — or in the console: Service Quotas → Amazon EC2 → {quota_name}."
    )
    if not in_use_vcpus:
        raise PreflightError(
            f"Your AWS account may run {quota_vcpus:g} vCPUs of '{quota_name}' in {region}, but one {instance_type} needs "
            f"{needed_vcpus}. New accounts start at 0. {request}"
        )
    left = max(quota_vcpus - in_use_vcpus, 0)
    raise PreflightError(
        f"Your AWS account may run {quota_vcpus:g} vCPUs of '{quota_name}' in {region}, and {in_use_vcpus:g} of them are "
        f"in use by running instances ({', '.join(in_use_by)}), so {left:g} are left, but one {instance_type} needs "
        f"{needed_vcpus}; the launch would fail with VcpuLimitExceeded. Stop or terminate one of those instances, "
        f"or {request[0].lower()}{request[1:]}"
    )


def _pages(call, key, **kwargs):
    """Every item of a paginated EC2 describe call (NextToken)."""
    while True:
        page = call(aws_retry=True, **kwargs)
        yield from page.get(key, [])
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


def offered_zones(ec2, instance_type):
    """The region's available availability zones (no Local or Wavelength Zones) that offer the type, sorted."""
    offered = {
        o["Location"]
        for o in _pages(
            ec2.describe_instance_type_offerings,
            "InstanceTypeOfferings",
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )
    }
    zones = ec2.describe_availability_zones(
        Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}, {"Name": "state", "Values": ["available"]}],
        aws_retry=True,
    )["AvailabilityZones"]
    return sorted(offered & {z["ZoneName"] for z in zones})


def pick_zone(zones, instance_type, region, preferred=None):
    """The zone for the lab's subnet: ``preferred`` if it offers the type, else the first one that does."""
    if not zones:
        raise PreflightError(
            f"{instance_type} is not offered in any availability zone of {region}; choose another type "
            f"(-e gpu_lab_instance_type=...) or region (AWS_REGION=...)"
        )
    if preferred:
        if preferred not in zones:
            raise PreflightError(
                f"{instance_type} is not offered in {preferred}; zones of {region} that offer it: "
                f"{', '.join(zones)} (-e lab_network_az=<zone>). A lab network that already exists keeps "
                f"its zone: tear the lab down first to move it."
            )
        return preferred
    return zones[0]


def _counts_against(instance, quota_code, market):
    """Whether a described instance uses the quota ``quota_code`` of purchase option ``market``."""
    family = instance["InstanceType"].split(".", 1)[0]
    prefix = next((p for p in sorted(QUOTAS, key=len, reverse=True) if family.startswith(p)), None)
    if prefix is None:
        return False
    lifecycle = "spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand"
    return lifecycle == market and QUOTAS[prefix][market][0] == quota_code


def vcpus_in_use(ec2, quota_code, market, exclude_name=None):
    """(vCPUs, ["<id> (<type>, <n> vCPUs)"]) of the pending and running instances that count against the quota,
    less those named ``exclude_name`` (the lab's own instance, which the launch reuses)."""
    instances = [
        i
        for r in _pages(
            ec2.describe_instances,
            "Reservations",
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}],
        )
        for i in r.get("Instances", [])
        if _counts_against(i, quota_code, market)
        and not (exclude_name and {"Key": "Name", "Value": exclude_name} in i.get("Tags", []))
    ]
    types = sorted({i["InstanceType"] for i in instances})
    per_type = {}
    for start in range(0, len(types), 100):
        for info in ec2.describe_instance_types(InstanceTypes=types[start : start + 100], aws_retry=True)[
            "InstanceTypes"
        ]:
            per_type[info["InstanceType"]] = int(info["VCpuInfo"]["DefaultVCpus"])
    used = [(i["InstanceId"], i["InstanceType"], per_type.get(i["InstanceType"], 0)) for i in instances]
    return sum(n for _, _, n in used), [f"{iid} ({itype}, {n} vCPUs)" for iid, itype, n in used]


def read_service_quota(quotas_client, quota_code):
    for call in (quotas_client.get_service_quota, quotas_client.get_aws_default_service_quota):
        try:
            return float(call(ServiceCode="ec2", QuotaCode=quota_code, aws_retry=True)["Quota"]["Value"])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchResourceException":
                raise
    return None


def read_parameter_quota(ssm_client, name):
    try:
        return float(ssm_client.get_parameter(Name=name, aws_retry=True)["Parameter"]["Value"])
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_type=dict(type="str", required=True),
            market=dict(type="str", choices=["on-demand", "spot"], default="on-demand"),
            dlami_flavor=dict(type="str", default="base-oss-nvidia-driver-gpu-ubuntu-24.04"),
            dlami_parameter_root=dict(type="str", default="/aws/service/deeplearning/ami"),
            quota_source=dict(type="str", choices=["service-quotas", "ssm-parameter"], default="service-quotas"),
            quota_parameter_prefix=dict(type="str"),
            minimum_request=dict(type="int", default=4),
            availability_zone=dict(type="str"),
            instance_name=dict(type="str"),
        ),
        required_if=[("quota_source", "ssm-parameter", ["quota_parameter_prefix"])],
        supports_check_mode=True,
    )
    params = module.params
    region = module.region
    instance_type = params["instance_type"]
    try:
        quota_code, quota_name = quota_for(instance_type, params["market"])
        ec2 = client(module, "ec2")
        try:
            described = ec2.describe_instance_types(InstanceTypes=[instance_type], aws_retry=True)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
                raise PreflightError(
                    f"{instance_type} is not offered in {region}; choose another type or region"
                ) from exc
            raise
        if not described["InstanceTypes"]:
            raise PreflightError(f"{instance_type} is not offered in {region}; choose another type or region")
        info = described["InstanceTypes"][0]
        vcpus = int(info["VCpuInfo"]["DefaultVCpus"])
        architecture = architecture_of(info)
        if params["quota_source"] == "service-quotas":
            quota = read_service_quota(client(module, "service-quotas"), quota_code)
        else:
            quota = read_parameter_quota(
                client(module, "ssm"), f"{params['quota_parameter_prefix'].rstrip('/')}/{quota_code}"
            )
        in_use, in_use_by = vcpus_in_use(ec2, quota_code, params["market"], params["instance_name"])
        check_quota(
            quota, vcpus, instance_type, quota_code, quota_name, region, params["minimum_request"], in_use, in_use_by
        )
        zones = offered_zones(ec2, instance_type)
        zone = pick_zone(zones, instance_type, region, params["availability_zone"])
        parameter = dlami_parameter(params["dlami_parameter_root"], architecture, params["dlami_flavor"])
    except PreflightError as exc:
        module.fail_json(msg=str(exc))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"check the GPU quota for {instance_type} in {region}")

    gpus = [
        {
            "name": f"{g.get('Manufacturer', '')} {g.get('Name', '')}".strip(),
            "count": g.get("Count"),
            "memory_mib": g.get("MemoryInfo", {}).get("SizeInMiB"),
        }
        for g in info.get("GpuInfo", {}).get("Gpus", [])
    ]
    module.exit_json(
        changed=False,
        ami_parameter=parameter,
        architecture=architecture,
        vcpus=vcpus,
        gpus=gpus,
        quota={
            "code": quota_code,
            "name": quota_name,
            "vcpus": quota,
            "market": params["market"],
            "in_use_vcpus": in_use,
            "in_use_by": in_use_by,
        },
        availability_zone=zone,
        availability_zones=zones,
    )


if __name__ == "__main__":
    main()
