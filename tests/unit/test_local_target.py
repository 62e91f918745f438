"""The embedded target's processes: the emulator and the loopback SSH host, and their error messages."""

from __future__ import annotations

import socket
import subprocess

import pytest

from conftest import VENV_BIN, free_port
from kumolab.local import emulator as emulator_mod
from kumolab.local import sshhost


@pytest.fixture
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(tmp_path))
    return tmp_path


def test_emulator_starts_is_reused_and_stops(private_state, monkeypatch):
    monkeypatch.setenv("KUMOLAB_EMULATOR_PORT", str(free_port()))
    emu = emulator_mod.Emulator.from_environment()
    try:
        assert emu.start() is True
        assert emu.running()
        assert emulator_mod.is_moto(emu.endpoint)
        assert emu.start() is False, "a running emulator must be reused, not restarted"
        assert (private_state / "emulator" / "pid").read_text().strip() == str(emu.pid())
        assert emu.log_file.exists()
    finally:
        assert emu.stop() is True
    assert not emu.running()
    assert emu.stop() is False


def test_emulator_port_taken_by_another_program_is_explained(private_state, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("KUMOLAB_EMULATOR_PORT", str(port))
        proc = subprocess.run([str(VENV_BIN / "kumolab-emulator"), "start"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"Port {port} on 127.0.0.1 is already in use by another program" in proc.stderr
    assert "KUMOLAB_EMULATOR_PORT" in proc.stderr


def test_emulator_rejects_a_port_that_is_not_a_number(monkeypatch):
    monkeypatch.setenv("KUMOLAB_EMULATOR_PORT", "http")
    with pytest.raises(emulator_mod.EmulatorError, match="not a port number"):
        emulator_mod.configured_port()


def test_missing_sshd_is_explained(monkeypatch):
    monkeypatch.setattr(sshhost, "SSHD_CANDIDATES", ("/nonexistent/sshd",))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(sshhost.SshHostError, match="apt-get install openssh-server"):
        sshhost.find_sshd()


def test_ssh_host_port_taken_is_explained(private_state, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("KUMOLAB_SSH_PORT", str(busy.getsockname()[1]))
        with pytest.raises(sshhost.SshHostError, match="already in use"):
            sshhost.SshHost.from_environment().start()


def test_ssh_host_authorises_only_keys_of_running_instances(aws, emulator):
    ec2 = aws("ec2")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFsLvP0uV0pDNSx9N8pQ5vS1mI6p7wV3bq0nZt1rQ2hF unit-test"
    ec2.import_key_pair(KeyName="unit-authorised", PublicKeyMaterial=key.encode())
    ec2.import_key_pair(KeyName="unit-unused", PublicKeyMaterial=key.replace("IFsL", "IGsL").encode())
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Project", "Value": "kumolab"}]}]
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, KeyName="unit-authorised", TagSpecifications=tags)
    instance_id = instance["Instances"][0]["InstanceId"]
    try:
        keys = sshhost.authorized_keys(emulator, "ap-northeast-1")
        assert any("IFsLvP0" in k for k in keys) and not any("IGsLvP0" in k for k in keys)
        ec2.terminate_instances(InstanceIds=[instance_id])
        assert not any("IFsLvP0" in k for k in sshhost.authorized_keys(emulator, "ap-northeast-1"))
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])
        ec2.delete_key_pair(KeyName="unit-authorised")
        ec2.delete_key_pair(KeyName="unit-unused")
