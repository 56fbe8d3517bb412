"""Filesystems that tests make and mount for themselves (as root): a tmpfs
of a given size, or a loop image formatted as XFS with reflink, btrfs or
ext4. Each is unmounted whatever the test does; nothing outside tmp_path
is touched."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}


def require_root(what: str) -> None:
    """Skip unless root (CI runs as root and fails on any skip)."""
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root")


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's syntax, e.g. ``16m``) mounted at ``where``."""
    require_root("mounting a tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        _unmount(where)


@contextlib.contextmanager
def mounted_image(where: Path, fstype: str, size: int) -> Iterator[Path]:
    """A fresh ``fstype`` filesystem of ``size`` bytes in a loop image, mounted at ``where``."""
    require_root("mounting a loop image")
    mkfs = MKFS[fstype]
    if shutil.which(mkfs[0]) is None:
        pytest.skip(f"{mkfs[0]} is not installed")
    image = where.with_name(where.name + ".img")
    with image.open("wb") as f:
        f.truncate(size)
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True)
    try:
        yield where
    finally:
        _unmount(where)
        image.unlink(missing_ok=True)


def _unmount(where: Path) -> None:
    # Lazily if still busy: a test that failed with a file open must not
    # leave the mount behind for the next one.
    if subprocess.run(["umount", str(where)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], check=False)
