"""Review C1: the loopback lab host authorises only the project's own keys, for its one account.

A private lab host (own state directory, free port) against the session's emulator: keys come from
``<state>/keys/<name>.pub`` for the key names of running kumolab instances, never from the emulator's key material.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import free_port

from kumolab.local import sshhost

pytestmark = pytest.mark.integration
REGION = "ap-northeast-1"
TAGS = [{"ResourceType": "instance", "Tags": [{"Key": "Project", "Value": "kumolab"}]}]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def lab_host(emulator, tmp_path_factory):
    state = tmp_path_factory.mktemp("lab-host-state")
    saved = {k: os.environ.get(k) for k in ("KUMOLAB_STATE_DIR", "KUMOLAB_SSH_PORT")}
    os.environ.update(KUMOLAB_STATE_DIR=str(state), KUMOLAB_SSH_PORT=str(free_port()))
    (state / "keys").mkdir(mode=0o700)
    host = sshhost.SshHost.from_environment()
    host.start()
    try:
        yield host
    finally:
        host.stop()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def launch(aws, name: str, material: str) -> str:
    aws("ec2").import_key_pair(KeyName=name, PublicKeyMaterial=material.encode())
    return aws("ec2").run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, KeyName=name, TagSpecifications=TAGS
    )["Instances"][0]["InstanceId"]


def login(host, key: Path, user: str | None = None, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(host.port),
            "-i",
            str(key),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={host.known_hosts_file}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ControlPath=none",
            "-o",
            "ConnectTimeout=10",
            f"{user or os.environ.get('USER') or 'root'}@127.0.0.1",
            *(command or ("true",)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def me() -> str:
    """The account the lab host serves (the test user, or kumolab-lab when the tests run as root)."""
    return json.loads(sshhost.SshHost.from_environment().account_file.read_text())["user"]


@pytest.fixture(scope="module")
def own_key(lab_host, aws):
    """The project's own key: written to <state>/keys like roles/lab_keypair does, imported, an instance launched."""
    name = f"kumolab-sec-{uuid.uuid4().hex[:6]}"
    key = Path(os.environ["KUMOLAB_STATE_DIR"]) / "keys" / name
    instance = launch(aws, name, keygen(key))
    yield key
    aws("ec2").terminate_instances(InstanceIds=[instance])


def test_c1_the_projects_own_key_logs_in_with_restricted_options(lab_host, own_key):
    lines = sshhost.authorized_keys(region=REGION, jupyter_port=8888)
    blob = own_key.with_suffix(".pub").read_text().split()[1]
    mine = [line for line in lines if blob in line]
    assert mine == [f"{sshhost.key_options(8888)} ssh-ed25519 {blob}"], lines
    result = login(lab_host, own_key, me(), "echo", "in")
    assert result.returncode == 0 and result.stdout.strip() == "in", result.stderr


def test_c1_a_key_pair_that_is_not_the_projects_grants_no_login(lab_host, aws, tmp_path):
    foreign = tmp_path / "foreign"
    instance = launch(aws, f"kumolab-foreign-{uuid.uuid4().hex[:6]}", keygen(foreign))  # no <state>/keys file
    try:
        result = login(lab_host, foreign, me())
        assert result.returncode == 255 and "Permission denied" in result.stderr, result.stderr
    finally:
        aws("ec2").terminate_instances(InstanceIds=[instance])


def test_c1_injected_lines_in_emulator_key_material_grant_no_login(lab_host, aws, own_key, tmp_path):
    attacker = tmp_path / "attacker"
    attacker_pub = keygen(attacker)
    victim = tmp_path / "victim"
    marker = tmp_path / "INJECTED"
    name = f"kumolab-inject-{uuid.uuid4().hex[:6]}"
    material = f'{keygen(victim)}\ncommand="touch {marker}",no-pty {attacker_pub}'
    instance = launch(aws, name, material)
    try:
        lines = sshhost.authorized_keys(region=REGION)
        assert all(line.startswith("restrict,pty ") and "command=" not in line for line in lines), lines
        assert not any(attacker_pub.split()[1] in line for line in lines)
        result = login(lab_host, attacker, me())
        assert result.returncode == 255 and not marker.exists(), result.stderr
    finally:
        aws("ec2").terminate_instances(InstanceIds=[instance])


def test_c1_a_project_key_file_with_extra_lines_or_options_is_ignored(tmp_path):
    good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFsLvP0uV0pDNSx9N8pQ5vS1mI6p7wV3bq0nZt1rQ2hF comment"
    (tmp_path / "kumolab-ok.pub").write_text(good + "\n")
    (tmp_path / "kumolab-two.pub").write_text(good + "\n" + good + "\n")
    (tmp_path / "kumolab-opt.pub").write_text('command="id" ' + good + "\n")
    assert sshhost.project_key("kumolab-ok", tmp_path) == ("ssh-ed25519", good.split()[1])
    assert sshhost.project_key("kumolab-two", tmp_path) is None
    assert sshhost.project_key("kumolab-opt", tmp_path) is None
    assert sshhost.project_key("../kumolab-ok", tmp_path) is None and sshhost.project_key("Evil", tmp_path) is None


def test_c1_another_user_gets_no_key_and_no_login(lab_host, own_key, capsys):
    assert (
        sshhost.main(["authorized-keys", "--serves", "lab", "--state-dir", os.environ["KUMOLAB_STATE_DIR"], "root"])
        == 0
    )
    assert capsys.readouterr().out == ""
    result = login(lab_host, own_key, "nobody")
    assert result.returncode == 255 and "Permission denied" in result.stderr, result.stderr


def test_c1_the_lab_host_refuses_root(lab_host, own_key):
    """Even with the project's own key: root is never the served account, and sshd is told so twice."""
    text = lab_host.config_file.read_text()
    assert "PermitRootLogin no" in text and "AllowUsers root" not in text and "--serves root " not in text
    result = login(lab_host, own_key, "root", "id", "-u")
    assert result.returncode == 255 and "Permission denied" in result.stderr, (result.stdout, result.stderr)


def test_c1_the_served_account_is_unprivileged(lab_host, own_key):
    """As root the labs get the dedicated account kumolab-lab (as ec2-user on AWS); otherwise the user's own."""
    record = json.loads(lab_host.account_file.read_text())
    expected = sshhost.LAB_ACCOUNT if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    assert record["user"] == expected and record["uid"] == pwd.getpwnam(expected).pw_uid != 0
    result = login(lab_host, own_key, expected, "id", "-u")
    assert result.returncode == 0 and result.stdout.strip() == str(record["uid"]), result.stderr
    text = lab_host.config_file.read_text()
    assert f"AllowUsers {expected}" in text and "StrictModes no" not in text and " -I -m kumolab.local.sshhost" in text
    assert f"--serves {expected} " in text and "PermitUserEnvironment no" in text
    lab_dir = Path(record["lab_dir"])
    assert lab_dir.is_dir() and lab_dir.stat().st_uid == record["uid"], "the account owns its lab directory"
    if os.getuid() == 0:
        assert lab_dir.stat().st_mode & 0o077 == 0, "other accounts cannot read the lab directory"


def test_c1_a_root_account_is_never_served(monkeypatch, tmp_path):
    monkeypatch.setattr(sshhost.os, "getuid", lambda: 0)
    monkeypatch.setenv(sshhost.LAB_ACCOUNT_VARIABLE, "root")
    with pytest.raises(sshhost.SshHostError, match="never serves root"):
        sshhost.lab_account(tmp_path)


def test_c1_as_root_the_lab_host_refuses_code_others_can_write(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert shared in sshhost.writable_by_others(shared)
    (shared.parent).chmod(0o755)
    shared.chmod(0o755)
    (shared / "mod.py").write_text("")
    (shared / "mod.py").chmod(0o666)
    assert shared / "mod.py" in sshhost.writable_by_others(shared)
