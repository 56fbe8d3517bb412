"""Copies in the datastore: written atomically, listed, opened, pruned. Blocking.

A copy is one sealed file (:mod:`xenkeep.formats.sealed`) named by its id
(``YYYYmmddTHHMMSSZ-<random>``) under ``appliance/config/`` (the
configuration, ``.xkconfig``) or ``appliance/pools/<pool uuid>/`` (a pool's
database, ``.xkpooldb``); see docs/repository.md. It is written under a
temporary name, synced, then renamed: a writer killed at any point leaves
the previous copies as they were and at most a temporary file, which the
next writer removes. Every function here blocks: the service calls them in
threads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, cast

from xenkeep.formats.sealed import SealedFormatError, SealWriter, read_header
from xenkeep.repo.fsutil import durable_unlink, fsync_dir, temp_name
from xenkeep.repo.layout import check_copy_id

from .errors import CopyNotFoundError

CONFIG_SUFFIX: Final = ".xkconfig"
POOL_SUFFIX: Final = ".xkpooldb"
#: Temporary files of killed writers, matched by :func:`remove_leftovers`.
_TMP_MARK: Final = ".tmp-"


def new_copy_id(now: float) -> str:
    """A fresh copy id for the time ``now``."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class CopyInfo:
    """A copy as its file and readable header say (nothing decrypted)."""

    id: str
    path: Path
    size: int
    header: dict[str, Any] = field(default_factory=dict)
    #: Why the header cannot be read ("" when it can).
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form for pages and the API."""
        h = self.header
        return {
            "id": self.id,
            "size": self.size,
            "created": h.get("created"),
            "appliance": h.get("appliance", ""),
            "schema_version": h.get("schema_version"),
            "xenkeep_version": h.get("xenkeep_version", ""),
            "key_id": h.get("key_id", ""),
            "key_mode": (h.get("key") or {}).get("mode", ""),
            "trigger": h.get("trigger", ""),
            "pool_uuid": h.get("pool_uuid", ""),
            "pool_name": h.get("pool_name", ""),
            "problem": self.problem,
        }


def copy_path(directory: Path, copy_id: str, suffix: str) -> Path:
    """The file of copy ``copy_id`` (CopyNotFoundError for an id that cannot be one)."""
    try:
        check_copy_id(copy_id)
    except ValueError:
        raise CopyNotFoundError(f"there is no copy {copy_id!r}") from None
    return directory / f"{copy_id}{suffix}"


def describe(path: Path, suffix: str) -> CopyInfo:
    """A copy's info from its file (its header read, nothing else)."""
    copy_id = path.name.removesuffix(suffix)
    size = 0
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header = read_header(cast(BinaryIO, f)).fields
    except FileNotFoundError:
        raise CopyNotFoundError(f"there is no copy {copy_id}") from None
    except (OSError, SealedFormatError) as exc:
        return CopyInfo(copy_id, path, size, problem=str(exc))
    return CopyInfo(copy_id, path, size, header)


def list_copies(directory: Path, suffix: str) -> list[CopyInfo]:
    """Every copy in ``directory``, newest first."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for p in directory.iterdir():
            if not p.name.endswith(suffix) or p.name.startswith("."):
                continue
            with contextlib.suppress(ValueError):
                check_copy_id(p.name.removesuffix(suffix))
                found.append(p)
    found.sort(key=lambda p: p.name, reverse=True)
    out = []
    for p in found:
        with contextlib.suppress(CopyNotFoundError):  # pruned meanwhile
            out.append(describe(p, suffix))
    return out


def prune(directory: Path, suffix: str, keep: int) -> list[str]:
    """Delete the oldest copies beyond the newest ``keep``; their ids."""
    removed = []
    for info in list_copies(directory, suffix)[max(1, keep) :]:
        if durable_unlink(info.path):
            removed.append(info.id)
    return removed


def remove_leftovers(directory: Path) -> list[str]:
    """Delete the temporary files killed writers left; their names."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for p in directory.iterdir():
            if p.name.startswith(".") and _TMP_MARK in p.name:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p.name)
    if removed:
        fsync_dir(directory)
    return removed


def _make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each new name made durable."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o750)
        fsync_dir(d.parent)


class CopyWriter:
    """One copy being written: :meth:`write` plaintext, then :meth:`commit` or :meth:`abort`.

    Nothing under the copy's final name exists before :meth:`commit`
    renamed the synced file there.
    """

    def __init__(
        self,
        directory: Path,
        copy_id: str,
        suffix: str,
        key: bytes,
        header: Mapping[str, Any],
    ) -> None:
        self.directory = directory
        self.id = copy_id
        self.path = copy_path(directory, copy_id, suffix)
        self.tmp = temp_name(self.path)
        _make_dirs(directory)
        self.leftovers = remove_leftovers(directory)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._sealer = SealWriter(cast(BinaryIO, self._file), key, header)

    @property
    def plaintext_bytes(self) -> int:
        """Bytes given to :meth:`write` so far."""
        return self._sealer.plaintext_bytes

    def write(self, data: bytes) -> None:
        """More plaintext of the copy."""
        self._sealer.write(data)

    def commit(self) -> int:
        """Seal the end, sync and rename into place; the copy's size in bytes."""
        self._sealer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        size = self._file.tell()
        self._file.close()
        self.tmp.replace(self.path)
        fsync_dir(self.directory)
        return size

    def abort(self) -> None:
        """Drop the copy being written (the earlier ones are untouched)."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
