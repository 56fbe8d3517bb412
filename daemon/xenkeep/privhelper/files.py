"""The few file changes the helper makes, each whole or not at all.

Blocking calls: the helper's async code runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
from pathlib import Path

from xenkeep.repo.fsutil import atomic_write


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``: readers see the old file or the new, and so
    does the next boot after a power cut (the datastore's durable write: data,
    then the rename, synced). A pending checkpoint must be on disk before the
    change it undoes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode(), mode)


def owner_of(path: Path) -> tuple[int, int]:
    """(uid, gid) of ``path``."""
    st = path.stat()
    return st.st_uid, st.st_gid


def give(path: Path, uid: int, gid: int, mode: int) -> None:
    """Make ``path`` belong to ``uid:gid`` with ``mode``."""
    os.chown(path, uid, gid)
    path.chmod(mode)
