"""Every kind of AWS resource kumolab creates: how to find it by tag and how to delete it.

Plain boto3, no Ansible imports, so the same catalogue serves the teardown module (through
``ansible.module_utils``) and the expiry reaper Lambda (``playbooks/reaper.yml`` packages this file next to
``files/lambda/reaper/handler.py``, which imports it as ``kumolab_resources``).

``KINDS`` is in deletion order: what depends on something comes before it (alarms before the instance they
watch, instances before their security group and NAT gateways before their subnet, the security group before
the VPC, services before their cluster, ...).

API:

- ``find(aws, wanted, kinds=KINDS, exclude_labs=(), errors=None, prefixes=None) -> list[Resource]``: everything
  carrying all of ``wanted`` (each ``Resource`` keeps its ``tags``); with ``Owner`` in ``wanted`` nothing of
  another owner, though a resource with no Owner tag counts as anyone's (teardown is per owner). Idle-stop
  alarms, which amazon.aws cannot tag, are found by name (``<lab prefix>-idle-stop-<instance id>``) even when
  their instance is gone.
  ``prefixes`` maps each lab to its resource-name prefix (``{"my_lab": "kumolab-my-lab"}``): the callers pass
  it in from the lab registry (``inventories/shared/labs.yml``), which this file never reads; a lab that is
  not in it has the prefix ``<project>-<lab>``.
- ``delete(aws, resources, log)``: delete in dependency order, raise on the first failure (teardown);
  ``delete_all(aws, resources, log)``: the same, but a failure is recorded and the rest still goes (reaper).
- ``untracked(aws, wanted, exclude_labs=())``: tagging-API ARNs of kinds the catalogue does not cover.
- ``expired(tags, now)`` / ``select_expired(resources, now)``: the reaper's choice of what has expired.
- ``call(fn, ...)``: one AWS call with full-jitter backoff on throttling and eventual-consistency codes
  (``RETRIES`` / ``BASE_DELAY`` / ``MAX_DELAY``).
- The retry vocabulary (``THROTTLING_CODES``, ``IN_USE_CODES``, ``NOT_YET_VISIBLE_CODES``, ``GONE_CODES``),
  which ``module_utils/kumolab_aws.py`` builds the Ansible modules' retries from.
"""

from __future__ import annotations

import datetime as _dt
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# --- The retry vocabulary: one set of error codes for every kumolab AWS call ---------------------------
# module_utils/kumolab_aws.py builds the Ansible modules' retry decorator from these; a module only extends
# them (its service's own codes). Plain sets, so this file stays importable without Ansible (the reaper).

# Too many calls: wait and try again.
THROTTLING_CODES = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
}
# Still in use, or another change is under way: clears by itself once the dependent resource has gone or the
# change has finished.
IN_USE_CODES = {
    "DependencyViolation",
    "InvalidGroup.InUse",
    "ResourceInUseException",
    "ResourceConflictException",
    "ConcurrentModificationException",
    "DeleteConflict",
    "BucketNotEmpty",
    "VolumeInUse",
    "IncorrectState",
    "OperationAborted",
    # ECS: DeleteCluster while a deleted service is still DRAINING or its tasks still stop (review M4), and a
    # service or cluster change under way.
    "ClusterContainsServicesException",
    "ClusterContainsTasksException",
    "UpdateInProgressException",
    # EFS: DeleteFileSystem while its mount targets are still being deleted.
    "FileSystemInUse",
}
# Just created and not yet visible everywhere (a new VPC or gateway, an IAM role that Lambda cannot assume
# yet). Retried when creating; when deleting, "not found" means already gone (GONE_CODES).
NOT_YET_VISIBLE_CODES = {
    "InvalidVpcID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidParameterValueException",
}
# What ``call`` (teardown, reaper) retries.
RETRY_CODES = THROTTLING_CODES | IN_USE_CODES
# What a delete treats as "already absent".
GONE_CODES = {
    "NoSuchEntity",
    "NoSuchBucket",
    "ResourceNotFoundException",
    "NotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "RepositoryNotFoundException",
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidKeyPair.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidNatGatewayID.NotFound",
    "InvalidVolume.NotFound",
    "InvalidVpcEndpointId.NotFound",
    "FileSystemNotFound",
    "AccessPointNotFound",
    "MountTargetNotFound",
}

# A per-item read that IAM refuses (a reader allowed only on kumolab's own resources meets a foreign one).
ACCESS_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}

PROJECT_TAG = "Project"
LAB_TAG = "Lab"
OWNER_TAG = "Owner"
EXPIRES_TAG = "ExpiresAt"

# Retry policy of ``call``: attempts = RETRIES + 1, full-jitter delays capped at MAX_DELAY seconds.
RETRIES = 8
BASE_DELAY = 0.5
MAX_DELAY = 15.0
SLEEP = time.sleep

ClientFactory = Callable[[str], object]


def error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def call(
    fn: Callable,
    *args,
    retries: int | None = None,
    base_delay: float | None = None,
    max_delay: float | None = None,
    **kwargs,
):
    """Call an AWS API with full-jitter backoff on throttling and eventual-consistency errors.

    When it gives up on a retryable error, the exception carries ``kumolab_attempts`` (how many tries)."""
    retries = RETRIES if retries is None else retries
    base_delay = BASE_DELAY if base_delay is None else base_delay
    max_delay = MAX_DELAY if max_delay is None else max_delay
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # botocore.exceptions.ClientError and friends
            if error_code(exc) not in RETRY_CODES:
                raise
            if attempt == retries:
                exc.kumolab_attempts = attempt + 1
                raise
            SLEEP(random.uniform(0, min(max_delay, base_delay * 2**attempt)))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    tags: dict = field(default_factory=dict, compare=False, hash=False)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "id": self.id, "name": self.name or self.id}

    @property
    def lab(self) -> str:
        return self.tags.get(LAB_TAG, "")


def _tags_match(tags: dict, wanted: dict) -> bool:
    """Every wanted tag is there with its value; a resource with no Owner tag at all agrees with any owner."""
    return all(tags.get(key) == value for key, value in wanted.items() if key != OWNER_TAG) and _owner_agrees(
        tags, wanted
    )


def _owner_agrees(tags: dict, wanted: dict) -> bool:
    """Not another owner's: ``wanted`` names no owner, or the resource carries that one or none (nothing to
    attribute it by; as before owners were tagged, the lab's teardown takes it)."""
    return OWNER_TAG not in wanted or tags.get(OWNER_TAG, wanted[OWNER_TAG]) == wanted[OWNER_TAG]


def _from_list(items: Iterable[dict] | None) -> dict:
    return {t.get("Key", t.get("key")): t.get("Value", t.get("value")) for t in items or []}


def _ec2_filters(wanted: dict) -> list:
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in wanted.items()]


def _read(fn: Callable, *args, **kwargs):
    """A lister's per-item read (tags, describe) after a list: None when the item has gone since it was listed
    (a GONE code: listings are eventually consistent, a deleted SQS queue is listed for up to 60 s) or the read
    is denied (a foreign item), so that one such item is skipped instead of failing the whole kind (review M5, M2)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if error_code(exc) in GONE_CODES | ACCESS_DENIED_CODES:
            return None
        raise


def _paginate(client, operation: str, key: str, **kwargs):
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


# --- EC2 ---------------------------------------------------------------------------------------------


def list_instances(aws: ClientFactory, wanted: dict):
    ec2 = aws("ec2")
    filters = _ec2_filters(wanted) + [
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]}
    ]
    for reservation in _paginate(ec2, "describe_instances", "Reservations", Filters=filters):
        for inst in reservation["Instances"]:
            tags = _from_list(inst.get("Tags"))
            yield Resource("ec2_instance", inst["InstanceId"], tags.get("Name", ""), tags=tags)


def delete_instances(aws: ClientFactory, resources: list[Resource]):
    ec2 = aws("ec2")
    ids = [r.id for r in resources]
    call(ec2.terminate_instances, InstanceIds=ids)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 2, "MaxAttempts": 300})


def list_launch_templates(aws, wanted):
    """Launch templates (the Spot market options of a lab instance). Free, but tagged lab resources."""
    for template in _paginate(aws("ec2"), "describe_launch_templates", "LaunchTemplates", Filters=_ec2_filters(wanted)):
        tags = _from_list(template.get("Tags"))
        yield Resource("ec2_launch_template", template["LaunchTemplateId"], template["LaunchTemplateName"], tags=tags)


def list_nat_gateways(aws, wanted):
    for gateway in _paginate(aws("ec2"), "describe_nat_gateways", "NatGateways", Filter=_ec2_filters(wanted)):
        if gateway.get("State") not in ("deleting", "deleted"):
            tags = _from_list(gateway.get("Tags"))
            yield Resource("ec2_nat_gateway", gateway["NatGatewayId"], tags.get("Name", ""), tags=tags)


def delete_nat_gateway(aws, res):
    """Delete and wait until it is gone: until then it holds its subnet and its public address."""
    ec2 = aws("ec2")
    call(ec2.delete_nat_gateway, NatGatewayId=res.id)
    ec2.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=[res.id], WaiterConfig={"Delay": 5, "MaxAttempts": 120})


def list_volumes(aws, wanted):
    """EBS volumes tagged for the lab. A root volume goes with its instance (delete on termination); what is
    left afterwards is an orphan that bills by the GB-month until deleted."""
    for volume in _paginate(aws("ec2"), "describe_volumes", "Volumes", Filters=_ec2_filters(wanted)):
        if volume.get("State") not in ("deleting", "deleted"):
            tags = _from_list(volume.get("Tags"))
            yield Resource("ec2_volume", volume["VolumeId"], tags.get("Name", ""), tags=tags)


def list_security_groups(aws, wanted):
    for group in _paginate(aws("ec2"), "describe_security_groups", "SecurityGroups", Filters=_ec2_filters(wanted)):
        if group["GroupName"] != "default":
            yield Resource(
                "ec2_security_group",
                group["GroupId"],
                group["GroupName"],
                {"group": group},
                tags=_from_list(group.get("Tags")),
            )


def delete_security_group(aws, res):
    ec2 = aws("ec2")
    group = res.extra["group"]
    # Rules that reference other groups keep those groups alive; drop them first.
    if group.get("IpPermissions"):
        try:
            call(ec2.revoke_security_group_ingress, GroupId=res.id, IpPermissions=group["IpPermissions"])
        except Exception as exc:
            # A rule naming a group deleted a moment ago (Lab 7's NFS group admits its clients' group) cannot be
            # revoked by that name any more; the group itself may still be deleted.
            if error_code(exc) not in GONE_CODES:
                raise
    call(ec2.delete_security_group, GroupId=res.id)


def list_internet_gateways(aws, wanted):
    for igw in _paginate(aws("ec2"), "describe_internet_gateways", "InternetGateways", Filters=_ec2_filters(wanted)):
        yield Resource(
            "ec2_internet_gateway", igw["InternetGatewayId"], extra={"igw": igw}, tags=_from_list(igw.get("Tags"))
        )


def delete_internet_gateway(aws, res):
    ec2 = aws("ec2")
    for attachment in res.extra["igw"].get("Attachments", []):
        call(ec2.detach_internet_gateway, InternetGatewayId=res.id, VpcId=attachment["VpcId"])
    call(ec2.delete_internet_gateway, InternetGatewayId=res.id)


def list_route_tables(aws, wanted):
    for table in _paginate(aws("ec2"), "describe_route_tables", "RouteTables", Filters=_ec2_filters(wanted)):
        if not any(a.get("Main") for a in table.get("Associations", [])):
            yield Resource(
                "ec2_route_table", table["RouteTableId"], extra={"table": table}, tags=_from_list(table.get("Tags"))
            )


def delete_route_table(aws, res):
    ec2 = aws("ec2")
    for assoc in res.extra["table"].get("Associations", []):
        call(ec2.disassociate_route_table, AssociationId=assoc["RouteTableAssociationId"])
    call(ec2.delete_route_table, RouteTableId=res.id)


def list_subnets(aws, wanted):
    for subnet in _paginate(aws("ec2"), "describe_subnets", "Subnets", Filters=_ec2_filters(wanted)):
        yield Resource("ec2_subnet", subnet["SubnetId"], subnet["CidrBlock"], tags=_from_list(subnet.get("Tags")))


def list_vpcs(aws, wanted):
    for vpc in _paginate(aws("ec2"), "describe_vpcs", "Vpcs", Filters=_ec2_filters(wanted)):
        yield Resource("ec2_vpc", vpc["VpcId"], vpc["CidrBlock"], tags=_from_list(vpc.get("Tags")))


def list_key_pairs(aws, wanted):
    for pair in aws("ec2").describe_key_pairs(Filters=_ec2_filters(wanted))["KeyPairs"]:
        yield Resource("ec2_key_pair", pair["KeyName"], pair["KeyName"], tags=_from_list(pair.get("Tags")))


# --- Containers and functions ------------------------------------------------------------------------


def list_ecs_services(aws, wanted):
    ecs = aws("ecs")
    for cluster_arn in _paginate(ecs, "list_clusters", "clusterArns"):
        arns = list(_paginate(ecs, "list_services", "serviceArns", cluster=cluster_arn))
        for start in range(0, len(arns), 10):
            described = ecs.describe_services(cluster=cluster_arn, services=arns[start : start + 10], include=["TAGS"])
            for svc in described["services"]:
                tags = _from_list(svc.get("tags"))
                if svc["status"] != "INACTIVE" and _tags_match(tags, wanted):
                    yield Resource(
                        "ecs_service", svc["serviceArn"], svc["serviceName"], {"cluster": cluster_arn}, tags=tags
                    )


def delete_ecs_service(aws, res):
    ecs = aws("ecs")
    cluster_name = res.extra["cluster"].rsplit("/", 1)[-1]
    scaling = aws("application-autoscaling")
    resource_id = f"service/{cluster_name}/{res.name}"
    targets = call(scaling.describe_scalable_targets, ServiceNamespace="ecs", ResourceIds=[resource_id])[
        "ScalableTargets"
    ]
    for target in targets:
        policies = call(scaling.describe_scaling_policies, ServiceNamespace="ecs", ResourceId=resource_id)[
            "ScalingPolicies"
        ]
        for policy in policies:
            call(
                scaling.delete_scaling_policy,
                PolicyName=policy["PolicyName"],
                ServiceNamespace="ecs",
                ResourceId=resource_id,
                ScalableDimension=policy["ScalableDimension"],
            )
        call(
            scaling.deregister_scalable_target,
            ServiceNamespace="ecs",
            ResourceId=resource_id,
            ScalableDimension=target["ScalableDimension"],
        )
    call(ecs.update_service, cluster=res.extra["cluster"], service=res.id, desiredCount=0)
    call(ecs.delete_service, cluster=res.extra["cluster"], service=res.id, force=True)
    # DRAINING until its tasks have stopped (stopTimeout, up to minutes); its cluster cannot go before (review M4).
    ecs.get_waiter("services_inactive").wait(
        cluster=res.extra["cluster"], services=[res.id], WaiterConfig={"Delay": 3, "MaxAttempts": 200}
    )


def _untagged_by_name(name: str, tags: dict, wanted: dict, prefixes: dict | None = None) -> dict | None:
    """Tags to claim a resource the lab's tags do not (yet) mark, by its name: only the exact name the lab
    creates (its prefix as the caller passes it, ``<project>-<slug>-<owner>``; a look-alike such as
    ``<prefix>-prod`` is never claimed), and only when its own tags name no other project or lab (review M2).
    ECS clusters, task definitions and ECR repositories are created untagged and tagged by the next task
    (their community.aws modules take no tags), so a deploy killed in between leaves one that only its name
    ties to the lab. Like idle-stop alarms, only
    when ``wanted`` is Project and Lab, and perhaps Owner (one that carries another owner's tag is never
    claimed)."""
    if _tags_match(tags, wanted) or set(wanted) - {OWNER_TAG} != {PROJECT_TAG, LAB_TAG}:
        return None
    if any(tags.get(key, value) != value for key, value in wanted.items()):
        return None
    return {**tags, **wanted} if name == lab_prefix(wanted[LAB_TAG], wanted[PROJECT_TAG], prefixes) else None


def list_ecs_clusters(aws, wanted, prefixes=None):
    ecs = aws("ecs")
    arns = list(_paginate(ecs, "list_clusters", "clusterArns"))
    for start in range(0, len(arns), 100):
        for cluster in ecs.describe_clusters(clusters=arns[start : start + 100], include=["TAGS"])["clusters"]:
            tags = _from_list(cluster.get("tags"))
            tags = _untagged_by_name(cluster["clusterName"], tags, wanted, prefixes) or tags
            if cluster["status"] == "ACTIVE" and _tags_match(tags, wanted):
                yield Resource("ecs_cluster", cluster["clusterArn"], cluster["clusterName"], tags=tags)


def list_task_definitions(aws, wanted, prefixes=None):
    ecs = aws("ecs")
    for arn in _paginate(ecs, "list_task_definitions", "taskDefinitionArns", status="ACTIVE"):
        described = _read(ecs.describe_task_definition, taskDefinition=arn, include=["TAGS"])
        if described is None:
            continue
        tags = _from_list(described.get("tags"))
        tags = _untagged_by_name(described["taskDefinition"]["family"], tags, wanted, prefixes) or tags
        if _tags_match(tags, wanted):
            yield Resource("ecs_task_definition", arn, arn.rsplit("/", 1)[-1], tags=tags)


def list_rest_apis(aws, wanted):
    for api in _paginate(aws("apigateway"), "get_rest_apis", "items"):
        tags = api.get("tags", {})
        if _tags_match(tags, wanted):
            yield Resource("apigateway_rest_api", api["id"], api.get("name", ""), tags=tags)


def list_user_pools(aws, wanted):
    """Cognito user pools (Bashoutter's sign-in); their tags come with DescribeUserPool."""
    idp = aws("cognito-idp")
    for pool in _paginate(idp, "list_user_pools", "UserPools", MaxResults=60):
        read = _read(idp.describe_user_pool, UserPoolId=pool["Id"])
        if read is None:
            continue
        tags = read["UserPool"].get("UserPoolTags") or {}
        if _tags_match(tags, wanted):
            yield Resource("cognito_user_pool", pool["Id"], pool.get("Name", ""), tags=tags)


def delete_user_pool(aws, res):
    """Delete the pool's hosted-UI domain first (AWS refuses to delete a pool that still has one), then the pool
    (its app clients and users go with it)."""
    idp = aws("cognito-idp")
    read = _read(idp.describe_user_pool, UserPoolId=res.id)
    if read is None:
        return
    domain = read["UserPool"].get("Domain") or read["UserPool"].get("CustomDomain")
    if domain:
        call(idp.delete_user_pool_domain, Domain=domain, UserPoolId=res.id)
    call(idp.delete_user_pool, UserPoolId=res.id)


def list_functions(aws, wanted):
    lam = aws("lambda")
    for fn in _paginate(lam, "list_functions", "Functions"):
        read = _read(lam.list_tags, Resource=fn["FunctionArn"])
        if read is None:
            continue
        tags = read.get("Tags", {})
        if _tags_match(tags, wanted):
            yield Resource("lambda_function", fn["FunctionName"], fn["FunctionName"], tags=tags)


def delete_function(aws, res):
    lam = aws("lambda")
    for mapping in call(lam.list_event_source_mappings, FunctionName=res.id).get("EventSourceMappings", []):
        call(lam.delete_event_source_mapping, UUID=mapping["UUID"])
    call(lam.delete_function, FunctionName=res.id)


def list_event_rules(aws, wanted):
    events = aws("events")
    for rule in _paginate(events, "list_rules", "Rules"):
        read = _read(events.list_tags_for_resource, ResourceARN=rule["Arn"])
        if read is None:
            continue
        tags = _from_list(read.get("Tags"))
        if _tags_match(tags, wanted):
            yield Resource("events_rule", rule["Name"], rule["Name"], tags=tags)


def delete_event_rule(aws, res):
    events = aws("events")
    targets = call(events.list_targets_by_rule, Rule=res.id).get("Targets", [])
    if targets:
        call(events.remove_targets, Rule=res.id, Ids=[t["Id"] for t in targets])
    call(events.delete_rule, Name=res.id)


IDLE_STOP_MARKER = "-idle-stop-"


def lab_prefix(lab: str, project: str, prefixes: dict | None = None) -> str:
    """What the names of ``lab``'s resources start with: its entry in ``prefixes`` (from the lab registry),
    else ``<project>-<lab>``."""
    return (prefixes or {}).get(lab) or f"{project}-{lab}"


def idle_stop_lab(alarm_name: str, project: str, prefixes: dict | None = None) -> str | None:
    """The lab of an idle-stop alarm named ``<lab prefix>-idle-stop-<instance id>`` (``roles/idle_stop``), or
    None when the name is not one: the lab whose prefix in ``prefixes`` it is or starts (``<prefix>-<owner>``:
    a teardown of every owner's resources passes the prefixes that all owners' names share; the longest
    wins), else ``<name>`` for ``<project>-<name>-idle-stop-...``. The name does not say whose it is: the
    callers decide that by the instances it watches."""
    if IDLE_STOP_MARKER not in alarm_name:
        return None
    head = alarm_name.split(IDLE_STOP_MARKER, 1)[0]
    matching = [(len(p), lab) for lab, p in (prefixes or {}).items() if head == p or head.startswith(p + "-")]
    if matching:
        return max(matching)[1]
    start = f"{project}-"
    return (head[len(start) :] or None) if head.startswith(start) else None


def _watched_instances(ec2, instance_ids: list) -> list[dict]:
    try:
        reservations = call(ec2.describe_instances, InstanceIds=instance_ids)["Reservations"]
    except Exception as exc:
        if error_code(exc) in GONE_CODES:
            return []
        raise
    return [i for r in reservations for i in r["Instances"]]


def _instances_alive(ec2, instance_ids: list) -> bool:
    gone = ("terminated", "shutting-down")
    return any(i["State"]["Name"] not in gone for i in _watched_instances(ec2, instance_ids))


def list_alarms(aws, wanted, prefixes=None):
    """Alarms tagged ``wanted``, and idle-stop alarms recognised by name (amazon.aws.cloudwatch_metric_alarm
    cannot tag them). A name carries only project and lab, so name matching applies only when ``wanted`` is
    ``Project`` (and ``Lab``); such an alarm gets those as its tags, and ``extra`` says which instances it
    watches and whether any of them still exists (``instances_alive``). With ``Owner`` in ``wanted``, a name-matched
    alarm is claimed only when an instance it watches (still listed, terminated or not) carries that owner."""
    cloudwatch = aws("cloudwatch")
    project = wanted.get(PROJECT_TAG)
    by_name = project is not None and set(wanted) <= {PROJECT_TAG, LAB_TAG, OWNER_TAG}
    for alarm in _paginate(cloudwatch, "describe_alarms", "MetricAlarms"):
        name = alarm["AlarmName"]
        read = _read(cloudwatch.list_tags_for_resource, ResourceARN=alarm["AlarmArn"])
        if read is None:
            continue
        tags = _from_list(read.get("Tags"))
        lab = idle_stop_lab(name, project, prefixes) if by_name else None
        instance_ids = [d["Value"] for d in alarm.get("Dimensions", []) if d["Name"] == "InstanceId"]
        # An alarm whose own tags name another project or lab is not claimed by its name (review M2).
        own_tags_agree = tags.get(PROJECT_TAG, project) == project and tags.get(LAB_TAG, lab) == lab
        if lab is not None and instance_ids and wanted.get(LAB_TAG, lab) == lab and own_tags_agree:
            owner = None
            if OWNER_TAG in wanted:
                watched = _watched_instances(aws("ec2"), instance_ids)
                owners = {_from_list(i.get("Tags")).get(OWNER_TAG) for i in watched}
                if wanted[OWNER_TAG] not in owners or tags.get(OWNER_TAG, wanted[OWNER_TAG]) != wanted[OWNER_TAG]:
                    continue
                owner = {OWNER_TAG: wanted[OWNER_TAG]}
            extra = {"idle_stop_instances": instance_ids, "instances_alive": _instances_alive(aws("ec2"), instance_ids)}
            claimed = {PROJECT_TAG: project, LAB_TAG: lab, **(owner or {}), **tags}
            yield Resource("cloudwatch_alarm", name, name, extra, tags=claimed)
        elif _tags_match(tags, wanted):
            yield Resource("cloudwatch_alarm", name, name, tags=tags)


# --- Data and messaging ------------------------------------------------------------------------------


def list_queues(aws, wanted):
    sqs = aws("sqs")
    for url in _paginate(sqs, "list_queues", "QueueUrls"):
        read = _read(sqs.list_queue_tags, QueueUrl=url)
        if read is None:  # deleted: ListQueues still lists a queue for up to 60 s (DeleteQueue API reference)
            continue
        tags = read.get("Tags", {})
        if _tags_match(tags, wanted):
            yield Resource("sqs_queue", url, url.rsplit("/", 1)[-1], tags=tags)


def list_tables(aws, wanted):
    dynamodb = aws("dynamodb")
    for name in _paginate(dynamodb, "list_tables", "TableNames"):
        described = _read(dynamodb.describe_table, TableName=name)
        read = described and _read(dynamodb.list_tags_of_resource, ResourceArn=described["Table"]["TableArn"])
        if not read:
            continue
        tags = _from_list(read.get("Tags"))
        if _tags_match(tags, wanted):
            yield Resource("dynamodb_table", name, name, tags=tags)


def delete_table(aws, res):
    dynamodb = aws("dynamodb")
    call(dynamodb.delete_table, TableName=res.id)
    dynamodb.get_waiter("table_not_exists").wait(TableName=res.id, WaiterConfig={"Delay": 2, "MaxAttempts": 60})


def bucket_region(s3, name: str) -> str | None:
    """The region a bucket lives in (GetBucketLocation: none for us-east-1, ``EU`` for eu-west-1), or None when
    it has gone or cannot be read."""
    read = _read(s3.get_bucket_location, Bucket=name)
    if read is None:
        return None
    location = read.get("LocationConstraint") or "us-east-1"
    return "eu-west-1" if location == "EU" else location


def list_buckets(aws, wanted):
    """Buckets tagged ``wanted`` in the client's region. ListBuckets lists the whole account's, every region's:
    a teardown in one region must not take (or fail on: S3 answers PermanentRedirect) a copy of the lab in another."""
    s3 = aws("s3")
    for bucket in s3.list_buckets().get("Buckets", []):
        try:
            tags = _from_list(s3.get_bucket_tagging(Bucket=bucket["Name"]).get("TagSet"))
        except Exception as exc:
            if error_code(exc) in ("NoSuchTagSet", "NoSuchBucket", "AccessDenied"):
                continue
            raise
        if _tags_match(tags, wanted) and bucket_region(s3, bucket["Name"]) == s3.meta.region_name:
            yield Resource("s3_bucket", bucket["Name"], bucket["Name"], tags=tags)


def delete_bucket(aws, res):
    s3 = aws("s3")
    # Versions and delete markers too: a versioned bucket with only "deleted" objects is still not empty.
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=res.id):
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(objects), 1000):
            call(s3.delete_objects, Bucket=res.id, Delete={"Objects": objects[start : start + 1000], "Quiet": True})
    call(s3.delete_bucket, Bucket=res.id)


def list_log_groups(aws, wanted):
    logs = aws("logs")
    for group in _paginate(logs, "describe_log_groups", "logGroups"):
        read = _read(logs.list_tags_log_group, logGroupName=group["logGroupName"])
        if read is None:
            continue
        tags = read.get("tags", {})
        if _tags_match(tags, wanted):
            yield Resource("logs_log_group", group["logGroupName"], group["logGroupName"], tags=tags)


def list_repositories(aws, wanted, prefixes=None):
    """Repositories tagged ``wanted``, and the lab's one claimed by name while still empty: the lab tags its
    repository before it pushes, so an untagged one holding images is not the lab's (review M2)."""
    ecr = aws("ecr")
    for repo in _paginate(ecr, "describe_repositories", "repositories"):
        read = _read(ecr.list_tags_for_resource, resourceArn=repo["repositoryArn"])
        if read is None:
            continue
        tags = _from_list(read.get("tags"))
        claimed = _untagged_by_name(repo["repositoryName"], tags, wanted, prefixes)
        if claimed is not None and ecr.list_images(repositoryName=repo["repositoryName"], maxResults=1).get("imageIds"):
            claimed = None
        if claimed is not None:
            yield Resource(
                "ecr_repository",
                repo["repositoryName"],
                repo["repositoryName"],
                {"claimed_by_name": True},
                tags=claimed,
            )
        elif _tags_match(tags, wanted):
            yield Resource("ecr_repository", repo["repositoryName"], repo["repositoryName"], tags=tags)


def delete_repository(aws, res):
    """With its images (``force``) only when its tags mark it as the lab's; one claimed by name must be empty,
    so an image pushed meanwhile by someone else makes the delete fail (RepositoryNotEmptyException)."""
    call(aws("ecr").delete_repository, repositoryName=res.id, force=not res.extra.get("claimed_by_name"))


# --- IAM -----------------------------------------------------------------------------------------------


def list_roles(aws, wanted):
    iam = aws("iam")
    for role in _paginate(iam, "list_roles", "Roles"):
        read = _read(iam.list_role_tags, RoleName=role["RoleName"])
        if read is None:
            continue
        tags = _from_list(read.get("Tags"))
        if _tags_match(tags, wanted):
            yield Resource("iam_role", role["RoleName"], role["RoleName"], tags=tags)


def delete_role(aws, res):
    iam = aws("iam")
    for policy in _paginate(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=res.id):
        call(iam.detach_role_policy, RoleName=res.id, PolicyArn=policy["PolicyArn"])
    for name in _paginate(iam, "list_role_policies", "PolicyNames", RoleName=res.id):
        call(iam.delete_role_policy, RoleName=res.id, PolicyName=name)
    for profile in _paginate(iam, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=res.id):
        call(iam.remove_role_from_instance_profile, InstanceProfileName=profile["InstanceProfileName"], RoleName=res.id)
        call(iam.delete_instance_profile, InstanceProfileName=profile["InstanceProfileName"])
    call(iam.delete_role, RoleName=res.id)


def list_policies(aws, wanted):
    iam = aws("iam")
    for policy in _paginate(iam, "list_policies", "Policies", Scope="Local"):
        read = _read(iam.list_policy_tags, PolicyArn=policy["Arn"])
        if read is None:
            continue
        tags = _from_list(read.get("Tags"))
        if _tags_match(tags, wanted):
            yield Resource("iam_policy", policy["Arn"], policy["PolicyName"], tags=tags)


def delete_policy(aws, res):
    iam = aws("iam")
    for version in call(iam.list_policy_versions, PolicyArn=res.id)["Versions"]:
        if not version["IsDefaultVersion"]:
            call(iam.delete_policy_version, PolicyArn=res.id, VersionId=version["VersionId"])
    call(iam.delete_policy, PolicyArn=res.id)


def list_vpc_endpoints(aws, wanted):
    for endpoint in _paginate(aws("ec2"), "describe_vpc_endpoints", "VpcEndpoints", Filters=_ec2_filters(wanted)):
        if endpoint.get("State", "").lower() not in ("deleted", "deleting"):
            tags = _from_list(endpoint.get("Tags"))
            yield Resource("ec2_vpc_endpoint", endpoint["VpcEndpointId"], tags.get("Name", ""), tags=tags)


def list_access_points(aws, wanted):
    for point in _paginate(aws("efs"), "describe_access_points", "AccessPoints"):
        tags = _from_list(point.get("Tags"))
        if _tags_match(tags, wanted):
            yield Resource("efs_access_point", point["AccessPointId"], point.get("Name") or "", tags=tags)


def list_file_systems(aws, wanted):
    for fs in _paginate(aws("efs"), "describe_file_systems", "FileSystems"):
        tags = _from_list(fs.get("Tags"))
        if _tags_match(tags, wanted) and fs.get("LifeCycleState") not in ("deleting", "deleted"):
            yield Resource("efs_file_system", fs["FileSystemId"], fs.get("Name") or "", tags=tags)


def delete_file_system(aws, res):
    """Its mount targets first (they hold network interfaces in the subnets), then the file system once they
    are gone (DeleteFileSystem answers FileSystemInUse until then, which ``call`` retries)."""
    efs = aws("efs")
    for target in call(efs.describe_mount_targets, FileSystemId=res.id).get("MountTargets", []):
        call(efs.delete_mount_target, MountTargetId=target["MountTargetId"])
    call(efs.delete_file_system, FileSystemId=res.id)


@dataclass(frozen=True)
class Kind:
    name: str
    lister: Callable
    deleter: Callable
    batch: bool = False  # deleter takes the whole list (instances: terminate together, wait once)
    by_name: bool = False  # lister also claims resources by name, so it takes the labs' name prefixes


def _simple(service: str, method: str, param: str):
    def delete(aws, res):
        call(getattr(aws(service), method), **{param: res.id})

    return delete


KINDS: list[Kind] = [
    # Alarms first: an idle-stop alarm watches (and can stop) an instance below.
    Kind(
        "cloudwatch_alarm",
        list_alarms,
        lambda aws, res: call(aws("cloudwatch").delete_alarms, AlarmNames=[res.id]),
        by_name=True,
    ),
    Kind("ec2_instance", list_instances, delete_instances, batch=True),
    Kind("ec2_launch_template", list_launch_templates, _simple("ec2", "delete_launch_template", "LaunchTemplateId")),
    Kind("ecs_service", list_ecs_services, delete_ecs_service),
    Kind("ecs_cluster", list_ecs_clusters, _simple("ecs", "delete_cluster", "cluster"), by_name=True),
    Kind(
        "ecs_task_definition",
        list_task_definitions,
        _simple("ecs", "deregister_task_definition", "taskDefinition"),
        by_name=True,
    ),
    Kind("apigateway_rest_api", list_rest_apis, _simple("apigateway", "delete_rest_api", "restApiId")),
    Kind("cognito_user_pool", list_user_pools, delete_user_pool),
    Kind("events_rule", list_event_rules, delete_event_rule),
    Kind("lambda_function", list_functions, delete_function),
    # After the functions that mount them; the file system's mount targets go with it, before its security
    # group and subnets.
    Kind("efs_access_point", list_access_points, _simple("efs", "delete_access_point", "AccessPointId")),
    Kind("efs_file_system", list_file_systems, delete_file_system),
    # After the instances (a root volume goes with its instance; what is left is an orphan), before the
    # subnet a NAT gateway sits in and the internet gateway whose addresses it maps.
    Kind("ec2_nat_gateway", list_nat_gateways, delete_nat_gateway),
    Kind("ec2_volume", list_volumes, _simple("ec2", "delete_volume", "VolumeId")),
    Kind("sqs_queue", list_queues, _simple("sqs", "delete_queue", "QueueUrl")),
    Kind("dynamodb_table", list_tables, delete_table),
    Kind("s3_bucket", list_buckets, delete_bucket),
    Kind("logs_log_group", list_log_groups, _simple("logs", "delete_log_group", "logGroupName")),
    Kind("ecr_repository", list_repositories, delete_repository, by_name=True),
    Kind("iam_role", list_roles, delete_role),
    Kind("iam_policy", list_policies, delete_policy),
    Kind(
        "ec2_vpc_endpoint",
        list_vpc_endpoints,
        lambda aws, res: call(aws("ec2").delete_vpc_endpoints, VpcEndpointIds=[res.id]),
    ),
    Kind("ec2_security_group", list_security_groups, delete_security_group),
    Kind("ec2_internet_gateway", list_internet_gateways, delete_internet_gateway),
    Kind("ec2_route_table", list_route_tables, delete_route_table),
    Kind("ec2_subnet", list_subnets, _simple("ec2", "delete_subnet", "SubnetId")),
    Kind("ec2_vpc", list_vpcs, _simple("ec2", "delete_vpc", "VpcId")),
    Kind("ec2_key_pair", list_key_pairs, _simple("ec2", "delete_key_pair", "KeyName")),
]
KIND_NAMES = [kind.name for kind in KINDS]

# Resource Groups Tagging API resource types that the catalogue above covers, by "service:type" of the
# ARN. Anything tagged for the lab outside these is reported as a leftover nobody knows how to delete.
COVERED_ARN_TYPES = {
    "ec2:instance",
    "ec2:security-group",
    "ec2:internet-gateway",
    "ec2:route-table",
    "ec2:subnet",
    "ec2:vpc",
    "ec2:key-pair",
    "ec2:natgateway",
    "ec2:launch-template",
    "ec2:volume",
    "ec2:vpc-endpoint",
    "elasticfilesystem:file-system",
    "elasticfilesystem:access-point",
    "ecs:service",
    "ecs:cluster",
    "ecs:task-definition",
    "apigateway:restapis",
    "cognito-idp:userpool",
    "events:rule",
    "lambda:function",
    "cloudwatch:alarm",
    "sqs:",
    "dynamodb:table",
    "s3:",
    "logs:log-group",
    "ecr:repository",
    "iam:role",
    "iam:policy",
}


def arn_type(arn: str) -> str:
    parts = arn.split(":", 5)
    service, rest = parts[2], parts[5] if len(parts) > 5 else ""
    # The type ends at the first "/" or ":" ("log-group:/aws/lambda/x:*", "alarm:TargetTracking-service/a/b").
    cut = min((i for i in (rest.find("/"), rest.find(":")) if i >= 0), default=-1)
    resource_type = rest[:cut] if cut >= 0 else ""
    if service == "apigateway":
        resource_type = rest.strip("/").split("/", 1)[0]
    return f"{service}:{resource_type}"


def _excluded(tags: dict, exclude_labs: Iterable[str]) -> bool:
    return tags.get(LAB_TAG) in set(exclude_labs)


def find(
    aws: ClientFactory,
    wanted: dict,
    kinds: Iterable[Kind] = KINDS,
    exclude_labs: Iterable[str] = (),
    errors: list | None = None,
    prefixes: dict | None = None,
) -> list[Resource]:
    """Everything carrying all of ``wanted``, in ``KINDS`` order, leaving out resources whose ``Lab`` tag is
    in ``exclude_labs``. A lister that fails raises, unless ``errors`` is a list: then ``(kind name,
    exception)`` is appended to it and the other kinds are still listed. ``prefixes`` ({lab: name prefix})
    is how untagged resources and idle-stop alarms are claimed for a lab by name (``lab_prefix``). With ``Owner``
    in ``wanted``, another owner's resources are left out; one with no Owner tag is included (``_owner_agrees``):
    the listers ask the services for the other tags, and those that claim by name decide the owner themselves."""
    exclude_labs = list(exclude_labs)
    found: list[Resource] = []
    others = {key: value for key, value in wanted.items() if key != OWNER_TAG}
    for kind in kinds:
        try:
            if kind.by_name:
                listed = call(lambda: list(kind.lister(aws, wanted, prefixes)))  # noqa: B023
            else:
                listed = call(lambda: list(kind.lister(aws, others)))  # noqa: B023
        except Exception as exc:
            if errors is None:
                raise
            errors.append((kind.name, exc))
            continue
        found.extend(r for r in listed if not _excluded(r.tags, exclude_labs) and _owner_agrees(r.tags, wanted))
    return found


def _arn_name(arn: str) -> str:
    return arn.split(":", 5)[5].split("/", 1)[-1] if arn.count(":") >= 5 else arn


def _exists_probe(aws: ClientFactory, arn: str):
    """A call of the resource's own API that raises a GONE code when the resource no longer exists, or None
    when the catalogue has no probe for its kind."""
    kind, name = arn_type(arn), _arn_name(arn)
    region_account = arn.split(":")[3:5]
    probes = {
        "ec2:instance": lambda: _instance_gone_as_error(aws, name),
        "ec2:vpc": lambda: aws("ec2").describe_vpcs(VpcIds=[name]),
        "ec2:subnet": lambda: aws("ec2").describe_subnets(SubnetIds=[name]),
        "ec2:security-group": lambda: aws("ec2").describe_security_groups(GroupIds=[name]),
        "ec2:internet-gateway": lambda: aws("ec2").describe_internet_gateways(InternetGatewayIds=[name]),
        "ec2:route-table": lambda: aws("ec2").describe_route_tables(RouteTableIds=[name]),
        "ec2:volume": lambda: aws("ec2").describe_volumes(VolumeIds=[name]),
        "ec2:vpc-endpoint": lambda: _endpoint_gone_as_error(aws, name),
        "elasticfilesystem:file-system": lambda: aws("efs").describe_file_systems(FileSystemId=name),
        "elasticfilesystem:access-point": lambda: aws("efs").describe_access_points(AccessPointId=name),
        "ecs:cluster": lambda: _ecs_gone_as_error(aws("ecs").describe_clusters(clusters=[arn]), "clusters"),
        "lambda:function": lambda: aws("lambda").get_function(FunctionName=arn),
        "dynamodb:table": lambda: aws("dynamodb").describe_table(TableName=name),
        "logs:log-group": lambda: _log_group_gone_as_error(aws, arn.split(":", 6)[6].split(":", 1)[0]),
        "ecr:repository": lambda: aws("ecr").describe_repositories(repositoryNames=[name]),
        "iam:role": lambda: aws("iam").get_role(RoleName=name.rsplit("/", 1)[-1]),
        "iam:policy": lambda: aws("iam").get_policy(PolicyArn=arn),
        "apigateway:restapis": lambda: aws("apigateway").get_rest_api(restApiId=arn.rsplit("/", 1)[-1]),
        "events:rule": lambda: aws("events").describe_rule(Name=name),
        "cloudwatch:alarm": lambda: _alarm_gone_as_error(aws, arn.split(":alarm:", 1)[-1]),
        "s3:": lambda: aws("s3").head_bucket(Bucket=arn.rsplit(":", 1)[-1]),
        "sns:": lambda: aws("sns").get_topic_attributes(TopicArn=arn),
    }
    if kind.startswith("sqs:"):
        queue = arn.rsplit(":", 1)[-1]
        return lambda: aws("sqs").get_queue_attributes(
            QueueUrl=aws("sqs").get_queue_url(QueueName=queue, QueueOwnerAWSAccountId=region_account[1])["QueueUrl"],
            AttributeNames=["QueueArn"],
        )
    return probes.get(kind.split(":")[0] + ":" if kind.split(":")[0] in ("s3", "sns") else kind)


class _Gone(Exception):
    response = {"Error": {"Code": "ResourceNotFoundException"}}


def _endpoint_gone_as_error(aws, endpoint_id):
    found = aws("ec2").describe_vpc_endpoints(VpcEndpointIds=[endpoint_id]).get("VpcEndpoints", [])
    if not any(e.get("State", "").lower() not in ("deleted", "deleting") for e in found):
        raise _Gone()


def _alarm_gone_as_error(aws, name):
    # DescribeAlarms answers a missing name with an empty list, not an error.
    if not aws("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]:
        raise _Gone()


def _instance_gone_as_error(aws, instance_id):
    for reservation in aws("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]:
        if any(i["State"]["Name"] != "terminated" for i in reservation["Instances"]):
            return
    raise _Gone()


def _ecs_gone_as_error(described, key):
    if not any(item.get("status") in ("ACTIVE", "DRAINING", "PROVISIONING") for item in described.get(key, [])):
        raise _Gone()


def _log_group_gone_as_error(aws, name):
    groups = aws("logs").describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    if not any(g["logGroupName"] == name for g in groups):
        raise _Gone()


def arn_exists(aws: ClientFactory, arn: str) -> bool:
    """Whether the resource ``arn`` names still exists by its own service's API. The Resource Groups Tagging API
    lists "tagged or previously tagged" resources, deleted ones too for minutes to hours (review M5, M6); an ARN
    of a kind without a probe here, or a probe that is denied, counts as existing."""
    probe = _exists_probe(aws, arn)
    if probe is None:
        return True
    try:
        probe()
    except Exception as exc:
        code = error_code(exc)
        if code in GONE_CODES or code.endswith(".NotFound") or code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ACCESS_DENIED_CODES:
            return True
        raise
    return True


def untracked(aws: ClientFactory, wanted: dict, exclude_labs: Iterable[str] = ()) -> list[str]:
    """ARNs the Resource Groups Tagging API knows for these tags whose kind the catalogue does not cover."""
    return [arn for arn, _tags in untracked_with_tags(aws, wanted, exclude_labs)]


def untracked_with_tags(aws: ClientFactory, wanted: dict, exclude_labs: Iterable[str] = ()) -> list[tuple[str, dict]]:
    """``untracked``, with each ARN's tags."""
    exclude_labs = list(exclude_labs)
    filters = [{"Key": k, "Values": [v]} for k, v in wanted.items() if k != OWNER_TAG]
    leftovers = []
    for mapping in _paginate(
        aws("resourcegroupstaggingapi"), "get_resources", "ResourceTagMappingList", TagFilters=filters
    ):
        kind = arn_type(mapping["ResourceARN"])
        tags = _from_list(mapping.get("Tags"))
        if _excluded(tags, exclude_labs) or not _owner_agrees(tags, wanted):
            continue
        if not any(
            kind == covered or (covered.endswith(":") and kind.startswith(covered)) for covered in COVERED_ARN_TYPES
        ):
            # The tagging API still lists deleted resources for a while: gone by its own API is gone (review M5).
            if arn_exists(aws, mapping["ResourceARN"]):
                leftovers.append((mapping["ResourceARN"], tags))
    return leftovers


# --- Expiry (the reaper) -------------------------------------------------------------------------------


def parse_time(value) -> _dt.datetime | None:
    """An ISO-8601 time (``Z`` or an offset; naive means UTC), or None when it is not one."""
    try:
        moment = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)


def expired(tags: dict, now: _dt.datetime) -> bool:
    """True when ``tags`` carry an ``ExpiresAt`` at or before ``now``. No tag or an unreadable one: not expired."""
    moment = parse_time(tags.get(EXPIRES_TAG, ""))
    return moment is not None and moment <= now


def select_expired(resources: Iterable[Resource], now: _dt.datetime) -> list[Resource]:
    """What an expiry sweep deletes: resources whose ``ExpiresAt`` is past, plus each idle-stop alarm (found by
    name, so without an expiry of its own) whose instance goes in the same sweep or no longer exists."""
    resources = list(resources)
    chosen = [r for r in resources if expired(r.tags, now)]
    doomed_instances = {r.id for r in chosen if r.kind == "ec2_instance"}
    for res in resources:
        watched = res.extra.get("idle_stop_instances") if res.kind == "cloudwatch_alarm" else None
        if watched is None or res in chosen:
            continue
        if not res.extra.get("instances_alive") or set(watched) & doomed_instances:
            chosen.append(res)
    return order(chosen)


def order(resources: Iterable[Resource]) -> list[Resource]:
    """``resources`` in deletion order (``KINDS``); unknown kinds last."""
    rank = {name: index for index, name in enumerate(KIND_NAMES)}
    return sorted(resources, key=lambda r: (rank.get(r.kind, len(rank)), r.kind, r.id))


# --- Deletion ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    resource: Resource
    status: str  # "deleted", "absent" (already gone: not an error) or "failed"
    error: Exception | None = None

    def message(self) -> str:
        if self.error is None:
            return ""
        code = error_code(self.error)
        attempts = getattr(self.error, "kumolab_attempts", None)
        tries = f" after {attempts} attempt(s)" if attempts else ""
        res = self.resource
        label = f"{res.kind} {res.id}" + (f" ({res.name})" if res.name and res.name != res.id else "")
        return f"{label}: {code or type(self.error).__name__}{tries}: {self.error}"


def _delete_each(aws: ClientFactory, resources: list[Resource], log: Callable[[str], None]):
    """Delete in ``KINDS`` order, yielding an ``Outcome`` per resource. Every AWS call inside a deleter retries
    on its own (``call``); a deleter is not retried as a whole, so retries never multiply."""
    for kind in KINDS:
        batch = [r for r in resources if r.kind == kind.name]
        if not batch:
            continue
        for group in [batch] if kind.batch else [[r] for r in batch]:
            try:
                kind.deleter(aws, group if kind.batch else group[0])
                status, error = "deleted", None
            except Exception as exc:
                status, error = ("absent", None) if error_code(exc) in GONE_CODES else ("failed", exc)
            if status != "failed":
                log(f"deleted {kind.name} {', '.join(r.name or r.id for r in group)}")
            for res in group:
                yield Outcome(res, status, error)


def delete(
    aws: ClientFactory, resources: list[Resource], log: Callable[[str], None] = lambda _msg: None
) -> list[Resource]:
    """Delete ``resources`` in dependency order; returns what was deleted (or was already gone). The first
    failure raises its exception: what depends on it would fail too."""
    deleted = []
    for outcome in _delete_each(aws, resources, log):
        if outcome.error is not None:
            raise outcome.error
        deleted.append(outcome.resource)
    return deleted


def delete_all(
    aws: ClientFactory, resources: list[Resource], log: Callable[[str], None] = lambda _msg: None
) -> list[Outcome]:
    """Delete ``resources`` in dependency order; a failure is recorded in its ``Outcome`` and the rest is still
    attempted (the reaper: one stuck resource must not shield every other expired one)."""
    return list(_delete_each(aws, resources, log))
