"""The reaper handler against the emulator: only expired kumolab resources go, in dependency order.

The handler uses the project's one resource catalogue, ``module_utils/kumolab_resources.py`` (imported here
as a plain module, the way the deployed zip has it next to the handler)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import sys
import threading

import pytest
from cost_safety_support import REGION, REPO, clients, endpoint_env, start_emulator

sys.path.insert(0, str(REPO / "files/lambda/reaper"))
sys.path.insert(0, str(REPO / "module_utils"))
import handler  # noqa: E402
import kumolab_resources as catalogue  # noqa: E402

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PAST = (NOW - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
FUTURE = (NOW + dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def reaper_state(tmp_path_factory):
    return tmp_path_factory.mktemp("reaper-state")


@pytest.fixture(scope="module")
def emulator(reaper_state):
    # Laid out as <state dir>/emulator, so `kumolab-emulator start` in a playbook finds and reuses it.
    emu = start_emulator(reaper_state / "emulator")
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def aws(emulator, monkeypatch):
    for key, value in endpoint_env(emulator.endpoint).items():
        monkeypatch.setenv(key, value)
    return clients(emulator.endpoint)


def tag_list(lab, expires, project="kumolab", owner=None):
    tags = [{"Key": "Project", "Value": project}, {"Key": "Lab", "Value": lab}]
    tags += [{"Key": "Owner", "Value": owner}] if owner else []
    return tags + ([{"Key": "ExpiresAt", "Value": expires}] if expires else [])


def build_lab(aws, lab, expires, project="kumolab", cidr="10.20.0.0/23", owner=None):
    """One of each kind the labs create; returns {kind: id}."""
    tags = tag_list(lab, expires, project, owner)
    spec = lambda kind: [{"ResourceType": kind, "Tags": tags}]  # noqa: E731
    ec2 = aws("ec2")
    ids = {}
    ids["ec2_vpc"] = vpc = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=spec("vpc"))["Vpc"]["VpcId"]
    ids["ec2_subnet"] = subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock=cidr.replace("0/23", "0/24"), TagSpecifications=spec("subnet")
    )["Subnet"]["SubnetId"]
    ids["ec2_internet_gateway"] = igw = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway"))[
        "InternetGateway"
    ]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    ids["ec2_route_table"] = rtb = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec("route-table"))[
        "RouteTable"
    ]["RouteTableId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet)
    ids["ec2_security_group"] = sg = ec2.create_security_group(
        GroupName=f"{lab}-sg", Description="lab", VpcId=vpc, TagSpecifications=spec("security-group")
    )["GroupId"]
    ids["ec2_key_pair"] = ec2.create_key_pair(KeyName=f"{lab}-key", TagSpecifications=spec("key-pair"))["KeyName"]
    ids["ec2_instance"] = ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=subnet,
        SecurityGroupIds=[sg],
        KeyName=f"{lab}-key",
        TagSpecifications=spec("instance"),
    )["Instances"][0]["InstanceId"]
    ids["ec2_launch_template"] = ec2.create_launch_template(
        LaunchTemplateName=f"{lab}-spot",
        LaunchTemplateData={"InstanceMarketOptions": {"MarketType": "spot"}},
        TagSpecifications=spec("launch-template"),
    )["LaunchTemplate"]["LaunchTemplateId"]
    ids["dynamodb_table"] = table = f"{lab}-answers"
    aws("dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        Tags=tags,
    )
    # The reaper may empty and delete only buckets named like the project's (review M3): kumolab-...
    ids["s3_bucket"] = bucket = f"kumolab-{lab}-bucket-test"
    s3 = aws("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    s3.put_object(Bucket=bucket, Key="results/run.json", Body=b"{}")  # a non-empty bucket must still go
    ids["sqs_queue"] = aws("sqs").create_queue(QueueName=f"{lab}-queue", tags={t["Key"]: t["Value"] for t in tags})[
        "QueueUrl"
    ]
    return ids


def idle_stop_alarm(aws, name: str, instance: str, **extra) -> str:
    """An alarm as roles/idle_stop creates it (amazon.aws cannot tag it): found by its name only."""
    aws("cloudwatch").put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/EC2",
        MetricName="CPUUtilization",
        Statistic="Average",
        Period=300,
        EvaluationPeriods=6,
        Threshold=10,
        ComparisonOperator="LessThanThreshold",
        Dimensions=[{"Name": "InstanceId", "Value": instance}],
        **extra,
    )
    return name


def exists(aws, kind, ident):
    ec2 = aws("ec2")
    if kind == "ec2_instance":
        states = [
            i["State"]["Name"]
            for r in ec2.describe_instances(InstanceIds=[ident])["Reservations"]
            for i in r["Instances"]
        ]
        return any(s != "terminated" for s in states)
    lookups = {
        "ec2_vpc": lambda: ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [ident]}])["Vpcs"],
        "ec2_subnet": lambda: ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [ident]}])["Subnets"],
        "ec2_internet_gateway": lambda: ec2.describe_internet_gateways(
            Filters=[{"Name": "internet-gateway-id", "Values": [ident]}]
        )["InternetGateways"],
        "ec2_route_table": lambda: ec2.describe_route_tables(Filters=[{"Name": "route-table-id", "Values": [ident]}])[
            "RouteTables"
        ],
        "ec2_security_group": lambda: ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [ident]}])[
            "SecurityGroups"
        ],
        "ec2_key_pair": lambda: ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [ident]}])["KeyPairs"],
        "dynamodb_table": lambda: [t for t in aws("dynamodb").list_tables()["TableNames"] if t == ident],
        "s3_bucket": lambda: [b for b in aws("s3").list_buckets()["Buckets"] if b["Name"] == ident],
        "ec2_nat_gateway": lambda: [
            g for g in ec2.describe_nat_gateways(NatGatewayIds=[ident])["NatGateways"] if g["State"] != "deleted"
        ],
        "ec2_launch_template": lambda: [
            t for t in ec2.describe_launch_templates()["LaunchTemplates"] if t["LaunchTemplateId"] == ident
        ],
        "ec2_volume": lambda: ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [ident]}])["Volumes"],
        # Not ListQueues: it still lists a deleted queue for a while, as on AWS (docs/fidelity.md).
        "sqs_queue": lambda: _queue_exists(aws("sqs"), ident),
    }
    return bool(lookups[kind]())


def _queue_exists(sqs, url) -> bool:
    try:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    except Exception as exc:  # QueueDoesNotExist / AWS.SimpleQueueService.NonExistentQueue
        if catalogue.error_code(exc) in catalogue.GONE_CODES:
            return False
        raise
    return True


def test_only_expired_resources_go_in_dependency_order_and_second_run_is_noop(aws):
    old = build_lab(aws, "oldlab", PAST, cidr="10.20.0.0/23")
    fresh = build_lab(aws, "newlab", FUTURE, cidr="10.30.0.0/23")
    no_expiry = build_lab(aws, "noexp", None, cidr="10.40.0.0/23")
    foreign = build_lab(aws, "other", PAST, project="someoneelse", cidr="10.50.0.0/23")

    report = handler.lambda_handler({}, None)

    assert report["ok"], report["failed"]
    deleted = [(r["kind"], r["id"]) for r in report["deleted"]]
    assert sorted(deleted) == sorted(old.items())
    kinds = [kind for kind, _ in deleted]
    positions = [catalogue.KIND_NAMES.index(k) for k in kinds]
    assert positions == sorted(positions), kinds
    assert (
        kinds.index("ec2_instance")
        < kinds.index("ec2_security_group")
        < kinds.index("ec2_subnet")
        < kinds.index("ec2_vpc")
    )
    for kind, ident in old.items():
        assert not exists(aws, kind, ident), f"expired {kind} {ident} survived"
    for survivors in (fresh, no_expiry, foreign):
        for kind, ident in survivors.items():
            assert exists(aws, kind, ident), f"{kind} {ident} was deleted though not expired/not kumolab"

    again = handler.lambda_handler({}, None)
    assert again["ok"] and again["selected"] == [] and again["deleted"] == []

    # Clean up what this test left (the un-expired labs) through the same catalogue, by lab, as teardown does.
    for lab in ("newlab", "noexp"):
        outcomes = catalogue.delete_all(aws, catalogue.find(aws, {"Project": "kumolab", "Lab": lab}))
        assert [o.message() for o in outcomes if o.status != "deleted"] == [] and len(outcomes) == len(fresh)


def test_dry_run_reports_and_deletes_nothing(aws):
    lab = build_lab(aws, "drylab", PAST, cidr="10.60.0.0/23")
    report = handler.lambda_handler({"dry_run": True}, None)
    assert report["dry_run"] is True
    assert sorted((r["kind"], r["id"]) for r in report["selected"]) == sorted(lab.items())
    assert report["deleted"] == []
    assert all(exists(aws, kind, ident) for kind, ident in lab.items())
    # The environment switch works the same way.
    from_env = handler.lambda_handler(
        {}, None, environ=dict(endpoint_env(""), AWS_REGION=REGION, KUMOLAB_REAPER_DRY_RUN="true")
    )
    assert from_env["dry_run"] is True and from_env["deleted"] == []
    assert handler.lambda_handler({}, None)["deleted"]  # now really


def with_test_switch():
    """The environment with the reaper's documented test switch on (event `now`/`project` are honoured)."""
    import os

    return dict(os.environ, KUMOLAB_REAPER_ALLOW_EVENT_OVERRIDES="true")


def test_event_now_decides_what_is_expired_with_the_test_switch(aws):
    lab = build_lab(aws, "laterlab", FUTURE, cidr="10.70.0.0/23")
    assert handler.lambda_handler({"dry_run": True}, None)["selected"] == []
    later = (NOW + dt.timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = handler.lambda_handler({"now": later}, None, environ=with_test_switch())
    assert report["ignored"] == []
    assert sorted((r["kind"], r["id"]) for r in report["deleted"]) == sorted(lab.items())


def test_security_m1_an_invoke_event_cannot_override_now_or_project(aws):
    """Review M1: without the test switch, `now` and `project` from the event are ignored (and reported), so
    whoever can invoke the function cannot reap every lab early or reach another project's resources."""
    lab = build_lab(aws, "earlylab", FUTURE, cidr="10.71.0.0/23")
    foreign = build_lab(aws, "theirlab", PAST, project="someoneelse", cidr="10.72.0.0/23")
    try:
        report = handler.lambda_handler({"now": "2100-01-01T00:00:00Z", "project": "someoneelse"}, None)
        assert report["ignored"] == ["now", "project"]
        assert report["now"] != "2100-01-01T00:00:00Z"
        assert report["deleted"] == [] and report["selected"] == []
        assert all(exists(aws, kind, ident) for kind, ident in {**lab, **foreign}.items())
        # The scheduled reaper's own environment (what playbooks/reaper.yml sets) leaves the switch off.
        off = handler.lambda_handler(
            {"now": "2100-01-01T00:00:00Z"},
            None,
            environ=dict(with_test_switch(), KUMOLAB_REAPER_ALLOW_EVENT_OVERRIDES="false"),
        )
        assert off["ignored"] == ["now"] and off["deleted"] == []
    finally:
        later = (NOW + dt.timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
        handler.lambda_handler({"now": later}, None, environ=with_test_switch())
        handler.lambda_handler({"project": "someoneelse"}, None, environ=with_test_switch())


def test_an_owners_reaper_reaps_only_that_owners_expired_resources(aws):
    """The reaper playbooks/reaper.yml deploys is the caller's (KUMOLAB_REAPER_OWNER): it deletes their expired
    resources and expired ones with no Owner tag, never another owner's, whatever the event asks."""
    import os

    alice = build_lab(aws, "alicelab", PAST, cidr="10.73.0.0/23", owner="alice")
    bob = build_lab(aws, "boblab", PAST, cidr="10.74.0.0/23", owner="bob")
    environ = dict(os.environ, KUMOLAB_REAPER_OWNER="alice")
    try:
        report = handler.lambda_handler({"owner": "bob"}, None, environ=environ)
        assert report["ok"] and report["owner"] == "alice", report
        assert sorted((r["kind"], r["id"]) for r in report["deleted"]) == sorted(alice.items())
        assert all(exists(aws, kind, ident) for kind, ident in bob.items())
    finally:
        handler.lambda_handler({}, None, environ=dict(os.environ, KUMOLAB_REAPER_OWNER="bob"))
    assert not any(exists(aws, kind, ident) for kind, ident in bob.items())


def test_bad_event_is_a_clear_error_not_a_crash(aws):
    result = handler.lambda_handler({"now": "yesterday"}, None, environ=with_test_switch())
    assert result == {"ok": False, "error": "event.now='yesterday' is not an ISO-8601 time"}


def test_deletions_are_posted_to_the_webhook_from_ssm(aws):
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        aws("ssm").put_parameter(
            Name="/kumolab/notify/webhook",
            Type="SecureString",
            Value=f"http://127.0.0.1:{server.server_port}/hook",
            Overwrite=True,
        )
        lab = build_lab(aws, "hooklab", PAST, cidr="10.80.0.0/23")
        import os

        env = dict(os.environ, KUMOLAB_NOTIFY_SSM_PARAMETER="/kumolab/notify/webhook")
        report = handler.lambda_handler({}, None, environ=env)
        assert report["notification"] == "sent (200)"
        assert len(received) == 1
        text = received[0]["text"]
        assert f"deleted {len(lab)} expired resource(s)" in text and "ec2_vpc" in text and "hooklab" in text
    finally:
        server.shutdown()


def test_alarm_of_a_vanished_instance_is_reaped_and_a_live_ones_alarm_stays(aws):
    ec2, cloudwatch = aws("ec2"), aws("cloudwatch")
    gone, live = [
        ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        for _ in range(2)
    ]
    ec2.terminate_instances(InstanceIds=[gone])
    for instance in (gone, live):
        idle_stop_alarm(
            aws,
            f"kumolab-gpu-idle-stop-{instance}",
            instance,
            AlarmActions=["arn:aws:automate:ap-northeast-1:ec2:stop"],
        )
    report = handler.lambda_handler({}, None)
    assert [(r["kind"], r["id"], r["lab"]) for r in report["deleted"]] == [
        ("cloudwatch_alarm", f"kumolab-gpu-idle-stop-{gone}", "gpu")
    ]
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix="kumolab-")["MetricAlarms"]] == [
        f"kumolab-gpu-idle-stop-{live}"
    ]
    cloudwatch.delete_alarms(AlarmNames=[f"kumolab-gpu-idle-stop-{live}"])
    ec2.terminate_instances(InstanceIds=[live])

    # An expired lab's instance takes its idle-stop alarm with it in the same run.
    lab = build_lab(aws, "alarmlab", PAST, cidr="10.91.0.0/23")
    alarm = idle_stop_alarm(aws, f"kumolab-alarmlab-idle-stop-{lab['ec2_instance']}", lab["ec2_instance"])
    report = handler.lambda_handler({}, None)
    kinds = [(r["kind"], r["id"]) for r in report["deleted"]]
    assert kinds[0] == ("cloudwatch_alarm", alarm) and sorted(kinds[1:]) == sorted(lab.items())
    assert cloudwatch.describe_alarms(AlarmNamePrefix="kumolab-")["MetricAlarms"] == []


def test_playbook_deploys_least_privilege_reaper_and_deployed_code_reaps_via_local_runtime(
    emulator, aws, reaper_state, monkeypatch
):
    import os
    import subprocess

    from cost_safety_support import VENV_BIN, load_library_module, profile_env

    from kumolab.local.runtime.aws import AwsConfig
    from kumolab.local.runtime.lambda_invoke import LambdaRuntime

    # This module's own emulator, through its own profile file (the playbook's `kumolab-emulator start` rewrites it).
    env = dict(
        profile_env(emulator, reaper_state),
        KUMOLAB_STATE_DIR=str(reaper_state),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    only_emulator = json.dumps(
        {"lab_target_start_commands": [f"{VENV_BIN}/kumolab-emulator start --json"], "reaper_schedule": "rate(2 hours)"}
    )
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "playbooks/reaper.yml",
            "-i",
            "inventories/local/hosts.yml",
            "-e",
            only_emulator,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # (A second run reports changed=0; checked by hand, left out of the suite for time.)

    from kumolab.labs import default_owner
    from kumolab.labs import lab as registry_lab

    reaper = registry_lab("reaper").prefix()  # the caller's own reaper, kumolab-reaper-<owner>
    conf = aws("lambda").get_function_configuration(FunctionName=reaper)
    assert conf["Handler"] == "handler.lambda_handler" and conf["Environment"]["Variables"] == {
        "KUMOLAB_PROJECT": "kumolab",
        "KUMOLAB_REAPER_DRY_RUN": "false",
        "KUMOLAB_REAPER_OWNER": default_owner(),
        "KUMOLAB_NOTIFY_SSM_PARAMETER": "",
    }
    rule = aws("events").describe_rule(Name=f"{reaper}-schedule")
    assert rule["ScheduleExpression"] == "rate(2 hours)"
    assert [t["Arn"] for t in aws("events").list_targets_by_rule(Rule=f"{reaper}-schedule")["Targets"]] == [
        conf["FunctionArn"]
    ]
    policy = json.loads(aws("lambda").get_policy(FunctionName=reaper)["Policy"])
    assert [s["Principal"] for s in policy["Statement"]] == [{"Service": "events.amazonaws.com"}]
    role_name = f"{reaper}-{REGION}"  # one role per region (review M1)
    role_policy = aws("iam").get_role_policy(RoleName=role_name, PolicyName="least-privilege")["PolicyDocument"]
    assert load_library_module("kumolab_audit").policy_problems(role_policy) == []  # passes our own IAM audit rule
    from support.iam_lint import lint

    assert lint(role_policy) == []  # and parliament's check of actions, resources and condition keys (M2)
    role_tags = {t["Key"]: t["Value"] for t in aws("iam").list_role_tags(RoleName=role_name)["Tags"]}
    assert role_tags["Lab"] == "reaper" and "ExpiresAt" not in role_tags  # never reaps itself

    # Security M1: a second region's reaper gets its own role; the first region's policy is left as it was.
    second = "us-west-2"
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "playbooks/reaper.yml",
            "-i",
            "inventories/local/hosts.yml",
            "-e",
            only_emulator,
        ],
        cwd=REPO,
        env=dict(env, KUMOLAB_AWS_REGION=second),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    roles = sorted(
        r["RoleName"] for r in aws("iam").list_roles()["Roles"] if r["RoleName"].startswith("kumolab-reaper")
    )
    assert roles == [role_name, f"{reaper}-{second}"]
    assert aws("iam").get_role_policy(RoleName=role_name, PolicyName="least-privilege")["PolicyDocument"] == role_policy
    second_policy = json.dumps(
        aws("iam").get_role_policy(RoleName=f"{reaper}-{second}", PolicyName="least-privilege")["PolicyDocument"]
    )
    assert f":{second}:" in second_policy and f":{REGION}:" not in second_policy
    assert REGION != second and f":{second}:" not in json.dumps(role_policy)

    lab = build_lab(aws, "deployedlab", PAST, cidr="10.90.0.0/23")
    # Another owner's expired lab: this owner's reaper leaves it (it has its own reaper, or an all-owners one).
    others = build_lab(aws, "otherslab", PAST, cidr="10.91.0.0/23", owner="someone-else")
    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(reaper_state))
    monkeypatch.setenv("AWS_CONFIG_FILE", env["AWS_CONFIG_FILE"])
    runtime = LambdaRuntime(AwsConfig.from_environment(region=REGION))
    try:
        dry = runtime.invoke(reaper, {"dry_run": True})
        assert dry.function_error is None, dry.payload
        assert sorted((r["kind"], r["id"]) for r in dry.json()["selected"]) == sorted(lab.items())
        result = runtime.invoke(reaper, {})
        assert result.function_error is None, result.payload
        report = result.json()
    finally:
        runtime.shutdown()
    assert sorted((r["kind"], r["id"]) for r in report["deleted"]) == sorted(lab.items())
    assert all(exists(aws, kind, ident) for kind, ident in others.items())
    assert aws("lambda").get_function_configuration(FunctionName=reaper)["FunctionName"] == reaper
    outcomes = catalogue.delete_all(
        aws, catalogue.find(aws, {"Project": "kumolab", "Lab": "otherslab", "Owner": "someone-else"})
    )
    assert [o.message() for o in outcomes if o.status != "deleted"] == [] and len(outcomes) == len(others)

    # A teardown of every lab (what playbooks/teardown.yml does without -e lab) keeps the reaper.
    from cost_safety_support import aws_args, run_module

    keep = build_lab(aws, "keeplab", FUTURE, cidr="10.93.0.0/23")
    args = dict(aws_args(emulator.endpoint), tags={"Project": "kumolab"}, exclude_labs=["reaper"])
    result = run_module("kumolab_teardown", args)
    assert not result.get("failed"), result.get("msg")
    assert sorted((r["kind"], r["id"]) for r in result["deleted"]) == sorted(keep.items())
    assert result["remaining"] == []
    assert aws("lambda").get_function_configuration(FunctionName=reaper)["FunctionName"] == reaper
    assert aws("events").describe_rule(Name=f"{reaper}-schedule")["Name"] == f"{reaper}-schedule"
    assert role_name in [r["RoleName"] for r in aws("iam").list_roles()["Roles"]]
    # Asking for the reaper by name and excluding it at once is a contradiction, not a silent no-op.
    both = run_module(
        "kumolab_teardown",
        dict(aws_args(emulator.endpoint), tags={"Project": "kumolab", "Lab": "reaper"}, exclude_labs=["reaper"]),
    )
    assert both.get("failed") and "exclude_labs excludes it" in both["msg"]


@pytest.mark.parametrize(
    "arn, expected",
    [
        ("arn:aws:ec2:ap-northeast-1:123456789012:vpc/vpc-0abc", "ec2:vpc"),
        ("arn:aws:ec2:ap-northeast-1:123456789012:natgateway/nat-0abc", "ec2:natgateway"),
        ("arn:aws:ec2:ap-northeast-1:123456789012:volume/vol-0abc", "ec2:volume"),
        ("arn:aws:ec2:ap-northeast-1:123456789012:key-pair/key-0abc", "ec2:key-pair"),
        ("arn:aws:s3:::kumolab-site", "s3:"),
        ("arn:aws:sqs:ap-northeast-1:123456789012:qa-queue", "sqs:"),
        ("arn:aws:dynamodb:ap-northeast-1:123456789012:table/answers", "dynamodb:table"),
        ("arn:aws:lambda:ap-northeast-1:123456789012:function:sushi", "lambda:function"),
        ("arn:aws:logs:ap-northeast-1:123456789012:log-group:/aws/lambda/sushi:*", "logs:log-group"),
        ("arn:aws:iam::123456789012:role/service-role/kumolab-task", "iam:role"),
        ("arn:aws:ecs:ap-northeast-1:123456789012:service/qa/worker", "ecs:service"),
        ("arn:aws:ecs:ap-northeast-1:123456789012:cluster/qa", "ecs:cluster"),
        ("arn:aws:events:ap-northeast-1:123456789012:rule/kumolab-x", "events:rule"),
        ("arn:aws:cloudwatch:ap-northeast-1:123456789012:alarm:kumolab-gpu-idle-stop-i-1", "cloudwatch:alarm"),
        ("arn:aws:apigateway:ap-northeast-1::/restapis/a1b2c3", "apigateway:restapis"),
    ],
)
def test_arns_of_every_kind_kumolab_creates_are_covered_by_the_catalogue(arn, expected):
    assert catalogue.arn_type(arn) == expected
    assert any(
        expected == covered or (covered.endswith(":") and expected.startswith(covered))
        for covered in catalogue.COVERED_ARN_TYPES
    )


def test_an_arn_of_a_kind_nobody_deletes_is_not_covered():
    kind = catalogue.arn_type("arn:aws:ec2:ap-northeast-1:123456789012:elastic-ip/eipalloc-0abc")
    assert kind == "ec2:elastic-ip" and kind not in catalogue.COVERED_ARN_TYPES


def test_expiry_parsing_is_strict_about_what_counts_as_expired():
    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    assert catalogue.expired({"ExpiresAt": "2026-11-23T11:59:59Z"}, now)
    assert catalogue.expired({"ExpiresAt": "2026-11-23T12:00:00Z"}, now)  # at the moment itself: expired
    assert catalogue.expired({"ExpiresAt": "2026-11-23T20:59:59+09:00"}, now)  # 11:59:59 UTC
    assert not catalogue.expired({"ExpiresAt": "2026-11-23T12:00:01Z"}, now)
    assert not catalogue.expired({"ExpiresAt": "soon"}, now) and not catalogue.expired({}, now)


def test_select_expired_takes_idle_stop_alarms_with_their_instance_or_when_it_is_gone():
    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    old = {"Project": "kumolab", "Lab": "gpu", "ExpiresAt": "2026-11-23T11:00:00Z"}
    new = dict(old, ExpiresAt="2026-11-23T13:00:00Z")
    instance_old = catalogue.Resource("ec2_instance", "i-old", tags=old)
    instance_new = catalogue.Resource("ec2_instance", "i-new", tags=new)
    alarm = lambda iid, alive: catalogue.Resource(  # noqa: E731
        "cloudwatch_alarm",
        f"kumolab-gpu-idle-stop-{iid}",  # noqa: E731
        extra={"idle_stop_instances": [iid], "instances_alive": alive},
        tags={"Project": "kumolab", "Lab": "gpu"},
    )
    chosen = catalogue.select_expired(
        [instance_new, alarm("i-new", True), instance_old, alarm("i-old", True), alarm("i-gone", False)], now
    )
    assert [(r.kind, r.id) for r in chosen] == [
        ("cloudwatch_alarm", "kumolab-gpu-idle-stop-i-gone"),
        ("cloudwatch_alarm", "kumolab-gpu-idle-stop-i-old"),
        ("ec2_instance", "i-old"),
    ]


def test_nat_gateway_and_orphan_volume_are_reaped_before_the_subnet(aws):
    lab = build_lab(aws, "natlab", PAST, cidr="10.92.0.0/23")
    ec2 = aws("ec2")
    tags = tag_list("natlab", PAST)
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    lab["ec2_nat_gateway"] = ec2.create_nat_gateway(
        SubnetId=lab["ec2_subnet"],
        AllocationId=allocation,
        TagSpecifications=[{"ResourceType": "natgateway", "Tags": tags}],
    )["NatGateway"]["NatGatewayId"]
    lab["ec2_volume"] = ec2.create_volume(
        AvailabilityZone=f"{REGION}a",
        Size=8,
        VolumeType="gp3",
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
    )["VolumeId"]
    try:
        report = handler.lambda_handler({}, None)
        assert report["ok"], report["failed"]
        kinds = [r["kind"] for r in report["deleted"]]
        assert sorted((r["kind"], r["id"]) for r in report["deleted"]) == sorted(lab.items())
        assert kinds.index("ec2_instance") < kinds.index("ec2_nat_gateway") < kinds.index("ec2_subnet")
        assert kinds.index("ec2_instance") < kinds.index("ec2_volume")
        for kind, ident in lab.items():
            assert not exists(aws, kind, ident), f"expired {kind} {ident} survived"
    finally:
        ec2.release_address(AllocationId=allocation)


def test_teardown_side_finds_a_labs_idle_stop_alarm_by_name_even_after_its_instance_is_gone(aws):
    ec2, cloudwatch = aws("ec2"), aws("cloudwatch")
    instance = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.terminate_instances(InstanceIds=[instance])
    names = [f"kumolab-gpu-idle-stop-{instance}", f"kumolab-ec2-idle-stop-{instance}"]
    for name in names:
        idle_stop_alarm(aws, name, instance)
    try:
        gpu = catalogue.find(
            aws, {"Project": "kumolab", "Lab": "gpu"}, [k for k in catalogue.KINDS if k.name == "cloudwatch_alarm"]
        )
        assert [(r.kind, r.id, r.lab) for r in gpu] == [("cloudwatch_alarm", names[0], "gpu")]
        # A name says nothing about other tags: asked for an Owner too, the catalogue does not guess.
        assert catalogue.find(aws, {"Project": "kumolab", "Lab": "gpu", "Owner": "x"}, [catalogue.KINDS[0]]) == []
        everything = catalogue.find(aws, {"Project": "kumolab"}, [catalogue.KINDS[0]], exclude_labs=["ec2"])
        assert [r.id for r in everything] == [names[0]]
        assert [r.kind for r in catalogue.delete(aws, gpu)] == ["cloudwatch_alarm"]
        assert [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix="kumolab-")["MetricAlarms"]] == [
            names[1]
        ]
    finally:
        cloudwatch.delete_alarms(AlarmNames=names)


def test_a_teardown_for_one_owner_leaves_another_owners_resources(aws, emulator):
    """Two owners' copies of one lab in one account (class mode's students, two colleagues): Owner=alice takes
    alice's resources, the lab's owner-less ones and the idle-stop alarm of alice's instance (found by name, its
    owner by the instance it watches), and nothing of bob's."""
    from cost_safety_support import aws_args, run_module

    alice = build_lab(aws, "ownerlab", FUTURE, cidr="10.94.0.0/23", owner="alice")
    ec2 = aws("ec2")
    bob_tags = [{"ResourceType": kind, "Tags": tag_list("ownerlab", FUTURE, owner="bob")} for kind in ("key-pair",)]
    bob = {"ec2_key_pair": ec2.create_key_pair(KeyName="ownerlab-bob", TagSpecifications=bob_tags)["KeyName"]}
    bob["ec2_instance"] = ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list("ownerlab", FUTURE, owner="bob")}],
    )["Instances"][0]["InstanceId"]
    bob["dynamodb_table"] = "ownerlab-bob-answers"
    aws("dynamodb").create_table(
        TableName=bob["dynamodb_table"],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        Tags=tag_list("ownerlab", FUTURE, owner="bob"),
    )
    bob["cloudwatch_alarm"] = idle_stop_alarm(
        aws, f"kumolab-ownerlab-idle-stop-{bob['ec2_instance']}", bob["ec2_instance"]
    )
    alice["cloudwatch_alarm"] = idle_stop_alarm(
        aws, f"kumolab-ownerlab-idle-stop-{alice['ec2_instance']}", alice["ec2_instance"]
    )
    nobody = {
        "ec2_key_pair": ec2.create_key_pair(
            KeyName="ownerlab-untagged-owner",
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list("ownerlab", FUTURE)}],
        )["KeyName"]
    }

    def teardown(owner):
        tags = {"Project": "kumolab", "Lab": "ownerlab", "Owner": owner}
        return run_module("kumolab_teardown", dict(aws_args(emulator.endpoint), tags=tags))

    result = teardown("alice")
    assert not result.get("failed"), result.get("msg")
    assert sorted((r["kind"], r["id"]) for r in result["deleted"]) == sorted([*alice.items(), *nobody.items()])
    assert result["remaining"] == []
    for kind, ident in bob.items():
        if kind != "cloudwatch_alarm":
            assert exists(aws, kind, ident), f"bob's {kind} {ident} went with alice's teardown"
    assert [
        a["AlarmName"] for a in aws("cloudwatch").describe_alarms(AlarmNamePrefix="kumolab-ownerlab")["MetricAlarms"]
    ] == [bob["cloudwatch_alarm"]]

    result = teardown("bob")
    assert not result.get("failed"), result.get("msg")
    assert sorted((r["kind"], r["id"]) for r in result["deleted"]) == sorted(bob.items())
