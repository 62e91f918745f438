"""Lab 7 loader: puts the model and its Python dependencies on EFS (a one-off function with the access point).

Invoked by the playbook with ``{"bucket": B, "objects": [{"key", "sha256", "kind": "wheel"|"file", "name"}]}``:
each object is read from the private staging bucket (through the VPC's S3 gateway endpoint on AWS), checked
against its SHA-256, and written under ``MOUNT_PATH``: a wheel is unpacked into ``python/`` (what pip does for
these pure-layout wheels), a file is copied to ``model/<name>``. ``.installed.json`` records what is there, so
a second run changes nothing (``{"changed": false}``). Everything goes to a temporary directory first and is
renamed into place, so a failed load never leaves a half-written model or package behind.
"""

import hashlib
import json
import os
import shutil
import tempfile
import zipfile

import boto3

MOUNT_PATH = os.environ.get("MOUNT_PATH", "/mnt/models")


def _manifest_path():
    return os.path.join(MOUNT_PATH, ".installed.json")


def _installed():
    try:
        with open(_manifest_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _download(s3, bucket, item, directory):
    path = os.path.join(directory, os.path.basename(item["key"]))
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=item["key"])["Body"]
    with open(path, "wb") as out:
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != item["sha256"]:
        raise ValueError(
            f"s3://{bucket}/{item['key']}: SHA-256 {digest.hexdigest()} is not the expected {item['sha256']}"
        )
    return path


def _install(path, item):
    if item["kind"] == "wheel":
        name = item["key"].rsplit("/", 1)[-1].split("-", 1)[0]
        target = os.path.join(MOUNT_PATH, "python")
        os.makedirs(target, exist_ok=True)
        staging = tempfile.mkdtemp(dir=MOUNT_PATH, prefix=".unpack-")
        with zipfile.ZipFile(path) as wheel:
            wheel.extractall(staging)
        for entry in os.listdir(staging):
            final = os.path.join(target, entry)
            if os.path.isdir(final):
                shutil.rmtree(final)
            elif os.path.exists(final):
                os.remove(final)
            os.rename(os.path.join(staging, entry), final)
        os.rmdir(staging)
        return f"python/ ({name})"
    target = os.path.join(MOUNT_PATH, "model")
    os.makedirs(target, exist_ok=True)
    final = os.path.join(target, item["name"])
    os.replace(path, final) if os.stat(path).st_dev == os.stat(target).st_dev else shutil.copyfile(path, final)
    return f"model/{item['name']}"


def handler(event, context):
    bucket, objects = event.get("bucket"), event.get("objects")
    if not bucket or not isinstance(objects, list):
        raise ValueError('event must be {"bucket": "...", "objects": [{"key", "sha256", "kind", "name"}, ...]}')
    installed = _installed()
    todo = [o for o in objects if installed.get(o["key"]) != o["sha256"]]
    if not todo:
        return {"changed": False, "installed": sorted(installed), "mount_path": MOUNT_PATH}
    s3 = boto3.client("s3")
    done = []
    with tempfile.TemporaryDirectory(dir=MOUNT_PATH, prefix=".download-") as directory:
        for item in todo:
            path = _download(s3, bucket, item, directory)
            done.append(_install(path, item))
            installed[item["key"]] = item["sha256"]
            print(f"loaded s3://{bucket}/{item['key']} -> {done[-1]}")
    tmp = _manifest_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(installed, f, indent=1, sort_keys=True)
    os.replace(tmp, _manifest_path())
    return {"changed": True, "loaded": done, "installed": sorted(installed), "mount_path": MOUNT_PATH}
