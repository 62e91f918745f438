"""The fidelity layer (kumolab.local.fidelity): each AWS rule against the emulator over HTTP with plain boto3, and
the review findings each rule would have caught (M4, M5, M6, B4), fixed.

A private emulator with short settings (draining, lags), started with the rules on as ``make test`` has them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid

import botocore.exceptions
import pytest
from cost_safety_support import REGION, REPO, VENV_BIN, aws_args, clients, run_module, start_emulator

sys.path.insert(0, str(REPO / "module_utils"))
import kumolab_resources as catalogue  # noqa: E402

SETTINGS = {
    "KUMOLAB_FIDELITY_ECS_DRAINING_S": "3",
    "KUMOLAB_FIDELITY_SQS_DELETED_NAME_S": "60",
    "KUMOLAB_FIDELITY_SQS_LIST_LAG_S": "10",
    "KUMOLAB_FIDELITY_TAGGING_LAG_S": "60",
    "KUMOLAB_FIDELITY_TAGGING_SNAPSHOT_S": "0.5",
    # An "Apple-silicon laptop": local images are arm64 whatever this machine is (review B4's situation).
    "KUMOLAB_FIDELITY_LOCAL_IMAGE_ARCHITECTURE": "arm64",
}
PROBE_SOURCE = "tests/support/ecs_probe"
MY_RULES = {
    "ecs-cluster-draining",
    "sqs-deleted-queue-name",
    "tagging-lag",
    "s3-block-public-policy",
    "ecs-image-platform",
}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    saved = {key: os.environ.get(key) for key in SETTINGS}
    os.environ.update(SETTINGS)
    try:
        emu = start_emulator(tmp_path_factory.mktemp("fidelity-emulator"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def aws(emulator):
    return clients(emulator.endpoint)


def code_of(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_rules_are_listed_and_on_by_default():
    out = subprocess.run(
        [str(VENV_BIN / "kumolab-emulator"), "rules", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("KUMOLAB_FIDELITY")},
    )
    listed = json.loads(out.stdout)
    names = {r["name"]: r for r in listed["rules"]}
    assert MY_RULES <= set(names)
    assert all(r["enabled"] and r["source"].startswith("https://docs.aws.amazon.com/") for r in names.values())
    assert {s["name"] for s in listed["settings"]} >= {"ecs_draining_s", "sqs_deleted_name_s", "tagging_lag_s"}
    docs = (REPO / "docs/fidelity.md").read_text()
    assert all(f"`{name}`" in docs for name in MY_RULES)


# -- ECS: DeleteCluster while services drain -------------------------------------------------------


def ecs_service(aws, name: str, tags: dict | None = None) -> None:
    ecs = aws("ecs")
    tag_list = [{"key": k, "value": v} for k, v in (tags or {}).items()]
    ecs.create_cluster(clusterName=name, tags=tag_list)
    ecs.register_task_definition(
        family=name, containerDefinitions=[{"name": "w", "image": "kumolab.local/w:1", "memory": 128}]
    )
    ecs.create_service(cluster=name, serviceName=name, taskDefinition=name, desiredCount=1, tags=tag_list)


def test_ecs_cluster_draining(aws):
    ecs, name = aws("ecs"), unique("drain")
    ecs_service(aws, name)
    ecs.update_service(cluster=name, service=name, desiredCount=0)
    assert ecs.delete_service(cluster=name, service=name, force=True)["service"]["status"] == "DRAINING"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.delete_cluster(cluster=name)
    assert code_of(excinfo) == "ClusterContainsServicesException"
    assert ecs.describe_services(cluster=name, services=[name])["services"][0]["status"] == "DRAINING"
    ecs.get_waiter("services_inactive").wait(
        cluster=name, services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"


def test_m4_teardown_waits_for_the_draining_service_before_deleting_its_cluster(aws):
    """Review M4. On the old catalogue, delete_ecs_service returned right after DeleteService and
    ClusterContainsServicesException was not retried: ``catalogue.delete`` raised it here."""
    lab = unique("m4")
    wanted = {"Project": "kumolab", "Lab": lab}
    ecs_service(aws, f"kumolab-{lab}", wanted)
    found = catalogue.find(aws, wanted, [k for k in catalogue.KINDS if k.name in ("ecs_service", "ecs_cluster")])
    assert sorted(r.kind for r in found) == ["ecs_cluster", "ecs_service"]
    catalogue.delete(aws, found)  # raised ClusterContainsServicesException on the old code
    cluster = aws("ecs").describe_clusters(clusters=[f"kumolab-{lab}"])["clusters"][0]
    assert cluster["status"] == "INACTIVE"
    assert {
        "ClusterContainsServicesException",
        "ClusterContainsTasksException",
        "UpdateInProgressException",
    } <= catalogue.RETRY_CODES


# -- SQS: a deleted queue's name ------------------------------------------------------------------


def test_sqs_deleted_queue_name(aws):
    sqs, name = aws("sqs"), unique("gone")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.create_queue(QueueName=name)
    assert code_of(excinfo) == "AWS.SimpleQueueService.QueueDeletedRecently"
    assert url in sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", [])  # still listed for a while
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.list_queue_tags(QueueUrl=url)
    assert code_of(excinfo) in catalogue.GONE_CODES
    other = sqs.create_queue(QueueName=name + "-other")["QueueUrl"]  # other names are free
    sqs.delete_queue(QueueUrl=other)


# -- Resource Groups Tagging API: deleted resources still listed ------------------------------------


def tagged_arns(aws, wanted: dict) -> set[str]:
    pages = (
        aws("resourcegroupstaggingapi")
        .get_paginator("get_resources")
        .paginate(TagFilters=[{"Key": k, "Values": [v]} for k, v in wanted.items()])
    )
    return {m["ResourceARN"] for page in pages for m in page["ResourceTagMappingList"]}


def test_tagging_lag(aws):
    lab = unique("lag")
    wanted = {"Project": "kumolab", "Lab": lab}
    vpc = aws("ec2").create_vpc(
        CidrBlock="10.77.0.0/24",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": k, "Value": v} for k, v in wanted.items()]}],
    )["Vpc"]["VpcId"]
    assert any(arn.endswith(vpc) for arn in tagged_arns(aws, wanted))
    aws("ec2").delete_vpc(VpcId=vpc)
    assert any(arn.endswith(vpc) for arn in tagged_arns(aws, wanted)), "a deleted VPC is still listed for a while"
    assert not catalogue.arn_exists(aws, next(a for a in tagged_arns(aws, wanted) if a.endswith(vpc)))


def test_m5_listers_skip_deleted_items_and_verification_ignores_ghost_arns(aws, emulator):
    """Review M5 (and M2's lister part). On the old catalogue ``find`` raised NonExistentQueue for the queue that
    ListQueues still lists after DeleteQueue, and ``untracked`` reported the deleted (untracked-kind) topic."""
    lab = unique("m5")
    wanted = {"Project": "kumolab", "Lab": lab}
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName=f"kumolab-{lab}", tags=wanted)["QueueUrl"]
    topic = aws("sns").create_topic(Name=f"kumolab-{lab}", Tags=[{"Key": k, "Value": v} for k, v in wanted.items()])
    assert topic["TopicArn"] in tagged_arns(aws, wanted)
    assert [r.id for r in catalogue.find(aws, wanted, [k for k in catalogue.KINDS if k.name == "sqs_queue"])] == [url]
    sqs.delete_queue(QueueUrl=url)
    aws("sns").delete_topic(TopicArn=topic["TopicArn"])
    time.sleep(1)
    assert url in sqs.list_queues().get("QueueUrls", [])  # the rule: still listed
    assert topic["TopicArn"] in tagged_arns(aws, wanted)  # the rule: still tagged
    assert catalogue.find(aws, wanted) == []  # old code: NonExistentQueue from list_queue_tags
    assert catalogue.untracked(aws, wanted) == []  # old code: [the topic's ARN]
    result = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=wanted))
    assert not result.get("failed"), result.get("msg")


# -- M6: an expired lab's tags never leak into a redeploy -------------------------------------------


def test_m6_expired_lab_tags_do_not_leak_into_a_redeploy(aws, emulator):
    """Review M6. On the old kumolab_lab_tags the ghost's (past) ExpiresAt came back as the new deployment's
    expiry (``expires_at == past``), and a live resource's past expiry was kept."""
    lab = unique("m6")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    past = (now - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    wanted = {"Project": "kumolab", "Lab": lab}
    tags = [{"Key": k, "Value": v} for k, v in dict(wanted, ExpiresAt=past).items()]
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.78.0.0/24", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])["Vpc"]
    time.sleep(1)  # the tagging API has seen it
    ec2.delete_vpc(VpcId=vpc["VpcId"])
    assert any(a.endswith(vpc["VpcId"]) for a in tagged_arns(aws, wanted))  # the old lab's ghost

    args = dict(aws_args(emulator.endpoint), lab=lab, owner="alice", expires_in_hours=4)
    result = run_module("kumolab_lab_tags", args)
    assert not result.get("failed"), result.get("msg")
    fresh = dt.datetime.fromisoformat(result["expires_at"].replace("Z", "+00:00"))
    assert fresh > now + dt.timedelta(hours=3), result["expires_at"]  # old code: the ghost's past expiry
    assert result["existing_resources"] == 0  # old code: 1 (the ghost)

    # A lab that still exists but has expired (redeployed before the reaper ran) gets a fresh expiry too.
    live = ec2.create_vpc(CidrBlock="10.79.0.0/24", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])["Vpc"]
    result = run_module("kumolab_lab_tags", args)
    assert result["existing_resources"] == 1
    assert dt.datetime.fromisoformat(result["expires_at"].replace("Z", "+00:00")) > now + dt.timedelta(hours=3)
    ec2.delete_vpc(VpcId=live["VpcId"])


def test_each_owner_keeps_the_expiry_of_their_own_copy_of_a_lab(aws, emulator):
    """Two owners' copies of one lab expire at their own times: alice's run never takes bob's ExpiresAt (it would
    retag every resource of alice's, and modules that find resources by their tags would create new ones)."""
    lab = unique("owners")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    bobs = (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    alices = (now + dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ec2 = aws("ec2")
    vpcs = []
    for owner, expiry, cidr in (("bob", bobs, "10.76.0.0/24"), ("alice", alices, "10.77.0.0/24")):
        tags = [{"Key": k, "Value": v} for k, v in {"Project": "kumolab", "Lab": lab, "Owner": owner}.items()]
        spec = [{"ResourceType": "vpc", "Tags": tags + [{"Key": "ExpiresAt", "Value": expiry}]}]
        vpcs.append(ec2.create_vpc(CidrBlock=cidr, TagSpecifications=spec)["Vpc"]["VpcId"])
    try:
        for owner, expiry in (("alice", alices), ("bob", bobs)):
            result = run_module("kumolab_lab_tags", dict(aws_args(emulator.endpoint), lab=lab, owner=owner))
            assert (result["expires_at"], result["existing_resources"]) == (expiry, 1), result
    finally:
        for vpc in vpcs:
            ec2.delete_vpc(VpcId=vpc)


# -- S3: account-level Block Public Access ----------------------------------------------------------

PUBLIC_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": None}
    ],
}


# Lab 5's website role alone, on the local inventory (its profile names the private emulator here).
WEBSITE_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/aws: "{{{{ kumolab_aws }}}}"
    kumolab_s3_public_access_info: "{{{{ kumolab_aws }}}}"
  roles:
    - role: website_bucket
      website_bucket_name: {bucket}
      website_bucket_source_dir: {files}
      website_bucket_files: [index.html]
"""


def test_s3_block_public_policy(aws, emulator):
    from cost_safety_support import session

    s3 = aws("s3")
    s3control = session(emulator.endpoint).client("s3control", endpoint_url=emulator.endpoint, region_name=REGION)
    account = aws("sts").get_caller_identity()["Account"]

    def no_account_host(request, **_kwargs):  # s3control prefixes the account to the host; the emulator is one host
        request.url = request.url.replace(f"//{account}.", "//", 1)

    s3control.meta.events.register("before-sign.s3-control.*", no_account_host)
    bucket = unique("kumolab-bpa")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    policy = json.loads(json.dumps(PUBLIC_POLICY))
    policy["Statement"][0]["Resource"] = f"arn:aws:s3:::{bucket}/*"
    # A new account: no account-level block, so the public policy is accepted (what a fresh AWS account does).
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3control.put_public_access_block(
        AccountId=account,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    try:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        assert code_of(excinfo) == "AccessDenied" and "BlockPublicPolicy" in str(excinfo.value)
        private = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(private))  # not public: allowed
    finally:
        s3control.delete_public_access_block(AccountId=account)
        s3.delete_bucket_policy(Bucket=bucket)
        s3.delete_bucket(Bucket=bucket)


def role_keys(aws, name: str, actions: list[str]) -> dict:
    """Module arguments with the keys of a new role allowed only ``actions`` (assumable after IAM propagation)."""
    account = aws("sts").get_caller_identity()["Account"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    if actions:
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        aws("iam").put_role_policy(RoleName=name, PolicyName="only", PolicyDocument=json.dumps(policy))
    deadline = time.monotonic() + 30
    while True:
        try:
            creds = aws("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/{name}", RoleSessionName="bpa")
            break
        except botocore.exceptions.ClientError:
            assert time.monotonic() < deadline, "the role never became assumable"
            time.sleep(1)
    c = creds["Credentials"]
    return {"access_key": c["AccessKeyId"], "secret_key": c["SecretAccessKey"], "session_token": c["SessionToken"]}


def test_m9_the_website_role_stops_before_anything_under_account_block_public_access(aws, emulator, tmp_path):
    """Review M9: with account-level Block Public Access the website bucket's public policy fails with a bare
    AccessDenied (or the site is unreadable). The preflight module reads the account's setting and the website
    role stops before creating the bucket, saying what to do; without the setting the module allows it."""
    from cost_safety_support import profile_env, session

    env = profile_env(emulator, tmp_path)
    s3 = aws("s3")
    s3control = session(emulator.endpoint).client("s3control", endpoint_url=emulator.endpoint, region_name=REGION)
    account = aws("sts").get_caller_identity()["Account"]
    s3control.meta.events.register(
        "before-sign.s3-control.*",
        lambda request, **_: setattr(request, "url", request.url.replace(f"//{account}.", "//", 1)),
    )
    block = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    s3control.put_public_access_block(AccountId=account, PublicAccessBlockConfiguration=block)
    try:
        blocked = run_module("kumolab_s3_public_access_info", {"profile": "kumolab-local"}, check=True, extra_env=env)
        assert blocked.get("account_id") == account, blocked.get("msg")
        assert blocked["configured"] and not blocked["changed"]
        assert not blocked["allows_public_policy"] and blocked["blocked_by"] == [
            "BlockPublicPolicy",
            "RestrictPublicBuckets",
        ]
        site = unique("kumolab-bpa-site")
        play = tmp_path / "website.yml"
        play.write_text(
            WEBSITE_PLAY.format(bucket=site, files=REPO / "roles/website_bucket/molecule/default/files"), "utf-8"
        )
        run = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(REPO / "inventories/local"), str(play)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode != 0, run.stdout
        assert "BlockPublicPolicy and RestrictPublicBuckets" in run.stdout and "Nothing was created" in run.stdout
        assert "put-public-access-block" in run.stdout, "it says what to do"
        assert site not in {b["Name"] for b in s3.list_buckets()["Buckets"]}, "the preflight stops before the bucket"
        # Under a role's own policy: the IAM action is s3:GetAccountPublicAccessBlock (not moto's
        # s3:GetPublicAccessBlock); a caller without it is warned and not stopped.
        for allowed_actions, readable in ((["s3:GetAccountPublicAccessBlock"], True), ([], False)):
            keys = role_keys(aws, unique("bpa-reader"), allowed_actions)
            found = run_module("kumolab_s3_public_access_info", {**aws_args(emulator.endpoint), **keys})
            assert not found.get("failed"), found.get("msg")
            if readable:
                assert found["configured"] and not found["allows_public_policy"]
            else:
                assert found["configured"] is None and found["allows_public_policy"]
                assert "s3:GetAccountPublicAccessBlock is not allowed" in " ".join(found.get("warnings", []))
    finally:
        s3control.delete_public_access_block(AccountId=account)
    allowed = run_module("kumolab_s3_public_access_info", {"profile": "kumolab-local"}, extra_env=env)
    assert allowed["allows_public_policy"] and not allowed["configured"] and allowed["blocked_by"] == []


# -- ECS: runtimePlatform vs the image's architecture ------------------------------------------------


def run_and_wait(aws, cluster: str, taskdef: str, timeout: float = 30) -> dict:
    ecs, ec2 = aws("ecs"), aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.81.0.0/24")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.81.0.0/25")["Subnet"]["SubnetId"]
    started = ecs.run_task(
        cluster=cluster,
        taskDefinition=taskdef,
        launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet]}},
        overrides={"containerOverrides": [{"name": "main", "command": ["python", "-m", "probe", "exit", "0"]}]},
    )
    arn = started["tasks"][0]["taskArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if task["lastStatus"] == "STOPPED":
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {arn} did not stop")


def register(aws, family: str, image: str, architecture: str | None) -> str:
    extra = (
        {"runtimePlatform": {"cpuArchitecture": architecture, "operatingSystemFamily": "LINUX"}} if architecture else {}
    )
    return aws("ecs").register_task_definition(
        family=family,
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "main",
                "image": image,
                "essential": True,
                "cpu": 256,
                "memory": 512,
                "dockerLabels": {"kumolab.runtime.source": PROBE_SOURCE},
            }
        ],
        **extra,
    )["taskDefinition"]["taskDefinitionArn"]


def test_ecs_image_platform(aws):
    cluster = unique("arch")
    aws("ecs").create_cluster(clusterName=cluster)
    image = "kumolab.local/qa-bot:local-process"  # arm64 here (SETTINGS)
    task = run_and_wait(aws, cluster, register(aws, cluster, image, None))  # no runtimePlatform: X86_64
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"].startswith("CannotPullContainerError:")
    assert "image Manifest does not contain descriptor matching platform 'linux/amd64'" in task["stoppedReason"]
    task = run_and_wait(aws, cluster, register(aws, cluster, image, "ARM64"))
    assert "CannotPullContainerError" not in (task.get("stoppedReason") or ""), task.get("stoppedReason")
    assert task["containers"][0]["exitCode"] == 0
