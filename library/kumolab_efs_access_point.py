#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_efs_access_point: an EFS access point (a fixed POSIX user and root directory).

Why this module exists: ``community.aws.efs`` manages file systems and mount targets, ``efs_info`` and
``efs_tag`` read and tag them, but no module of amazon.aws or community.aws (10.x) creates an access point
(``CreateAccessPoint``), which is what a Lambda function mounts. Access points are immutable on AWS (no
update API except tags): a different POSIX user or root directory is a new access point, so this module
replaces one whose identity differs (it says so in ``actions``) and otherwise only reconciles its tags.
The access point is found by its ``Name`` tag on the given file system.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_efs_access_point
short_description: Create, replace or delete an Amazon EFS access point
version_added: "0.1.0"
description:
  - An access point of file system O(file_system_id) named O(name) (its C(Name) tag), through which every
    request uses the POSIX user O(posix_user) and sees O(root_directory) as its root.
  - EFS creates the root directory on first use with O(root_directory.creation_info) (owner and permissions)
    when it does not exist.
  - Access points cannot be modified; one whose POSIX user or root directory differs is deleted and created
    again (a new id and ARN). Tags are reconciled in place.
options:
  file_system_id:
    description: The file system (C(fs-...)). It must exist.
    type: str
    required: true
  name:
    description: The access point's C(Name) tag, unique on the file system.
    type: str
    required: true
  state:
    description: C(present) or C(absent).
    type: str
    choices: [present, absent]
    default: present
  posix_user:
    description: The user every request through the access point runs as.
    type: dict
    suboptions:
      uid: {description: User id., type: int, required: true}
      gid: {description: Group id., type: int, required: true}
      secondary_gids: {description: More group ids., type: list, elements: int, default: []}
  root_directory:
    description: What the access point exposes as C(/).
    type: dict
    suboptions:
      path: {description: Absolute path inside the file system., type: str, required: true}
      creation_info:
        description: Owner and permissions EFS creates O(root_directory.path) with when it is missing.
        type: dict
        suboptions:
          owner_uid: {description: Owner user id., type: int, required: true}
          owner_gid: {description: Owner group id., type: int, required: true}
          permissions: {description: Octal mode such as C("0755")., type: str, required: true}
  tags:
    description: Tags besides C(Name).
    type: dict
    default: {}
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The models directory, always accessed as 1000:1000
  kumolab_efs_access_point:
    file_system_id: fs-0123456789abcdef0
    name: kumolab-mylab-models
    posix_user: {uid: 1000, gid: 1000}
    root_directory:
      path: /kumolab-models
      creation_info: {owner_uid: 1000, owner_gid: 1000, permissions: "0755"}
    tags: {Project: kumolab}
"""

RETURN = r"""
access_point:
  description: The access point as DescribeAccessPoints returns it (snake_case); empty when absent.
  returned: always
  type: dict
  sample: {access_point_id: fsap-0123456789abcdef0, access_point_arn: "arn:aws:elasticfilesystem:...", life_cycle_state: available}
actions:
  description: What was (or, in check mode, would be) done.
  returned: always
  type: list
  elements: str
  sample: ["create"]
"""

import re
import time
import uuid

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible.module_utils.kumolab_aws import fail, retry_decorator
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

RETRY = retry_decorator(extra_codes=["IncorrectFileSystemLifeCycleState", "AccessPointAlreadyExists"])


def wanted_identity(p):
    user = p["posix_user"] or {}
    root = p["root_directory"] or {}
    posix = {"Uid": user["uid"], "Gid": user["gid"]}
    if user.get("secondary_gids"):
        posix["SecondaryGids"] = sorted(user["secondary_gids"])
    directory = {"Path": root["path"]}
    info = root.get("creation_info")
    if info:
        directory["CreationInfo"] = {
            "OwnerUid": info["owner_uid"],
            "OwnerGid": info["owner_gid"],
            "Permissions": info["permissions"],
        }
    return posix, directory


def identity_of(access_point):
    posix = dict(access_point.get("PosixUser") or {})
    if posix.get("SecondaryGids"):
        posix["SecondaryGids"] = sorted(posix["SecondaryGids"])
    else:
        posix.pop("SecondaryGids", None)
    directory = dict(access_point.get("RootDirectory") or {})
    if not directory.get("CreationInfo"):
        directory.pop("CreationInfo", None)
    return posix, directory


def find(client, file_system_id, name):
    found = client.describe_access_points(aws_retry=True, FileSystemId=file_system_id).get("AccessPoints", [])
    mine = [ap for ap in found if ap.get("Name") == name or {"Key": "Name", "Value": name} in ap.get("Tags", [])]
    return mine[0] if mine else None


def wait_available(client, access_point_id, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        ap = client.describe_access_points(aws_retry=True, AccessPointId=access_point_id)["AccessPoints"][0]
        if ap.get("LifeCycleState", "available") == "available" or time.monotonic() > deadline:
            return ap
        time.sleep(2)


def validate(module, p):
    if p["state"] == "absent":
        return
    if not p["posix_user"] or not p["root_directory"]:
        module.fail_json(msg="state=present needs posix_user {uid, gid} and root_directory {path}.")
    path = p["root_directory"]["path"]
    if not path.startswith("/") or ".." in path.split("/"):
        module.fail_json(msg=f"root_directory.path must be an absolute path without '..', got {path!r}.")
    info = p["root_directory"].get("creation_info")
    if info and not re.fullmatch(r"0?[0-7]{3}", info["permissions"]):
        module.fail_json(
            msg=f"root_directory.creation_info.permissions must be octal like '0755', got {info['permissions']!r}."
        )


def ensure_present(module, client, p, have):
    posix, directory = wanted_identity(p)
    tags = dict(p["tags"] or {}, Name=p["name"])
    actions = []
    if have is not None and identity_of(have) != (posix, directory):
        actions.append(f"replace {have['AccessPointId']} (its POSIX user or root directory differs)")
        if not module.check_mode:
            client.delete_access_point(aws_retry=True, AccessPointId=have["AccessPointId"])
        have = None
    if have is None:
        actions.append("create")
        if module.check_mode:
            return actions, {}
        created = client.create_access_point(
            aws_retry=True,
            ClientToken=str(uuid.uuid4()),
            FileSystemId=p["file_system_id"],
            PosixUser=posix,
            RootDirectory=directory,
            Tags=[{"Key": k, "Value": str(v)} for k, v in tags.items()],
        )
        return actions, wait_available(client, created["AccessPointId"])
    current = {t["Key"]: t["Value"] for t in have.get("Tags", [])}
    to_set, to_unset = compare_aws_tags(current, tags, purge_tags=True)
    if to_set or to_unset:
        actions.append("tag")
        if not module.check_mode:
            if to_unset:
                client.untag_resource(aws_retry=True, ResourceId=have["AccessPointId"], TagKeys=to_unset)
            if to_set:
                client.tag_resource(
                    aws_retry=True,
                    ResourceId=have["AccessPointId"],
                    Tags=[{"Key": k, "Value": str(v)} for k, v in to_set.items()],
                )
            have = find(client, p["file_system_id"], p["name"])
    return actions, have


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            file_system_id=dict(type="str", required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            posix_user=dict(
                type="dict",
                options=dict(
                    uid=dict(type="int", required=True),
                    gid=dict(type="int", required=True),
                    secondary_gids=dict(type="list", elements="int", default=[]),
                ),
            ),
            root_directory=dict(
                type="dict",
                options=dict(
                    path=dict(type="str", required=True),
                    creation_info=dict(
                        type="dict",
                        options=dict(
                            owner_uid=dict(type="int", required=True),
                            owner_gid=dict(type="int", required=True),
                            permissions=dict(type="str", required=True),
                        ),
                    ),
                ),
            ),
            tags=dict(type="dict", default={}),
        ),
        required_if=[("state", "present", ["posix_user", "root_directory"])],
        supports_check_mode=True,
    )
    p = module.params
    validate(module, p)
    client = module.client("efs", retry_decorator=RETRY)
    try:
        have = find(client, p["file_system_id"], p["name"])
        if p["state"] == "absent":
            if have is None:
                module.exit_json(changed=False, access_point={}, actions=[])
            if not module.check_mode:
                client.delete_access_point(aws_retry=True, AccessPointId=have["AccessPointId"])
            module.exit_json(changed=True, access_point={}, actions=[f"delete {have['AccessPointId']}"])
        actions, after = ensure_present(module, client, p, have)
    except client.exceptions.FileSystemNotFound:
        module.fail_json(
            msg=f"EFS file system {p['file_system_id']} does not exist; create it before its access point."
        )
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"manage EFS access point {p['name']} on {p['file_system_id']}")
    module.exit_json(
        changed=bool(actions),
        access_point=camel_dict_to_snake_dict(after or {}, ignore_list=["Tags"]),
        actions=actions,
    )


if __name__ == "__main__":
    main()
