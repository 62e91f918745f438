#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_ecr_tags: tags on an ECR repository.

Why this module exists: ``community.aws.ecs_ecr`` (10.0.0) creates the repository, its scan-on-push and
lifecycle settings, but has no ``tags`` option, and no amazon.aws/community.aws module tags an ECR
repository afterwards. Teardown finds resources by their tags, so an untagged repository would be left
behind. This module does exactly that one thing, the same on AWS and on the moto emulator.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_ecr_tags
short_description: Set the tags of an Amazon ECR repository
version_added: "0.1.0"
description:
  - Adds (and with O(purge_tags=true) removes) tags on an existing Amazon ECR repository.
  - Exists because C(community.aws.ecs_ecr) cannot tag the repositories it creates.
options:
  repository:
    description: Name of the repository (not its URI).
    type: str
    required: true
  registry_id:
    description: AWS account id of the registry; the caller's account when not given.
    type: str
  tags:
    description: Tags the repository must carry.
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
    name: kumolab-qa-bot
    scan_on_push: true
  register: qa_bot_ecr

- name: Tag it for teardown
  kumolab_ecr_tags:
    repository: kumolab-qa-bot
    tags:
      Project: kumolab
      Lab: qa_bot
"""

RETURN = r"""
repository_arn:
  description: ARN of the repository.
  returned: always
  type: str
  sample: arn:aws:ecr:ap-northeast-1:123456789012:repository/kumolab-qa-bot
tags:
  description: The repository's tags after the change (what they would be, in check mode).
  returned: always
  type: dict
  sample: {"Project": "kumolab", "Lab": "qa_bot"}
added_tags:
  description: Tags that were added or changed.
  returned: always
  type: dict
removed_tags:
  description: Keys of the tags that were removed.
  returned: always
  type: list
  elements: str
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

from ansible.module_utils.kumolab_aws import RETRY, fail


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            repository=dict(type="str", required=True),
            registry_id=dict(type="str"),
            tags=dict(type="dict", required=True, aliases=["resource_tags"]),
            purge_tags=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    ecr = module.client("ecr", retry_decorator=RETRY)
    name = module.params["repository"]
    wanted = {str(k): str(v) for k, v in module.params["tags"].items()}
    lookup = {"repositoryNames": [name]}
    if module.params["registry_id"]:
        lookup["registryId"] = module.params["registry_id"]
    try:
        try:
            repo = ecr.describe_repositories(aws_retry=True, **lookup)["repositories"][0]
        except ecr.exceptions.RepositoryNotFoundException:
            module.fail_json(msg=f"ECR repository {name} does not exist; create it first (community.aws.ecs_ecr)")
        arn = repo["repositoryArn"]
        current = {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(aws_retry=True, resourceArn=arn).get("tags", [])}
        add, remove = compare_aws_tags(current, wanted, purge_tags=module.params["purge_tags"])
        if not module.check_mode:
            if remove:
                ecr.untag_resource(aws_retry=True, resourceArn=arn, tagKeys=list(remove))
            if add:
                ecr.tag_resource(aws_retry=True, resourceArn=arn, tags=[{"Key": k, "Value": v} for k, v in add.items()])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"tag ECR repository {name}")
    after = {k: v for k, v in current.items() if k not in remove}
    after.update(add)
    module.exit_json(changed=bool(add or remove), repository_arn=arn, tags=after, added_tags=add,
                     removed_tags=sorted(remove))


if __name__ == "__main__":
    main()
