"""Amazon EFS on the local target: file systems as directories, Lambda's ``FileSystemConfigs`` kept and checked.

moto stores EFS file systems, mount targets and access points but holds no files, and its Lambda drops a
function's ``FileSystemConfigs``. Three pieces make Lab 7 (``efs_inference``) run here as on AWS:

- **Storage** (:func:`access_point_directory`): file system ``fs-…`` is the directory
  ``<state dir>/efs/fs-…/``; an access point is its ``RootDirectory.Path`` inside it. As EFS does on the first
  mount, a missing root directory is created with the access point's ``CreationInfo`` (owner uid/gid and
  permissions; the owner is set when this process may ``chown``, i.e. runs as root); without ``CreationInfo``
  a missing root directory is a mount failure (AWS: the mount fails). The local runtime mounts that directory
  at the function's ``LocalMountPath`` in a mount namespace of the worker's own
  (:mod:`kumolab.local.runtime.mount_namespace`).
- **moto fix** (:func:`install_file_system_configs`, a front-door hook): ``CreateFunction`` and
  ``UpdateFunctionConfiguration`` keep ``FileSystemConfigs`` and ``GetFunction(Configuration)`` return it.
- **Fidelity rule** ``lambda-efs-config`` (:func:`install_file_system_rules`): what AWS checks when a function
  is given a file system — at most one, a mount path ``/mnt/<name>``, an access point ARN that exists, a
  ``VpcConfig``, and a mount target of the access point's file system in the Availability Zone of every subnet
  of the function — is checked here too, with AWS's error codes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kumolab.paths import state_dir

#: Lambda's pattern for ``FileSystemConfig.LocalMountPath`` (API_FileSystemConfig).
LOCAL_MOUNT_PATH = re.compile(r"^/mnt/[a-zA-Z0-9-_.]+$")
ACCESS_POINT_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:elasticfilesystem:[a-z0-9-]+:\d{12}:access-point/(?P<id>fsap-[a-f0-9]{8,40})$"
)


class RootDirectoryMissing(LookupError):
    """The access point's root directory does not exist and it has no CreationInfo to create it with."""


def file_system_directory(file_system_id: str) -> Path:
    """Where file system ``file_system_id`` keeps its files on this machine."""
    if not re.fullmatch(r"fs-[a-f0-9]{8,40}", file_system_id):
        raise ValueError(f"not an EFS file system id: {file_system_id!r}")
    return state_dir() / "efs" / file_system_id


def access_point_directory(access_point: dict) -> Path:
    """The local directory behind ``access_point`` (a DescribeAccessPoints item), created as EFS creates it."""
    root = file_system_directory(access_point["FileSystemId"])
    root.mkdir(parents=True, exist_ok=True)
    directory = access_point.get("RootDirectory") or {}
    relative = (directory.get("Path") or "/").strip("/")
    if any(part in ("", ".", "..") for part in relative.split("/")) and relative:
        raise RootDirectoryMissing(f"root directory {directory.get('Path')!r} is not a plain absolute path")
    target = root / relative if relative else root
    if target.is_dir():
        return target
    info = directory.get("CreationInfo")
    if not info:
        raise RootDirectoryMissing(
            f"the access point's root directory {directory.get('Path')} does not exist on "
            f"{access_point['FileSystemId']} and the access point has no CreationInfo to create it with"
        )
    # EFS creates only the last component with CreationInfo; missing parents as root, 0755.
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    target.mkdir(mode=0o700)
    os.chmod(target, int(str(info["Permissions"]), 8))
    if os.geteuid() == 0:
        os.chown(target, int(info["OwnerUid"]), int(info["OwnerGid"]))
    return target


# -- moto: keep FileSystemConfigs ------------------------------------------------------------------------


def install_file_system_configs() -> None:
    """moto's Lambda keeps a function's ``FileSystemConfigs`` (CreateFunction, UpdateFunctionConfiguration) and
    returns it with its configuration, as AWS does (moto 5.2.5 drops it)."""
    from moto.awslambda.models import LambdaFunction

    if getattr(LambdaFunction.get_configuration, "_kumolab_efs", False):
        return
    original_init = LambdaFunction.__init__
    original_get = LambdaFunction.get_configuration
    original_update = LambdaFunction.update_configuration

    def init(self, account_id, spec, *args, **kwargs):
        original_init(self, account_id, spec, *args, **kwargs)
        self._kumolab_file_systems = list(spec.get("FileSystemConfigs") or [])

    def get_configuration(self, *args, **kwargs):
        config = original_get(self, *args, **kwargs)
        file_systems = getattr(self, "_kumolab_file_systems", [])
        if file_systems:
            config["FileSystemConfigs"] = [dict(c) for c in file_systems]
        return config

    def update_configuration(self, config_updates):
        if "FileSystemConfigs" in config_updates:
            self._kumolab_file_systems = list(config_updates.get("FileSystemConfigs") or [])
        return original_update(self, config_updates)

    get_configuration._kumolab_efs = True  # type: ignore[attr-defined]
    LambdaFunction.__init__ = init
    LambdaFunction.get_configuration = get_configuration
    LambdaFunction.update_configuration = update_configuration


# -- fidelity: what Lambda checks about a function's file system ------------------------------------------


def file_system_config_error(
    account_id: str, region: str, file_systems: list, vpc_config: dict | None
) -> tuple[str, str] | None:
    """``(error code, message)`` when Lambda would refuse these ``FileSystemConfigs``, else None."""
    from moto.ec2.models import ec2_backends
    from moto.efs.models import efs_backends

    if not file_systems:
        return None
    if len(file_systems) > 1:
        return "InvalidParameterValueException", "A function can have at most 1 file system configuration."
    config = file_systems[0]
    path, arn = config.get("LocalMountPath") or "", config.get("Arn") or ""
    if not LOCAL_MOUNT_PATH.match(path):
        return (
            "ValidationException",
            f"1 validation error detected: Value '{path}' at 'fileSystemConfigs.1.member.localMountPath' failed to "
            f"satisfy constraint: Member must satisfy regular expression pattern: ^/mnt/[a-zA-Z0-9-_.]+$",
        )
    found = ACCESS_POINT_ARN.match(arn)
    if not found:
        return "ValidationException", f"FileSystemConfig Arn '{arn}' is not an EFS access point ARN."
    subnets = list((vpc_config or {}).get("SubnetIds") or [])
    if not subnets:
        return (
            "InvalidParameterValueException",
            "The function must be configured with a VPC (VpcConfig with subnets and security groups) to mount an "
            "EFS file system.",
        )
    efs = efs_backends[account_id][region]
    access_point = efs.access_points.get(found["id"])
    if access_point is None:
        return "InvalidParameterValueException", f"EFS access point {arn} not found."
    file_system = efs.file_systems_by_id.get(access_point.file_system_id)
    if file_system is None:
        return "InvalidParameterValueException", f"EFS file system {access_point.file_system_id} not found."
    ec2 = ec2_backends[account_id][region]
    zones_with_targets = {target.availability_zone_name for target in file_system.iter_mount_targets()}
    for subnet_id in subnets:
        zone = ec2.get_subnet(subnet_id).availability_zone
        if zone not in zones_with_targets:
            return (
                "InvalidParameterValueException",
                f"EFS file system {file_system.file_system_id} referenced by access point {arn} must have a mount "
                f"target in every Availability Zone of the function's subnets; {subnet_id} is in {zone}, which has "
                f"none. Create a mount target there.",
            )
    return None


def install_file_system_rules() -> None:
    """CreateFunction / UpdateFunctionConfiguration with an invalid ``FileSystemConfigs`` fail as on AWS."""
    from moto.awslambda.models import LambdaBackend
    from moto.core.exceptions import JsonRESTError

    if getattr(LambdaBackend.create_function, "_kumolab_efs_rules", False):
        return
    original_create = LambdaBackend.create_function
    original_update = LambdaBackend.update_function_configuration

    def refuse(backend, file_systems, vpc_config):
        error = file_system_config_error(backend.account_id, backend.region_name, file_systems, vpc_config)
        if error is not None:
            exc = JsonRESTError(*error)
            exc.code = 400
            raise exc

    def create_function(backend, spec):
        refuse(backend, list(spec.get("FileSystemConfigs") or []), spec.get("VpcConfig"))
        return original_create(backend, spec)

    def update_function_configuration(backend, function_name, qualifier, body):
        if body.get("FileSystemConfigs") or "VpcConfig" in body:
            current = backend.get_function(function_name, qualifier)
            file_systems = body.get("FileSystemConfigs", getattr(current, "_kumolab_file_systems", []))
            vpc = body["VpcConfig"] if "VpcConfig" in body else current._vpc_config
            refuse(backend, list(file_systems or []), vpc)
        return original_update(backend, function_name, qualifier, body)

    create_function._kumolab_efs_rules = True  # type: ignore[attr-defined]
    LambdaBackend.create_function = create_function
    LambdaBackend.update_function_configuration = update_function_configuration


# -- moto: EFS's first tag API (DescribeTags, CreateTags, DeleteTags) ------------------------------------------

#: ``GET /2015-02-01/tags/<id>/``, ``POST /2015-02-01/create-tags/<id>``, ``POST .../delete-tags/<id>``
LEGACY_TAGS_PATH = re.compile(
    r"^/2015-02-01/(?:tags/(?P<describe>fs-[a-f0-9]+)/?|(?P<verb>create|delete)-tags/(?P<id>fs-[a-f0-9]+)/?)$"
)


def legacy_tags(method: str, path: str, body: bytes) -> tuple[int, dict] | None:
    """EFS's DescribeTags / CreateTags / DeleteTags (deprecated on AWS but served, and what ``community.aws.efs``
    calls) on moto's file systems: ``(status, body)``, or None when the path is not one of them."""
    import json

    from moto.efs.models import efs_backends

    found = LEGACY_TAGS_PATH.match(path)
    if not found:
        return None
    fs_id = found["describe"] or found["id"]
    for account in list(efs_backends.keys()):
        for backend in list(efs_backends[account].values()):
            if fs_id not in backend.file_systems_by_id:
                continue
            if found["describe"] and method == "GET":
                return 200, {"Tags": backend.list_tags_for_resource(fs_id)}
            data = json.loads(body or b"{}")
            if found["verb"] == "create" and method == "POST":
                backend.tagging_service.tag_resource(fs_id, data.get("Tags") or [])
                return 204, {}
            if found["verb"] == "delete" and method == "POST":
                backend.tagging_service.untag_resource_using_names(fs_id, data.get("TagKeys") or [])
                return 204, {}
    return 404, {"ErrorCode": "FileSystemNotFound", "Message": f"File system '{fs_id}' does not exist."}
