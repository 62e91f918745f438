"""Review L4: what kumolab keeps on the controller is private, and the webhook secret stays off argv.

The state directory (keys, tokens, the emulator's keys, logs that may carry request data) is 0700 whatever the
umask, a background service's log 0600; the inventories read the webhook URL from $KUMOLAB_WEBHOOK_URL, so it
need not be passed with -e (visible in `ps` and shell history).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO, VENV_BIN

from kumolab.local.process import BackgroundService
from kumolab.paths import state_dir


@pytest.fixture
def open_umask():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_l4_state_dir_is_created_private(tmp_path, monkeypatch, open_umask):
    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(tmp_path / "new" / "state"))
    assert _mode(state_dir()) == 0o700


def test_l4_an_existing_readable_state_dir_is_narrowed(tmp_path, monkeypatch, open_umask):
    old = tmp_path / "state"
    old.mkdir(mode=0o755)
    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(old))
    assert _mode(state_dir()) == 0o700


def test_l4_background_service_log_is_private(tmp_path, monkeypatch, open_umask):
    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(tmp_path / "state"))
    service = BackgroundService(
        name="l4-probe",
        argv=[sys.executable, "-c", "import time; print('request data', flush=True); time.sleep(60)"],
        healthy=lambda svc: svc.log_file.exists() and b"request data" in svc.log_file.read_bytes(),
    )
    try:
        assert service.start() is True
        assert _mode(service.log_file) == 0o600
        assert _mode(service.directory) == 0o700
    finally:
        service.stop()


@pytest.mark.parametrize("target", ["local", "aws"])
def test_l4_webhook_url_comes_from_the_environment(target, tmp_path):
    secret = "https://hooks.example.invalid/services/T000/B000/not-a-real-secret"
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible"),
            "localhost",
            "-i",
            f"inventories/{target}/hosts.yml",
            "-m",
            "ansible.builtin.debug",
            "-a",
            "var=lab_notify_webhook_url",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "KUMOLAB_WEBHOOK_URL": secret,
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("\n{") + 1 :])
    assert report["plays"][0]["tasks"][0]["hosts"]["localhost"]["lab_notify_webhook_url"] == secret


def test_l4_docs_give_the_webhook_without_argv_and_link_the_deployer_permissions():
    text = (REPO / "docs" / "cost_safety.md").read_text()
    assert "KUMOLAB_WEBHOOK_URL" in text and "--stdin-name lab_notify_webhook_url" in text
    assert "(aws-permissions.md)" in text
