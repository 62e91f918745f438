"""An independent count of what a lab left in an AWS account: the second opinion after a teardown.

``kumolab_teardown`` verifies its own work with its own catalogue (``module_utils/kumolab_resources.py``). A
check that reuses that code shares its blind spots, so this one is written separately and asks twice:

* the **Resource Groups Tagging API** for everything tagged ``Project=<project>`` and ``Lab=<lab>``, of any
  kind (a kind nobody thought of still shows up here);
* each service's **own listing, by the lab's name prefix** (``kumolab-<slug>``), for what carries no tags or
  may have lost them: CloudWatch alarms (the idle-stop alarm and the target-tracking alarms Application Auto
  Scaling names ``TargetTracking-service/<cluster>/<service>-...``), EventBridge rules, ECS clusters, services and
  task definitions, ECR repositories, Lambda functions, IAM roles and instance profiles, log groups, SQS queues,
  DynamoDB tables, S3 buckets, REST APIs, scalable targets, and EC2 key pairs, launch templates, security groups
  and everything with a ``Name`` tag under the prefix.

The tagging API lags: it keeps listing a resource for a while after it is deleted. A tagging hit that no
listing found is looked at directly (describe/get by its id); one that the service says is gone is reported as
``stale``, not as a leftover; one of a kind this module cannot look at is a leftover (look at it by hand).
:func:`settle` repeats the count until only stale entries remain or the time is up.

Plain boto3 through a client factory ``aws(service) -> client``, so tests drive it with botocore Stubbers.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

ClientFactory = Callable[[str], object]

# EC2 resource types of an ARN -> (describe call, id parameter, result key) for a direct existence check.
EC2_DESCRIBE = {
    "instance": ("describe_instances", "InstanceIds", "Reservations"),
    "volume": ("describe_volumes", "VolumeIds", "Volumes"),
    "vpc": ("describe_vpcs", "VpcIds", "Vpcs"),
    "subnet": ("describe_subnets", "SubnetIds", "Subnets"),
    "security-group": ("describe_security_groups", "GroupIds", "SecurityGroups"),
    "internet-gateway": ("describe_internet_gateways", "InternetGatewayIds", "InternetGateways"),
    "route-table": ("describe_route_tables", "RouteTableIds", "RouteTables"),
    "key-pair": ("describe_key_pairs", "KeyPairIds", "KeyPairs"),
    "launch-template": ("describe_launch_templates", "LaunchTemplateIds", "LaunchTemplates"),
    "natgateway": ("describe_nat_gateways", "NatGatewayIds", "NatGateways"),
    "vpc-endpoint": ("describe_vpc_endpoints", "VpcEndpointIds", "VpcEndpoints"),
}
GONE_STATES = {"terminated", "shutting-down", "deleted", "deleting", "INACTIVE", "DELETE_IN_PROGRESS"}


@dataclass(frozen=True)
class Found:
    """One resource: ``kind`` is ``<service>:<type>`` (``ec2:instance``, ``lambda:function``)."""

    kind: str
    id: str
    source: str  # "tagging-api", "by-name" or "both"
    arn: str = ""
    name: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pages(client, method: str, key: str, token_in: str = "NextToken", token_out: str | None = None, **kwargs):
    token_out = token_out or token_in
    while True:
        page = getattr(client, method)(**kwargs)
        yield from page.get(key, [])
        token = page.get(token_out)
        if not token:
            return
        kwargs[token_in] = token


# -- the tagging API ----------------------------------------------------------------------------------------


def kind_of_arn(arn: str) -> tuple[str, str]:
    """(kind, id) of an ARN, in this module's vocabulary (``arn:aws:ec2:r:a:vpc/vpc-1`` -> ``ec2:vpc``, ``vpc-1``)."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return "unknown", arn
    service, rest = parts[2], parts[5]
    if service == "s3":
        return "s3:bucket", rest.split("/", 1)[0]
    if service == "sqs":
        return "sqs:queue", rest
    if service == "apigateway":  # arn:aws:apigateway:r::/restapis/<id>[/stages/...]
        bits = rest.strip("/").split("/")
        if len(bits) == 2:
            return f"apigateway:{bits[0].rstrip('s')}", bits[1]  # restapis/<id> -> apigateway:restapi
        return f"apigateway:{bits[-2].rstrip('s')}", "/".join(
            bits[1:]
        )  # a stage: apigateway:stage, <api>/stages/<name>
    if service == "logs":  # log-group:<name>[:*]
        name = rest.split(":", 1)[1] if ":" in rest else rest
        return "logs:log-group", name[:-2] if name.endswith(":*") else name
    if service in ("lambda", "cloudwatch"):  # function:<name>[:qualifier], alarm:<name>
        kind, _, name = rest.partition(":")
        return f"{service}:{kind}", name.split(":", 1)[0] if service == "lambda" else name
    if service == "sns":
        return "sns:topic", rest
    kind, sep, ident = rest.partition("/")
    if not sep:
        kind, sep, ident = rest.partition(":")
    if not sep:  # a service whose ARNs end in a bare name
        return f"{service}:resource", rest
    if (service == "ecs" and kind == "service") or service == "iam":
        ident = ident.rsplit("/", 1)[-1]  # service/<cluster>/<name>, role/<path>/<name>
    if service == "ecs" and kind == "task-definition":
        return "ecs:task-definition", ident
    return f"{service}:{kind}", ident


def tagged(aws: ClientFactory, tags: dict) -> list[Found]:
    """Everything the Resource Groups Tagging API lists with all of ``tags``."""
    filters = [{"Key": k, "Values": [v]} for k, v in tags.items()]
    client = aws("resourcegroupstaggingapi")
    found = []
    for mapping in _pages(
        client, "get_resources", "ResourceTagMappingList", token_in="PaginationToken", TagFilters=filters
    ):
        kind, ident = kind_of_arn(mapping["ResourceARN"])
        name = next((t["Value"] for t in mapping.get("Tags", []) if t["Key"] == "Name"), "")
        found.append(Found(kind, ident, "tagging-api", arn=mapping["ResourceARN"], name=name))
    return found


# -- the services' own listings, by name prefix -----------------------------------------------------------


def _ec2_by_name(aws, prefix):
    ec2 = aws("ec2")
    named = [{"Name": "tag:Name", "Values": [f"{prefix}*"]}]
    found = []
    for r in _pages(ec2, "describe_instances", "Reservations", Filters=named):
        found += [
            Found("ec2:instance", i["InstanceId"], "by-name")
            for i in r["Instances"]
            if i.get("State", {}).get("Name") not in GONE_STATES
        ]
    for method, key, ident, kind in [
        ("describe_vpcs", "Vpcs", "VpcId", "ec2:vpc"),
        ("describe_subnets", "Subnets", "SubnetId", "ec2:subnet"),
        ("describe_internet_gateways", "InternetGateways", "InternetGatewayId", "ec2:internet-gateway"),
        ("describe_route_tables", "RouteTables", "RouteTableId", "ec2:route-table"),
        ("describe_volumes", "Volumes", "VolumeId", "ec2:volume"),
    ]:
        found += [Found(kind, item[ident], "by-name") for item in _pages(ec2, method, key, Filters=named)]
    found += [
        Found("ec2:security-group", g["GroupId"], "by-name", name=g["GroupName"])
        for g in _pages(
            ec2,
            "describe_security_groups",
            "SecurityGroups",
            Filters=[{"Name": "group-name", "Values": [f"{prefix}*"]}],
        )
    ]
    found += [
        Found("ec2:key-pair", k["KeyPairId"], "by-name", name=k["KeyName"])
        for k in ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [f"{prefix}*"]}])["KeyPairs"]
    ]
    found += [
        Found("ec2:launch-template", t["LaunchTemplateId"], "by-name", name=t["LaunchTemplateName"])
        for t in _pages(
            ec2,
            "describe_launch_templates",
            "LaunchTemplates",
            Filters=[{"Name": "launch-template-name", "Values": [f"{prefix}*"]}],
        )
    ]
    found += [
        Found("ec2:natgateway", n["NatGatewayId"], "by-name")
        for n in _pages(ec2, "describe_nat_gateways", "NatGateways", Filter=named)
        if n.get("State") not in ("deleted", "deleting")
    ]
    return found


def _alarms(aws, prefix):
    cloudwatch = aws("cloudwatch")
    found = []
    for name_prefix in (prefix, f"TargetTracking-service/{prefix}"):
        for kind in ("MetricAlarms", "CompositeAlarms"):
            found += [
                Found("cloudwatch:alarm", a["AlarmName"], "by-name")
                for a in _pages(
                    cloudwatch, "describe_alarms", kind, AlarmNamePrefix=name_prefix, AlarmTypes=[kind[:-1]]
                )
            ]
    return found


def _ecs(aws, prefix):
    ecs = aws("ecs")
    found = []
    for arn in _pages(ecs, "list_clusters", "clusterArns"):
        cluster = arn.rsplit("/", 1)[-1]
        services = list(_pages(ecs, "list_services", "serviceArns", cluster=arn))
        found += [
            Found("ecs:service", s.rsplit("/", 1)[-1], "by-name", arn=s)
            for s in services
            if s.rsplit("/", 1)[-1].startswith(prefix) or cluster.startswith(prefix)
        ]
        if cluster.startswith(prefix):
            found.append(Found("ecs:cluster", cluster, "by-name", arn=arn))
    for arn in _pages(ecs, "list_task_definitions", "taskDefinitionArns", familyPrefix=prefix, status="ACTIVE"):
        found.append(Found("ecs:task-definition", arn.rsplit("/", 1)[-1], "by-name", arn=arn))
    return found


def _by_prefix(items: Iterable[str], kind: str, prefix: str) -> list[Found]:
    return [Found(kind, name, "by-name") for name in items if name.startswith(prefix)]


def _bucket_here(s3, name: str) -> bool:
    """ListBuckets names every region's buckets; the count is of this region's (another region's copy of the lab
    is not a leftover of this one). A bucket whose location cannot be read is counted: reported, never hidden."""
    try:
        location = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        return ("eu-west-1" if location == "EU" else location) == s3.meta.region_name
    except Exception:
        return True


def by_name(aws: ClientFactory, prefix: str) -> list[Found]:
    """What each service lists under the lab's name prefix, tagged or not."""
    found = _ec2_by_name(aws, prefix) + _alarms(aws, prefix) + _ecs(aws, prefix)
    found += _by_prefix(
        (r["Name"] for r in _pages(aws("events"), "list_rules", "Rules", NamePrefix=prefix)), "events:rule", prefix
    )
    found += _by_prefix(
        (r["repositoryName"] for r in _pages(aws("ecr"), "describe_repositories", "repositories")),
        "ecr:repository",
        prefix,
    )
    found += _by_prefix(
        (
            f["FunctionName"]
            for f in _pages(aws("lambda"), "list_functions", "Functions", token_in="Marker", token_out="NextMarker")
        ),
        "lambda:function",
        prefix,
    )
    iam = aws("iam")
    found += _by_prefix(
        (r["RoleName"] for r in _pages(iam, "list_roles", "Roles", token_in="Marker")), "iam:role", prefix
    )
    found += _by_prefix(
        (
            p["InstanceProfileName"]
            for p in _pages(iam, "list_instance_profiles", "InstanceProfiles", token_in="Marker")
        ),
        "iam:instance-profile",
        prefix,
    )
    logs = aws("logs")
    for group_prefix in (prefix, f"/aws/lambda/{prefix}", f"/ecs/{prefix}"):
        found += [
            Found("logs:log-group", g["logGroupName"], "by-name")
            for g in _pages(
                logs, "describe_log_groups", "logGroups", token_in="nextToken", logGroupNamePrefix=group_prefix
            )
        ]
    found += [
        Found("sqs:queue", url.rsplit("/", 1)[-1], "by-name")
        for url in aws("sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    ]
    found += _by_prefix(
        _pages(
            aws("dynamodb"),
            "list_tables",
            "TableNames",
            token_in="ExclusiveStartTableName",
            token_out="LastEvaluatedTableName",
        ),
        "dynamodb:table",
        prefix,
    )
    s3 = aws("s3")
    named = [b["Name"] for b in s3.list_buckets().get("Buckets", []) if b["Name"].startswith(prefix)]
    found += _by_prefix((name for name in named if _bucket_here(s3, name)), "s3:bucket", prefix)
    found += [
        Found("apigateway:restapi", api["id"], "by-name", name=api["name"])
        for api in _pages(aws("apigateway"), "get_rest_apis", "items", token_in="position", token_out="position")
        if api["name"].startswith(prefix)
    ]
    efs = aws("efs")
    found += [
        Found("elasticfilesystem:file-system", f["FileSystemId"], "by-name", name=f.get("Name") or "")
        for f in _pages(efs, "describe_file_systems", "FileSystems", token_in="Marker", token_out="NextMarker")
        if (f.get("Name") or "").startswith(prefix) and f.get("LifeCycleState") not in GONE_STATES
    ]
    found += [
        Found("elasticfilesystem:access-point", a["AccessPointId"], "by-name", name=a.get("Name") or "")
        for a in _pages(efs, "describe_access_points", "AccessPoints")
        if (a.get("Name") or "").startswith(prefix)
    ]
    found += [
        Found("application-autoscaling:scalable-target", t["ResourceId"], "by-name")
        for t in _pages(
            aws("application-autoscaling"), "describe_scalable_targets", "ScalableTargets", ServiceNamespace="ecs"
        )
        if f"/{prefix}" in t["ResourceId"]
    ]
    return found


def _probe(aws: ClientFactory, item: Found):
    """The service's own answer about one tagging hit (raises its NotFound error when it is gone)."""
    service, _, rtype = item.kind.partition(":")
    arn_parts = item.arn.split(":", 5)
    if service == "ec2" and rtype in EC2_DESCRIBE:
        method, param, key = EC2_DESCRIBE[rtype]
        answer = getattr(aws("ec2"), method)(**{param: [item.id]})[key]
        if rtype == "instance":
            return any(
                i.get("State", {}).get("Name") not in GONE_STATES for r in answer for i in r.get("Instances", [])
            )
        return any(entry.get("State") not in GONE_STATES for entry in answer)
    if item.kind == "ecs:task-definition":
        return (
            aws("ecs").describe_task_definition(taskDefinition=item.arn or item.id)["taskDefinition"].get("status")
            not in GONE_STATES
        )
    if item.kind == "ecs:cluster":
        return any(
            c.get("status") not in GONE_STATES
            for c in aws("ecs").describe_clusters(clusters=[item.arn or item.id])["clusters"]
        )
    if item.kind == "ecs:service":
        cluster = arn_parts[5].split("/")[1] if len(arn_parts) == 6 and arn_parts[5].count("/") == 2 else "default"
        return any(
            x.get("status") not in GONE_STATES
            for x in aws("ecs").describe_services(cluster=cluster, services=[item.id])["services"]
        )
    simple = {
        "lambda:function": lambda: aws("lambda").get_function(FunctionName=item.id),
        "elasticfilesystem:file-system": lambda: aws("efs").describe_file_systems(FileSystemId=item.id),
        "elasticfilesystem:access-point": lambda: aws("efs").describe_access_points(AccessPointId=item.id),
        "dynamodb:table": lambda: aws("dynamodb").describe_table(TableName=item.id),
        "sqs:queue": lambda: aws("sqs").get_queue_url(QueueName=item.id),
        "s3:bucket": lambda: aws("s3").head_bucket(Bucket=item.id),
        "ecr:repository": lambda: aws("ecr").describe_repositories(repositoryNames=[item.id]),
        "iam:role": lambda: aws("iam").get_role(RoleName=item.id),
        "events:rule": lambda: aws("events").describe_rule(Name=item.id),
        "apigateway:restapi": lambda: aws("apigateway").get_rest_api(restApiId=item.id),
        "apigateway:stage": lambda: aws("apigateway").get_stage(
            restApiId=item.id.split("/")[0], stageName=item.id.rsplit("/", 1)[-1]
        ),
    }
    if item.kind in simple:
        simple[item.kind]()
        return True
    if item.kind == "logs:log-group":
        groups = aws("logs").describe_log_groups(logGroupNamePrefix=item.id)["logGroups"]
        return any(g["logGroupName"] == item.id for g in groups)
    if item.kind == "cloudwatch:alarm":
        answer = aws("cloudwatch").describe_alarms(AlarmNames=[item.id])
        return bool(answer.get("MetricAlarms") or answer.get("CompositeAlarms"))
    return None


GONE_CODES = ("NotFound", "NoSuch", "NonExistent", "DoesNotExist", "ResourceNotFoundException", "404")


def exists(aws: ClientFactory, item: Found) -> bool | None:
    """A direct look at one tagging hit: True (it is there), False (gone: the tagging API lags), None (a kind
    this module cannot look at, which then counts as a leftover: look at it by hand)."""
    try:
        return _probe(aws, item)
    except Exception as exc:  # botocore ClientError: a not-found code means gone
        error = getattr(exc, "response", {}).get("Error", {})
        code = str(error.get("Code", ""))
        if any(marker in code for marker in GONE_CODES) or (code == "ClientException" and item.kind.startswith("ecs:")):
            return False
        raise


@dataclass
class Count:
    """The result of one count: ``leftovers`` fail a check, ``stale`` are the tagging API's lag."""

    checked_at: str
    leftovers: list[Found]
    stale: list[Found]
    tags: dict
    prefix: str

    @property
    def ok(self) -> bool:
        return not self.leftovers

    def as_dict(self) -> dict:
        return {
            "checked_at": self.checked_at,
            "ok": self.ok,
            "tags": self.tags,
            "prefix": self.prefix,
            "sources": ["resourcegroupstaggingapi:GetResources", "service listings by name prefix"],
            "leftovers": [f.as_dict() for f in self.leftovers],
            "stale": [f.as_dict() for f in self.stale],
        }


def count(aws: ClientFactory, project: str, lab: str, prefix: str) -> Count:
    """Tagging API and name-prefix listings, merged: one entry per (kind, id)."""
    tags = {"Project": project, "Lab": lab}
    listed = {(f.kind, f.id): f for f in by_name(aws, prefix)}
    merged = dict(listed)
    stale = []
    for hit in tagged(aws, tags):
        key = (hit.kind, hit.id)
        if hit.kind == "s3:bucket" and not _bucket_here(aws("s3"), hit.id):
            continue  # another region's bucket (the emulator's tagging API names every region's)
        if key in listed:
            merged[key] = Found(hit.kind, hit.id, "both", arn=hit.arn, name=hit.name or listed[key].name)
            continue
        if exists(aws, hit) is False:
            stale.append(hit)
        else:
            merged[key] = hit
    return Count(_now(), sorted(merged.values(), key=lambda f: (f.kind, f.id)), stale, tags, prefix)


def _owner_tags(aws, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    out = {}
    for start in range(0, len(ids), 100):
        tags = aws("ec2").describe_tags(
            Filters=[{"Name": "resource-id", "Values": ids[start : start + 100]}, {"Name": "key", "Values": ["Owner"]}]
        )["Tags"]
        out.update({t["ResourceId"]: t["Value"] for t in tags})
    return out


def count_owned(aws: ClientFactory, project: str, lab: str, owner: str, prefix: str) -> Count:
    """The independent count of one owner's copy of a lab: tagged Project/Lab/Owner, or named under their prefix
    (``kumolab-<slug>-<owner>``).

    A name match whose own Owner tag names someone else (``<prefix>-s1*`` also matches ``s10``) is not
    theirs; an untagged one stays in (it is reported, never hidden)."""
    result = count(aws, project, lab, prefix)
    result.tags = dict(result.tags, Owner=owner)
    theirs = []
    tagged_mine = {(f.kind, f.id) for f in tagged(aws, result.tags)}
    ec2_ids = [f.id for f in result.leftovers if f.kind.startswith("ec2:")]
    owners = _owner_tags(aws, ec2_ids)
    for found in result.leftovers:
        if (found.kind, found.id) in tagged_mine:
            theirs.append(found)
        elif found.source == "tagging-api":
            continue  # tagged for the lab but another owner's
        elif owners.get(found.id, owner) == owner:
            theirs.append(found)
    result.leftovers = theirs
    return result


def settle(
    aws: ClientFactory,
    project: str,
    lab: str,
    prefix: str,
    wait_s: float = 0,
    interval_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    owner: str | None = None,
) -> Count:
    """Count again every ``interval_s`` while leftovers remain, for up to ``wait_s`` seconds (deletes that AWS
    finishes asynchronously: instances terminating, NAT gateways, ENIs of Fargate tasks). With ``owner``, only
    that owner's (:func:`count_owned`)."""
    deadline = clock() + wait_s
    while True:
        result = count_owned(aws, project, lab, owner, prefix) if owner else count(aws, project, lab, prefix)
        if result.ok or clock() + interval_s > deadline:
            return result
        sleep(interval_s)
