"""Disk files: clones never copy holes; on XFS with reflink they share extents,
and the delta between two snapshots is found from their extent maps, with the
same answer as reading both."""

from __future__ import annotations

import ctypes
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.mounts import mounted_image, mounted_tmpfs
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
    with mounted_image(tmp_path / "mnt", "xfs", 1 * GiB) as mnt:
        yield mnt


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


# -- delta between snapshots: extent maps, falling back to reading ----------
BS = 64 * 1024  # small compare blocks: many per file, partial ones common
FALLOC_FL_KEEP_SIZE = 0x1
FALLOC_FL_PUNCH_HOLE = 0x2
FALLOC_FL_ZERO_RANGE = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _fallocate(fd: int, mode: int, off: int, length: int) -> None:
    if _libc.fallocate(fd, mode, off, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# An edit of the live disk: (kind, offset, length, seed).
Op = tuple[str, int, int, int]
KINDS = ["random", "fill", "zeros", "same", "punch", "prealloc", "zero_range", "truncate"]
ops = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, 80 * BS),
    st.integers(1, 5 * BS),
    st.integers(0, 255),
)


def _apply(path: Path, op: Op) -> set[int]:
    """Edit the file; return the compare blocks the edit may have touched."""
    kind, off, length, seed = op
    with path.open("r+b") as f:
        fd = f.fileno()
        before = os.fstat(fd).st_size
        if kind == "random":
            os.pwrite(fd, os.urandom(length), off)
        elif kind == "fill":
            os.pwrite(fd, bytes([seed]) * length, off)
        elif kind == "zeros":
            os.pwrite(fd, bytes(length), off)  # allocated zeros, not a hole
        elif kind == "same":
            # The same bytes written again: new extents, unchanged content.
            off %= max(before, 1)
            os.pwrite(fd, os.pread(fd, length, off), off)
        elif kind == "punch":
            _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length)
        elif kind == "prealloc":
            # Unwritten extents: read as zeros, map unlike a hole.
            _fallocate(fd, FALLOC_FL_KEEP_SIZE if seed % 2 else 0, off, length)
        elif kind == "zero_range":
            _fallocate(fd, FALLOC_FL_ZERO_RANGE, off, length)
        else:
            os.ftruncate(fd, off)
        after = os.fstat(fd).st_size
    spans = [(min(before, after), max(before, after))]
    if kind != "truncate":
        spans.append((off, off + length))
    return {i for lo, hi in spans if hi > lo for i in range(lo // BS, (hi - 1) // BS + 1)}


def _scenario(
    where: Path, first: list[Op], second: list[Op], after: list[Op]
) -> tuple[storage.BlockComparison, list[int], set[int]]:
    """A disk edited, snapshotted, edited again, snapshotted, edited again.

    Returns the comparison of the two snapshots, the read-based answer and
    the blocks the edits between the snapshots touched.
    """
    live, base, current = where / "live.img", where / "base.img", where / "current.img"
    for p in (live, base, current):
        p.unlink(missing_ok=True)
    storage.create_sparse(live, 48 * BS + 123)
    for op in first:
        _apply(live, op)
    storage.clone_file(live, base)
    touched: set[int] = set()
    for op in second:
        touched |= _apply(live, op)
    storage.clone_file(live, current)
    for op in after:
        _apply(live, op)  # the snapshots must not follow the live disk
    result = storage.compare_blocks(base, current, BS)
    return result, storage._changed_blocks_by_reading(base, current, BS), touched


PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# Edits before the base snapshot, between the two snapshots, and to the
# live disk after the second (which must not matter).
EDITS = given(
    first=st.lists(ops, max_size=8),
    second=st.lists(ops, max_size=5),
    after=st.lists(ops, max_size=3),
)


@pytest.mark.root
@PROPERTY
@EDITS
def test_delta_by_extent_map_equals_reading_on_xfs(
    xfs_reflink: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: list[Op],
    second: list[Op],
    after: list[Op],
) -> None:
    # Tiny FIEMAP batches, so paging through the map is exercised too.
    monkeypatch.setattr(storage, "FIEMAP_BATCH", 3)
    result, by_reading, touched = _scenario(xfs_reflink, first, second, after)
    assert result.changed == by_reading
    assert result.mapped
    # Blocks no edit touched share extents: only the touched ones are read.
    assert result.blocks_read <= len(touched)


@pytest.mark.root
def test_delta_reads_only_the_changed_blocks_on_xfs(xfs_reflink: Path) -> None:
    disk, base, current = (xfs_reflink / n for n in ("disk.img", "base.img", "current.img"))
    storage.create_sparse(disk, 512 * MiB)
    for i in range(32):  # 1 MiB every 16 MiB: blocks 0, 8, 16, ...
        storage.write_range(disk, i * 16 * MiB, os.urandom(MiB))
    storage.clone_file(disk, base)
    storage.write_range(disk, 5 * 16 * MiB + 10, b"new")
    storage.write_range(disk, 9 * 16 * MiB, os.urandom(4096))
    with disk.open("r+b") as f:  # the same bytes again: read, found unchanged
        os.pwrite(f.fileno(), os.pread(f.fileno(), 4096, 20 * 16 * MiB), 20 * 16 * MiB)
    storage.clone_file(disk, current)
    result = storage.compare_blocks(base, current)
    assert result.changed == [40, 72] == storage._changed_blocks_by_reading(base, current)
    assert result.mapped
    assert result.blocks_read == 3
    assert result.blocks_by_mapping == 256 - 3
    assert storage.changed_blocks(base, current) == [40, 72]


@PROPERTY
@EDITS
def test_delta_equals_reading_on_any_filesystem(
    tmp_path: Path, first: list[Op], second: list[Op], after: list[Op]
) -> None:
    # Copies rather than reflinks here unless tmp is XFS or btrfs: mappings
    # match only over holes, everything else is read.
    result, by_reading, _ = _scenario(tmp_path, first, second, after)
    assert result.changed == by_reading


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", "64m") as mnt:
        yield mnt


@pytest.mark.root
def test_delta_without_fiemap_reads(tmpfs: Path) -> None:
    a, b = tmpfs / "a.img", tmpfs / "b.img"
    storage.create_sparse(a, 16 * MiB)
    storage.write_range(a, 3 * MiB, os.urandom(3 * MiB))
    storage.clone_file(a, b)
    storage.write_range(b, 4 * MiB - 1, b"zz")
    with a.open("rb") as f, pytest.raises(storage.FiemapUnsupported):
        list(storage.fiemap(f.fileno(), 0, 16 * MiB))
    result = storage.compare_blocks(a, b)
    assert result.changed == [1, 2] == storage._changed_blocks_by_reading(a, b)
    assert not result.mapped
    assert result.blocks_read == 2


@pytest.mark.root
def test_delta_across_filesystems_reads(xfs_reflink: Path, tmp_path: Path) -> None:
    a, b = xfs_reflink / "a.img", tmp_path / "b.img"
    storage.create_sparse(a, 8 * MiB)
    storage.write_range(a, 0, os.urandom(4 * MiB))
    storage.clone_file(a, b)
    result = storage.compare_blocks(a, b)
    # Physical addresses of two filesystems say nothing about each other.
    assert result.changed == [] and not result.mapped and result.blocks_read == 2


@pytest.mark.root
def test_fiemap_pages_through_a_fragmented_file(xfs_reflink: Path) -> None:
    path = xfs_reflink / "frag.img"
    storage.create_sparse(path, 64 * MiB)
    for i in range(0, 64 * MiB, 128 * 1024):  # 512 extents between holes
        storage.write_range(path, i, b"\x01" * 4096)
    with path.open("rb") as f:
        whole = list(storage.fiemap(f.fileno(), 0, 64 * MiB))
        paged = list(storage.fiemap(f.fileno(), 0, 64 * MiB, batch=7))
        window = list(storage.fiemap(f.fileno(), MiB + 1, MiB, batch=2))
    assert len(whole) == 512 and paged == whole
    assert [e.logical for e in whole] == list(range(0, 64 * MiB, 128 * 1024))
    assert whole[-1].flags & storage.FIEMAP_EXTENT_LAST
    # Both ends of the window fall inside an extent: both are reported.
    assert [e.logical for e in window] == [MiB + 128 * 1024 * k for k in range(9)]


def test_fiemap_header_and_extent_layout() -> None:
    # linux/fiemap.h: a 32-byte header, 56-byte extents.
    assert storage._FIEMAP_HEADER.size == 32
    assert storage._FIEMAP_EXTENT.size == 56
    assert storage.FS_IOC_FIEMAP == 0xC020660B
