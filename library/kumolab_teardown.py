#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Delete everything carrying a set of tags, in dependency order, and prove nothing is left.

Why a custom module: amazon.aws and community.aws delete one resource kind at a time by name or id, and
a teardown that lists them one by one forgets whatever a later change to a lab adds. This module finds a
lab's resources by tag across EC2 (with NAT gateways and EBS volumes), ECS, Lambda, API Gateway,
EventBridge, CloudWatch (idle-stop alarms by name), SQS, DynamoDB, S3, Logs, ECR and IAM (the catalogue in
``module_utils/kumolab_resources.py``, shared with the expiry reaper), deletes them in
dependency order with retries on dependency and throttling errors, then lists again, asks the Resource
Groups Tagging API for anything of a kind it does not know, and fails naming whatever remains.
"""

DOCUMENTATION = r"""
---
module: kumolab_teardown
short_description: Delete a kumolab lab's resources by tag and verify that nothing is left
description:
  - Finds every resource whose tags include all of O(tags), across the services kumolab uses.
  - With C(Owner) in O(tags), a resource of another owner is never selected, and one with no C(Owner) tag at all
    is (nothing attributes it to anyone else). Two owners' copies of a lab in one account are torn down apart.
  - Idle-stop alarms (C(<lab prefix>-idle-stop-<instance id>), which amazon.aws cannot tag) are found by
    name when O(tags) holds only C(Project), C(Lab) and perhaps C(Owner) (then only when an instance the alarm
    watches carries that owner), also when their instance is already gone, unless their
    own tags name another project or lab; so are untagged ECS clusters, task definitions and (empty) ECR
    repositories named exactly C(<lab prefix>) (left by a deploy interrupted before it tagged them), never a
    look-alike such as C(<lab prefix>-prod). A repository claimed by name is deleted only when empty (no
    C(force)). O(lab_prefixes) gives each lab's prefix.
  - With O(state=absent), deletes them in dependency order (alarms, instances, ECS services and clusters,
    APIs, functions, NAT gateways, EBS volumes, queues, tables, buckets with all their object versions, log
    groups, repositories, IAM roles and policies, security groups, internet gateways, route tables, subnets,
    VPCs, key pairs), retrying each call on C(DependencyViolation) and throttling.
  - With O(verify=true), lists again afterwards across B(every) kind, whatever O(kinds) says, and through the
    Resource Groups Tagging API, and fails listing anything that remains. A lab whose O(kinds) miss a kind it
    creates therefore fails loudly, naming the kind, instead of leaving it behind.
  - With O(state=list), or in check mode, only reports what would be deleted, and (with C(Owner) in O(tags))
    which resources of the same other tags belong to other owners (RV(other_owners)).
options:
  tags:
    description:
      - Tags that select the resources. Must include C(Project) so that a teardown can never reach beyond
        what kumolab created.
    type: dict
    required: true
  state:
    description: C(absent) deletes, C(list) only reports.
    type: str
    choices: [absent, list]
    default: absent
  verify:
    description: After deleting, fail if anything selected by O(tags) is still there.
    type: bool
    default: true
  kinds:
    description:
      - Delete only these resource kinds (default all), e.g. the kinds a lab's registry entry lists
        (C(teardown) in C(inventories/shared/labs.yml)). See RV(resources) for the names.
      - Verification still looks at every kind (see O(verify)).
    type: list
    elements: str
  lab_prefixes:
    description:
      - The resource-name prefix of each lab, a mapping of lab to C(<project>-<slug>), from the lab registry. Used to claim
        untagged resources and idle-stop alarms by name. A lab not listed has the prefix C(<project>-<lab>).
    type: dict
    default: {}
  exclude_labs:
    description:
      - Leave alone resources whose C(Lab) tag is one of these, when finding, deleting and verifying. A
        teardown of every lab uses it to keep the account-wide guards (C(guard) in the lab registry), such as the
        expiry reaper.
      - Naming a lab here that O(tags) selects explicitly (C(Lab)) is an error.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Tear down one lab, the kinds its registry entry lists
  kumolab_teardown:
    tags:
      Project: "{{ kumolab_project }}"
      Lab: "{{ lab }}"
    kinds: "{{ kumolab_labs[lab].teardown }}"
    lab_prefixes: "{{ kumolab_lab_prefixes }}"

- name: What would a full teardown delete?
  kumolab_teardown:
    tags:
      Project: kumolab
  check_mode: true
  register: plan

- name: Tear down every lab but keep the account-wide guards (the expiry reaper)
  kumolab_teardown:
    tags:
      Project: kumolab
    exclude_labs: >-
      {{ kumolab_labs | dict2items | selectattr('value.guard', 'defined') | selectattr('value.guard')
         | map(attribute='key') }}
"""

RETURN = r"""
resources:
  description: What was found before deleting (kind, id, name), in deletion order.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "ec2_instance", "id": "i-0123456789abcdef0", "name": "kumolab-mylab"}]
deleted:
  description: What was deleted.
  returned: when state=absent
  type: list
  elements: dict
other_owners:
  description:
    - With C(Owner) in O(tags) and O(state=list), the resources the other tags select that carry another owner
      (kind, id, name, lab, owner). A teardown uses it to keep what a lab still shares on this machine (local
      services, key files) while someone else's copy of it runs.
  returned: when state=list and O(tags) has Owner
  type: list
  elements: dict
  sample: [{"kind": "ec2_instance", "id": "i-0123456789abcdef0", "name": "kumolab-mylab", "lab": "mylab", "owner": "bob"}]
remaining:
  description:
    - What is still there after deleting, of any kind (empty on success; the module fails otherwise). An entry
      of a kind outside O(kinds) has C(outside_kinds=true); tagged ARNs of kinds the catalogue does not know
      have C(kind=untracked).
  returned: when verify=true and state=absent
  type: list
  elements: dict
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils import kumolab_resources as catalogue
from ansible.module_utils.kumolab_aws import fail
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def leftover_message(wanted, remaining):
    """What is left and what to do about it: a kind outside `kinds` means the lab's list of kinds is short."""
    listing = "; ".join(f"{r['kind']} {r['name']}" for r in remaining)
    msg = (
        f"Teardown left {len(remaining)} resource(s) tagged {wanted}: {listing}. "
        "Delete them in the console or run the teardown again; nothing else was skipped."
    )
    outside = sorted({r["kind"] for r in remaining if r.get("outside_kinds")})
    if outside:
        msg += (
            f" Of kinds this teardown was not asked to delete: {', '.join(outside)}; add them to the lab's"
            " teardown kinds in the lab registry (inventories/shared/labs.yml)."
        )
    return msg


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            tags=dict(type="dict", required=True),
            state=dict(type="str", choices=["absent", "list"], default="absent"),
            verify=dict(type="bool", default=True),
            kinds=dict(type="list", elements="str"),
            exclude_labs=dict(type="list", elements="str", default=[]),
            lab_prefixes=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    wanted = {str(k): str(v) for k, v in module.params["tags"].items()}
    if "Project" not in wanted:
        module.fail_json(
            msg="tags must include Project (e.g. Project: kumolab) so teardown cannot reach other resources"
        )
    exclude_labs = [str(lab) for lab in module.params["exclude_labs"]]
    if wanted.get("Lab") in exclude_labs:
        module.fail_json(msg=f"tags select Lab={wanted['Lab']} and exclude_labs excludes it; drop one of the two")
    names = module.params["kinds"] or catalogue.KIND_NAMES
    unknown = sorted(set(names) - set(catalogue.KIND_NAMES))
    if unknown:
        module.fail_json(msg=f"unknown resource kinds {unknown}; known kinds: {catalogue.KIND_NAMES}")
    kinds = [kind for kind in catalogue.KINDS if kind.name in names]
    prefixes = {str(lab): str(prefix) for lab, prefix in module.params["lab_prefixes"].items()}

    clients = {}

    def aws(service):
        if service not in clients:
            clients[service] = module.client(service)
        return clients[service]

    try:
        found = catalogue.find(aws, wanted, kinds, exclude_labs=exclude_labs, prefixes=prefixes)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"list resources tagged {wanted}")
    result = dict(resources=[r.as_dict() for r in found])

    if module.params["state"] == "list" and catalogue.OWNER_TAG in wanted:
        everyone = {key: value for key, value in wanted.items() if key != catalogue.OWNER_TAG}
        try:
            listed = catalogue.find(aws, everyone, kinds, exclude_labs=exclude_labs, prefixes=prefixes)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            fail(module, exc, f"list resources tagged {everyone}")
        result["other_owners"] = [
            dict(r.as_dict(), lab=r.lab, owner=r.tags[catalogue.OWNER_TAG])
            for r in listed
            if r.tags.get(catalogue.OWNER_TAG, wanted[catalogue.OWNER_TAG]) != wanted[catalogue.OWNER_TAG]
        ]
    if module.params["state"] == "list" or module.check_mode:
        module.exit_json(changed=bool(found) and module.params["state"] == "absent", **result)

    try:
        deleted = catalogue.delete(aws, found, log=module.debug)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, botocore.exceptions.WaiterError) as exc:
        fail(module, exc, f"delete resources tagged {wanted}")
    result["deleted"] = [r.as_dict() for r in deleted]

    if module.params["verify"]:
        # Every kind, not only those deleted: a kind missing from `kinds` must fail here, not stay behind.
        try:
            left = catalogue.find(aws, wanted, exclude_labs=exclude_labs, prefixes=prefixes)
            untracked = catalogue.untracked(aws, wanted, exclude_labs=exclude_labs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            fail(module, exc, f"verify that nothing tagged {wanted} is left")
        remaining = [dict(r.as_dict(), outside_kinds=r.kind not in names) for r in left]
        remaining += [{"kind": "untracked", "id": arn, "name": arn} for arn in untracked]
        result["remaining"] = remaining
        if remaining:
            module.fail_json(msg=leftover_message(wanted, remaining), changed=bool(deleted), **result)
    module.exit_json(changed=bool(deleted), **result)


if __name__ == "__main__":
    main()
