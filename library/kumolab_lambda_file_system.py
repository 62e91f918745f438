#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_lambda_file_system: the EFS file system a Lambda function mounts (FileSystemConfigs).

Why this module exists: ``amazon.aws.lambda`` (10.x) sets a function's VPC (``vpc_subnet_ids``,
``vpc_security_group_ids``) but has no option for ``FileSystemConfigs``, the EFS access point a function
mounts at ``/mnt/<name>``; community.aws has no Lambda module for it either. This sets (or removes) it with
``UpdateFunctionConfiguration``, idempotently and in check mode, and waits until the update is done.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_lambda_file_system
short_description: Mount an EFS access point into a Lambda function
version_added: "0.1.0"
description:
  - Sets the function's C(FileSystemConfigs) to O(file_systems) (Lambda allows one), or removes it with an
    empty list.
  - The function must already be in a VPC (C(amazon.aws.lambda) O(vpc_subnet_ids)), and the access point's file
    system must have a mount target in the Availability Zone of each of its subnets; Lambda refuses it otherwise.
options:
  function_name:
    description: Name or ARN of the function. It must exist.
    type: str
    required: true
  file_systems:
    description: The access points to mount; [] removes them.
    type: list
    elements: dict
    required: true
    suboptions:
      arn: {description: The access point's ARN., type: str, required: true}
      local_mount_path: {description: "Where the function sees it: C(/mnt/<name>).", type: str, required: true}
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The models on EFS at /mnt/models
  kumolab_lambda_file_system:
    function_name: kumolab-mylab-predict
    file_systems:
      - arn: arn:aws:elasticfilesystem:ap-northeast-1:123456789012:access-point/fsap-0123456789abcdef0
        local_mount_path: /mnt/models
"""

RETURN = r"""
file_system_configs:
  description: The function's FileSystemConfigs after the change (before it, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{arn: "arn:aws:elasticfilesystem:...:access-point/fsap-0123", local_mount_path: /mnt/models}]
"""

import re

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import fail, retry_decorator
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# Lambda answers ResourceConflictException while another update of the function is in progress.
RETRY = retry_decorator(extra_codes=["ResourceConflictException"], max_delay=15)
MOUNT_PATH = re.compile(r"^/mnt/[a-zA-Z0-9-_.]+$")


def as_snake(configs):
    return [{"arn": c["Arn"], "local_mount_path": c["LocalMountPath"]} for c in configs or []]


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            function_name=dict(type="str", required=True),
            file_systems=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(arn=dict(type="str", required=True), local_mount_path=dict(type="str", required=True)),
            ),
        ),
        supports_check_mode=True,
    )
    name, wanted = module.params["function_name"], module.params["file_systems"]
    for item in wanted:
        if not MOUNT_PATH.match(item["local_mount_path"]):
            module.fail_json(
                msg=f"local_mount_path must be /mnt/<name> (letters, digits, - _ .), got {item['local_mount_path']!r}."
            )
    if len(wanted) > 1:
        module.fail_json(msg=f"Lambda mounts at most one file system; got {len(wanted)}.")
    client = module.client("lambda", retry_decorator=RETRY)
    try:
        have = as_snake(client.get_function_configuration(aws_retry=True, FunctionName=name).get("FileSystemConfigs"))
        if have == wanted:
            module.exit_json(changed=False, file_system_configs=have)
        if module.check_mode:
            module.exit_json(changed=True, file_system_configs=have, diff={"before": have, "after": wanted})
        client.update_function_configuration(
            aws_retry=True,
            FunctionName=name,
            FileSystemConfigs=[{"Arn": c["arn"], "LocalMountPath": c["local_mount_path"]} for c in wanted],
        )
        client.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
        after = as_snake(client.get_function_configuration(aws_retry=True, FunctionName=name).get("FileSystemConfigs"))
    except client.exceptions.ResourceNotFoundException:
        module.fail_json(msg=f"Lambda function {name} does not exist; deploy it before mounting a file system.")
    except botocore.exceptions.WaiterError as exc:
        module.fail_json(msg=f"Lambda function {name} did not finish updating its file system: {exc}")
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"set the file system of Lambda function {name}")
    module.exit_json(changed=True, file_system_configs=after, diff={"before": have, "after": after})


if __name__ == "__main__":
    main()
