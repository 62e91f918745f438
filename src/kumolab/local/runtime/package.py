"""Deterministic Lambda packages: the same sources always give the same zip, byte for byte.

Fixed timestamps (1980-01-01), sorted entries, fixed permissions, no directory entries - so the
CodeSha256 of a re-built package equals the deployed one and ``amazon.aws.lambda`` reports no change.
The zip is written under ``<state dir>/artifacts/lambda/`` by default, the artifact store the local
runtime reads deployed code from (see :mod:`kumolab.local.runtime.lambda_invoke`).

``--vendor DIST ...`` adds third-party distributions (and what they require) next to the handler, as a Lambda
deployment package carries them. Without ``--vendor-platform`` they are copied from this interpreter's installed
files (the local runtime runs handlers with this interpreter, so compiled extensions match); with it (``AWS``:
``manylinux2014_x86_64``, ``--vendor-python 3.13``) pip installs the same versions' wheels for Lambda's platform.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

from kumolab.local.runtime.lambda_invoke import artifact_dir

EPOCH = (1980, 1, 1, 0, 0, 0)


def build_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name], compresslevel=9)
    return buf.getvalue()


def _skipped(rel: PurePosixPath) -> bool:
    return rel.is_absolute() or ".." in rel.parts or "__pycache__" in rel.parts or rel.suffix == ".pyc"


def with_requirements(dists: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``dists`` and, recursively, those they require (markers evaluated here, the
    extras a requirement names included: torch's ``cuda-toolkit[cufile,...]`` brings those libraries)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    followed: set[tuple[str, str]] = set()
    todo: list[tuple[str, frozenset]] = [(name, frozenset()) for name in dists]
    while todo:
        name, extras = todo.pop()
        key = name.lower().replace("_", "-")
        if key not in found:
            try:
                found[key] = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                raise FileNotFoundError(f"--vendor {name}: not installed in {sys.executable}") from None
        for extra in {"", *extras} - {e for k, e in followed if k == key}:
            followed.add((key, extra))
            for text in found[key].requires or []:
                req = Requirement(text)
                if req.marker is None or req.marker.evaluate({"extra": extra}):
                    todo.append((req.name, frozenset(req.extras)))
    return [found[k] for k in sorted(found)]


def vendored_files(dists: list[str], platform: str = "", python: str = "3.13") -> dict[str, bytes]:
    """The files of ``dists`` (with their requirements) as they go into the zip's root."""
    if not dists:
        return {}
    installed = with_requirements(dists)
    files: dict[str, bytes] = {}
    if not platform:
        for dist in installed:
            for rel in dist.files or []:
                path = PurePosixPath(str(rel))
                if not _skipped(path) and path.name not in ("RECORD", "INSTALLER", "direct_url.json"):
                    files[str(path)] = Path(dist.locate_file(rel)).read_bytes()
        return files
    pins = [f"{d.metadata['Name']}=={d.version}" for d in installed]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--no-deps", "--target", tmp]
        command += ["--only-binary=:all:", "--platform", platform, "--python-version", python, "--implementation", "cp"]
        done = subprocess.run(command + pins, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise FileNotFoundError(
                f"pip could not fetch {' '.join(pins)} for {platform}: {done.stderr.strip()[-500:]}"
            )
        for sub in sorted(Path(tmp).rglob("*")):
            rel = PurePosixPath(sub.relative_to(tmp).as_posix())
            if sub.is_file() and not _skipped(rel) and rel.parts[0] != "bin" and rel.name != "RECORD":
                files[str(rel)] = sub.read_bytes()
    return files


def package(
    source: Path,
    include: list[str],
    out: Path,
    vendor: list[str] | None = None,
    platform: str = "",
    python: str = "3.13",
) -> dict:
    """Zip ``include`` (paths relative to ``source``; directories recursively) and the ``vendor`` distributions.
    ``changed`` when ``out`` differs."""
    vendored = vendored_files(list(vendor or []), platform, python)
    files: dict[str, bytes] = dict(vendored)
    for rel in include:
        path = source / rel
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file() and "__pycache__" not in sub.parts and sub.suffix != ".pyc":
                    files[str(sub.relative_to(source))] = sub.read_bytes()
        elif path.is_file():
            files[rel] = path.read_bytes()
        else:
            raise FileNotFoundError(f"{path} does not exist")
    data = build_zip(files)
    changed = not out.exists() or out.read_bytes() != data
    if changed:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    return {
        "changed": changed,
        "path": str(out),
        "files": sorted(f for f in files if f not in vendored),
        "vendored_files": len(vendored),
        "code_sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "size": len(data),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-runtime package", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="directory holding the sources")
    parser.add_argument("--include", required=True, nargs="+", help="files or directories, relative to --source")
    parser.add_argument("--name", required=True, help="package name; the zip is <artifact dir>/<name>.zip")
    parser.add_argument("--out", type=Path, help="explicit output path")
    parser.add_argument(
        "--vendor", nargs="*", default=[], help="installed distributions to add, with what they require"
    )
    parser.add_argument("--vendor-platform", default="", help="pip platform of their wheels (default: copy)")
    parser.add_argument("--vendor-python", default="3.13", help="their wheels' Python version")
    args = parser.parse_args(argv)
    out = args.out or artifact_dir() / f"{args.name}.zip"
    try:
        print(
            json.dumps(package(args.source, args.include, out, args.vendor, args.vendor_platform, args.vendor_python))
        )
    except FileNotFoundError as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
