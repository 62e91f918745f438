"""The reaper handler against the emulator: only expired kumolab resources go, in dependency order."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import sys
import threading

import pytest

from cost_safety_support import REGION, REPO, clients, endpoint_env, session, start_emulator

sys.path.insert(0, str(REPO / "files/lambda/reaper"))
import handler  # noqa: E402
import kumolab_sweep  # noqa: E402

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
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


def tag_list(lab, expires, project="kumolab"):
    tags = [{"Key": "Project", "Value": project}, {"Key": "Lab", "Value": lab}]
    return tags + ([{"Key": "ExpiresAt", "Value": expires}] if expires else [])


def build_lab(aws, lab, expires, project="kumolab", cidr="10.20.0.0/23"):
    """One of each kind the labs create; returns {kind: id}."""
    tags = tag_list(lab, expires, project)
    spec = lambda kind: [{"ResourceType": kind, "Tags": tags}]  # noqa: E731
    ec2 = aws("ec2")
    ids = {}
    ids["ec2:vpc"] = vpc = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=spec("vpc"))["Vpc"]["VpcId"]
    ids["ec2:subnet"] = subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("0/23", "0/24"), TagSpecifications=spec("subnet"))["Subnet"]["SubnetId"]
    ids["ec2:internet-gateway"] = igw = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway"))["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    ids["ec2:route-table"] = rtb = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec("route-table"))["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet)
    ids["ec2:security-group"] = sg = ec2.create_security_group(GroupName=f"{lab}-sg", Description="lab", VpcId=vpc, TagSpecifications=spec("security-group"))["GroupId"]
    ids["ec2:key-pair"] = ec2.create_key_pair(KeyName=f"{lab}-key", TagSpecifications=spec("key-pair"))["KeyName"]
    ids["ec2:instance"] = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet,
                                            SecurityGroupIds=[sg], KeyName=f"{lab}-key", TagSpecifications=spec("instance"))["Instances"][0]["InstanceId"]
    ids["dynamodb:table"] = table = f"{lab}-answers"
    aws("dynamodb").create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                                 AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST", Tags=tags)
    ids["s3:bucket"] = bucket = f"{lab}-bucket-kumolab-test"
    s3 = aws("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    s3.put_object(Bucket=bucket, Key="results/run.json", Body=b"{}")  # a non-empty bucket must still go
    ids["sqs:queue"] = queue = f"{lab}-queue"
    aws("sqs").create_queue(QueueName=queue, tags={t["Key"]: t["Value"] for t in tags})
    return ids


def exists(aws, kind, ident):
    ec2 = aws("ec2")
    if kind == "ec2:instance":
        states = [i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=[ident])["Reservations"] for i in r["Instances"]]
        return any(s != "terminated" for s in states)
    lookups = {
        "ec2:vpc": lambda: ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [ident]}])["Vpcs"],
        "ec2:subnet": lambda: ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [ident]}])["Subnets"],
        "ec2:internet-gateway": lambda: ec2.describe_internet_gateways(Filters=[{"Name": "internet-gateway-id", "Values": [ident]}])["InternetGateways"],
        "ec2:route-table": lambda: ec2.describe_route_tables(Filters=[{"Name": "route-table-id", "Values": [ident]}])["RouteTables"],
        "ec2:security-group": lambda: ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [ident]}])["SecurityGroups"],
        "ec2:key-pair": lambda: ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [ident]}])["KeyPairs"],
        "dynamodb:table": lambda: [t for t in aws("dynamodb").list_tables()["TableNames"] if t == ident],
        "s3:bucket": lambda: [b for b in aws("s3").list_buckets()["Buckets"] if b["Name"] == ident],
        "sqs:queue": lambda: [u for u in aws("sqs").list_queues().get("QueueUrls", []) if u.endswith("/" + ident)],
    }
    return bool(lookups[kind]())


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
    positions = [kumolab_sweep.DELETE_ORDER.index(k) for k in kinds]
    assert positions == sorted(positions), kinds
    assert kinds.index("ec2:instance") < kinds.index("ec2:security-group") < kinds.index("ec2:subnet") < kinds.index("ec2:vpc")
    for kind, ident in old.items():
        assert not exists(aws, kind, ident), f"expired {kind} {ident} survived"
    for survivors in (fresh, no_expiry, foreign):
        for kind, ident in survivors.items():
            assert exists(aws, kind, ident), f"{kind} {ident} was deleted though not expired/not kumolab"

    again = handler.lambda_handler({}, None)
    assert again["ok"] and again["selected"] == [] and again["deleted"] == []

    # Clean up what this test left (the un-expired labs) through the same module, by lab.
    for lab in ("newlab", "noexp"):
        result = kumolab_sweep.sweep(session(), REGION, kumolab_sweep.select_lab(lab), lab=lab)
        assert result["failed"] == [] and len(result["deleted"]) == len(fresh)


def test_dry_run_reports_and_deletes_nothing(aws):
    lab = build_lab(aws, "drylab", PAST, cidr="10.60.0.0/23")
    report = handler.lambda_handler({"dry_run": True}, None)
    assert report["dry_run"] is True
    assert sorted((r["kind"], r["id"]) for r in report["selected"]) == sorted(lab.items())
    assert report["deleted"] == []
    assert all(exists(aws, kind, ident) for kind, ident in lab.items())
    # The environment switch works the same way.
    from_env = handler.lambda_handler({}, None, environ=dict(endpoint_env(""), AWS_REGION=REGION, KUMOLAB_REAPER_DRY_RUN="true"))
    assert from_env["dry_run"] is True and from_env["deleted"] == []
    assert handler.lambda_handler({}, None)["deleted"]  # now really


def test_event_now_decides_what_is_expired(aws):
    lab = build_lab(aws, "laterlab", FUTURE, cidr="10.70.0.0/23")
    assert handler.lambda_handler({"dry_run": True}, None)["selected"] == []
    later = (NOW + dt.timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = handler.lambda_handler({"now": later}, None)
    assert sorted((r["kind"], r["id"]) for r in report["deleted"]) == sorted(lab.items())


def test_bad_event_is_a_clear_error_not_a_crash(aws):
    result = handler.lambda_handler({"now": "yesterday"}, None)
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
        aws("ssm").put_parameter(Name="/kumolab/notify/webhook", Type="SecureString", Value=f"http://127.0.0.1:{server.server_port}/hook", Overwrite=True)
        build_lab(aws, "hooklab", PAST, cidr="10.80.0.0/23")
        import os
        env = dict(os.environ, KUMOLAB_NOTIFY_SSM_PARAMETER="/kumolab/notify/webhook")
        report = handler.lambda_handler({}, None, environ=env)
        assert report["notification"] == "sent (200)"
        assert len(received) == 1
        text = received[0]["text"]
        assert "deleted 10 expired resource(s)" in text and "ec2:vpc" in text and "hooklab" in text
    finally:
        server.shutdown()


def test_alarm_of_a_vanished_instance_is_reaped_and_a_live_ones_alarm_stays(aws):
    ec2, cloudwatch = aws("ec2"), aws("cloudwatch")
    gone, live = [ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"] for _ in range(2)]
    ec2.terminate_instances(InstanceIds=[gone])
    for instance in (gone, live):
        cloudwatch.put_metric_alarm(AlarmName=f"kumolab-gpu-idle-stop-{instance}", Namespace="AWS/EC2", MetricName="CPUUtilization",
                                    Statistic="Average", Period=300, EvaluationPeriods=6, Threshold=10, ComparisonOperator="LessThanThreshold",
                                    Dimensions=[{"Name": "InstanceId", "Value": instance}], AlarmActions=["arn:aws:automate:ap-northeast-1:ec2:stop"])
    report = handler.lambda_handler({}, None)
    assert [(r["kind"], r["id"], r["lab"]) for r in report["deleted"]] == [("cloudwatch:alarm", f"kumolab-gpu-idle-stop-{gone}", "gpu")]
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix="kumolab-")["MetricAlarms"]] == [f"kumolab-gpu-idle-stop-{live}"]
    cloudwatch.delete_alarms(AlarmNames=[f"kumolab-gpu-idle-stop-{live}"])
    ec2.terminate_instances(InstanceIds=[live])

    # An expired lab's instance takes its idle-stop alarm with it in the same run.
    lab = build_lab(aws, "alarmlab", PAST, cidr="10.91.0.0/23")
    alarm = f"kumolab-alarmlab-idle-stop-{lab['ec2:instance']}"
    cloudwatch.put_metric_alarm(AlarmName=alarm, Namespace="AWS/EC2", MetricName="CPUUtilization", Statistic="Average", Period=300,
                                EvaluationPeriods=6, Threshold=10, ComparisonOperator="LessThanThreshold",
                                Dimensions=[{"Name": "InstanceId", "Value": lab["ec2:instance"]}])
    report = handler.lambda_handler({}, None)
    kinds = [(r["kind"], r["id"]) for r in report["deleted"]]
    assert kinds[0] == ("cloudwatch:alarm", alarm) and sorted(kinds[1:]) == sorted(lab.items())
    assert cloudwatch.describe_alarms(AlarmNamePrefix="kumolab-")["MetricAlarms"] == []


def test_playbook_deploys_least_privilege_reaper_and_deployed_code_reaps_via_local_runtime(emulator, aws, reaper_state, monkeypatch):
    import os
    import subprocess

    from cost_safety_support import VENV_BIN, load_library_module
    from kumolab.runtime.aws import AwsConfig
    from kumolab.runtime.lambda_invoke import LambdaRuntime

    env = dict(os.environ, KUMOLAB_STATE_DIR=str(reaper_state), KUMOLAB_EMULATOR_PORT=str(emulator.port), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    only_emulator = json.dumps({"lab_target_start_commands": [f"{VENV_BIN}/kumolab-emulator start --json"], "reaper_schedule": "rate(2 hours)"})
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "playbooks/reaper.yml", "-i", "inventories/local/hosts.yml", "-e", only_emulator],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # (A second run reports changed=0; checked by hand, left out of the suite for time.)

    conf = aws("lambda").get_function_configuration(FunctionName="kumolab-reaper")
    assert conf["Handler"] == "handler.lambda_handler" and conf["Environment"]["Variables"]["KUMOLAB_REAPER_DRY_RUN"] == "false"
    rule = aws("events").describe_rule(Name="kumolab-reaper-schedule")
    assert rule["ScheduleExpression"] == "rate(2 hours)"
    assert [t["Arn"] for t in aws("events").list_targets_by_rule(Rule="kumolab-reaper-schedule")["Targets"]] == [conf["FunctionArn"]]
    policy = json.loads(aws("lambda").get_policy(FunctionName="kumolab-reaper")["Policy"])
    assert [s["Principal"] for s in policy["Statement"]] == [{"Service": "events.amazonaws.com"}]
    role_policy = aws("iam").get_role_policy(RoleName="kumolab-reaper", PolicyName="least-privilege")["PolicyDocument"]
    assert load_library_module("kumolab_audit").policy_problems(role_policy) == []  # passes our own IAM audit rule
    role_tags = {t["Key"]: t["Value"] for t in aws("iam").list_role_tags(RoleName="kumolab-reaper")["Tags"]}
    assert role_tags["Lab"] == "reaper" and "ExpiresAt" not in role_tags  # never reaps itself

    lab = build_lab(aws, "deployedlab", PAST, cidr="10.90.0.0/23")
    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(reaper_state))
    runtime = LambdaRuntime(AwsConfig(endpoint_url=emulator.endpoint, region=REGION))
    try:
        dry = runtime.invoke("kumolab-reaper", {"dry_run": True})
        assert dry.function_error is None, dry.payload
        assert sorted((r["kind"], r["id"]) for r in dry.json()["selected"]) == sorted(lab.items())
        result = runtime.invoke("kumolab-reaper", {})
        assert result.function_error is None, result.payload
        report = result.json()
    finally:
        runtime.shutdown()
    assert sorted((r["kind"], r["id"]) for r in report["deleted"]) == sorted(lab.items())
    assert aws("lambda").get_function_configuration(FunctionName="kumolab-reaper")["FunctionName"] == "kumolab-reaper"


@pytest.mark.parametrize("arn, expected", [
    ("arn:aws:ec2:ap-northeast-1:123456789012:vpc/vpc-0abc", ("ec2:vpc", "vpc-0abc")),
    ("arn:aws:s3:::kumolab-site", ("s3:bucket", "kumolab-site")),
    ("arn:aws:sqs:ap-northeast-1:123456789012:qa-queue", ("sqs:queue", "qa-queue")),
    ("arn:aws:dynamodb:ap-northeast-1:123456789012:table/answers", ("dynamodb:table", "answers")),
    ("arn:aws:lambda:ap-northeast-1:123456789012:function:sushi", ("lambda:function", "sushi")),
    ("arn:aws:logs:ap-northeast-1:123456789012:log-group:/aws/lambda/sushi:*", ("logs:log-group", "/aws/lambda/sushi")),
    ("arn:aws:iam::123456789012:role/service-role/kumolab-task", ("iam:role", "kumolab-task")),
    ("arn:aws:ecs:ap-northeast-1:123456789012:service/qa/worker", ("ecs:service", "qa/worker")),
    ("arn:aws:ecs:ap-northeast-1:123456789012:cluster/qa", ("ecs:cluster", "qa")),
    ("arn:aws:events:ap-northeast-1:123456789012:rule/kumolab-x", ("events:rule", "kumolab-x")),
    ("arn:aws:cloudwatch:ap-northeast-1:123456789012:alarm:kumolab-gpu-idle-stop-i-1", ("cloudwatch:alarm", "kumolab-gpu-idle-stop-i-1")),
])
def test_arns_map_to_kinds_the_sweep_can_delete(arn, expected):
    assert kumolab_sweep.parse_arn(arn) == expected
    assert expected[0] in kumolab_sweep.DELETERS


def test_expiry_parsing_is_strict_about_what_counts_as_expired():
    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
    assert kumolab_sweep.expired({"ExpiresAt": "2026-11-23T11:59:59Z"}, now)
    assert kumolab_sweep.expired({"ExpiresAt": "2026-11-23T20:59:59+09:00"}, now)  # 11:59:59 UTC
    assert not kumolab_sweep.expired({"ExpiresAt": "2026-11-23T12:00:01Z"}, now)
    assert not kumolab_sweep.expired({"ExpiresAt": "soon"}, now) and not kumolab_sweep.expired({}, now)
