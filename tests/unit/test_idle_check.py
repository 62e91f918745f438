"""The on-host idle check's logic with fake /proc/stat and nvidia-smi readings."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
from cost_safety_support import REPO, clients

spec = importlib.util.spec_from_file_location("kumolab_idle_check", REPO / "files/idle_stop/kumolab_idle_check.py")
idle = importlib.util.module_from_spec(spec)
sys.modules["kumolab_idle_check"] = idle
spec.loader.exec_module(idle)

PROC_STAT = """cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0
cpu0 1 0 1 1 0 0 0 0 0 0
intr 12345
"""


def stat(user, system, idle_j, iowait=0):
    return PROC_STAT.format(user=user, system=system, idle=idle_j, iowait=iowait)


def test_parse_proc_stat_counts_iowait_as_idle():
    assert idle.parse_proc_stat(stat(100, 50, 800, 50)) == (850, 1000)
    with pytest.raises(ValueError):
        idle.parse_proc_stat("intr 1\n")


def test_cpu_percent_between_readings():
    # 1000 jiffies passed, 950 of them idle -> 5% busy.
    assert idle.cpu_percent(850, 1000, 1800, 2000) == pytest.approx(5.0)
    assert idle.cpu_percent(0, 0, 1800, 2000) is None  # no previous reading
    assert idle.cpu_percent(850, 1000, 850, 1000) is None  # no time passed


def test_nvidia_smi_busiest_gpu_counts_and_na_is_ignored():
    assert idle.parse_nvidia_smi("3\n87\n[N/A]\n") == 87.0
    assert idle.parse_nvidia_smi("") is None


def run_minutes(readings, cpu_threshold=10, gpu_threshold=10, idle_minutes=3, boot="boot-1", state=None):
    """Feed one (cpu_busy_percent, gpu_percent) reading per minute; return the actions taken."""
    state = state or idle.State()
    idle_j, total = 0, 0
    actions = []
    for minute, (cpu_busy, gpu) in enumerate(readings):
        total += 6000  # 60 s x 100 jiffies/s
        idle_j += int(6000 * (100 - cpu_busy) / 100)
        decision = idle.decide(
            state, 1_000_000 + 60 * minute, boot, (idle_j, total), gpu, cpu_threshold, gpu_threshold, idle_minutes
        )
        state = decision.state
        actions.append(decision.action)
    return actions, state


def test_stops_after_n_consecutive_idle_minutes():
    actions, state = run_minutes([(50, None)] + [(2, None)] * 5)
    # minute 0: first reading; idle clock starts at minute 1; 3 minutes later (minute 4) -> stop, once.
    assert actions == ["warming-up", "idle", "idle", "idle", "stop", "idle"]
    assert state.stopped_at is not None


def test_a_busy_minute_resets_the_idle_clock():
    actions, _ = run_minutes([(0, None), (1, None), (1, None), (40, None), (1, None), (1, None), (1, None), (1, None)])
    assert actions == ["warming-up", "idle", "idle", "busy", "idle", "idle", "idle", "stop"]


def test_busy_gpu_keeps_the_host_up_even_with_idle_cpu():
    actions, _ = run_minutes([(1, 95)] * 10)
    assert "stop" not in actions and actions[1:] == ["busy"] * 9


def test_gpu_below_threshold_and_cpu_below_threshold_is_idle():
    actions, _ = run_minutes([(1, 5)] * 5, idle_minutes=2)
    assert actions == ["warming-up", "idle", "idle", "stop", "idle"]


def test_threshold_is_inclusive_busy():
    actions, _ = run_minutes([(10, None)] * 3, cpu_threshold=10)
    assert actions[1:] == ["busy", "busy"]


def test_reboot_starts_the_idle_period_afresh():
    _, state = run_minutes([(1, None)] * 6)
    assert state.stopped_at is not None
    actions, state = run_minutes([(1, None)] * 3, boot="boot-2", state=state)
    assert actions == ["warming-up", "idle", "idle"] and state.stopped_at is None


def test_cli_dry_run_keeps_state_and_never_runs_the_command(tmp_path):
    proc_stat, boot, state_file, marker = (
        tmp_path / "stat",
        tmp_path / "boot_id",
        tmp_path / "state.json",
        tmp_path / "stopped",
    )
    boot.write_text("boot-x\n")
    command = f"touch {marker}"
    common = [
        "--state-file",
        str(state_file),
        "--proc-stat",
        str(proc_stat),
        "--boot-id-file",
        str(boot),
        "--idle-minutes",
        "0.0001",
        "--command",
        command,
    ]
    proc_stat.write_text(stat(100, 100, 800))
    assert idle.main(common) == 0
    proc_stat.write_text(stat(101, 101, 1798))  # 998 idle of 1000 -> 0.2% busy: the idle clock starts
    assert idle.main(common) == 0
    time.sleep(0.05)  # > 0.0001 min
    proc_stat.write_text(stat(102, 102, 2796))
    assert idle.main(common + ["--dry-run"]) == 0
    assert not marker.exists() and json.loads(state_file.read_text())["stopped_at"] is None
    proc_stat.write_text(stat(103, 103, 3794))
    assert idle.main(common) == 0
    assert marker.exists(), "the stop command did not run"
    assert json.loads(state_file.read_text())["stopped_at"] is not None


def test_cli_rejects_nonsense_thresholds(tmp_path):
    with pytest.raises(SystemExit) as info:
        idle.main(["--cpu-threshold", "0", "--state-file", str(tmp_path / "s")])
    assert info.value.code == 2


IDLE_PLAY = """
- name: Idle stop role against the emulator
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    instance_lifecycle: "{lifecycle}"
  roles:
    - role: idle_stop
      vars:
        idle_stop_cpu_threshold_percent: 7
        idle_stop_minutes: 20
        idle_stop_lab: gpu
        idle_stop_region: ap-northeast-1
        idle_stop_become: false
        idle_stop_scheduler: none
        idle_stop_python: "{python}"
        idle_stop_install_dir: "{tmp}/lib"
        idle_stop_state_dir: "{tmp}/state"
        idle_stop_command: "touch {tmp}/stopped"
        idle_stop_instance_id: "{instance}"
        idle_stop_aws: {{endpoint_url: "{endpoint}", access_key: "{key_id}", secret_key: "{secret}", region: ap-northeast-1}}
"""  # noqa: E501


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from cost_safety_support import start_emulator

    emu = start_emulator(tmp_path_factory.mktemp("idle-emulator"))
    try:
        yield emu
    finally:
        emu.stop()


def run_idle_role(emulator, tmp_path, lifecycle=""):
    """Run the idle_stop role for a new emulated instance (``lifecycle`` as the aws_ec2 inventory gives
    it); return (client factory, instance id)."""
    aws = clients(emulator.endpoint)
    instance = aws("ec2").run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge")[
        "Instances"
    ][0]["InstanceId"]
    playbook = tmp_path / "idle.yml"
    playbook.write_text(
        IDLE_PLAY.format(
            python=sys.executable,
            tmp=tmp_path,
            instance=instance,
            endpoint=emulator.endpoint,
            lifecycle=lifecycle,
            key_id=emulator.credentials()["aws_access_key_id"],
            secret=emulator.credentials()["aws_secret_access_key"],
        )
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", str(playbook)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return aws, instance


def test_role_installs_the_check_and_creates_the_stop_alarm_with_the_configured_threshold(emulator, tmp_path):
    aws, instance = run_idle_role(emulator, tmp_path)
    # Idempotence (a second run changes nothing) is checked by the role's molecule scenario.

    alarms = aws("cloudwatch").describe_alarms(AlarmNames=[f"kumolab-gpu-idle-stop-{instance}"])["MetricAlarms"]
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm["Threshold"] == 7.0 and alarm["ComparisonOperator"] == "LessThanThreshold"
    assert (
        alarm["MetricName"] == "CPUUtilization" and alarm["Namespace"] == "AWS/EC2" and alarm["Statistic"] == "Average"
    )
    assert alarm["EvaluationPeriods"] * alarm["Period"] == 20 * 60
    assert alarm["AlarmActions"] == ["arn:aws:automate:ap-northeast-1:ec2:stop"]
    assert alarm["Dimensions"] == [{"Name": "InstanceId", "Value": instance}]
    assert "start-instances" in alarm["AlarmDescription"]

    script = tmp_path / "lib/kumolab_idle_check.py"
    assert script.exists() and os.access(script, os.X_OK)
    assert (tmp_path / "state/idle_state.json").exists()  # the role's dry-run probe ran it
    assert not (tmp_path / "stopped").exists()


def test_a_spot_instance_gets_a_terminate_alarm(emulator, tmp_path):
    """A one-time Spot instance cannot be stopped: the aws_ec2 inventory's instance_lifecycle=spot turns the
    alarm's action into terminate, and its description does not tell the user to start the instance again."""
    aws, instance = run_idle_role(emulator, tmp_path, lifecycle="spot")
    alarm = aws("cloudwatch").describe_alarms(AlarmNames=[f"kumolab-gpu-idle-stop-{instance}"])["MetricAlarms"][0]
    assert alarm["AlarmActions"] == ["arn:aws:automate:ap-northeast-1:ec2:terminate"]
    assert "terminates" in alarm["AlarmDescription"] and "start-instances" not in alarm["AlarmDescription"]
