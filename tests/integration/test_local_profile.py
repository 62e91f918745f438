"""The local profile is the one endpoint source: the AWS CLI and a plain boto3 script reach the emulator with it alone."""  # noqa: E501

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from conftest import VENV_BIN

pytestmark = pytest.mark.integration

BOTO3_SCRIPT = """
import json, boto3
vpcs = boto3.client("ec2").describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [__import__("sys").argv[1]]}])["Vpcs"]
print(json.dumps([v["VpcId"] for v in vpcs]))
"""


@pytest.fixture(scope="module")
def tagged_vpc(aws):
    name = f"profile-test-{uuid.uuid4().hex[:8]}"
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(
        CidrBlock="10.123.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}]}]
    )["Vpc"]["VpcId"]
    yield name, vpc
    ec2.delete_vpc(VpcId=vpc)


def only_the_profile(lab_env) -> dict:
    """A user's shell after `export AWS_PROFILE=kumolab-local`: no keys, no endpoint, no region."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "AWS_PROFILE": lab_env["KUMOLAB_AWS_PROFILE"],
        "AWS_CONFIG_FILE": lab_env["AWS_CONFIG_FILE"],
        "AWS_SHARED_CREDENTIALS_FILE": lab_env["AWS_SHARED_CREDENTIALS_FILE"],
    }


def test_aws_cli_reaches_the_emulator_through_the_profile(tagged_vpc, lab_env):
    name, vpc = tagged_vpc
    proc = subprocess.run(
        [
            str(VENV_BIN / "aws"),
            "ec2",
            "describe-vpcs",
            "--filters",
            f"Name=tag:Name,Values={name}",
            "--output",
            "json",
        ],
        env=only_the_profile(lab_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [v["VpcId"] for v in json.loads(proc.stdout)["Vpcs"]] == [vpc]


def test_a_plain_boto3_script_reaches_the_emulator_through_the_profile(tagged_vpc, lab_env):
    name, vpc = tagged_vpc
    proc = subprocess.run(
        [sys.executable, "-I", "-c", BOTO3_SCRIPT, name],
        env=only_the_profile(lab_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [vpc]


def test_the_profile_names_the_sessions_emulator_and_keys_that_stay_private(emulator, lab_env):
    import configparser

    from kumolab.local import settings

    parsed = configparser.RawConfigParser()
    parsed.read(lab_env["AWS_CONFIG_FILE"])
    profile = parsed[f"profile {lab_env['KUMOLAB_AWS_PROFILE']}"]
    assert profile["endpoint_url"] == emulator == settings.endpoint(int(lab_env["KUMOLAB_EMULATOR_PORT"]))
    assert profile["region"] == "ap-northeast-1"
    assert profile["aws_access_key_id"] != "testing" and profile["aws_secret_access_key"] != "testing"
    keys = os.path.join(lab_env["KUMOLAB_STATE_DIR"], "emulator", "credentials.json")
    assert json.loads(open(keys).read())["aws_access_key_id"] == profile["aws_access_key_id"]
    for path in (keys, lab_env["AWS_CONFIG_FILE"]):
        assert os.stat(path).st_mode & 0o077 == 0, f"{path} must be private (0600)"


def test_amazon_aws_modules_reach_the_emulator_through_the_profile(tagged_vpc, lab_env):
    """What the playbooks do (module_defaults group/aws: {profile, region}), for one module run on its own."""
    from conftest import REPO

    name, vpc = tagged_vpc
    args = {"profile": lab_env["KUMOLAB_AWS_PROFILE"], "region": "ap-northeast-1", "filters": {"tag:Name": name}}
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible"),
            "localhost",
            "-i",
            "inventories/local/hosts.yml",
            "-o",
            "-m",
            "amazon.aws.ec2_vpc_net_info",
            "-a",
            json.dumps(args),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.split("=>", 1)[1])
    assert [v["id"] for v in result["vpcs"]] == [vpc]
