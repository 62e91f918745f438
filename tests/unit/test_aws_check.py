"""make aws-check (playbooks/aws_check.yml): its logic without AWS. The independent leftover count
(kumolab.leftovers) against botocore Stubbers, the receipt (kumolab.receipt), the cost cap, and the glue
(kumolab.aws_check: steps, the teardown's JSON output)."""

from __future__ import annotations

import json

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from cost_safety_support import REPO, load_library_module

from kumolab import aws_check, leftovers, receipt

REGION, ACCOUNT = "us-east-1", "123456789012"
PREFIX = "kumolab-qa-bot"


class Stubs:
    """One real boto3 client per service, each with a Stubber; ``aws`` is the factory the checker takes."""

    def __init__(self):
        self.clients, self.stubs = {}, {}

    def aws(self, service):
        if service not in self.clients:
            client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
            self.clients[service], self.stubs[service] = client, Stubber(client)
            self.stubs[service].activate()
        return self.clients[service]

    def add(self, service, method, response=None, params=None):
        self.aws(service)
        self.stubs[service].add_response(method, response or {}, params)

    def error(self, service, method, code, status=400):
        self.aws(service)
        self.stubs[service].add_client_error(method, service_error_code=code, http_status_code=status)

    def done(self):
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


def by_name_answers(stubs: Stubs, **override):
    """What every by-name listing answers, in the order the checker asks: empty unless overridden."""
    ec2 = [
        ("describe_instances", {"Reservations": []}),
        ("describe_vpcs", {"Vpcs": []}),
        ("describe_subnets", {"Subnets": []}),
        ("describe_internet_gateways", {"InternetGateways": []}),
        ("describe_route_tables", {"RouteTables": []}),
        ("describe_volumes", {"Volumes": []}),
        ("describe_security_groups", {"SecurityGroups": []}),
        ("describe_key_pairs", {"KeyPairs": []}),
        ("describe_launch_templates", {"LaunchTemplates": []}),
        ("describe_nat_gateways", {"NatGateways": []}),
    ]
    for method, response in ec2:
        stubs.add("ec2", method, override.get(method, response))
    for n in range(4):
        stubs.add("cloudwatch", "describe_alarms", override.get(f"describe_alarms_{n}", {}))
    clusters = override.get("list_clusters", {"clusterArns": []})
    stubs.add("ecs", "list_clusters", clusters)
    for _ in clusters["clusterArns"]:
        stubs.add("ecs", "list_services", override.get("list_services", {"serviceArns": []}))
    stubs.add("ecs", "list_task_definitions", override.get("list_task_definitions", {"taskDefinitionArns": []}))
    stubs.add("events", "list_rules", {"Rules": []})
    stubs.add("ecr", "describe_repositories", override.get("describe_repositories", {"repositories": []}))
    stubs.add("lambda", "list_functions", override.get("list_functions", {"Functions": []}))
    stubs.add("iam", "list_roles", override.get("list_roles", {"Roles": []}))
    stubs.add("iam", "list_instance_profiles", {"InstanceProfiles": []})
    for _ in range(3):
        stubs.add("logs", "describe_log_groups", {"logGroups": []})
    stubs.add("sqs", "list_queues", override.get("list_queues", {}))
    stubs.add("dynamodb", "list_tables", override.get("list_tables", {"TableNames": []}))
    stubs.add("s3", "list_buckets", {"Buckets": []})
    stubs.add("apigateway", "get_rest_apis", {"items": []})
    stubs.add("efs", "describe_file_systems", override.get("describe_file_systems", {"FileSystems": []}))
    stubs.add("efs", "describe_access_points", override.get("describe_access_points", {"AccessPoints": []}))
    stubs.add(
        "application-autoscaling",
        "describe_scalable_targets",
        override.get("describe_scalable_targets", {"ScalableTargets": []}),
    )


def tagging(stubs: Stubs, *arns):
    stubs.add(
        "resourcegroupstaggingapi",
        "get_resources",
        {
            "ResourceTagMappingList": [
                {"ResourceARN": a, "Tags": [{"Key": "Project", "Value": "kumolab"}]} for a in arns
            ]
        },
        {"TagFilters": [{"Key": "Project", "Values": ["kumolab"]}, {"Key": "Lab", "Values": ["qa_bot"]}]},
    )


CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{PREFIX}"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{PREFIX}-x"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{PREFIX}-alerts"


def test_independent_count_finds_untagged_resources_by_name_and_tagged_ones_of_any_kind():
    # An ECS cluster left untagged by an interrupted deploy and a target-tracking alarm (Application Auto Scaling
    # names it, nobody tags it) are found by name; an SNS topic, a kind nobody lists, by its tags.
    stubs = Stubs()
    by_name_answers(
        stubs,
        list_clusters={"clusterArns": [CLUSTER_ARN, f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/someone-else"]},
        describe_alarms_2={"MetricAlarms": [{"AlarmName": f"TargetTracking-service/{PREFIX}/{PREFIX}-AlarmHigh-1"}]},
        list_functions={
            "Functions": [{"FunctionName": f"{PREFIX}-x"}, {"FunctionName": "aws-controltower-NotificationForwarder"}]
        },
        list_queues={"QueueUrls": [f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{PREFIX}-questions"]},
    )
    tagging(stubs, FUNCTION_ARN, TOPIC_ARN)
    result = leftovers.count(stubs.aws, "kumolab", "qa_bot", PREFIX)
    stubs.done()
    found = {(f.kind, f.id): f.source for f in result.leftovers}
    assert found == {
        ("ecs:cluster", PREFIX): "by-name",
        ("cloudwatch:alarm", f"TargetTracking-service/{PREFIX}/{PREFIX}-AlarmHigh-1"): "by-name",
        ("lambda:function", f"{PREFIX}-x"): "both",
        ("sqs:queue", f"{PREFIX}-questions"): "by-name",
        ("sns:topic", f"{PREFIX}-alerts"): "tagging-api",
    }
    assert not result.ok and result.stale == []


def test_tagging_api_lag_is_reported_as_stale_not_as_a_leftover():
    # The tagging API keeps listing deleted resources for a while; the services themselves say they are gone.
    stubs = Stubs()
    by_name_answers(stubs)
    tagging(
        stubs,
        FUNCTION_ARN,
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:{PREFIX}-questions",
    )
    stubs.error("lambda", "get_function", "ResourceNotFoundException", 404)
    stubs.add(
        "ec2",
        "describe_instances",
        {
            "Reservations": [
                {"Instances": [{"InstanceId": "i-0123456789abcdef0", "State": {"Name": "terminated", "Code": 48}}]}
            ]
        },
        {"InstanceIds": ["i-0123456789abcdef0"]},
    )
    stubs.error("sqs", "get_queue_url", "AWS.SimpleQueueService.NonExistentQueue")
    result = leftovers.count(stubs.aws, "kumolab", "qa_bot", PREFIX)
    stubs.done()
    assert result.ok and result.leftovers == []
    assert sorted(f.kind for f in result.stale) == ["ec2:instance", "lambda:function", "sqs:queue"]


def test_a_tagged_resource_outside_the_name_prefix_that_still_exists_is_a_leftover():
    stubs = Stubs()
    by_name_answers(stubs)
    tagging(stubs, f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/renamed-by-hand")
    stubs.add(
        "dynamodb", "describe_table", {"Table": {"TableName": "renamed-by-hand"}}, {"TableName": "renamed-by-hand"}
    )
    result = leftovers.count(stubs.aws, "kumolab", "qa_bot", PREFIX)
    assert [(f.kind, f.id, f.source) for f in result.leftovers] == [
        ("dynamodb:table", "renamed-by-hand", "tagging-api")
    ]


@pytest.mark.parametrize(
    ("arn", "kind", "ident"),
    [
        (f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/vpc-1", "ec2:vpc", "vpc-1"),
        (f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{PREFIX}/{PREFIX}", "ecs:service", PREFIX),
        (f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{PREFIX}:3", "ecs:task-definition", f"{PREFIX}:3"),
        (f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/{PREFIX}:*", "logs:log-group", f"/ecs/{PREFIX}"),
        (f"arn:aws:apigateway:{REGION}::/restapis/a1b2c3", "apigateway:restapi", "a1b2c3"),
        (f"arn:aws:apigateway:{REGION}::/restapis/a1b2c3/stages/prod", "apigateway:stage", "a1b2c3/stages/prod"),
        ("arn:aws:s3:::kumolab-bashoutter-1-us-east-1", "s3:bucket", "kumolab-bashoutter-1-us-east-1"),
        (f"arn:aws:iam::{ACCOUNT}:role/svc/{PREFIX}-task", "iam:role", f"{PREFIX}-task"),
        (
            f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:kumolab-gpu-idle-stop-i-1",
            "cloudwatch:alarm",
            "kumolab-gpu-idle-stop-i-1",
        ),
    ],
)
def test_arns_map_to_the_kinds_the_listings_use(arn, kind, ident):
    assert leftovers.kind_of_arn(arn) == (kind, ident)


def test_settle_counts_again_while_something_is_left(monkeypatch):
    answers = [
        leftovers.Count("t1", [leftovers.Found("ec2:instance", "i-1", "by-name")], [], {}, PREFIX),
        leftovers.Count("t2", [], [], {}, PREFIX),
    ]
    monkeypatch.setattr(leftovers, "count", lambda *_args: answers.pop(0))
    slept = []
    result = leftovers.settle(
        None, "kumolab", "qa_bot", PREFIX, wait_s=120, interval_s=30, sleep=slept.append, clock=lambda: 0
    )
    assert result.ok and result.checked_at == "t2" and slept == [30]


def test_settle_gives_up_after_the_wait():
    left = leftovers.Count("t", [leftovers.Found("ec2:instance", "i-1", "by-name")], [], {}, PREFIX)
    clock = iter([0, 100, 200]).__next__
    original = leftovers.count
    leftovers.count = lambda *_args: left
    try:
        result = leftovers.settle(
            None, "kumolab", "qa_bot", PREFIX, wait_s=60, interval_s=30, sleep=lambda _s: None, clock=clock
        )
    finally:
        leftovers.count = original
    assert not result.ok


# -- the receipt -------------------------------------------------------------------------------------------

ESTIMATE = {
    "total_hourly_usd": 0.0163,
    "over_cap": False,
    "priced_region": REGION,
    "region": REGION,
    "prices_as_of": "2025-06-01",
    "items": [{"name": "server", "detail": "1 x t3.micro @ $0.0104/h", "hourly_usd": 0.0104}],
    "warnings_list": [],
}


def step(name, start, end, rc=0, detail=""):
    return {
        "name": name,
        "started_at": start,
        "ended_at": end,
        "duration_s": receipt.seconds_between(start, end),
        "rc": rc,
        "ok": rc == 0,
        "detail": detail,
    }


def counted(at, *items, stale=()):
    return leftovers.Count(at, list(items), list(stale), {"Project": "kumolab", "Lab": "ec2"}, "kumolab-ec2").as_dict()


INSTANCE = leftovers.Found(
    "ec2:instance", "i-0abc", "both", arn=f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0abc", name="kumolab-ec2"
)
KEY = leftovers.Found("ec2:key-pair", "key-0123", "by-name", name="kumolab-ec2")
TEARDOWN = {
    "started_at": "2026-12-02T10:10:00Z",
    "ended_at": "2026-12-02T10:12:00Z",
    "ok": True,
    "deleted": [
        {"kind": "ec2_instance", "id": "i-0abc", "name": "kumolab-ec2"},
        {"kind": "ec2_key_pair", "id": "kumolab-ec2", "name": "kumolab-ec2"},
    ],
}
STEPS = [
    step("deploy", "2026-12-02T10:00:00Z", "2026-12-02T10:05:00Z"),
    step("use", "2026-12-02T10:05:10Z", "2026-12-02T10:06:00Z"),
    step("teardown", "2026-12-02T10:09:50Z", "2026-12-02T10:12:10Z"),
]


def build(**changes):
    args = dict(
        kind="aws-check",
        lab="ec2",
        owner="alice",
        region=REGION,
        started_at="2026-12-02T09:59:00Z",
        ended_at="2026-12-02T10:20:00Z",
        steps=STEPS,
        account=ACCOUNT,
        caller_arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
        estimate=ESTIMATE,
        cap=0.25,
        before=counted("2026-12-02T09:59:30Z"),
        after_deploy=counted("2026-12-02T10:05:05Z", INSTANCE, KEY),
        teardown=TEARDOWN,
        after_teardown=counted("2026-12-02T10:15:00Z", stale=[INSTANCE]),
    )
    args.update(changes)
    return receipt.build(**args)


def test_receipt_lists_every_resource_when_the_teardown_deleted_it_and_the_independent_count():
    built = build()
    assert built["schema"] == "kumolab.receipt/1" and built["verdict"] == "pass" and built["problems"] == []
    by_id = {r["id"]: r for r in built["resources"]}
    assert set(by_id) == {"i-0abc", "key-0123"}
    assert by_id["i-0abc"]["deleted_by_teardown"] and by_id["i-0abc"]["teardown_kind"] == "ec2_instance"
    assert by_id["i-0abc"]["deleted_between"] == ["2026-12-02T10:10:00Z", "2026-12-02T10:12:00Z"]
    assert by_id["key-0123"]["deleted_by_teardown"]  # matched by name: the teardown deletes key pairs by KeyName
    assert all(
        r["absent_at"] == "2026-12-02T10:15:00Z" and r["seen_after_deploy_at"] == "2026-12-02T10:05:05Z"
        for r in built["resources"]
    )
    assert built["cost"]["estimate_usd_per_hour"] == 0.0163 and built["cost"]["hours_run"] == pytest.approx(
        0.2, abs=1e-3
    )
    assert built["cost"]["estimate_for_run_usd"] == pytest.approx(0.0163 * 0.2, abs=1e-4)
    assert built["owner"] == "alice" and built["duration_s"] == 1260


def test_receipt_fails_on_a_leftover_the_teardown_did_not_see():
    built = build(
        teardown=dict(TEARDOWN, deleted=TEARDOWN["deleted"][:1]), after_teardown=counted("2026-12-02T10:15:00Z", KEY)
    )
    assert built["verdict"] == "fail"
    assert built["problems"] == ["1 resource(s) left after the teardown: ec2:key-pair kumolab-ec2"]
    key = next(r for r in built["resources"] if r["id"] == "key-0123")
    assert not key["deleted_by_teardown"] and key["absent_at"] is None
    assert "STILL THERE" in receipt.to_markdown(built)


def test_receipt_of_a_failed_step_fails_and_says_which():
    built = build(
        steps=[
            step(
                "deploy",
                "2026-12-02T10:00:00Z",
                "2026-12-02T10:01:00Z",
                2,
                "fatal: [localhost]: FAILED! => AccessDenied",
            )
        ]
    )
    assert built["verdict"] == "fail" and built["problems"][0].startswith(
        "step deploy failed (rc 2): fatal: [localhost]"
    )


def test_cost_cap_decision_refuses_before_anything_is_created():
    cost = load_library_module("kumolab_cost_estimate")
    prices = cost.load_prices(REPO / "files/pricing/aws_prices.yml")
    gpu = [{"name": "GPU host", "kind": "ec2", "type": "g4dn.xlarge"}]
    over = cost.estimate(prices, "ap-northeast-1", gpu, max_usd_per_hour=0.25)
    assert (
        over["over_cap"]
        and "0.7100 USD/hour, is above the cap of 0.25 USD/hour; nothing was created" in over["cap_message"]
    )
    assert "-e aws_check_max_usd_per_hour=" in over["cap_message"]
    assert not cost.estimate(prices, "ap-northeast-1", gpu, max_usd_per_hour=1.0)["over_cap"]
    assert cost.cost_cap(0.71, None) == (False, "")
    assert cost.cost_cap(0.25, 0.25)[0] is False  # at the cap is allowed; above it is refused

    built = build(
        estimate=over,
        steps=[step("deploy", "2026-12-02T10:00:00Z", "2026-12-02T10:00:20Z", 2)],
        after_deploy=counted("2026-12-02T10:00:30Z"),
        teardown=dict(TEARDOWN, deleted=[]),
    )
    assert built["verdict"] == "refused" and "above the cap of 0.25 USD/h" in built["problems"][0]
    assert built["resources"] == []


def test_receipt_refuses_a_lab_that_was_already_deployed():
    built = build(before=counted("2026-12-02T09:59:30Z", INSTANCE))
    assert built["verdict"] == "refused" and "already had 1 resource(s)" in built["problems"][0]


def test_receipt_is_written_as_json_and_markdown(tmp_path):
    json_path, md_path = receipt.write(build(), tmp_path, "ec2-20261202T095900Z")
    assert json.loads(json_path.read_text())["verdict"] == "pass"
    text = md_path.read_text()
    assert text.startswith("# kumolab aws-check receipt: ec2 — **PASS**")
    assert (
        "| ec2:instance | i-0abc | kumolab-ec2 | both | yes, 2026-12-02T10:10:00Z – 2026-12-02T10:12:00Z | 2026-12-02T10:15:00Z |"  # noqa: E501
        in text
    )
    assert "nothing left" in text and "stale tagging-API entry" in text and "0.0163 USD/hour (cap 0.25 USD/hour" in text


# -- the glue ----------------------------------------------------------------------------------------------


def test_step_records_times_status_and_the_fatal_line(tmp_path):
    class Proc:
        returncode, stderr = 2, ""
        stdout = 'TASK [x]\nfatal: [localhost]: FAILED! => {"msg": "Cost not confirmed"}\nPLAY RECAP\n'

    record = aws_check.run_step(tmp_path, "deploy", ["ansible-playbook"], runner=lambda *_a, **_k: Proc())
    assert record["rc"] == 2 and not record["ok"] and record["detail"].startswith("fatal: [localhost]: FAILED!")
    (line,) = (tmp_path / "steps.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "deploy" and (tmp_path / "deploy.log").exists()


def test_teardown_record_is_read_from_the_json_callback():
    run = {
        "plays": [
            {
                "tasks": [
                    {
                        "task": {
                            "name": "Check the lab name",
                            "duration": {"start": "2026-12-02T10:09:55.1Z", "end": "2026-12-02T10:09:55.2Z"},
                        },
                        "hosts": {"localhost": {"changed": False}},
                    },
                    {
                        "task": {
                            "name": "Delete everything tagged {'Project': 'kumolab', 'Lab': 'ec2'}",
                            "duration": {"start": "2026-12-02T10:10:00.123456Z", "end": "2026-12-02T10:12:00.5Z"},
                        },
                        "hosts": {
                            "localhost": {
                                "changed": True,
                                "resources": [],
                                "deleted": TEARDOWN["deleted"],
                                "remaining": [],
                            }
                        },
                    },
                ]
            }
        ]
    }
    record = aws_check.teardown_record(json.dumps(run))
    assert record["started_at"] == "2026-12-02T10:10:00Z" and record["ended_at"] == "2026-12-02T10:12:00Z"
    assert record["ok"] and record["deleted"] == TEARDOWN["deleted"]
    assert aws_check.teardown_record("not json")["ok"] is False


def test_receipt_from_a_run_directory(tmp_path):
    (tmp_path / "estimate.json").write_text(json.dumps(ESTIMATE))
    (tmp_path / "steps.jsonl").write_text("\n".join(json.dumps(s) for s in STEPS) + "\n")
    (tmp_path / "before.json").write_text(json.dumps(counted("2026-12-02T09:59:30Z")))
    (tmp_path / "after_deploy.json").write_text(json.dumps(counted("2026-12-02T10:05:05Z", INSTANCE)))
    (tmp_path / "after_teardown.json").write_text(json.dumps(counted("2026-12-02T10:15:00Z")))
    built = aws_check.build_from_run_dir(
        tmp_path, lab="ec2", region=REGION, owner="alice", cap=0.25, started_at="2026-12-02T09:59:00Z"
    )
    assert built["verdict"] == "fail" and built["problems"] == [
        "no teardown record (the teardown's JSON output is missing)"
    ]
    assert built["resources"][0]["deleted_by_teardown"] is False  # no teardown.json: nothing is credited to it


def test_the_playbook_passes_variables_the_lab_playbooks_read():
    plays = yaml.safe_load((REPO / "playbooks/aws_check.yml").read_text())
    text = (REPO / "playbooks/aws_check.yml").read_text()
    defaults = yaml.safe_load((REPO / "roles/cost_estimate/defaults/main.yml").read_text())
    for variable in ("cost_estimate_max_usd_per_hour", "cost_estimate_result_file"):
        assert variable in defaults and f"-e {variable}=" in text
    assert "-e kumolab_expires_in_hours={{ aws_check_expires_in_hours }}" in text
    assert (
        plays[0]["vars"]["aws_check_expires_in_hours"] == 2 and plays[0]["vars"]["aws_check_max_usd_per_hour"] == 0.25
    )
    makefile = (REPO / "Makefile").read_text()
    assert "aws-check:" in makefile and "playbooks/aws_check.yml" in makefile and "-i inventories/aws" in makefile
