"""The fidelity layer: AWS rules that moto does not enforce, enforced by the embedded emulator (issue 12, Part 2).

moto stores what it is told; AWS checks it. Each rule here is an AWS behaviour a lab depends on, as AWS
documents it, installed in the emulator process by :mod:`kumolab.local.front_door` (one hook,
:func:`hook_fidelity`). Every rule has a ``name``, the AWS documentation it follows (``source``), what it
enforces, its test and the review finding it would have caught; ``kumolab-emulator rules`` lists them and
``docs/fidelity.md`` is the same table for people.

All rules are on by default (``make test``, ``make run``). Switches and settings, in one place
(:data:`SETTINGS`), each overridable by an environment variable of the emulator process (the local
inventory passes them through ``kumolab_local_environment`` to ``kumolab-emulator start``):

- ``KUMOLAB_FIDELITY=off`` turns every rule off; ``KUMOLAB_FIDELITY_<RULE>=off`` one rule
  (``<RULE>``: the name upper-cased, ``-`` as ``_``, e.g. ``KUMOLAB_FIDELITY_ECS_CLUSTER_DRAINING=off``);
- ``KUMOLAB_FIDELITY_<SETTING>=<value>`` a setting (``KUMOLAB_FIDELITY_ECS_DRAINING_S=0.5``).

Other helpers add rules to :data:`RULES` (API Gateway import validation, IAM propagation delay, IAM
authorization, Application Auto Scaling): a :class:`FidelityRule` with its ``install`` function.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# -- settings ---------------------------------------------------------------------------------------


def machine_architecture() -> str:
    """This machine's CPU architecture as a container image names it (``uname -m`` -> amd64 / arm64)."""
    return normalise_architecture(platform.machine())


def normalise_architecture(value: str) -> str:
    """``x86_64``/``X86_64``/``amd64`` -> ``amd64``; ``aarch64``/``ARM64``/``arm64`` -> ``arm64``; others lower-cased."""  # noqa: E501
    value = (value or "").strip().lower()
    return {"x86_64": "amd64", "x64": "amd64", "aarch64": "arm64", "arm64/v8": "arm64"}.get(value, value)


#: Defaults of every setting: ``(value, what it means)``. Environment: ``KUMOLAB_FIDELITY_<KEY upper-cased>``.
SETTINGS: dict[str, tuple[object, str]] = {
    "ecs_draining_s": (
        3.0,
        "seconds a deleted ECS service stays DRAINING before it is INACTIVE (AWS: until its "
        "tasks have stopped, up to minutes)",
    ),
    "sqs_deleted_name_s": (60.0, "seconds a deleted queue's name cannot be reused (AWS: 60)"),
    "sqs_list_lag_s": (10.0, "seconds ListQueues / GetQueueUrl still return a deleted queue"),
    "tagging_lag_s": (
        30.0,
        "seconds the Resource Groups Tagging API still lists a deleted resource (AWS: minutes to hours for some kinds)",
    ),
    "tagging_snapshot_s": (
        1.0,
        "how often the tagging rule records what exists (a resource created and deleted "
        "between two records is not a ghost)",
    ),
    "account_block_public_access": (
        False,
        "account-level S3 Block Public Access at start (AWS: off in a new "
        "account; set it with s3control PutPublicAccessBlock, or in the "
        "local inventory: kumolab_account_block_public_access)",
    ),
    "iam_propagation_s": (
        3.0,
        "seconds after CreateRole during which Lambda (CreateFunction, "
        "UpdateFunctionConfiguration) and ECS (RunTask) cannot assume the role (AWS: a few "
        "seconds, up to ~10)",
    ),
    "vpcs_per_region": (
        5.0,
        "VPCs an account may have in one region, the default VPC included (AWS's default quota; Service Quotas "
        "L-F678F1CE)",
    ),
    "local_image_architecture": (
        machine_architecture(),
        "CPU architecture of kumolab.local/* images (the local target runs them as processes of this machine)",
    ),
}


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "off", "false", "no")


def setting(key: str):
    """A setting's value: ``$KUMOLAB_FIDELITY_<KEY>`` when set, else its default (same type as the default)."""
    default = SETTINGS[key][0]
    raw = os.environ.get(f"KUMOLAB_FIDELITY_{key.upper()}")
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        return _truthy(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def _env_name(rule_name: str) -> str:
    return "KUMOLAB_FIDELITY_" + rule_name.upper().replace("-", "_")


# -- the rule table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FidelityRule:
    name: str
    source: str  # the AWS documentation it follows (URL, section)
    enforces: str  # what it does, in one sentence
    test: str  # its test (tests/...::name)
    finding: str  # the review finding it would have caught
    install: Callable[[], None]

    @property
    def switch(self) -> str:
        return _env_name(self.name)

    @property
    def enabled(self) -> bool:
        if not _truthy(os.environ.get("KUMOLAB_FIDELITY", "on")):
            return False
        return _truthy(os.environ.get(self.switch, "on"))

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "switch": self.switch,
            "source": self.source,
            "enforces": self.enforces,
            "test": self.test,
            "finding": self.finding,
        }


def _error(service_exception, code: str, message: str, status: int | None = None):
    """moto's exception of that service with AWS's error code (its HTTP status from the service model, or ``status``)."""  # noqa: E501
    error = service_exception(code, message)
    if status is not None:
        error.http_status_code = status  # ServiceException: the status when the model has none for the code
    return error


# -- ECS: DeleteCluster while services drain --------------------------------------------------------


def install_ecs_cluster_draining() -> None:
    """A deleted service is DRAINING for ``ecs_draining_s``, then INACTIVE; DeleteCluster refuses a cluster with
    ACTIVE or DRAINING services (ClusterContainsServicesException) or running tasks (ClusterContainsTasksException)."""
    from moto.core.exceptions import JsonRESTError
    from moto.ecs.models import EC2ContainerServiceBackend, Service

    if getattr(EC2ContainerServiceBackend.delete_cluster, "_kumolab_fidelity", False):
        return
    original_delete_service = EC2ContainerServiceBackend.delete_service
    original_delete_cluster = EC2ContainerServiceBackend.delete_cluster

    def get_status(service):
        status = service.__dict__.get("_kumolab_status", "ACTIVE")
        inactive_at = service.__dict__.get("_kumolab_inactive_at")
        if status == "DRAINING" and inactive_at is not None and time.monotonic() >= inactive_at:
            status = service.__dict__["_kumolab_status"] = "INACTIVE"
        return status

    def set_status(service, value):
        service.__dict__["_kumolab_status"] = value

    def delete_service(backend, cluster_name, service_name, force):
        service = original_delete_service(backend, cluster_name, service_name, force)
        service.status = "DRAINING"
        service.__dict__["_kumolab_inactive_at"] = time.monotonic() + float(setting("ecs_draining_s"))
        return service

    def delete_cluster(backend, cluster_str):
        cluster = backend._get_cluster(cluster_str)
        draining = [
            s
            for key, s in backend.services.items()
            if key.startswith(f"{cluster.name}:") and s.status in ("ACTIVE", "DRAINING")
        ]
        if draining:
            raise _error(
                JsonRESTError,
                "ClusterContainsServicesException",
                "The Cluster cannot be deleted while Services are active.",
            )
        tasks = getattr(backend, "tasks", {}).get(cluster.name, {})
        if any(getattr(t, "last_status", "STOPPED") != "STOPPED" for t in tasks.values()):
            raise _error(
                JsonRESTError, "ClusterContainsTasksException", "The Cluster cannot be deleted while Tasks are active."
            )
        return original_delete_cluster(backend, cluster_str)

    delete_cluster._kumolab_fidelity = True  # type: ignore[attr-defined]
    Service.status = property(get_status, set_status)
    EC2ContainerServiceBackend.delete_service = delete_service
    EC2ContainerServiceBackend.delete_cluster = delete_cluster


# -- SQS: a deleted queue's name ------------------------------------------------------------------


class _DeletedQueues:
    def __init__(self):
        self.lock = threading.Lock()
        self.deleted: dict[tuple[str, str, str], tuple[float, object]] = {}  # (account, region, name) -> (when, queue)

    def recent(self, backend, name: str, within_s: float):
        with self.lock:
            found = self.deleted.get((backend.account_id, backend.region_name, name))
        if found and time.monotonic() - found[0] < within_s:
            return found[1]
        return None

    def listed(self, backend, within_s: float) -> list:
        now = time.monotonic()
        with self.lock:
            return [
                queue
                for (account, region, name), (when, queue) in self.deleted.items()
                if account == backend.account_id
                and region == backend.region_name
                and now - when < within_s
                and name not in backend.queues
            ]


DELETED_QUEUES = _DeletedQueues()


def install_sqs_deleted_queue_name() -> None:
    """CreateQueue with a name deleted less than ``sqs_deleted_name_s`` ago fails with QueueDeletedRecently;
    ListQueues and GetQueueUrl still return the deleted queue for ``sqs_list_lag_s`` (its other calls answer
    NonExistentQueue)."""
    from moto.sqs.exceptions import SQSException
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.delete_queue, "_kumolab_fidelity", False):
        return
    original_delete, original_create = SQSBackend.delete_queue, SQSBackend.create_queue
    original_list, original_url = SQSBackend.list_queues, SQSBackend.get_queue_url

    def delete_queue(backend, queue_name):
        queue = backend.get_queue(queue_name)
        original_delete(backend, queue_name)
        with DELETED_QUEUES.lock:
            DELETED_QUEUES.deleted[(backend.account_id, backend.region_name, queue_name)] = (time.monotonic(), queue)

    def create_queue(backend, name, tags=None, **kwargs):
        if name not in backend.queues and DELETED_QUEUES.recent(backend, name, float(setting("sqs_deleted_name_s"))):
            raise _error(
                SQSException,
                "AWS.SimpleQueueService.QueueDeletedRecently",
                "You must wait 60 seconds after deleting a queue before you can create another with the same name.",
            )
        return original_create(backend, name, tags, **kwargs)

    def list_queues(backend, queue_name_prefix):
        queues = original_list(backend, queue_name_prefix)
        ghosts = [
            q
            for q in DELETED_QUEUES.listed(backend, float(setting("sqs_list_lag_s")))
            if not queue_name_prefix or q.name.startswith(queue_name_prefix)
        ]
        return list(queues) + ghosts

    def get_queue_url(backend, queue_name):
        if queue_name not in backend.queues:
            ghost = DELETED_QUEUES.recent(backend, queue_name, float(setting("sqs_list_lag_s")))
            if ghost is not None:
                return ghost
        return original_url(backend, queue_name)

    delete_queue._kumolab_fidelity = True  # type: ignore[attr-defined]
    SQSBackend.delete_queue, SQSBackend.create_queue = delete_queue, create_queue
    SQSBackend.list_queues, SQSBackend.get_queue_url = list_queues, get_queue_url


# -- EC2: the VPCs-per-region quota ---------------------------------------------------------------------


def install_vpc_quota() -> None:
    """CreateVpc fails with VpcLimitExceeded once the region holds ``vpcs_per_region`` VPCs (default VPC included),
    as an account with AWS's default quota does."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.vpcs import VPCBackend

    if getattr(VPCBackend.create_vpc, "_kumolab_fidelity", False):
        return
    original_create_vpc = VPCBackend.create_vpc

    def create_vpc(backend, cidr_block, *args, **kwargs):
        limit = int(float(setting("vpcs_per_region")))
        if not kwargs.get("is_default") and len(backend.vpcs) >= limit:
            raise EC2ClientError(
                "VpcLimitExceeded",
                f"The maximum number of VPCs has been reached. (this region has {len(backend.vpcs)} of the account's "
                f"{limit}; delete one, or ask Service Quotas for more: VPCs per Region, L-F678F1CE)",
            )
        return original_create_vpc(backend, cidr_block, *args, **kwargs)

    create_vpc._kumolab_fidelity = True  # type: ignore[attr-defined]
    VPCBackend.create_vpc = create_vpc


# -- Resource Groups Tagging API: deleted resources still listed ---------------------------------------


class _TaggingGhosts:
    """What the tagging API has seen, per (account, region): ``arn -> (resource, gone since or None)``."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str], dict[str, list]] = {}

    def observe(self, account: str, region: str, resources: list) -> list:
        """Record what exists now; return the ghosts (gone less than ``tagging_lag_s`` ago)."""
        now, lag = time.monotonic(), float(setting("tagging_lag_s"))
        current = {r.arn: r for r in resources}
        with self.lock:
            seen = self.seen.setdefault((account, region), {})
            for arn, resource in current.items():
                seen[arn] = [resource, None]
            ghosts = []
            for arn, entry in list(seen.items()):
                if arn in current:
                    continue
                if entry[1] is None:
                    entry[1] = now
                if now - entry[1] < lag:
                    ghosts.append(entry[0])
                else:
                    del seen[arn]
            return ghosts

    def regions(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.seen)


TAGGING_GHOSTS = _TaggingGhosts()


def _all_tagged(account: str, region: str) -> list:
    from moto.core.resource_tagging import iter_taggable_backends

    found = []
    for backend in iter_taggable_backends(account, region):
        for resource in backend.iter_tagged_resources():
            if resource.tags or resource.extra.get("include_untagged"):
                found.append(resource)
    return found


def install_tagging_lag() -> None:
    """GetResources still lists a deleted resource, with its last tags, for ``tagging_lag_s`` (what exists is
    recorded every ``tagging_snapshot_s`` and on every GetResources)."""
    from moto.core.resource_tagging import make_tag_matcher, match_resource_type
    from moto.resourcegroupstaggingapi.models import ResourceGroupsTaggingAPIBackend

    if getattr(ResourceGroupsTaggingAPIBackend._get_resources_generator, "_kumolab_fidelity", False):
        return

    def generator(backend, tag_filters=None, resource_type_filters=None, resource_arn_list=None):
        existing = _all_tagged(backend.account_id, backend.region_name)
        ghosts = TAGGING_GHOSTS.observe(backend.account_id, backend.region_name, existing)
        matcher = make_tag_matcher(tag_filters)
        for resource in existing + ghosts:
            if not match_resource_type(resource.resource_type, resource_type_filters):
                continue
            if not matcher(resource.tags):
                continue
            if resource_arn_list and resource.arn not in resource_arn_list:
                continue
            yield resource

    generator._kumolab_fidelity = True  # type: ignore[attr-defined]
    ResourceGroupsTaggingAPIBackend._get_resources_generator = generator

    def record_forever() -> None:
        from moto.core import DEFAULT_ACCOUNT_ID

        default = (DEFAULT_ACCOUNT_ID, os.environ.get("KUMOLAB_AWS_REGION") or "ap-northeast-1")
        while True:
            time.sleep(float(setting("tagging_snapshot_s")))
            for account, region in {default, *TAGGING_GHOSTS.regions()}:
                try:
                    TAGGING_GHOSTS.observe(account, region, _all_tagged(account, region))
                except Exception:  # noqa: BLE001, S112 - a backend changing under the walk: the next record
                    continue

    threading.Thread(target=record_forever, name="fidelity-tagging", daemon=True).start()


# -- S3: account-level Block Public Access --------------------------------------------------------


def is_public_policy(policy: dict) -> bool:
    """A policy statement that Allows a wildcard principal without a condition is public (S3's test, simplified:
    AWS also treats some fixed-value conditions as non-public; any condition is taken as one here)."""
    statements = policy.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow" or statement.get("Condition"):
            continue
        principal = statement.get("Principal")
        if principal == "*" or (
            isinstance(principal, dict)
            and "*" in (principal.get("AWS") if isinstance(principal.get("AWS"), list) else [principal.get("AWS")])
        ):
            return True
    return False


def install_s3_block_public_policy() -> None:
    """PutBucketPolicy with a public policy fails with AccessDenied when BlockPublicPolicy is on for the account
    (s3control PutPublicAccessBlock, or ``account_block_public_access`` at start) or for the bucket."""
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import S3Backend
    from moto.s3control.models import S3ControlBackend

    if getattr(S3Backend.put_bucket_policy, "_kumolab_fidelity", False):
        return
    original_put = S3Backend.put_bucket_policy
    start_value = bool(setting("account_block_public_access"))
    original_init = S3ControlBackend.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if start_value:
            from moto.s3.models import PublicAccessBlock

            self.public_access_block = PublicAccessBlock(True, True, True, True)

    def put_bucket_policy(backend, bucket_name, policy):
        try:
            document = json.loads(policy.decode() if isinstance(policy, bytes) else policy)
        except (ValueError, AttributeError):
            document = {}
        if is_public_policy(document):
            from moto.s3control.models import s3control_backends

            account = s3control_backends[backend.account_id]["global"].public_access_block
            bucket = backend.get_bucket(bucket_name).public_access_block
            for level, block in (("account", account), ("bucket", bucket)):
                if block is not None and block.block_public_policy:
                    raise _error(
                        S3ClientError,
                        "AccessDenied",
                        f"User is not authorized to perform: s3:PutBucketPolicy on resource: "
                        f"arn:aws:s3:::{bucket_name} because public policies are blocked by the "
                        f"BlockPublicPolicy block public access setting ({level} level).",
                        403,
                    )
        return original_put(backend, bucket_name, policy)

    put_bucket_policy._kumolab_fidelity = True  # type: ignore[attr-defined]
    S3ControlBackend.__init__ = init
    S3Backend.put_bucket_policy = put_bucket_policy


# -- ECS: the task's platform and the image's architecture -----------------------------------------


def image_architectures(image: str) -> list[str] | None:
    """The architectures an image reference offers, or None when this emulator cannot know.

    ``kumolab.local/*``: the local target runs the container's program as a process of this machine, so the
    image has the machine's architecture (``local_image_architecture``). An image in this emulator's ECR
    stored as an image index / manifest list: its manifests' platforms. Anything else: unknown (no check)."""
    if image.startswith("kumolab.local/"):
        return [normalise_architecture(str(setting("local_image_architecture")))]
    if ".dkr.ecr." not in image:
        return None
    from moto.ecr.models import ecr_backends

    registry, _, rest = image.partition("/")
    account, region = registry.split(".")[0], registry.split(".")[3]
    name, digest = (rest.split("@", 1) + [""])[:2] if "@" in rest else (rest.rsplit(":", 1) + ["latest"])[:2]
    try:
        repository = ecr_backends[account][region].repositories.get(name)
    except KeyError:
        return None
    if repository is None:
        return None
    for candidate in repository.images:
        if digest and digest in (candidate.image_tags or []) or digest == candidate.image_digest:
            try:
                manifest = json.loads(candidate.image_manifest or "{}")
            except ValueError:
                return None
            if manifest.get("manifests"):
                return [
                    normalise_architecture(m.get("platform", {}).get("architecture", ""))
                    for m in manifest["manifests"]
                    if m.get("platform", {}).get("architecture") not in (None, "unknown")
                ]
            return None
    return None


def platform_mismatch(task_definition: dict) -> str | None:
    """Why the task cannot start (AWS's CannotPullContainerError), or None when every image has its platform."""
    runtime_platform = task_definition.get("runtimePlatform") or {}
    wanted = normalise_architecture(runtime_platform.get("cpuArchitecture") or "X86_64")
    for container in task_definition.get("containerDefinitions") or []:
        offered = image_architectures(container.get("image") or "")
        if offered is not None and wanted not in offered:
            return (
                f"CannotPullContainerError: pull image manifest has been retried 5 time(s): image Manifest does "
                f"not contain descriptor matching platform 'linux/{wanted}' (image {container.get('image')} is "
                f"{'/'.join(offered) or 'of no known architecture'}; set the task definition's runtimePlatform "
                f"cpuArchitecture to the image's)"
            )
    return None


def install_ecs_image_platform() -> None:
    """RunTask of a task definition whose runtimePlatform.cpuArchitecture the image does not offer: the task goes
    STOPPED (TaskFailedToStart) with CannotPullContainerError, as on Fargate."""
    from moto.ecs.models import ecs_backends

    from kumolab.local.ecs_tasks import TaskRun

    if getattr(TaskRun._run, "_kumolab_fidelity", False):
        return
    original_run = TaskRun._run

    def run(self):
        arn = self.task.task_definition_arn
        account, region = arn.split(":")[4], arn.split(":")[3]
        definition = ecs_backends[account][region].describe_task_definition(arn)
        reason = platform_mismatch(
            {
                "runtimePlatform": getattr(definition, "runtime_platform", None) or {},
                "containerDefinitions": definition.container_definitions,
            }
        )
        if reason:
            self._failed_to_start(reason)
            return None
        return original_run(self)

    run._kumolab_fidelity = True  # type: ignore[attr-defined]
    TaskRun._run = run


# -- API Gateway and IAM rules live in their own modules ------------------------------------------------


def _apigateway_import():
    from kumolab.local import apigateway_import

    return apigateway_import


def _iam_propagation():
    from kumolab.local import iam_propagation

    return iam_propagation


# -- the table ----------------------------------------------------------------------------------------

RULES: list[FidelityRule] = [
    FidelityRule(
        "ecs-cluster-draining",
        "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DeleteCluster.html (Errors: "
        "ClusterContainsServicesException, ClusterContainsTasksException); API_DeleteService.html (DRAINING, then "
        "INACTIVE)",
        "a deleted service is DRAINING for ecs_draining_s, then INACTIVE; DeleteCluster fails while the cluster has "
        "ACTIVE/DRAINING services or running tasks",
        "tests/unit/test_fidelity.py::test_ecs_cluster_draining",
        "M4",
        install_ecs_cluster_draining,
    ),
    FidelityRule(
        "sqs-deleted-queue-name",
        'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteQueue.html ("the deletion '
        'process takes up to 60 seconds"; API_CreateQueue.html: QueueDeletedRecently)',
        "CreateQueue with a name deleted < sqs_deleted_name_s ago fails with QueueDeletedRecently; ListQueues and "
        "GetQueueUrl still return it for sqs_list_lag_s",
        "tests/unit/test_fidelity.py::test_sqs_deleted_queue_name",
        "M5",
        install_sqs_deleted_queue_name,
    ),
    FidelityRule(
        "tagging-lag",
        'https://docs.aws.amazon.com/resourcegroupstagging/latest/APIReference/API_GetResources.html ("tagged or '
        'previously tagged resources"); aws/aws-sdk#302',
        "GetResources still lists a deleted resource, with its last tags, for tagging_lag_s",
        "tests/unit/test_fidelity.py::test_tagging_lag",
        "M5, M6",
        install_tagging_lag,
    ),
    FidelityRule(
        "s3-block-public-policy",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-block-public-access.html "
        '(BlockPublicPolicy; "The meaning of public")',
        "PutBucketPolicy with a public statement fails with AccessDenied under account-level (s3control) or "
        "bucket-level BlockPublicPolicy; account level off at start unless account_block_public_access",
        "tests/unit/test_fidelity.py::test_s3_block_public_policy",
        "M9",
        install_s3_block_public_policy,
    ),
    FidelityRule(
        "ecs-image-platform",
        "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html#runtime-platform "
        "(cpuArchitecture, default X86_64); https://docs.aws.amazon.com/AmazonECS/latest/developerguide/"
        "task_cannot_pull_image.html",
        "RunTask of a task definition whose runtimePlatform.cpuArchitecture the image does not offer: STOPPED, "
        "TaskFailedToStart, CannotPullContainerError (kumolab.local/* images: this machine's architecture)",
        "tests/unit/test_fidelity.py::test_ecs_image_platform",
        "B4",
        install_ecs_image_platform,
    ),
    FidelityRule(
        "vpc-quota",
        "https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html (VPCs per Region: 5, default VPC "
        "included); https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html (VpcLimitExceeded)",
        "CreateVpc fails with VpcLimitExceeded when the region already has vpcs_per_region VPCs (the default VPC "
        "counts); class mode therefore shares one class network",
        "tests/unit/test_fidelity_quotas.py::test_the_vpc_past_the_regions_quota_is_refused",
        "issue 17 (30 students with a VPC each pass on moto and fail on AWS)",
        install_vpc_quota,
    ),
    FidelityRule(
        "apigateway-import-validation",
        "https://docs.aws.amazon.com/apigateway/latest/api/API_PutRestApi.html (BadRequestException, failOnWarnings); "
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/request-response-data-mappings.html (mapping "
        "targets must be declared method response headers)",
        'PutRestApi/ImportRestApi of an OpenAPI 3 document fail with BadRequestException "Errors found during import: '
        '..." on what the importer rejects (undeclared method.response.header mappings, undeclared status codes, '
        "invalid mapping values, unknown gateway responses) and on warnings with failOnWarnings",
        "tests/unit/test_apigateway_import.py::test_put_rest_api_rejects_a_mapping_to_an_undeclared_header",
        "B1",
        lambda: _apigateway_import().install_import_validation(),
    ),
    FidelityRule(
        "apigateway-deployment-snapshot",
        'https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-deploy-api.html ("a snapshot of the '
        'API"; changes take effect on the next deployment); API_GetExport.html (exports a stage)',
        "CreateDeployment snapshots the API; GetExport of a stage (extensions=integrations) exports its deployment, "
        "which the local stage serves: PutRestApi without a new deployment changes nothing served",
        "tests/unit/test_apigateway_import.py::test_the_stage_serves_the_deployed_snapshot_not_the_current_api",
        "M1",
        lambda: _apigateway_import().install_deployment_snapshot(),
    ),
    FidelityRule(
        "apigateway-import-authorizers",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-swagger-extensions-authorizer.html "
        "(x-amazon-apigateway-authorizer); apigateway-enable-cognito-user-pool.html (COGNITO_USER_POOLS); "
        "apigateway-use-lambda-authorizer.html (TOKEN: input, output, caching, the Lambda permission)",
        "PutRestApi/ImportRestApi create the authorizers of components.securitySchemes "
        "(x-amazon-apigateway-authorizer: Cognito user pools and Lambda TOKEN authorizers with authorizerUri and "
        "authorizerResultTtlInSeconds) and set each secured method's authorizationType, authorizerId and "
        "scopes (moto drops them); the export carries them, so the local stage applies them (a TOKEN authorizer "
        "only with a Lambda permission for apigateway.amazonaws.com from <api>/authorizers/*)",
        "tests/unit/test_apigateway_import.py::test_import_keeps_the_cognito_authorizer_on_the_secured_methods",
        "issue 15",
        lambda: _apigateway_import().install_import_authorizers(),
    ),
    FidelityRule(
        "iam-propagation",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-"
        'consistency; boto/boto3#2976 ("The role defined for the function cannot be assumed by Lambda")',
        "a role created < iam_propagation_s ago cannot be assumed: CreateFunction/UpdateFunctionConfiguration fail "
        "with InvalidParameterValueException, RunTask with ClientException (ECS was unable to assume the role)",
        "tests/unit/test_iam_propagation.py::test_b3_a_new_role_cannot_be_assumed_at_once",
        "B3",
        lambda: _iam_propagation().install(lambda: setting("iam_propagation_s")),
    ),
    FidelityRule(
        "lambda-efs-config",
        "https://docs.aws.amazon.com/lambda/latest/api/API_FileSystemConfig.html "
        "(LocalMountPath ^/mnt/[a-zA-Z0-9-_.]+$); "
        "https://docs.aws.amazon.com/lambda/latest/dg/configuration-filesystem.html (a VPC, a mount target in every "
        "Availability Zone the function connects to)",
        "CreateFunction/UpdateFunctionConfiguration with FileSystemConfigs fail without VpcConfig, with a mount path "
        "outside /mnt/<name>, more than one file system, an unknown access point, or a subnet of the function whose "
        "Availability Zone has no mount target of the access point's file system",
        "tests/unit/test_efs_local.py::test_lambda_efs_config_rules",
        "issue 14",
        lambda: __import__("kumolab.local.efs", fromlist=["install_file_system_rules"]).install_file_system_rules(),
    ),
    FidelityRule(
        "iam-role-authorization",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html; "
        "https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html; "
        "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html",
        "local Lambda handlers and ECS tasks get their role's keys (sts:AssumeRole here); requests signed with them "
        "are evaluated against the role's policies by moto's IAM evaluation (AccessDenied in the service's shape); "
        "the project's key is not evaluated",
        "tests/unit/test_role_authorization.py",
        "M2, M3",
        lambda: __import__("kumolab.local.role_authorization", fromlist=["install"]).install(),
    ),
]


def rules() -> list[FidelityRule]:
    return list(RULES)


def install() -> list[str]:
    """Install every enabled rule; returns their names."""
    installed = []
    for rule in RULES:
        if rule.enabled:
            rule.install()
            installed.append(rule.name)
    return installed


def describe() -> list[dict]:
    """The rules and the settings, as ``kumolab-emulator rules`` prints them."""
    return [rule.as_dict() for rule in RULES]


def settings_table() -> list[dict]:
    return [
        {
            "name": key,
            "value": setting(key),
            "default": default,
            "env": f"KUMOLAB_FIDELITY_{key.upper()}",
            "meaning": meaning,
        }
        for key, (default, meaning) in SETTINGS.items()
    ]


def print_rules(as_json: bool = False) -> int:
    """``kumolab-emulator rules``: each rule (name, on/off, source, what it enforces) and the settings."""
    if as_json:
        print(json.dumps({"rules": describe(), "settings": settings_table()}, indent=2, default=str))
        return 0
    for rule in RULES:
        print(f"{rule.name:24} {'on ' if rule.enabled else 'off'}  {rule.enforces}")
        print(f"{'':24}      source: {rule.source}")
        print(f"{'':24}      switch: {rule.switch}=off; test: {rule.test}; finding: {rule.finding}")
    print("\nsettings (environment of kumolab-emulator start):")
    for item in settings_table():
        print(f"  {item['env']}={item['value']}  ({item['meaning']})")
    return 0
