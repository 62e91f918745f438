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
    from kumolab.paths import state_dir

    ec2 = aws("ec2")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFsLvP0uV0pDNSx9N8pQ5vS1mI6p7wV3bq0nZt1rQ2hF unit-test"
    # The project's own key files (roles/lab_keypair writes them); the emulator only says which names are in use.
    keys = state_dir() / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    (keys / "kumolab-unit-authorised.pub").write_text(key + "\n")
    (keys / "kumolab-unit-unused.pub").write_text(key.replace("IFsL", "IGsL") + "\n")
    ec2.import_key_pair(KeyName="kumolab-unit-authorised", PublicKeyMaterial=key.encode())
    ec2.import_key_pair(KeyName="kumolab-unit-unused", PublicKeyMaterial=key.replace("IFsL", "IGsL").encode())
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Project", "Value": "kumolab"}]}]
    instance = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, KeyName="kumolab-unit-authorised", TagSpecifications=tags
    )
    instance_id = instance["Instances"][0]["InstanceId"]
    try:
        keys = sshhost.authorized_keys(region="ap-northeast-1")
        assert any("IFsLvP0" in k for k in keys) and not any("IGsLvP0" in k for k in keys)
        ec2.terminate_instances(InstanceIds=[instance_id])
        assert not any("IFsLvP0" in k for k in sshhost.authorized_keys(region="ap-northeast-1"))
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])
        ec2.delete_key_pair(KeyName="kumolab-unit-authorised")
        ec2.delete_key_pair(KeyName="kumolab-unit-unused")


# -- the local AWS profile: the one place that says where the emulator is -----------------------------


def test_profile_is_written_idempotently_private_and_keeps_other_profiles(private_state, tmp_path, monkeypatch):
    import configparser

    from kumolab.local import settings

    config = tmp_path / "aws" / "config"
    config.parent.mkdir()
    config.write_text(
        "[default]\nregion = us-west-2\n\n[profile work]\nregion = eu-west-1\ns3 =\n  addressing_style = path\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("KUMOLAB_AWS_PROFILE", raising=False)
    keys = settings.credentials(private_state / "emulator")
    assert keys == settings.credentials(private_state / "emulator"), "the keys are generated once, then kept"
    assert (private_state / "emulator" / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert keys["aws_access_key_id"].startswith("AKIA") and len(keys["aws_secret_access_key"]) >= 40

    assert settings.write_profile("http://127.0.0.1:1234", "ap-northeast-1", keys) is True
    assert settings.write_profile("http://127.0.0.1:1234", "ap-northeast-1", keys) is False
    assert config.stat().st_mode & 0o777 == 0o600
    parsed = configparser.RawConfigParser()
    parsed.read(config)
    assert dict(parsed["profile kumolab-local"]) == {
        "endpoint_url": "http://127.0.0.1:1234",
        "region": "ap-northeast-1",
        **keys,
    }
    assert parsed["default"]["region"] == "us-west-2" and "addressing_style = path" in parsed["profile work"]["s3"]
    assert settings.write_profile("http://127.0.0.1:4321", "ap-northeast-1", keys) is True, "a new port rewrites it"
    monkeypatch.setenv("KUMOLAB_AWS_PROFILE", "class-a")
    assert settings.write_profile("http://127.0.0.1:4321", "ap-northeast-1", keys) is True
    parsed.read(config)
    assert {"profile kumolab-local", "profile class-a", "default", "profile work"} <= set(parsed.sections())


def test_emulator_start_writes_the_profile_that_boto3_follows(private_state, tmp_path, monkeypatch):
    import kumolab.aws

    config = tmp_path / "aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("KUMOLAB_EMULATOR_PORT", str(free_port()))
    monkeypatch.setenv("KUMOLAB_AWS_PROFILE", "kumolab-unit")
    try:
        assert emulator_mod.main(["start"]) == 0
        assert f"endpoint_url = http://127.0.0.1:{emulator_mod.configured_port()}" in config.read_text()
        assert kumolab.aws.endpoint_url("kumolab-unit") == emulator_mod.Emulator.from_environment().endpoint
        # The seeding went through the profile too: its parameters are there.
        ssm = kumolab.aws.client("ssm", "kumolab-unit")
        assert ssm.get_parameters_by_path(Path=emulator_mod.SEED_PREFIX, Recursive=True)["Parameters"]
    finally:
        emulator_mod.main(["stop"])
