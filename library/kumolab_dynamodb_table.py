#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_dynamodb_table: a DynamoDB table with point-in-time recovery and tags.

Why this module exists: ``community.aws.dynamodb_table`` (10.0.0) fails against the moto emulator
(it reads ``TableId`` from DescribeTable, which moto does not return, after the table was already
created) and has no option for point-in-time recovery, which the labs turn on. This module manages
exactly what the labs need - keys, billing mode, PITR, tags - and works the same on AWS and moto.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_dynamodb_table
short_description: Create, update or delete a DynamoDB table with point-in-time recovery and tags
version_added: "0.1.0"
description:
  - Creates, updates or deletes an Amazon DynamoDB table, its point-in-time recovery (PITR) setting and its tags.
  - Exists because C(community.aws.dynamodb_table) fails against the moto emulator and cannot set PITR.
  - Key schema changes are refused (they need a new table); billing mode, PITR and tags are updated in place.
options:
  name:
    description: Name of the table.
    type: str
    required: true
  state:
    description: Whether the table should exist.
    type: str
    choices: [present, absent]
    default: present
  partition_key:
    description: Name of the partition (hash) key attribute. Required when I(state=present).
    type: str
  partition_key_type:
    description: Type of the partition key (S string, N number, B binary).
    type: str
    choices: [S, N, B]
    default: S
  sort_key:
    description: Name of the sort (range) key attribute, if the table has one.
    type: str
  sort_key_type:
    description: Type of the sort key.
    type: str
    choices: [S, N, B]
    default: S
  billing_mode:
    description: C(PAY_PER_REQUEST) is on-demand capacity (no charge while idle); C(PROVISIONED) needs capacities.
    type: str
    choices: [PAY_PER_REQUEST, PROVISIONED]
    default: PAY_PER_REQUEST
  read_capacity:
    description: Read capacity units when I(billing_mode=PROVISIONED).
    type: int
    default: 1
  write_capacity:
    description: Write capacity units when I(billing_mode=PROVISIONED).
    type: int
    default: 1
  point_in_time_recovery:
    description: Whether continuous backups with point-in-time recovery are enabled.
    type: bool
    default: false
  tags:
    description: Tags for the table. With I(purge_tags=true), tags not listed here are removed.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description: Remove tags that are not in I(tags). Ignored when I(tags) is not given.
    type: bool
    default: true
  wait:
    description: Wait until the table is C(ACTIVE) (present) or gone (absent).
    type: bool
    default: true
  wait_timeout:
    description: How long to wait, in seconds.
    type: int
    default: 300
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: On-demand table with PITR, tagged for teardown
  kumolab_dynamodb_table:
    name: kumolab-mylab-items
    partition_key: item_id
    billing_mode: PAY_PER_REQUEST
    point_in_time_recovery: true
    tags:
      Project: kumolab
      Lab: mylab

- name: Table with a sort key
  kumolab_dynamodb_table:
    name: events
    partition_key: device
    sort_key: timestamp
    sort_key_type: N

- name: Delete it
  kumolab_dynamodb_table:
    name: kumolab-mylab-items
    state: absent
"""

RETURN = r"""
table:
  description: The table after the change (before deletion when I(state=absent)); empty when it does not exist.
  returned: always
  type: dict
  contains:
    name: {description: Table name., type: str, sample: kumolab-mylab-items}
    arn: {description: Table ARN (absent in check mode before creation)., type: str, sample: "arn:aws:dynamodb:ap-northeast-1:123456789012:table/kumolab-mylab-items"}
    status: {description: Table status., type: str, sample: ACTIVE}
    partition_key: {description: Partition key name and type., type: dict, sample: {name: item_id, type: S}}
    sort_key: {description: Sort key name and type, or null., type: dict}
    billing_mode: {description: PAY_PER_REQUEST or PROVISIONED., type: str}
    point_in_time_recovery: {description: Whether PITR is enabled., type: bool}
    tags: {description: The table's tags., type: dict}
changes:
  description: What was (or, in check mode, would be) changed.
  returned: always
  type: list
  elements: str
  sample: ["create table", "enable point-in-time recovery"]
"""

import time

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import fail, retry_decorator
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# The project's retry vocabulary (a table that is being created or updated answers ResourceInUseException),
# plus DynamoDB's limit on concurrent control-plane calls, LimitExceededException, and
# ContinuousBackupsUnavailableException: UpdateContinuousBackups on a table that has only just become ACTIVE
# answers "Backups are being enabled for the table" for a while (a modeled error of that operation; real-AWS
# review M8), so the first deploy failed now and then.
RETRY = retry_decorator(
    extra_codes=["LimitExceededException", "ContinuousBackupsUnavailableException"], retries=10, max_delay=15
)


def describe(client, name):
    try:
        return client.describe_table(aws_retry=True, TableName=name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        return None


def pitr_enabled(client, name):
    desc = client.describe_continuous_backups(aws_retry=True, TableName=name)["ContinuousBackupsDescription"]
    status = (desc.get("PointInTimeRecoveryDescription") or {}).get("PointInTimeRecoveryStatus")
    return status == "ENABLED"


def current_tags(client, arn):
    tags, kwargs = {}, {}
    while True:
        page = client.list_tags_of_resource(aws_retry=True, ResourceArn=arn, **kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]


def key_of(table, kind):
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    for key in table.get("KeySchema", []):
        if key["KeyType"] == kind:
            return {"name": key["AttributeName"], "type": types.get(key["AttributeName"])}
    return None


def summary(client, table):
    if table is None:
        return {}
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    return {
        "name": table["TableName"],
        "arn": table.get("TableArn"),
        "status": table.get("TableStatus"),
        "partition_key": key_of(table, "HASH"),
        "sort_key": key_of(table, "RANGE"),
        "billing_mode": billing,
        "point_in_time_recovery": pitr_enabled(client, table["TableName"]),
        "tags": current_tags(client, table["TableArn"]),
    }


def wait_for(module, client, name, gone):
    deadline = time.time() + module.params["wait_timeout"]
    while time.time() < deadline:
        table = describe(client, name)
        if gone and table is None:
            return
        if not gone and table is not None and table.get("TableStatus") == "ACTIVE":
            return
        time.sleep(2)
    module.fail_json(
        msg=f"Timed out after {module.params['wait_timeout']} s waiting for table {name} to be "
        f"{'deleted' if gone else 'ACTIVE'}; check it in the DynamoDB console and re-run."
    )


def desired_keys(params):
    want = {"HASH": {"name": params["partition_key"], "type": params["partition_key_type"]}}
    if params["sort_key"]:
        want["RANGE"] = {"name": params["sort_key"], "type": params["sort_key_type"]}
    return want


def create(module, client):
    params = module.params
    keys = desired_keys(params)
    kwargs = {
        "TableName": params["name"],
        "AttributeDefinitions": [{"AttributeName": k["name"], "AttributeType": k["type"]} for k in keys.values()],
        "KeySchema": [{"AttributeName": k["name"], "KeyType": kind} for kind, k in keys.items()],
        "BillingMode": params["billing_mode"],
    }
    if params["billing_mode"] == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = {
            "ReadCapacityUnits": params["read_capacity"],
            "WriteCapacityUnits": params["write_capacity"],
        }
    if params["tags"]:
        kwargs["Tags"] = [{"Key": k, "Value": str(v)} for k, v in params["tags"].items()]
    client.create_table(aws_retry=True, **kwargs)
    # PITR can only be enabled on an ACTIVE table, so we wait for it even with wait=false.
    if params["wait"] or params["point_in_time_recovery"]:
        wait_for(module, client, params["name"], gone=False)
    if params["point_in_time_recovery"]:
        set_pitr(client, params["name"], True)


def set_pitr(client, name, enabled):
    client.update_continuous_backups(
        aws_retry=True, TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled}
    )


def ensure_present(module, client):
    params = module.params
    name = params["name"]
    table = describe(client, name)
    if table is None:
        changes = ["create table"] + (["enable point-in-time recovery"] if params["point_in_time_recovery"] else [])
        if module.check_mode:
            module.exit_json(
                changed=True,
                changes=changes,
                table={
                    "name": name,
                    "billing_mode": params["billing_mode"],
                    "partition_key": desired_keys(params)["HASH"],
                    "sort_key": desired_keys(params).get("RANGE"),
                    "point_in_time_recovery": params["point_in_time_recovery"],
                    "tags": params["tags"] or {},
                },
            )
        create(module, client)
        module.exit_json(changed=True, changes=changes, table=summary(client, describe(client, name)))

    before = summary(client, table)
    want = desired_keys(params)
    if before["partition_key"] != want["HASH"] or before["sort_key"] != want.get("RANGE"):
        module.fail_json(
            msg=f"Table {name} has keys {before['partition_key']}/{before['sort_key']}, not "
            f"{want['HASH']}/{want.get('RANGE')}. Key schemas cannot change: delete the table "
            f"(state: absent) or pick another name.",
            table=before,
        )
    changes = []
    update = {}
    if before["billing_mode"] != params["billing_mode"]:
        changes.append(f"billing mode {before['billing_mode']} -> {params['billing_mode']}")
        update["BillingMode"] = params["billing_mode"]
    if params["billing_mode"] == "PROVISIONED":
        throughput = table.get("ProvisionedThroughput", {})
        if (throughput.get("ReadCapacityUnits"), throughput.get("WriteCapacityUnits")) != (
            params["read_capacity"],
            params["write_capacity"],
        ):
            changes.append("provisioned throughput")
            update["ProvisionedThroughput"] = {
                "ReadCapacityUnits": params["read_capacity"],
                "WriteCapacityUnits": params["write_capacity"],
            }
    if before["point_in_time_recovery"] != params["point_in_time_recovery"]:
        changes.append(("enable" if params["point_in_time_recovery"] else "disable") + " point-in-time recovery")
    add_tags, remove_tags = {}, []
    if params["tags"] is not None:
        wanted = {k: str(v) for k, v in params["tags"].items()}
        add_tags = {k: v for k, v in wanted.items() if before["tags"].get(k) != v}
        if params["purge_tags"]:
            remove_tags = [k for k in before["tags"] if k not in wanted and not k.startswith("aws:")]
        if add_tags:
            changes.append(f"set tags {sorted(add_tags)}")
        if remove_tags:
            changes.append(f"remove tags {sorted(remove_tags)}")
    if not changes:
        module.exit_json(changed=False, changes=[], table=before)
    if module.check_mode:
        module.exit_json(changed=True, changes=changes, table=before, diff={"before": before})
    if update:
        client.update_table(aws_retry=True, TableName=name, **update)
        if params["wait"]:
            wait_for(module, client, name, gone=False)
    if before["point_in_time_recovery"] != params["point_in_time_recovery"]:
        set_pitr(client, name, params["point_in_time_recovery"])
    if add_tags:
        client.tag_resource(
            aws_retry=True, ResourceArn=before["arn"], Tags=[{"Key": k, "Value": v} for k, v in add_tags.items()]
        )
    if remove_tags:
        client.untag_resource(aws_retry=True, ResourceArn=before["arn"], TagKeys=remove_tags)
    after = summary(client, describe(client, name))
    module.exit_json(changed=True, changes=changes, table=after, diff={"before": before, "after": after})


def ensure_absent(module, client):
    name = module.params["name"]
    table = describe(client, name)
    if table is None:
        module.exit_json(changed=False, changes=[], table={})
    before = summary(client, table)
    if module.check_mode:
        module.exit_json(changed=True, changes=["delete table"], table=before)
    try:
        client.delete_table(aws_retry=True, TableName=name)
    except client.exceptions.ResourceNotFoundException:
        module.exit_json(changed=False, changes=[], table={})
    if module.params["wait"]:
        wait_for(module, client, name, gone=True)
    module.exit_json(changed=True, changes=["delete table"], table=before)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        partition_key=dict(type="str"),
        partition_key_type=dict(type="str", default="S", choices=["S", "N", "B"]),
        sort_key=dict(type="str"),
        sort_key_type=dict(type="str", default="S", choices=["S", "N", "B"]),
        billing_mode=dict(type="str", default="PAY_PER_REQUEST", choices=["PAY_PER_REQUEST", "PROVISIONED"]),
        read_capacity=dict(type="int", default=1),
        write_capacity=dict(type="int", default=1),
        point_in_time_recovery=dict(type="bool", default=False),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=300),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["partition_key"])],
        supports_check_mode=True,
    )
    client = module.client("dynamodb", retry_decorator=RETRY)
    try:
        if module.params["state"] == "present":
            ensure_present(module, client)
        else:
            ensure_absent(module, client)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"manage DynamoDB table {module.params['name']}")


if __name__ == "__main__":
    main()
