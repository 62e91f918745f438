#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Compute the tags every resource of a lab carries, keeping the lab's expiry stable across runs.

Why a custom module: the expiry tag must be decided once per deployment, not once per run, or every
re-run would retag every resource (``changed`` forever). No amazon.aws/community.aws module reads tags
across services; this one asks the Resource Groups Tagging API which resources carry the lab's tags,
confirms each with its own service's API (the tagging API still lists deleted resources, for minutes to
hours), and reuses their ``ExpiresAt`` only while it lies in the future (review M6): an expired lab's tags
never leak into a redeploy, whose resources would otherwise be born expired and reaped within the hour.
"""

DOCUMENTATION = r"""
---
module: kumolab_lab_tags
short_description: Tags for a kumolab lab, with an expiry that stays put across runs
description:
  - Returns the tag set (C(Project), C(Lab), C(Owner), C(ExpiresAt) plus extras) that every resource of a
    lab is created with.
  - C(ExpiresAt) is now plus O(expires_in_hours) on the first deployment. On later runs the value already on
    the lab's resources of the same O(owner) (found with the Resource Groups Tagging API, each confirmed to exist
    with its own service's API) is reused, so re-running a playbook does not retag anything. An expiry at or before now is
    never reused; a fresh one is computed and the lab's resources are re-tagged with it. Pass O(expires_at)
    to move the expiry explicitly.
  - Read-only; safe in check mode.
options:
  lab:
    description: Name of the lab, a key of the lab registry (C(inventories/shared/labs.yml)).
    type: str
    required: true
  project:
    description: Value of the C(Project) tag that marks everything kumolab creates.
    type: str
    default: kumolab
  owner:
    description: Value of the C(Owner) tag, usually the login name of whoever deploys.
    type: str
    required: true
  expires_in_hours:
    description: Hours from now until the lab expires, used when the lab does not exist yet.
    type: float
    default: 4
  expires_at:
    description:
      - An explicit expiry (ISO-8601, UTC). Overrides both O(expires_in_hours) and an existing expiry.
    type: str
  extra_tags:
    description: More tags to add to the set.
    type: dict
    default: {}
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Decide the tags of a lab
  kumolab_lab_tags:
    lab: mylab
    owner: "{{ kumolab_owner }}"
    expires_in_hours: 4
  register: mylab_tags

- name: Extend a running lab until tomorrow evening
  kumolab_lab_tags:
    lab: mylab
    owner: alice
    expires_at: "2026-11-24T18:00:00Z"
"""

RETURN = r"""
tags:
  description: The tags to put on every resource of the lab.
  returned: always
  type: dict
  sample: {"Project": "kumolab", "Lab": "mylab", "Owner": "alice", "ExpiresAt": "2026-11-23T23:00:00Z"}
expires_at:
  description: The lab's expiry, ISO-8601 UTC.
  returned: always
  type: str
existing_resources:
  description: How many resources of this lab and owner exist (listed by the tagging API and confirmed by their own API).
  returned: always
  type: int
"""

import datetime

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import EXPIRES_TAG, LAB_TAG, OWNER_TAG, PROJECT_TAG, client, fail
from ansible.module_utils.kumolab_resources import arn_exists
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def iso_utc(moment):
    return moment.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def existing_expiry(tagging, project, lab, owner=None, exists=lambda arn: True, now=None):
    """The ExpiresAt already on the lab's existing resources of ``owner`` (earliest if they disagree) when it is still
    in the future, else None; and how many resources exist. Another owner's copy of the lab has its own expiry: taking
    it would retag (and, for modules that look resources up by their tags, recreate) this one's. ``exists(arn)`` confirms a resource with its own API (the
    tagging API lists "previously tagged", i.e. deleted, resources too)."""
    now = now or datetime.datetime.now(datetime.UTC)
    found = []
    count = 0
    filters = [{"Key": PROJECT_TAG, "Values": [project]}, {"Key": LAB_TAG, "Values": [lab]}]
    token = ""
    while True:
        # Paged by hand: a paginator would bypass the client's retry decorator, which only acts when asked.
        page = tagging.get_resources(
            aws_retry=True, TagFilters=filters, **({"PaginationToken": token} if token else {})
        )
        for mapping in page["ResourceTagMappingList"]:
            tag_owner = next((t["Value"] for t in mapping.get("Tags", []) if t["Key"] == OWNER_TAG), None)
            if owner and tag_owner not in (None, owner):
                continue  # another owner's copy (one with no Owner tag counts as anyone's, as in teardown)
            if not exists(mapping["ResourceARN"]):
                continue  # a ghost of a deleted resource
            count += 1
            for tag in mapping.get("Tags", []):
                if tag["Key"] == EXPIRES_TAG and _future(tag["Value"], now):
                    found.append(tag["Value"])
        token = page.get("PaginationToken", "")
        if not token:
            break
    return (min(found, key=parse_iso) if found else None), count


def _future(value, now):
    try:
        moment = parse_iso(value)
    except (TypeError, ValueError):
        return False
    moment = moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    return moment > now


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            project=dict(type="str", default="kumolab"),
            owner=dict(type="str", required=True),
            expires_in_hours=dict(type="float", default=4),
            expires_at=dict(type="str"),
            extra_tags=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["expires_at"]:
        try:
            expires_at = iso_utc(parse_iso(params["expires_at"]))
        except ValueError:
            module.fail_json(
                msg=f"expires_at={params['expires_at']!r} is not an ISO-8601 time; use e.g. 2026-11-24T18:00:00Z"
            )
        count = None
    else:
        tagging = client(module, "resourcegroupstaggingapi")
        clients = {}

        def aws(service):
            return clients.setdefault(service, client(module, service))

        try:
            expires_at, count = existing_expiry(
                tagging, params["project"], params["lab"], params["owner"], exists=lambda arn: arn_exists(aws, arn)
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            fail(module, exc, f"look up the existing resources of lab {params['lab']!r}")
        if expires_at is None:
            now = datetime.datetime.now(datetime.UTC)
            expires_at = iso_utc(now + datetime.timedelta(hours=params["expires_in_hours"]))

    tags = dict(params["extra_tags"])
    tags.update(
        {PROJECT_TAG: params["project"], LAB_TAG: params["lab"], OWNER_TAG: params["owner"], EXPIRES_TAG: expires_at}
    )
    module.exit_json(changed=False, tags=tags, expires_at=expires_at, existing_resources=count or 0)


if __name__ == "__main__":
    main()
