#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_resource_tags: tags on ECR repositories and ECS resources, by ARN.

Why this module exists: teardown finds a lab's resources by their tags, but ``community.aws.ecs_ecr``,
``ecs_cluster`` and ``ecs_taskdefinition`` (10.0.0) have no ``tags`` option, and ``community.aws.ecs_tag``
fails against the moto emulator on a resource that has no tags yet (moto's ListTagsForResource then
omits ``tags``, and the module reads ``response["tags"]``). This module adds the tags afterwards, by ARN,
the same on AWS and on moto.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_resource_tags
short_description: Set the tags of an ECR repository or an ECS cluster, service or task definition
version_added: "0.1.0"
description:
  - Adds (and with O(purge_tags=true) removes) tags on an existing resource, given its ARN.
  - Supports Amazon ECR repositories (C(arn:aws:ecr:...:repository/NAME)), Amazon ECS clusters, services,
    task definitions and tasks (C(arn:aws:ecs:...)) and CloudWatch alarms (C(arn:aws:cloudwatch:...:alarm:NAME);
    C(amazon.aws.cloudwatch_metric_alarm) has no tags option).
  - Exists because C(community.aws.ecs_ecr), C(ecs_cluster) and C(ecs_taskdefinition) cannot tag what they
    create, and C(community.aws.ecs_tag) fails on the moto emulator for a resource without tags.
options:
  arn:
    description: ARN of the resource.
    type: str
    required: true
  tags:
    description: Tags the resource must carry.
    type: dict
    required: true
    aliases: [resource_tags]
  purge_tags:
    description: Remove tags that are not in O(tags).
    type: bool
    default: false
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Create the repository
  community.aws.ecs_ecr:
    name: kumolab-mylab
    scan_on_push: true
  register: mylab_ecr

- name: Tag it for teardown
  kumolab_resource_tags:
    arn: "{{ mylab_ecr.repository.repositoryArn }}"
    tags:
      Project: kumolab
      Lab: mylab

- name: Tag a task definition revision
  kumolab_resource_tags:
    arn: arn:aws:ecs:ap-northeast-1:123456789012:task-definition/kumolab-mylab:3
    tags:
      Project: kumolab
      Lab: mylab
"""

RETURN = r"""
arn:
  description: ARN of the resource.
  returned: always
  type: str
  sample: arn:aws:ecr:ap-northeast-1:123456789012:repository/kumolab-mylab
tags:
  description: The resource's tags after the change (what they would be, in check mode).
  returned: always
  type: dict
  sample: {"Project": "kumolab", "Lab": "mylab"}
added_tags:
  description: Tags that were (or would be) added or changed.
  returned: always
  type: dict
removed_tags:
  description: Keys of the tags that were (or would be) removed.
  returned: always
  type: list
  elements: str
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import RETRY, fail
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

# service -> (casing of the tag keys in the API, whether the ARN names a resource this module knows)
KEY_CASE = {"ecr": ("Key", "Value"), "ecs": ("key", "value"), "cloudwatch": ("Key", "Value")}
# service -> the names of the ARN, tags and tag-keys parameters and of the response's tag list
PARAMS = {
    "ecr": ("resourceArn", "tags", "tagKeys"),
    "ecs": ("resourceArn", "tags", "tagKeys"),
    "cloudwatch": ("ResourceARN", "Tags", "TagKeys"),
}


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            arn=dict(type="str", required=True),
            tags=dict(type="dict", required=True, aliases=["resource_tags"]),
            purge_tags=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    arn = module.params["arn"]
    parts = arn.split(":", 5)
    service = parts[2] if len(parts) == 6 and parts[0] == "arn" else ""
    if service not in KEY_CASE:
        module.fail_json(
            msg=f"{arn!r} is not the ARN of an ECR or ECS resource or a CloudWatch alarm "
            f"(arn:aws:ecr:..., arn:aws:ecs:... or arn:aws:cloudwatch:...)"
        )
    key, value = KEY_CASE[service]
    arn_param, tags_param, keys_param = PARAMS[service]
    client = module.client(service, retry_decorator=RETRY)
    wanted = {str(k): str(v) for k, v in module.params["tags"].items()}
    try:
        response = client.list_tags_for_resource(aws_retry=True, **{arn_param: arn})
        current = {t[key]: t.get(value, "") for t in response.get(tags_param) or []}
        add, remove = compare_aws_tags(current, wanted, purge_tags=module.params["purge_tags"])
        if not module.check_mode:
            if remove:
                client.untag_resource(aws_retry=True, **{arn_param: arn, keys_param: list(remove)})
            if add:
                client.tag_resource(
                    aws_retry=True, **{arn_param: arn, tags_param: [{key: k, value: v} for k, v in add.items()]}
                )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"tag {arn}")
    after = {k: v for k, v in current.items() if k not in remove}
    after.update(add)
    module.exit_json(changed=bool(add or remove), arn=arn, tags=after, added_tags=add, removed_tags=sorted(remove))


if __name__ == "__main__":
    main()
