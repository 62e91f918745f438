"""library/kumolab_dynamodb_table.py against the emulator, the amazon.aws way: create in check mode,
create, create again (unchanged), modify, delete in check mode, delete, delete again (unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from kumolab.local import settings
from kumolab.paths import REPO_ROOT, state_dir

VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture
def module(emulator):
    def run(*args: str, check: bool = False, **params) -> dict:
        keys = settings.credentials(state_dir() / "emulator")  # the only key the emulator accepts
        params.update(
            endpoint_url=emulator,
            access_key=keys["aws_access_key_id"],
            secret_key=keys["aws_secret_access_key"],
            region="ap-northeast-1",
        )
        command = [
            f"{VENV_BIN}/ansible",
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-m",
            "kumolab_dynamodb_table",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-a",
            json.dumps(params),
        ]
        if check:
            command.append("--check")
        env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
        proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        text = proc.stdout
        result = json.JSONDecoder().raw_decode(text[text.index("{") :])[0]
        return result["plays"][0]["tasks"][0]["hosts"]["localhost"]

    return run


def test_table_lifecycle(module, aws):
    name = f"modtest-{uuid.uuid4().hex[:8]}"
    ddb = aws("dynamodb")
    want = dict(
        name=name,
        partition_key="item_id",
        sort_key="created_at",
        point_in_time_recovery=True,
        tags={"Project": "kumolab", "Lab": "unit"},
    )

    planned = module(check=True, **want)
    assert planned["changed"] and "create table" in planned["changes"]
    assert name not in ddb.list_tables()["TableNames"]

    created = module(**want)
    assert created["changed"] and not created.get("failed"), created.get("msg")
    table = created["table"]
    assert table["status"] == "ACTIVE" and table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["partition_key"] == {"name": "item_id", "type": "S"} and table["sort_key"] == {
        "name": "created_at",
        "type": "S",
    }
    assert table["point_in_time_recovery"] is True and table["tags"] == {"Project": "kumolab", "Lab": "unit"}
    desc = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert desc["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    again = module(**want)
    assert not again["changed"] and again["changes"] == []

    modified = module(**dict(want, point_in_time_recovery=False, tags={"Project": "kumolab", "Lab": "unit2"}))
    assert modified["changed"] and modified["table"]["point_in_time_recovery"] is False
    assert modified["table"]["tags"]["Lab"] == "unit2"
    desc = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert desc["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"

    wrong_key = module(**dict(want, partition_key="other"))
    assert wrong_key.get("failed") and "Key schemas cannot change" in wrong_key["msg"]

    planned_delete = module(check=True, name=name, state="absent")
    assert planned_delete["changed"] and name in ddb.list_tables()["TableNames"]

    deleted = module(name=name, state="absent")
    assert deleted["changed"] and name not in ddb.list_tables()["TableNames"]

    deleted_again = module(name=name, state="absent")
    assert not deleted_again["changed"] and deleted_again["table"] == {}
