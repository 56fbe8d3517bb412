"""The few file changes the helper makes, each whole or not at all.

Blocking calls: the helper's async code runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0644): readers see the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


def owner_of(path: Path) -> tuple[int, int]:
    """(uid, gid) of ``path``."""
    st = path.stat()
    return st.st_uid, st.st_gid


def give(path: Path, uid: int, gid: int, mode: int) -> None:
    """Make ``path`` belong to ``uid:gid`` with ``mode``."""
    os.chown(path, uid, gid)
    path.chmod(mode)


def write_durable(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` and make the change survive a power cut.

    For the helper's own state (a pending checkpoint), which must be on disk
    before the change it undoes is: data, then the rename, are synced.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    sync_directory(path.parent)


def remove_durable(path: Path) -> None:
    """Remove ``path`` (if there) and sync its directory."""
    path.unlink(missing_ok=True)
    sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    """fsync a directory: a rename or removal in it is then on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
