"""IDX reader and SHA-256 verification of the MNIST files (kumolab_workloads.idx)."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from workloads_support import WORKLOADS, mnist_dir

from kumolab_workloads import idx


def write_idx(path, array: np.ndarray, type_code: int) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_reads_uint8_images_with_shape_and_values(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte", arr, 0x08)
    out = idx.read_idx(tmp_path / "x-idx3-ubyte")
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


def test_reads_big_endian_int32_and_float64(tmp_path):
    ints = np.array([-5, 7, 2**30], dtype=np.int32)
    write_idx(tmp_path / "i", ints, 0x0C)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "i"), ints)
    floats = np.array([[1.5, -2.25], [3e10, 0.0]])
    write_idx(tmp_path / "f", floats, 0x0E)
    out = idx.read_idx(tmp_path / "f")
    assert out.dtype == np.float64 and out.dtype.isnative
    np.testing.assert_array_equal(out, floats)


def test_reads_gzipped_idx(tmp_path):
    arr = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "l", arr, 0x08)
    with open(tmp_path / "l", "rb") as src, gzip.open(tmp_path / "l.gz", "wb") as dst:
        dst.write(src.read())
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "l.gz"), arr)


def test_truncated_file_is_rejected_with_sizes(tmp_path):
    arr = np.zeros((4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t", arr, 0x08)
    data = (tmp_path / "t").read_bytes()
    (tmp_path / "t").write_bytes(data[:-10])
    with pytest.raises(idx.IdxError, match=r"shape \(4, 28, 28\).*3136 data bytes.*3126"):
        idx.read_idx(tmp_path / "t")


def test_bad_magic_is_rejected(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(idx.IdxError, match="not an IDX file"):
        idx.read_idx(tmp_path / "bad")


def test_checksum_file_of_the_project_lists_the_four_files():
    sums = idx.load_checksums()
    assert set(sums) == set(idx.MNIST_FILES.values())
    assert sums["t10k-labels-idx1-ubyte"] == "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"


def test_real_mnist_loads_verified_with_expected_shapes():
    data = idx.load_mnist(mnist_dir(), verify=True)
    assert data["train_images"].shape == (60000, 28, 28)
    assert data["test_images"].shape == (10000, 28, 28)
    assert data["train_labels"].shape == (60000,)
    # Published class counts of the MNIST test set (e.g. 1135 ones, 892 fives).
    counts = np.bincount(data["test_labels"], minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data["train_images"].max() == 255 and data["train_images"].min() == 0


def corrupted_copy(tmp_path):
    src = mnist_dir()
    for name in idx.MNIST_FILES.values():
        shutil.copy(src / name, tmp_path / name)
    target = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0x01  # one flipped bit in one label
    target.write_bytes(bytes(raw))
    return target


def test_corrupted_file_gives_clear_error_naming_file_and_digests(tmp_path):
    target = corrupted_copy(tmp_path)
    with pytest.raises(idx.ChecksumError) as info:
        idx.load_mnist(tmp_path, verify=True)
    err = info.value
    msg = str(err)
    assert err.path == target
    assert str(target) in msg
    assert "expected ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" in msg
    assert f"got {idx.sha256_file(target)}" in msg
    assert "20-mnist.sh" in msg and "Delete it" in msg


def test_cli_verify_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "kumolab_workloads.idx", "verify", "--data-dir", str(mnist_dir())],
        cwd=WORKLOADS,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("OK  ") == 4
    corrupted_copy(tmp_path)
    bad = subprocess.run(
        [sys.executable, "-m", "kumolab_workloads.idx", "verify", "--data-dir", str(tmp_path)],
        cwd=WORKLOADS,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "SHA-256 mismatch" in bad.stderr and "t10k-labels-idx1-ubyte" in bad.stderr


def test_missing_data_dir_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="20-mnist.sh"):
        idx.find_mnist_dir(tmp_path)


def test_torchvision_layout_is_found(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in idx.MNIST_FILES.values():
        (raw / name).symlink_to(mnist_dir() / name)
    assert idx.find_mnist_dir(tmp_path) == raw
