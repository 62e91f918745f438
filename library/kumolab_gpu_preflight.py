#!/usr/bin/python
# -*- coding: utf-8 -*-
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
  - Fails with what to request, and how, when the quota is below the instance type's vCPUs.
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
  description: The quota found, in vCPUs, its code and name.
  returned: success
  type: dict
  sample: {"code": "L-DB2E81BA", "name": "Running On-Demand G and VT instances", "vcpus": 8.0, "market": "on-demand"}
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible.module_utils.kumolab_aws import client, error_code, fail

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
    raise PreflightError(f"{instance_type} is not a GPU instance type (expected a g*, p* or vt* family, e.g. g4dn.xlarge)")


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


def check_quota(quota_vcpus, needed_vcpus, instance_type, quota_code, quota_name, region, minimum_request=4):
    """Raise PreflightError with what to request when the quota does not cover one instance."""
    if quota_vcpus is None:
        raise PreflightError(
            f"Could not find the quota '{quota_name}' ({quota_code}) in {region}. Open Service Quotas → Amazon EC2 in "
            f"the console for {region} and check that the quota exists for your account."
        )
    if quota_vcpus >= needed_vcpus:
        return
    desired = max(minimum_request, needed_vcpus)
    raise PreflightError(
        f"Your AWS account may run {quota_vcpus:g} vCPUs of '{quota_name}' in {region}, but one {instance_type} needs "
        f"{needed_vcpus}. New accounts start at 0. Request at least {desired} vCPUs (approval can take a day): "
        f"aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {quota_code} "
        f"--desired-value {desired} --region {region} — or in the console: Service Quotas → Amazon EC2 → {quota_name}."
    )


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
        ),
        required_if=[("quota_source", "ssm-parameter", ["quota_parameter_prefix"])],
        supports_check_mode=True,
    )
    params = module.params
    region = module.region
    instance_type = params["instance_type"]
    try:
        quota_code, quota_name = quota_for(instance_type, params["market"])
        try:
            described = client(module, "ec2").describe_instance_types(InstanceTypes=[instance_type], aws_retry=True)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
                raise PreflightError(f"{instance_type} is not offered in {region}; choose another type or region") from exc
            raise
        if not described["InstanceTypes"]:
            raise PreflightError(f"{instance_type} is not offered in {region}; choose another type or region")
        info = described["InstanceTypes"][0]
        vcpus = int(info["VCpuInfo"]["DefaultVCpus"])
        architecture = architecture_of(info)
        if params["quota_source"] == "service-quotas":
            quota = read_service_quota(client(module, "service-quotas"), quota_code)
        else:
            quota = read_parameter_quota(client(module, "ssm"), f"{params['quota_parameter_prefix'].rstrip('/')}/{quota_code}")
        check_quota(quota, vcpus, instance_type, quota_code, quota_name, region, params["minimum_request"])
        parameter = dlami_parameter(params["dlami_parameter_root"], architecture, params["dlami_flavor"])
    except PreflightError as exc:
        module.fail_json(msg=str(exc))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"check the GPU quota for {instance_type} in {region}")

    gpus = [
        {"name": f"{g.get('Manufacturer', '')} {g.get('Name', '')}".strip(), "count": g.get("Count"), "memory_mib": g.get("MemoryInfo", {}).get("SizeInMiB")}
        for g in info.get("GpuInfo", {}).get("Gpus", [])
    ]
    module.exit_json(
        changed=False,
        ami_parameter=parameter,
        architecture=architecture,
        vcpus=vcpus,
        gpus=gpus,
        quota={"code": quota_code, "name": quota_name, "vcpus": quota, "market": params["market"]},
    )


if __name__ == "__main__":
    main()
