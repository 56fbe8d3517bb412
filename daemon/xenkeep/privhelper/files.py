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
