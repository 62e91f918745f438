"""A deploy killed half way, then teardown: nothing is left behind.

For each lab, the playbook is started and SIGKILLed (its whole process group, so the module that is
running dies too) right after the N-th ``TASK [`` line, N drawn from a seeded RNG within the tasks that
create cloud resources (from the lab's first network task to the last task before the play that goes over
SSH). Then ``playbooks/teardown.yml -e lab=<lab>`` must succeed, and an enumeration that does not use the
teardown's own catalogue must find nothing new: every EC2 kind by plain boto3 listing (tagged *or not*, as
a diff against a snapshot taken before the deploy, so a resource killed before it was tagged counts too),
idle-stop alarms by name, and the Resource Groups Tagging API for anything tagged for the lab.

The GPU lab is interrupted only in its cloud-side plays (its host play installs torch); the serverless and
QA labs are interrupted between their first resource and the writing of their results.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ARTIFACTS, REPO, VENV_BIN, ecs_arn_is_inactive, live_queue_urls, live_tagged_arns

pytestmark = pytest.mark.integration

# The serverless labs' local runtime on free ports, as in their own tests.
FREE_PORTS = [
    "-e",
    json.dumps(
        {
            "kumolab_local_services": {
                "runtime": {
                    "start": f"{VENV_BIN}/kumolab-runtime start --json --lambda-port 0 --api-port 0 --web-port 0"
                }
            }
        }
    ),
]
# lab -> (playbook, extra arguments, first task that creates a cloud resource, the first play or task after the
# cloud-side part, seeds)
LABS = {
    "ec2": ("ec2_lab.yml", [], "lab_network : Create the lab VPC", "Log in to the server over SSH", (1, 2, 3)),
    "gpu": ("gpu_lab.yml", [], "lab_network : Create the lab VPC", "Configure the GPU host over SSH", (1, 2, 3)),
    "serverless": (
        "serverless.yml",
        FREE_PORTS,
        "lambda_function : Create the dead-letter queue for failed asynchronous invocations",
        "lab_outputs : Create the lab's results directory",
        (1, 2),
    ),
    "bashoutter": (
        "bashoutter.yml",
        FREE_PORTS,
        "lab_dynamodb_table : Create the table (on-demand and point-in-time recovery unless told otherwise)",
        "lab_outputs : Create the lab's results directory",
        (1, 2),
    ),
    # after the (cached) model step, so a kill never lands in the one-time model build
    "qa_bot": (
        "qa_bot.yml",
        [],
        "lab_network : Create the lab VPC",
        "lab_outputs : Create the lab's results directory",
        (1, 2),
    ),
}
TASK_LINE = re.compile(r"^TASK \[(?P<name>.*)\] \**\s*$")


# The suite kills each lab's deploy at one point (its first seed); the whole matrix of seeds is the benchmark's
# (tests/bench/bench_interrupted_deploy.py sets KUMOLAB_INTERRUPT_SEEDS=all), as it costs about a minute a case.
ALL_SEEDS = os.environ.get("KUMOLAB_INTERRUPT_SEEDS", "") == "all"
CASES = [(lab, seed) for lab, spec in LABS.items() for seed in (spec[4] if ALL_SEEDS else spec[4][:1])]


def static_tasks(playbook: str, args: list[str]) -> list[tuple[str, str]]:
    """(play name, task name) in the order ``ansible-playbook --list-tasks`` gives them."""
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), f"playbooks/{playbook}", "--list-tasks", *args],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tasks, play = [], None
    for line in proc.stdout.splitlines():
        found = re.match(r"^\s+play #\d+ \([^)]*\): (?P<name>.*?)\tTAGS:", line)
        if found:
            play = found["name"]
        elif play and line.startswith("      ") and "\tTAGS:" in line:
            tasks.append((play, line.strip().split("\tTAGS:", 1)[0]))
    return tasks


@functools.cache
def cloud_window(lab: str) -> tuple[list[str], int, int]:
    """The task names of the lab's cloud-side plays and the 1-based range of N to interrupt after."""
    playbook, args, first_resource_task, after_cloud, _ = LABS[lab]
    tasks = static_tasks(playbook, args)
    plays = [play for play, _ in tasks]
    names = [name for _, name in tasks]
    assert after_cloud in plays or after_cloud in names, f"{playbook} has no play or task {after_cloud!r}"
    end = plays.index(after_cloud) if after_cloud in plays else names.index(after_cloud)
    cloud = names[:end]
    assert first_resource_task in cloud, cloud
    return cloud, cloud.index(first_resource_task) + 1, len(cloud)


def snapshot(aws) -> set[tuple[str, str]]:
    """Every EC2 resource of the kinds the labs create, tagged or not, plus every alarm and tagged ARN."""
    ec2 = aws("ec2")
    found = set()
    for reservation in ec2.describe_instances()["Reservations"]:
        for inst in reservation["Instances"]:
            if inst["State"]["Name"] != "terminated":
                found.add(("instance", inst["InstanceId"]))
    listings = [
        ("vpc", ec2.describe_vpcs()["Vpcs"], "VpcId"),
        ("subnet", ec2.describe_subnets()["Subnets"], "SubnetId"),
        ("security-group", ec2.describe_security_groups()["SecurityGroups"], "GroupId"),
        ("route-table", ec2.describe_route_tables()["RouteTables"], "RouteTableId"),
        ("internet-gateway", ec2.describe_internet_gateways()["InternetGateways"], "InternetGatewayId"),
        ("key-pair", ec2.describe_key_pairs()["KeyPairs"], "KeyName"),
        (
            "volume",
            [v for v in ec2.describe_volumes()["Volumes"] if v["State"] not in ("deleting", "deleted")],
            "VolumeId",
        ),
        (
            "nat-gateway",
            [g for g in ec2.describe_nat_gateways()["NatGateways"] if g["State"] not in ("deleting", "deleted")],
            "NatGatewayId",
        ),
        ("address", ec2.describe_addresses()["Addresses"], "PublicIp"),
        ("network-interface", ec2.describe_network_interfaces()["NetworkInterfaces"], "NetworkInterfaceId"),
    ]
    for kind, items, key in listings:
        found.update((kind, item[key]) for item in items)
    found.update(("alarm", a["AlarmName"]) for a in aws("cloudwatch").describe_alarms()["MetricAlarms"])
    found.update(("role", r["RoleName"]) for r in aws("iam").list_roles()["Roles"])
    # What the serverless and container labs create.
    found.update(("function", f["FunctionName"]) for f in aws("lambda").list_functions()["Functions"])
    found.update(("table", t) for t in aws("dynamodb").list_tables()["TableNames"])
    found.update(("queue", q) for q in live_queue_urls(aws("sqs"), ""))
    found.update(("bucket", b["Name"]) for b in aws("s3").list_buckets()["Buckets"])
    found.update(("log-group", g["logGroupName"]) for g in aws("logs").describe_log_groups()["logGroups"])
    found.update(("repository", r["repositoryName"]) for r in aws("ecr").describe_repositories()["repositories"])
    found.update(("rest-api", a["id"]) for a in aws("apigateway").get_rest_apis()["items"])
    ecs = aws("ecs")
    clusters = ecs.list_clusters()["clusterArns"]
    if clusters:
        found.update(
            ("cluster", c["clusterArn"])
            for c in ecs.describe_clusters(clusters=clusters)["clusters"]
            if c["status"] == "ACTIVE"
        )
        for cluster in clusters:
            services = ecs.list_services(cluster=cluster)["serviceArns"]
            found.update(("service", arn) for arn in services if not ecs_arn_is_inactive(ecs, arn))
    found.update(("task-definition", arn) for arn in ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"])
    return found


def tagged_for(aws, lab: str) -> list[str]:
    """ARNs the tagging API lists for the lab whose resources still exist (it lists deleted ones for a while)."""
    return live_tagged_arns(aws, {"Project": "kumolab", "Lab": lab})


def deploy_and_kill(lab: str, n: int, log: Path) -> list[str]:
    """Run the lab's playbook, SIGKILL its process group right after the n-th TASK line; the TASK names seen."""
    playbook, args, _, after_cloud, _ = LABS[lab]
    proc = subprocess.Popen(
        [str(VENV_BIN / "ansible-playbook"), f"playbooks/{playbook}", *args],
        cwd=REPO,
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    seen, lines = [], []
    try:
        for line in proc.stdout:
            lines.append(line)
            assert not line.startswith(f"PLAY [{after_cloud}]"), f"reached {after_cloud!r} before task {n}"
            task = TASK_LINE.match(line)
            if task:
                seen.append(task["name"])
                if len(seen) == n:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=60)
        proc.stdout.close()
        log.write_text("".join(lines))
    assert len(seen) == n, f"the playbook ended after {len(seen)} tasks, before task {n}:\n{''.join(lines[-40:])}"
    return seen


@pytest.fixture(scope="module")
def results():
    outcome = {}
    yield outcome
    ARTIFACTS.mkdir(exist_ok=True)
    passed = sum(1 for ok in outcome.values() if ok)
    summary = [f"interrupted deploy -> teardown -> nothing left: {passed}/{len(outcome)}"]
    summary += [
        f"  {lab} seed {seed} N={n} ({task}): {'ok' if ok else 'LEFT RESOURCES'}"
        for (lab, seed, n, task), ok in outcome.items()
    ]
    (ARTIFACTS / "interrupted_deploy.txt").write_text("\n".join(summary) + "\n")
    print("\n" + "\n".join(summary))


@pytest.mark.parametrize("lab, seed", CASES, ids=[f"{lab}-seed{seed}" for lab, seed in CASES])
def test_teardown_after_an_interrupted_deploy_leaves_nothing(lab, seed, emulator, aws, run_playbook, lab_env, results):
    cloud, lo, hi = cloud_window(lab)
    n = random.Random(f"{lab}:{seed}").randint(lo, hi)
    before = snapshot(aws)
    assert tagged_for(aws, lab) == [], "the lab is already deployed; this test needs it absent"

    seen = deploy_and_kill(lab, n, ARTIFACTS / f"interrupted-{lab}-seed{seed}.log")
    # The run really went as far as planned: the task it was killed in is the n-th of the cloud plays.
    expected = cloud[n - 1]
    # Tasks of a role included in a loop (Bashoutter's functions) are unknown to --list-tasks: past one, the
    # run's task sequence is longer than the listing, and the n-th task of the run is not the n-th listed.
    included = [name for name in seen if name not in cloud]
    assert "{{" in expected or seen[-1] == expected or included, (seen[-1], expected)
    key = (lab, seed, n, seen[-1])
    results[key] = False

    run = run_playbook("teardown.yml", "-e", f"lab={lab}")
    assert run.rc == 0, run.output[-3000:]

    deadline = time.monotonic() + 30
    while True:  # an instance may still be shutting down for a moment after teardown returns
        left = sorted(snapshot(aws) - before)
        tagged = tagged_for(aws, lab)
        if (not left and not tagged) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert left == [], f"killed after task {n} ({seen[-1]}); left behind: {left}"
    assert tagged == [], f"killed after task {n} ({seen[-1]}); still tagged Lab={lab}: {tagged}"
    keys = sorted(p.name for p in (Path(lab_env["KUMOLAB_STATE_DIR"]) / "keys").glob(f"kumolab-{lab}*"))
    assert keys == [], f"local key files left: {keys}"
    results[key] = True
