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
    vpc = aws("ec2").create_vpc(CidrBlock="10.61.0.0/24", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": k, "Value": v} for k, v in tags("shortlist").items()]}])["Vpc"]["VpcId"]
    queue = aws("sqs").create_queue(QueueName="kumolab-shortlist-q", tags=tags("shortlist"))["QueueUrl"]

    short = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("shortlist"), kinds=["ec2_vpc"]))
    assert short.get("failed"), short
    assert [r["id"] for r in short["deleted"]] == [vpc]  # what it was asked to delete, it deleted
    assert [(r["kind"], r["id"], r["outside_kinds"]) for r in short["remaining"]] == [("sqs_queue", queue, True)]
    assert "not asked to delete: sqs_queue" in short["msg"] and "inventories/shared/labs.yml" in short["msg"]

    complete = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("shortlist"),
                                                   kinds=["ec2_vpc", "sqs_queue"]))
    assert not complete.get("failed"), complete.get("msg")
    assert [r["id"] for r in complete["deleted"]] == [queue] and complete["remaining"] == []


def test_untagged_resources_are_claimed_by_the_prefix_the_caller_passes(emulator):
    ecs = clients(emulator.endpoint)("ecs")
    ecs.create_cluster(clusterName="kumolab-claim-me")  # as an interrupted deploy leaves it: no tags
    try:
        # Lab "claim_me" with no prefix given: <project>-claim_me, which is not the cluster's name.
        unclaimed = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("claim_me")), check=True)
        assert unclaimed["resources"] == []
        claimed = run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags("claim_me"),
                                                      lab_prefixes={"claim_me": "kumolab-claim-me"}))
        assert not claimed.get("failed"), claimed.get("msg")
        assert [(r["kind"], r["name"]) for r in claimed["deleted"]] == [("ecs_cluster", "kumolab-claim-me")]
    finally:
        if ecs.describe_clusters(clusters=["kumolab-claim-me"])["clusters"][0]["status"] == "ACTIVE":
            ecs.delete_cluster(cluster="kumolab-claim-me")
