"""library/kumolab_teardown.py with the lab registry's facts passed in: it deletes the kinds it is given, but
verifies across every kind (and the tagging API), so a registry entry that forgot a kind fails loudly; and it
claims untagged resources by the lab prefixes it is given, not by a spelling rule of its own."""

from __future__ import annotations

import pytest
from cost_safety_support import aws_args, clients, run_module, start_emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("teardown-emulator"))
    try:
        yield emu
    finally:
        emu.stop()


def tags(lab: str) -> dict:
    return {"Project": "kumolab", "Lab": lab}


def test_a_kind_missing_from_the_labs_kinds_fails_the_teardown_naming_it(emulator):
    aws = clients(emulator.endpoint)
    vpc = aws("ec2").create_vpc(
        CidrBlock="10.61.0.0/24",
        TagSpecifications=[
            {"ResourceType": "vpc", "Tags": [{"Key": k, "Value": v} for k, v in tags("shortlist").items()]}
        ],
    )["Vpc"]["VpcId"]
    queue = aws("sqs").create_queue(QueueName="kumolab-shortlist-q", tags=tags("shortlist"))["QueueUrl"]

    short = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("shortlist"), kinds=["ec2_vpc"]))
    assert short.get("failed"), short
    assert [r["id"] for r in short["deleted"]] == [vpc]  # what it was asked to delete, it deleted
    assert [(r["kind"], r["id"], r["outside_kinds"]) for r in short["remaining"]] == [("sqs_queue", queue, True)]
    assert "not asked to delete: sqs_queue" in short["msg"] and "inventories/shared/labs.yml" in short["msg"]

    complete = run_module(
        "kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("shortlist"), kinds=["ec2_vpc", "sqs_queue"])
    )
    assert not complete.get("failed"), complete.get("msg")
    assert [r["id"] for r in complete["deleted"]] == [queue] and complete["remaining"] == []


def test_untagged_resources_are_claimed_by_the_prefix_the_caller_passes(emulator):
    ecs = clients(emulator.endpoint)("ecs")
    ecs.create_cluster(clusterName="kumolab-claim-me")  # as an interrupted deploy leaves it: no tags
    try:
        # Lab "claim_me" with no prefix given: <project>-claim_me, which is not the cluster's name.
        unclaimed = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("claim_me")), check=True)
        assert unclaimed["resources"] == []
        claimed = run_module(
            "kumolab_teardown",
            dict(aws_args(emulator.endpoint), tags=tags("claim_me"), lab_prefixes={"claim_me": "kumolab-claim-me"}),
        )
        assert not claimed.get("failed"), claimed.get("msg")
        assert [(r["kind"], r["name"]) for r in claimed["deleted"]] == [("ecs_cluster", "kumolab-claim-me")]
    finally:
        if ecs.describe_clusters(clusters=["kumolab-claim-me"])["clusters"][0]["status"] == "ACTIVE":
            ecs.delete_cluster(cluster="kumolab-claim-me")


def test_security_m2_foreign_look_alikes_survive_a_qa_bot_teardown(emulator):
    """Review M2: only the exact names the lab creates are claimed by name, only when their own tags name no
    other project, and an untagged repository holding images (the lab tags its repository before it pushes)
    is never force-deleted. Old code: prefix match (kumolab-qa-bot-*), force=True, alarms claimed by name."""
    aws = clients(emulator.endpoint)
    ecs, ecr, cloudwatch = aws("ecs"), aws("ecr"), aws("cloudwatch")
    prefixes = {"qa_bot": "kumolab-qa-bot"}
    other = [{"Key": "Project", "Value": "other"}]
    # Foreign look-alikes next to the lab's own names.
    ecr.create_repository(repositoryName="kumolab-qa-bot-prod", tags=other)
    ecr.create_repository(repositoryName="kumolab-qa-bot-images")  # untagged, someone's own
    ecs.create_cluster(clusterName="kumolab-qa-bot-batch")  # untagged
    ecs.register_task_definition(
        family="kumolab-qa-bot-old", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 64}]
    )
    instance = aws("ec2").run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    foreign_alarm = f"kumolab-qa-bot-idle-stop-{instance}"
    cloudwatch.put_metric_alarm(
        AlarmName=foreign_alarm,
        Namespace="AWS/EC2",
        MetricName="CPUUtilization",
        Statistic="Average",
        Period=300,
        EvaluationPeriods=6,
        Threshold=10,
        ComparisonOperator="LessThanThreshold",
        Dimensions=[{"Name": "InstanceId", "Value": instance}],
        Tags=[{"Key": "Project", "Value": "other"}],
    )
    # The lab's exact name, untagged, but holding an image the lab did not push: not force-deleted.
    ecr.create_repository(repositoryName="kumolab-qa-bot")
    ecr.put_image(
        repositoryName="kumolab-qa-bot",
        imageTag="theirs",
        imageManifest='{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", '
        '"config": {"digest": "sha256:'
        + "0"
        * 64
        + '", "size": 1, "mediaType": "application/vnd.docker.container.image.v1+json"}, '
        '"layers": []}',
    )
    # What an interrupted qa_bot deploy leaves: its exact-named, untagged cluster. That one is claimed.
    ecs.create_cluster(clusterName="kumolab-qa-bot")
    try:
        result = run_module(
            "kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("qa_bot"), lab_prefixes=prefixes)
        )
        assert not result.get("failed"), result.get("msg")
        assert [(r["kind"], r["name"]) for r in result["deleted"]] == [("ecs_cluster", "kumolab-qa-bot")]
        repos = sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])
        assert repos == ["kumolab-qa-bot", "kumolab-qa-bot-images", "kumolab-qa-bot-prod"]
        assert [i["imageTag"] for i in ecr.list_images(repositoryName="kumolab-qa-bot")["imageIds"]] == ["theirs"]
        active = [
            c["clusterName"]
            for c in ecs.describe_clusters(clusters=["kumolab-qa-bot-batch"])["clusters"]
            if c["status"] == "ACTIVE"
        ]
        assert active == ["kumolab-qa-bot-batch"]
        assert ecs.list_task_definitions(familyPrefix="kumolab-qa-bot-old", status="ACTIVE")["taskDefinitionArns"]
        assert [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNames=[foreign_alarm])["MetricAlarms"]] == [
            foreign_alarm
        ]

        # Once the foreign image is gone, the empty exact-named repository is the lab's to claim (no force needed).
        ecr.batch_delete_image(repositoryName="kumolab-qa-bot", imageIds=[{"imageTag": "theirs"}])
        again = run_module(
            "kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("qa_bot"), lab_prefixes=prefixes)
        )
        assert not again.get("failed"), again.get("msg")
        assert [(r["kind"], r["name"]) for r in again["deleted"]] == [("ecr_repository", "kumolab-qa-bot")]
    finally:
        for name in ("kumolab-qa-bot-prod", "kumolab-qa-bot-images", "kumolab-qa-bot"):
            try:
                ecr.delete_repository(repositoryName=name, force=True)
            except ecr.exceptions.RepositoryNotFoundException:
                pass
        for cluster in ("kumolab-qa-bot-batch", "kumolab-qa-bot"):
            ecs.delete_cluster(cluster=cluster) if ecs.describe_clusters(clusters=[cluster])["clusters"][0][
                "status"
            ] == "ACTIVE" else None
        for arn in ecs.list_task_definitions(familyPrefix="kumolab-qa-bot-old")["taskDefinitionArns"]:
            ecs.deregister_task_definition(taskDefinition=arn)
        cloudwatch.delete_alarms(AlarmNames=[foreign_alarm])
        aws("ec2").terminate_instances(InstanceIds=[instance])


def test_a_teardown_in_one_region_leaves_the_same_labs_bucket_in_another(emulator):
    """S3 lists every region's buckets in one call: a teardown (and the independent count) in ap-northeast-1
    takes that region's bucket of the lab, never the same owner's copy in us-west-2 (which S3 would refuse to
    delete from this region anyway, PermanentRedirect)."""
    import boto3
    from cost_safety_support import REGION, keys

    from kumolab import leftovers

    here = clients(emulator.endpoint)("s3")
    there = boto3.session.Session(**keys(emulator.endpoint)).client(
        "s3", endpoint_url=emulator.endpoint, region_name="us-west-2"
    )
    owned = {**tags("tworegions"), "Owner": "alice"}
    tagging = {"TagSet": [{"Key": k, "Value": v} for k, v in owned.items()]}
    names = {REGION: f"kumolab-tworegions-alice-{REGION}", "us-west-2": "kumolab-tworegions-alice-us-west-2"}
    here.create_bucket(Bucket=names[REGION], CreateBucketConfiguration={"LocationConstraint": REGION})
    there.create_bucket(Bucket=names["us-west-2"], CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for client, name in ((here, names[REGION]), (there, names["us-west-2"])):
        client.put_bucket_tagging(Bucket=name, Tagging=tagging)
    try:
        counted = leftovers.count_owned(
            clients(emulator.endpoint), "kumolab", "tworegions", "alice", "kumolab-tworegions"
        )
        assert [(f.kind, f.id) for f in counted.leftovers] == [("s3:bucket", names[REGION])]
        result = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=owned, kinds=["s3_bucket"]))
        assert not result.get("failed"), result.get("msg")
        assert [r["id"] for r in result["deleted"]] == [names[REGION]] and result["remaining"] == []
        assert [b["Name"] for b in here.list_buckets()["Buckets"] if "tworegions" in b["Name"]] == [names["us-west-2"]]
    finally:
        for name in names.values():
            try:
                there.delete_bucket(Bucket=name)
            except there.exceptions.ClientError:
                pass
