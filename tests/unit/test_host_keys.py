"""Review M4: SSH host keys are checked, never thrown away.

ansible.cfg no longer disables host key checking or sends known hosts to /dev/null; each inventory names its
known_hosts file: on the local target the loopback lab host's own key, pinned by ``kumolab-sshhost start``
(StrictHostKeyChecking=yes), on AWS a per-lab file, trusted on first use and pinned afterwards (accept-new).
"""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port

from kumolab.local import sshhost


def _yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def test_m4_ansible_config_never_turns_host_key_checking_off():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    assert cfg.getboolean("defaults", "host_key_checking", fallback=True)
    ssh_args = cfg.get("ssh_connection", "ssh_args", fallback="")
    assert "/dev/null" not in ssh_args and "StrictHostKeyChecking=no" not in ssh_args, ssh_args
    # molecule's own default is false, so its shared config must say true.
    assert _yaml(".config/molecule/config.yml")["ansible"]["cfg"]["defaults"]["host_key_checking"] is True
    for scenario in REPO.glob("roles/*/molecule/*/molecule.yml"):
        defaults = (
            ((yaml.safe_load(scenario.read_text()) or {}).get("ansible") or {}).get("cfg", {}).get("defaults", {})
        )
        assert defaults.get("host_key_checking", True) is True, scenario


def test_m4_each_inventory_names_its_known_hosts_file():
    local = _yaml("inventories/local/group_vars/aws_ec2/ssh.yml")["ansible_ssh_common_args"]
    assert "UserKnownHostsFile={{ kumolab_state_dir }}/sshd/known_hosts" in local
    assert "StrictHostKeyChecking=yes" in local.split()
    aws = _yaml("inventories/aws/group_vars/aws_ec2/ssh.yml")["ansible_ssh_common_args"]
    # Next to the lab's key, so teardown's removal of <state>/keys/<prefix>* takes it too.
    assert "UserKnownHostsFile={{ kumolab_state_dir }}/keys/{{ key_name }}.known_hosts" in aws
    assert "StrictHostKeyChecking=accept-new" in aws.split()
    assert "HostKeyAlias={{ kumolab_instance_id }}" in aws


def _ssh(port: int, known_hosts: Path) -> subprocess.CompletedProcess:
    """Connect to the lab host with nothing to authenticate with: the host key is checked before that."""
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ControlPath=none",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityFile=/dev/null",
            "-o",
            "PasswordAuthentication=no",
            "nobody-in-particular@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def lab_host(tmp_path, monkeypatch):
    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KUMOLAB_SSH_PORT", str(free_port()))
    host = sshhost.SshHost.from_environment()
    host.start()
    try:
        yield host
    finally:
        host.stop()


def test_m4_lab_host_pins_its_key_and_a_wrong_key_is_refused(lab_host, tmp_path):
    known_hosts = Path(os.environ["KUMOLAB_STATE_DIR"]) / "sshd" / "known_hosts"
    public = (lab_host.directory / "ssh_host_ed25519_key.pub").read_text().split()
    assert known_hosts.read_text() == f"[127.0.0.1]:{lab_host.port} {public[0]} {public[1]}\n"
    assert lab_host.start() is False and known_hosts.exists(), "a reused sshd keeps its pin"

    pinned = _ssh(lab_host.port, known_hosts)
    assert pinned.returncode == 255 and "Permission denied" in pinned.stderr, pinned.stderr
    assert "Host key verification failed" not in pinned.stderr

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "wrong_known_hosts"
    key_type, key = Path(f"{other}.pub").read_text().split()[:2]
    wrong.write_text(f"[127.0.0.1]:{lab_host.port} {key_type} {key}\n")
    refused = _ssh(lab_host.port, wrong)
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr, refused.stderr
    assert "Permission denied" not in refused.stderr, "refused before authentication"
