"""Lab 1 end to end on the emulator: deploy, idempotence, check mode, SSH, security, teardown."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, VENV_BIN

from kumolab import leftovers
from kumolab.labs import default_owner
from kumolab.labs import lab as registry_lab

pytestmark = pytest.mark.integration

OWNER = default_owner()
PREFIX = registry_lab("ec2").prefix(OWNER)
# A second person deploying the same lab into the same emulator at the same time (their own results folder, as
# on their own clone).
COLLEAGUE = "a-colleague"
COLLEAGUE_PREFIX = registry_lab("ec2").prefix(COLLEAGUE)
LAB_TAGS = [{"Name": "tag:Project", "Values": ["kumolab"]}, {"Name": "tag:Lab", "Values": ["ec2"]}]
LAB_FILTER = LAB_TAGS + [{"Name": "tag:Owner", "Values": [OWNER]}]


def colleague_env(lab_env) -> dict:
    return {
        **os.environ,
        "KUMOLAB_OWNER": COLLEAGUE,
        "KUMOLAB_RESULTS_DIR": str(Path(lab_env["KUMOLAB_STATE_DIR"]) / "results-colleague"),
    }


@pytest.fixture(scope="module")
def deployed(run_playbook, lab_env):
    """This session's owner deploys Lab 1 while a colleague deploys it too, into the same emulator."""
    # The colleague's copy expires at another time than this one: each owner's copy keeps its own expiry.
    colleague_expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    colleague = subprocess.Popen(
        [str(VENV_BIN / "ansible-playbook"), "playbooks/ec2_lab.yml", "-e", f"lab_tags_expires_at={colleague_expiry}"],
        cwd=REPO,
        env=colleague_env(lab_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    run = run_playbook("ec2_lab.yml")
    colleague_output, _ = colleague.communicate(timeout=1800)
    assert colleague.returncode == 0, colleague_output[-3000:]
    assert run.rc == 0, run.output[-3000:]
    return run


def lab_instances(aws, owner: str = OWNER):
    reservations = aws("ec2").describe_instances(
        Filters=LAB_TAGS
        + [{"Name": "tag:Owner", "Values": [owner]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )
    return [i for r in reservations["Reservations"] for i in r["Instances"]]


def ping(pattern: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``ansible -m ping <pattern>`` through the dynamic inventory (real SSH to the lab host)."""
    return subprocess.run(
        [str(VENV_BIN / "ansible"), "-i", "inventories/local", "-m", "ansible.builtin.ping", pattern],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env or os.environ,
    )


def test_deploy_prints_the_login_command(deployed, lab_env):
    key = Path(lab_env["KUMOLAB_STATE_DIR"]) / "keys" / PREFIX
    expected = f"ssh -i {key} -p {lab_env['KUMOLAB_SSH_PORT']}"
    assert expected in deployed.output
    login = json.loads((Path(lab_env["KUMOLAB_RESULTS_DIR"]) / "ec2" / "login.json").read_text())
    assert login["command"].startswith(expected)
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_second_run_changes_nothing(deployed, run_playbook):
    run = run_playbook("ec2_lab.yml")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.changed_tasks()


def test_check_mode_reports_no_changes(deployed, run_playbook):
    run = run_playbook("ec2_lab.yml", "--check")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed == 0, run.changed_tasks()


def test_ping_over_ssh_through_dynamic_inventory(deployed):
    proc = ping("lab_ec2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"ping": "pong"' in proc.stdout
    assert f"{PREFIX} | SUCCESS" in proc.stdout


def test_m4_a_wrong_pinned_host_key_is_refused(deployed, lab_env, tmp_path):
    """Review M4: the inventory checks the lab host's key against the one kumolab-sshhost pinned."""
    known_hosts = Path(lab_env["KUMOLAB_STATE_DIR"]) / "sshd" / "known_hosts"
    pinned = known_hosts.read_text()
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key = Path(f"{other}.pub").read_text().split()[:2]
    known_hosts.write_text(f"{pinned.split()[0]} {key_type} {key}\n")
    try:
        proc = subprocess.run(
            [str(VENV_BIN / "ansible"), "-i", "inventories/local", "-m", "ansible.builtin.ping", "lab_ec2"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            # a fresh control path: a master connection from an earlier test would skip the key check
            env={**os.environ, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")},
        )
    finally:
        known_hosts.write_text(pinned)
    assert proc.returncode != 0, proc.stdout
    assert "UNREACHABLE" in proc.stdout and "Host key verification failed" in proc.stdout + proc.stderr, proc.stdout


def test_instance_requires_imdsv2_and_encrypts_its_root_volume(deployed, aws):
    (instance,) = lab_instances(aws)
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert instance["InstanceType"] == "t3.micro"
    volume_ids = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
    volumes = aws("ec2").describe_volumes(VolumeIds=volume_ids)["Volumes"]
    assert volumes and all(v["Encrypted"] and v["VolumeType"] == "gp3" for v in volumes)


def test_ami_comes_from_the_public_ssm_parameter(deployed, aws):
    (instance,) = lab_instances(aws)
    parameter = aws("ssm").get_parameter(Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    assert instance["ImageId"] == parameter["Parameter"]["Value"]


def test_security_group_allows_ssh_from_the_caller_only(deployed, aws):
    groups = aws("ec2").describe_security_groups(Filters=LAB_FILTER)["SecurityGroups"]
    assert len(groups) == 1
    ingress = groups[0]["IpPermissions"]
    cidrs = [r["CidrIp"] for rule in ingress for r in rule.get("IpRanges", [])]
    assert cidrs == ["127.0.0.1/32"]
    assert all(rule["FromPort"] == rule["ToPort"] == 22 for rule in ingress)
    assert not any(r.get("CidrIpv6") == "::/0" for rule in ingress for r in rule.get("Ipv6Ranges", []))


def test_every_resource_is_tagged(deployed, aws):
    ec2 = aws("ec2")
    tagged = {
        "vpc": ec2.describe_vpcs(Filters=LAB_FILTER)["Vpcs"],
        "subnet": ec2.describe_subnets(Filters=LAB_FILTER)["Subnets"],
        "igw": ec2.describe_internet_gateways(Filters=LAB_FILTER)["InternetGateways"],
        "route table": ec2.describe_route_tables(Filters=LAB_FILTER)["RouteTables"],
        "security group": ec2.describe_security_groups(Filters=LAB_FILTER)["SecurityGroups"],
        "key pair": ec2.describe_key_pairs(Filters=LAB_FILTER)["KeyPairs"],
        "instance": lab_instances(aws),
    }
    for kind, items in tagged.items():
        assert len(items) == 1, f"expected one {kind}, found {len(items)}"
        tags = {t["Key"]: t["Value"] for t in items[0]["Tags"]}
        assert {"Project", "Lab", "Owner", "ExpiresAt"} <= tags.keys(), (kind, tags)
    vpc = tagged["vpc"][0]
    assert vpc["CidrBlock"] == "10.10.0.0/23"
    assert ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["NatGateways"] == []


def test_bad_ssh_cidr_is_refused_before_anything_changes(deployed, run_playbook, aws):
    run = run_playbook("ec2_lab.yml", "-e", "lab_access_ssh_cidr=not-a-cidr")
    assert run.rc != 0
    assert "lab_access_ssh_cidr='not-a-cidr' is not usable" in run.output
    world = run_playbook("ec2_lab.yml", "-e", "lab_access_ssh_cidr=0.0.0.0/0")
    assert world.rc != 0 and "0.0.0.0/0 is refused" in world.output
    groups = aws("ec2").describe_security_groups(Filters=LAB_FILTER)["SecurityGroups"]
    assert [r["CidrIp"] for rule in groups[0]["IpPermissions"] for r in rule["IpRanges"]] == ["127.0.0.1/32"]


def test_security_audit_passes(deployed, audit):
    report = audit("ec2")
    print(f"audit ec2: {report['summary']}")


def test_two_owners_each_have_their_own_lab(deployed, aws, lab_env):
    """Names, key pairs, keys on disk and results carry the owner: the two deploys that ran at once made two
    servers, each reached with its owner's own key."""
    mine, theirs = lab_instances(aws), lab_instances(aws, COLLEAGUE)
    assert [i["KeyName"] for i in mine] == [PREFIX] and [i["KeyName"] for i in theirs] == [COLLEAGUE_PREFIX]
    expiry = [{t["Key"]: t["Value"] for t in i["Tags"]}["ExpiresAt"] for i in mine + theirs]
    assert expiry[0] != expiry[1]  # and test_second_run_changes_nothing shows this one kept its own
    keys = Path(lab_env["KUMOLAB_STATE_DIR"]) / "keys"
    assert (keys / PREFIX).read_text() != (keys / COLLEAGUE_PREFIX).read_text()
    login = json.loads((Path(colleague_env(lab_env)["KUMOLAB_RESULTS_DIR"]) / "ec2" / "login.json").read_text())
    assert login["key"] == str(keys / COLLEAGUE_PREFIX)
    # The colleague's copy answers over SSH, with their key, through the dynamic inventory.
    proc = ping(COLLEAGUE_PREFIX, colleague_env(lab_env))
    assert proc.returncode == 0 and f"{COLLEAGUE_PREFIX} | SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_another_owners_teardown_leaves_the_lab_running(deployed, run_playbook, aws, lab_env):
    """Teardown is per owner (the Owner tag): the colleague's teardown of Lab 1 in the same account deletes
    exactly their resources; this lab keeps running, and the independent count finds exactly its resources and
    none of the colleague's. Everyone's needs -e all_owners=true confirmed."""
    before = [i["InstanceId"] for i in lab_instances(aws)]
    keys_dir = Path(lab_env["KUMOLAB_STATE_DIR"]) / "keys"
    mine_before = leftovers.count_owned(aws, "kumolab", "ec2", OWNER, PREFIX).leftovers
    theirs_before = leftovers.count_owned(aws, "kumolab", "ec2", COLLEAGUE, COLLEAGUE_PREFIX).leftovers
    assert {f.kind for f in theirs_before} >= {"ec2:instance", "ec2:vpc", "ec2:security-group", "ec2:key-pair"}

    run = run_playbook("teardown.yml", "-e", "lab=ec2", env=colleague_env(lab_env))
    assert run.rc == 0, run.output[-3000:]
    deleted = re.search(r"Deleted (\d+) resource\(s\)", run.output)
    assert deleted and int(deleted[1]) >= 6, run.output[-3000:]  # instance, key pair, group, subnet, gateway, VPC...
    assert "'Owner': 'a-colleague'" in run.output
    assert lab_instances(aws, COLLEAGUE) == []
    assert leftovers.count_owned(aws, "kumolab", "ec2", COLLEAGUE, COLLEAGUE_PREFIX).leftovers == []
    assert [i["InstanceId"] for i in lab_instances(aws)] == before != []
    assert [(f.kind, f.id) for f in leftovers.count_owned(aws, "kumolab", "ec2", OWNER, PREFIX).leftovers] == [
        (f.kind, f.id) for f in mine_before
    ]
    assert sorted(p.name for p in keys_dir.glob(f"{PREFIX}*")) == [PREFIX, f"{PREFIX}.pub"]
    assert not list(keys_dir.glob(f"{COLLEAGUE_PREFIX}*"))

    unconfirmed = run_playbook("teardown.yml", "-e", "lab=ec2", "-e", "all_owners=true")
    assert unconfirmed.rc != 0 and "Add -e confirm_all_owners=yes" in unconfirmed.output
    assert [i["InstanceId"] for i in lab_instances(aws)] == before


def test_this_owners_lab_still_works_after_the_colleagues_teardown(deployed):
    proc = ping("lab_ec2")
    assert proc.returncode == 0 and f"{PREFIX} | SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    assert COLLEAGUE_PREFIX not in proc.stdout


def test_teardown_leaves_nothing_and_is_idempotent(deployed, run_playbook, aws, lab_env):
    run = run_playbook("teardown.yml", "-e", "lab=ec2")
    assert run.rc == 0, run.output[-3000:]
    assert "nothing tagged for it is left" in run.output

    ec2 = aws("ec2")
    assert lab_instances(aws) == []
    everything = [{"Name": "tag:Project", "Values": ["kumolab"]}]
    assert ec2.describe_vpcs(Filters=everything)["Vpcs"] == []
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    assert ec2.describe_subnets(Filters=everything)["Subnets"] == []
    assert ec2.describe_internet_gateways(Filters=everything)["InternetGateways"] == []
    assert [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"] == []
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert not list((Path(lab_env["KUMOLAB_STATE_DIR"]) / "keys").glob("kumolab-ec2*"))

    again = run_playbook("teardown.yml", "-e", "lab=ec2")
    assert again.rc == 0, again.output[-3000:]
    assert again.changed == 0, again.changed_tasks()
