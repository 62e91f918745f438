"""EFS on the local target (issue 14): Lambda's FileSystemConfigs kept and checked as AWS checks them, the
access point modules, access points as directories, and the per-function mount namespace."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
import zipfile

import botocore.exceptions
import pytest
from cost_safety_support import REPO, aws_args, clients, run_module, start_emulator

MOUNT_SCRIPT = REPO / "src" / "kumolab" / "local" / "runtime" / "mount_namespace.py"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("efs-emulator"))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def aws(emulator):
    return clients(emulator.endpoint)


@pytest.fixture(scope="module")
def network(aws):
    """A VPC with a subnet in each of two zones, a file system with a mount target in the first only."""
    ec2, efs = aws("ec2"), aws("efs")
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.77.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for i, zone in enumerate(zones)
    ]
    group = ec2.create_security_group(GroupName="efs-test-clients", Description="t", VpcId=vpc)["GroupId"]
    fs = efs.create_file_system(CreationToken="efs-local-test", Encrypted=True)["FileSystemId"]
    efs.create_mount_target(FileSystemId=fs, SubnetId=subnets[0], SecurityGroups=[group])
    point = efs.create_access_point(
        FileSystemId=fs,
        PosixUser={"Uid": 1000, "Gid": 1000},
        RootDirectory={"Path": "/models", "CreationInfo": {"OwnerUid": 1000, "OwnerGid": 1000, "Permissions": "0755"}},
    )
    role = aws("iam").create_role(
        RoleName="efs-local-test",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }  # noqa: E501
        ),
    )["Role"]["Arn"]
    time.sleep(3.5)  # the iam-propagation rule: a new role cannot be assumed at once
    return {"subnets": subnets, "group": group, "fs": fs, "ap": point["AccessPointArn"], "role": role}


def _create(aws, network, name, **extra):
    return aws("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=network["role"],
        Handler="app.handler",
        Code={"ZipFile": _zip()},
        **extra,
    )


def _code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_lambda_efs_config_rules(aws, network):
    """lambda-efs-config: a VPC, a /mnt/<name> path, one file system, a mount target in every subnet's zone."""
    mount = [{"Arn": network["ap"], "LocalMountPath": "/mnt/models"}]
    in_zone_a = {"SubnetIds": [network["subnets"][0]], "SecurityGroupIds": [network["group"]]}
    in_zone_b = {"SubnetIds": [network["subnets"][1]], "SecurityGroupIds": [network["group"]]}
    with pytest.raises(botocore.exceptions.ClientError) as no_vpc:
        _create(aws, network, "efs-no-vpc", FileSystemConfigs=mount)
    assert _code(no_vpc) == "InvalidParameterValueException" and "VPC" in str(no_vpc.value)
    with pytest.raises(botocore.exceptions.ClientError) as bad_path:
        _create(
            aws,
            network,
            "efs-bad-path",
            VpcConfig=in_zone_a,
            FileSystemConfigs=[dict(mount[0], LocalMountPath="/opt/models")],
        )  # noqa: E501
    assert _code(bad_path) == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as no_target:
        _create(aws, network, "efs-zone-b", VpcConfig=in_zone_b, FileSystemConfigs=mount)
    assert _code(no_target) == "InvalidParameterValueException" and "mount target" in str(no_target.value)
    with pytest.raises(botocore.exceptions.ClientError) as two:
        _create(
            aws,
            network,
            "efs-two",
            VpcConfig=in_zone_a,
            FileSystemConfigs=mount + [dict(mount[0], LocalMountPath="/mnt/b")],
        )  # noqa: E501
    assert _code(two) == "InvalidParameterValueException"
    created = _create(aws, network, "efs-ok", VpcConfig=in_zone_a, FileSystemConfigs=mount)
    assert created["FileSystemConfigs"] == mount
    lam = aws("lambda")
    assert lam.get_function_configuration(FunctionName="efs-ok")["FileSystemConfigs"] == mount
    # Moving the function to a zone without a mount target is refused too, and changes nothing.
    with pytest.raises(botocore.exceptions.ClientError):
        lam.update_function_configuration(FunctionName="efs-ok", VpcConfig=in_zone_b)
    assert lam.get_function_configuration(FunctionName="efs-ok")["VpcConfig"]["SubnetIds"] == in_zone_a["SubnetIds"]
    lam.update_function_configuration(FunctionName="efs-ok", FileSystemConfigs=[])
    assert not lam.get_function_configuration(FunctionName="efs-ok").get("FileSystemConfigs")


def test_access_point_module_create_keep_replace_delete(emulator, aws, network):
    args = dict(
        aws_args(emulator.endpoint),
        file_system_id=network["fs"],
        name="kumolab-module-test",
        posix_user={"uid": 1000, "gid": 1000},
        root_directory={"path": "/m", "creation_info": {"owner_uid": 1000, "owner_gid": 1000, "permissions": "0750"}},
        tags={"Project": "kumolab"},
    )
    efs = aws("efs")

    def mine():
        return [
            a
            for a in efs.describe_access_points(FileSystemId=network["fs"])["AccessPoints"]
            if a.get("Name") == "kumolab-module-test"
        ]  # noqa: E501

    checked = run_module("kumolab_efs_access_point", args, check=True)
    assert checked["changed"] is True and not mine()
    created = run_module("kumolab_efs_access_point", args)
    assert created["changed"] is True and created["access_point"]["access_point_arn"].endswith(
        created["access_point"]["access_point_id"]
    )  # noqa: E501
    again = run_module("kumolab_efs_access_point", args)
    assert (
        again["changed"] is False
        and again["access_point"]["access_point_id"] == created["access_point"]["access_point_id"]
    )  # noqa: E501
    replaced = run_module("kumolab_efs_access_point", dict(args, posix_user={"uid": 1001, "gid": 1001}))
    assert replaced["changed"] is True and replaced["actions"][0].startswith("replace")
    assert [a["PosixUser"] for a in mine()] == [{"Uid": 1001, "Gid": 1001}]
    bad = run_module("kumolab_efs_access_point", dict(args, root_directory={"path": "relative"}))
    assert bad.get("failed") and "absolute" in bad["msg"]
    gone = dict(aws_args(emulator.endpoint), file_system_id=network["fs"], name="kumolab-module-test", state="absent")
    assert run_module("kumolab_efs_access_point", gone, check=True)["changed"] is True and mine()
    assert run_module("kumolab_efs_access_point", gone)["changed"] is True and not mine()
    assert run_module("kumolab_efs_access_point", gone)["changed"] is False


def test_lambda_file_system_module_sets_it_once(emulator, aws, network):
    _create(
        aws,
        network,
        "efs-module",
        VpcConfig={"SubnetIds": [network["subnets"][0]], "SecurityGroupIds": [network["group"]]},
    )  # noqa: E501
    args = dict(
        aws_args(emulator.endpoint),
        function_name="efs-module",
        file_systems=[{"arn": network["ap"], "local_mount_path": "/mnt/models"}],
    )
    assert run_module("kumolab_lambda_file_system", args, check=True)["changed"] is True
    assert not aws("lambda").get_function_configuration(FunctionName="efs-module").get("FileSystemConfigs")
    assert run_module("kumolab_lambda_file_system", args)["changed"] is True
    assert run_module("kumolab_lambda_file_system", args)["changed"] is False
    bad = run_module(
        "kumolab_lambda_file_system", dict(args, file_systems=[{"arn": network["ap"], "local_mount_path": "/tmp/x"}])
    )  # noqa: E501
    assert bad.get("failed") and "/mnt/" in bad["msg"]


def test_access_point_directory_is_created_with_its_creation_info(tmp_path, monkeypatch):
    from kumolab.local import efs

    monkeypatch.setenv("KUMOLAB_STATE_DIR", str(tmp_path))
    point = {
        "FileSystemId": "fs-0123abcd",
        "RootDirectory": {
            "Path": "/kumolab-models",
            "CreationInfo": {"OwnerUid": 1000, "OwnerGid": 1000, "Permissions": "0750"},
        },  # noqa: E501
    }
    directory = efs.access_point_directory(point)
    assert directory == tmp_path / "efs" / "fs-0123abcd" / "kumolab-models"
    info = directory.stat()
    assert stat.S_IMODE(info.st_mode) == 0o750
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (1000, 1000)
    with pytest.raises(efs.RootDirectoryMissing):
        efs.access_point_directory({"FileSystemId": "fs-0123abcd", "RootDirectory": {"Path": "/elsewhere"}})
    with pytest.raises(efs.RootDirectoryMissing):
        efs.access_point_directory(
            {
                "FileSystemId": "fs-0123abcd",
                "RootDirectory": {"Path": "/a/../b", "CreationInfo": point["RootDirectory"]["CreationInfo"]},
            }
        )  # noqa: E501


def test_the_mount_is_seen_by_that_process_only(tmp_path):
    source = tmp_path / "ap"
    source.mkdir()
    (source / "weights.pt").write_text("w")
    probe = (
        "import os; print(sorted(os.listdir('/mnt')), open('/mnt/models/weights.pt').read());"
        "open('/mnt/models/written', 'w').write('x')"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            str(MOUNT_SCRIPT),
            "--bind",
            f"{source}:/mnt/models",
            "--",
            sys.executable,
            "-I",
            "-c",
            probe,
        ],  # noqa: E501
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['models']", "w"]
    assert (source / "written").read_text() == "x"  # written through the mount, into the access point's directory
    assert not os.path.exists("/mnt/models"), "nothing is mounted or created outside the worker's namespace"


def test_mount_targets_must_be_under_mnt_and_sources_must_exist(tmp_path):
    outside = subprocess.run(
        [sys.executable, "-I", str(MOUNT_SCRIPT), "--bind", f"{tmp_path}:/opt/models", "--", "/bin/true"],
        capture_output=True,
        text=True,
    )
    assert outside.returncode != 0 and "/mnt/" in outside.stderr
    missing = subprocess.run(
        [sys.executable, "-I", str(MOUNT_SCRIPT), "--bind", f"{tmp_path}/nope:/mnt/models", "--", "/bin/true"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 70 and "EFSMountFailureException" in missing.stderr
