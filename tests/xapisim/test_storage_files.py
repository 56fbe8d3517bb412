"""Disk files: clones never copy holes; on XFS with reflink they share extents."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from xapisim import storage

GiB = 1024**3
MiB = 1024**2


def _make(path: Path) -> None:
    storage.create_sparse(path, 20 * GiB)
    storage.write_range(path, 0, os.urandom(3 * MiB))
    storage.write_range(path, 10 * GiB, b"\x42" * MiB)
    storage.write_range(path, 20 * GiB - 4096, b"\x07" * 4096)


def _same(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        for off, length in [(0, 4 * MiB), (10 * GiB - MiB, 3 * MiB), (20 * GiB - MiB, MiB)]:
            fa.seek(off)
            fb.seek(off)
            if fa.read(length) != fb.read(length):
                return False
    return a.stat().st_size == b.stat().st_size


def test_clone_copies_only_allocated_ranges(tmp_path: Path) -> None:
    src = tmp_path / "a.img"
    _make(src)
    dest = tmp_path / "b.img"
    storage.clone_file(src, dest)
    assert _same(src, dest)
    assert storage.allocated_bytes(dest) < 16 * MiB
    # Independent content afterwards.
    storage.write_range(dest, 0, b"changed")
    with src.open("rb") as f:
        assert f.read(7) != b"changed"


def test_changed_and_nonzero_blocks(tmp_path: Path) -> None:
    a = tmp_path / "a.img"
    storage.create_sparse(a, 64 * MiB)
    storage.write_range(a, 5 * MiB, b"x" * 10)
    b = tmp_path / "b.img"
    storage.clone_file(a, b)
    storage.write_range(b, 5 * MiB, b"x" * 10)  # same bytes: no change
    storage.write_range(b, 33 * MiB, b"y")
    storage.write_range(b, 40 * MiB, bytes(MiB))  # zeros over a hole: no change
    assert storage.changed_blocks(a, b) == [16]
    assert storage.nonzero_blocks(b) == [2, 16]


@pytest.fixture
def xfs_reflink(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        pytest.skip("needs root and xfsprogs")
    image = tmp_path / "xfs.img"
    with image.open("wb") as f:
        f.truncate(1 * GiB)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.root
def test_reflink_shares_extents_on_xfs(xfs_reflink: Path) -> None:
    src = xfs_reflink / "a.img"
    storage.create_sparse(src, 20 * GiB)
    storage.write_range(src, 0, os.urandom(64 * MiB))
    before = shutil.disk_usage(xfs_reflink).used
    dest = xfs_reflink / "b.img"
    storage.clone_file(src, dest)
    after = shutil.disk_usage(xfs_reflink).used
    assert after - before < 8 * MiB  # a copy would have used 64 MiB more
    assert _same(src, dest)
