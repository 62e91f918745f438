"""library/kumolab_cognito_user_pool.py against the emulator, the amazon.aws way: create in check mode, create,
create again (unchanged), delete in check mode (nothing deleted), delete (the pool, its domain and client go),
delete again (unchanged)."""

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
    def run(check: bool = False, **params) -> dict:
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
            "kumolab_cognito_user_pool",
        ]
        command += ["-e", f"ansible_python_interpreter={sys.executable}", "-a", json.dumps(params)]
        if check:
            command.append("--check")
        env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
        proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        text = proc.stdout
        result = json.JSONDecoder().raw_decode(text[text.index("{") :])[0]
        return result["plays"][0]["tasks"][0]["hosts"]["localhost"]

    return run


def pools_named(idp, name: str) -> list[dict]:
    return [p for p in idp.list_user_pools(MaxResults=60)["UserPools"] if p["Name"] == name]


def test_user_pool_lifecycle_absent_deletes_it_and_is_idempotent_and_check_mode_safe(module, aws):
    name = f"modtest-{uuid.uuid4().hex[:8]}"
    idp = aws("cognito-idp")
    want = dict(
        name=name,
        domain=name,
        lookup_tags={"Lab": "unit"},
        tags={"Project": "kumolab", "Lab": "unit"},
    )

    planned = module(check=True, **want)
    assert planned["changed"] and planned["actions"][0] == "create user pool", planned
    assert pools_named(idp, name) == []

    created = module(**want)
    assert created["changed"] and not created.get("failed"), created.get("msg")
    pool_id = created["user_pool_id"]
    assert [p["Id"] for p in pools_named(idp, name)] == [pool_id]
    assert idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]["Domain"] == name

    again = module(**want)
    assert not again["changed"] and again["actions"] == [] and again["user_pool_id"] == pool_id

    absent = dict(name=name, lookup_tags={"Lab": "unit"}, state="absent")
    planned_delete = module(check=True, **absent)
    assert planned_delete["changed"], planned_delete
    assert planned_delete["actions"] == [f"delete hosted UI domain {name}", "delete user pool"]
    assert [p["Id"] for p in pools_named(idp, name)] == [pool_id]  # check mode deleted nothing

    deleted = module(**absent)
    assert deleted["changed"] and deleted["user_pool_id"] == pool_id and not deleted.get("failed"), deleted
    assert pools_named(idp, name) == []
    assert not idp.describe_user_pool_domain(Domain=name)["DomainDescription"].get("UserPoolId")

    deleted_again = module(**absent)
    assert not deleted_again["changed"] and deleted_again["user_pool_id"] == "" and deleted_again["actions"] == []
    checked_again = module(check=True, **absent)
    assert not checked_again["changed"]


def test_absent_leaves_a_pool_of_the_same_name_with_other_tags_alone(module, aws):
    name = f"modtest-{uuid.uuid4().hex[:8]}"
    idp = aws("cognito-idp")
    other = idp.create_user_pool(PoolName=name, UserPoolTags={"Lab": "another"})["UserPool"]["Id"]
    try:
        result = module(name=name, lookup_tags={"Lab": "unit"}, state="absent")
        assert not result["changed"] and not result.get("failed"), result
        assert [p["Id"] for p in pools_named(idp, name)] == [other]
    finally:
        idp.delete_user_pool(UserPoolId=other)
