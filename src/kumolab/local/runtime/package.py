"""Deterministic Lambda packages: the same sources always give the same zip, byte for byte.

Fixed timestamps (1980-01-01), sorted entries, fixed permissions, no directory entries - so the
CodeSha256 of a re-built package equals the deployed one and ``amazon.aws.lambda`` reports no change.
The zip is written under ``<state dir>/artifacts/lambda/`` by default, the artifact store the local
runtime reads deployed code from (see :mod:`kumolab.local.runtime.lambda_invoke`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

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


def package(source: Path, include: list[str], out: Path) -> dict:
    """Zip ``include`` (paths relative to ``source``; directories recursively). ``changed`` when ``out`` differs."""
    files: dict[str, bytes] = {}
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
        "files": sorted(files),
        "code_sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "size": len(data),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumolab-runtime package", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="directory holding the sources")
    parser.add_argument("--include", required=True, nargs="+", help="files or directories, relative to --source")
    parser.add_argument("--name", required=True, help="package name; the zip is <artifact dir>/<name>.zip")
    parser.add_argument("--out", type=Path, help="explicit output path")
    args = parser.parse_args(argv)
    out = args.out or artifact_dir() / f"{args.name}.zip"
    try:
        print(json.dumps(package(args.source, args.include, out)))
    except FileNotFoundError as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
