"""Where things live in a datastore, and the restore point records.

The layout is documented in ``docs/repository.md``; this module is its only
implementation. A restore point exists when, and only when, its metadata
file ``vms/<vm>/points/<id>.json`` exists: that file is always the last
rename of a backup, after every VHD and checksum file it names is durable.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from xenkeep.formats.errors import VhdFormatError
from xenkeep.formats.vhd import (
    DISK_DIFFERENCING,
    FOOTER_SIZE,
    HEADER_SIZE,
    VhdFooter,
    VhdHeader,
)

from .errors import ChainBrokenError, PointNotFoundError, RepoError

POINT_FORMAT: Final = 1
VMS: Final = "vms"
POINTS: Final = "points"
DISKS: Final = "disks"
DAMAGED: Final = "damaged"
LOCK: Final = "lock"
READERS_LOCK: Final = "readers.lock"
JOURNAL: Final = "merge.journal"
#: Disk keys name directories: VBD positions ("0", "1", "xvdb") or VDI uuids.
_KEY_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A chain longer than this is a loop or a corrupt layout, not a real backup.
MAX_CHAIN: Final = 100_000


def check_key(key: str, what: str = "disk key") -> str:
    """``key`` if it is safe as a directory name, else ValueError."""
    if not _KEY_RE.match(key):
        raise ValueError(f"invalid {what} {key!r}: letters, digits, '_', '.', '-' only")
    return key


def check_uuid(value: str) -> str:
    """The canonical form of a uuid string, else ValueError."""
    return str(uuidlib.UUID(value))


@dataclass(frozen=True)
class DiskRecord:
    """One disk of a restore point."""

    key: str
    #: uuid of the VHD holding this point's data for the disk (``<file>.vhd``).
    file: str
    virtual_size: int
    #: What the backup transferred: "full" or "delta" (history; merges later
    #: turn the file into a full without changing this).
    transfer: str
    transferred_bytes: int = 0
    blocks: int = 0
    vdi: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RestorePoint:
    """A committed restore point, as stored in its metadata file."""

    id: str
    seq: int
    vm_uuid: str
    created: float
    committed: float
    job_id: str | None
    vm: dict[str, Any]
    disks: tuple[DiskRecord, ...]

    def disk(self, key: str) -> DiskRecord:
        """The disk with ``key``."""
        for d in self.disks:
            if d.key == key:
                return d
        raise PointNotFoundError(f"restore point {self.id} of VM {self.vm_uuid} has no disk {key}")

    def to_json(self) -> bytes:
        """The metadata file's bytes."""
        d = asdict(self)
        d["format"] = POINT_FORMAT
        return json.dumps(d, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> RestorePoint:
        """Parse a metadata file; RepoError naming ``where`` if it is malformed."""
        try:
            d = json.loads(raw)
            if d.get("format") != POINT_FORMAT:
                raise RepoError(f"{where}: unsupported metadata format {d.get('format')!r}")
            disks = tuple(DiskRecord(**x) for x in d["disks"])
            return cls(
                id=str(d["id"]),
                seq=int(d["seq"]),
                vm_uuid=str(d["vm_uuid"]),
                created=float(d["created"]),
                committed=float(d["committed"]),
                job_id=d.get("job_id"),
                vm=dict(d.get("vm") or {}),
                disks=disks,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RepoError(f"{where}: malformed restore point metadata: {exc}") from None


class VmDir:
    """The directory of one VM's chains, ``<datastore>/vms/<vm uuid>``."""

    def __init__(self, root: Path, vm_uuid: str) -> None:
        self.vm_uuid = check_uuid(vm_uuid)
        self.path = root / VMS / self.vm_uuid
        self.points = self.path / POINTS
        self.disks = self.path / DISKS
        self.damaged = self.path / DAMAGED
        self.lock = self.path / LOCK
        self.readers_lock = self.path / READERS_LOCK
        self.journal = self.path / JOURNAL

    def create(self) -> None:
        """Make the directories (idempotent)."""
        for p in (self.points, self.disks, self.damaged):
            p.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        """Whether this VM has a directory."""
        return self.path.is_dir()

    def point_path(self, point_id: str) -> Path:
        """Metadata file of a restore point."""
        return self.points / f"{check_key(point_id, 'restore point id')}.json"

    def disk_dir(self, key: str) -> Path:
        """Directory of one disk's VHD files."""
        return self.disks / check_key(key)

    def vhd_path(self, key: str, file: str) -> Path:
        """A VHD file of a disk."""
        return self.disk_dir(key) / f"{check_uuid(file)}.vhd"

    def sums_path(self, key: str, file: str) -> Path:
        """The checksum file of a VHD."""
        return self.disk_dir(key) / f"{check_uuid(file)}.sums"

    def retiring(self) -> str | None:
        """The restore point an unfinished merge journal retires, if any.

        Between the journal's ``begin`` and the removal of that point's
        metadata the point still has its file, but the journal's replay (by
        the next writer, prune or reader) removes it: offering it for a
        restore would promise what the replay takes away.
        """
        try:
            raw = self.journal.read_bytes()
        except FileNotFoundError:
            return None
        try:
            retire = json.loads(raw).get("retire")
        except (ValueError, AttributeError):
            return None  # a malformed journal is the replay's to report, loudly
        return retire if isinstance(retire, str) else None

    def list_points(self) -> list[RestorePoint]:
        """Committed restore points, oldest first; never one a pending merge retires."""
        out = []
        retiring = self.retiring()
        with contextlib.suppress(FileNotFoundError):
            for p in self.points.iterdir():
                if p.suffix != ".json" or p.name.startswith("."):
                    continue
                if retiring is not None and p.stem == retiring:
                    continue
                try:
                    raw = p.read_bytes()
                except FileNotFoundError:
                    continue  # retired by a merge meanwhile
                out.append(RestorePoint.from_json(raw, str(p)))
        out.sort(key=lambda r: r.seq)
        return out

    def load_point(self, point_id: str) -> RestorePoint:
        """One restore point, or PointNotFoundError."""
        path = self.point_path(point_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise PointNotFoundError(f"VM {self.vm_uuid} has no restore point {point_id}") from None
        return RestorePoint.from_json(raw, str(path))

    def file_kind(self, key: str, file: str) -> tuple[str, int | None]:
        """What a stored file is now (``full``, ``delta``, or ``unreadable``)
        and its size in bytes, from its footer and header alone (metadata,
        no block: the checked reader is not needed)."""
        path = self.vhd_path(key, file)
        try:
            kind = "delta" if parent_of(path) is not None else "full"
            return kind, path.stat().st_size
        except (OSError, VhdFormatError):
            return "unreadable", None

    def chain_files(self, key: str, file: str) -> list[str]:
        """File uuids of the chain ending at ``file``, newest first, base last.

        Parents are found through each differencing VHD's parent uuid, which
        is the name of the parent file in the same directory.
        """
        out = [file]
        seen = {file}
        current = file
        while True:
            path = self.vhd_path(key, current)
            try:
                parent = parent_of(path)
            except FileNotFoundError:
                raise ChainBrokenError(
                    f"VM {self.vm_uuid} disk {key}: chain file {path.name} is missing"
                ) from None
            except VhdFormatError as exc:
                raise ChainBrokenError(
                    f"VM {self.vm_uuid} disk {key}: {path.name} is damaged: {exc}"
                ) from None
            if parent is None:
                return out
            current = str(parent)
            if current in seen or len(out) >= MAX_CHAIN:
                raise ChainBrokenError(f"VM {self.vm_uuid} disk {key}: chain loops at {current}")
            seen.add(current)
            out.append(current)


def parent_of(path: Path) -> uuidlib.UUID | None:
    """The parent uuid of a differencing VHD (None for a full), from its footer
    and header alone: cheap whatever the disk size. Reads validate fully."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size < FOOTER_SIZE + HEADER_SIZE:
            raise VhdFormatError(f"truncated file: {size} bytes")
        f.seek(size - FOOTER_SIZE)
        footer = VhdFooter.unpack(f.read(FOOTER_SIZE))
        if footer.disk_type != DISK_DIFFERENCING:
            return None
        if footer.data_offset + HEADER_SIZE > size:
            raise VhdFormatError(f"dynamic header offset {footer.data_offset} is outside the file")
        f.seek(footer.data_offset)
        header = VhdHeader.unpack(f.read(HEADER_SIZE))
        if header.parent_uuid is None:
            raise VhdFormatError("differencing disk without a parent unique id")
        return header.parent_uuid


def vm_dirs(root: Path) -> Iterator[VmDir]:
    """Every VM directory of a datastore."""
    base = root / VMS
    with contextlib.suppress(FileNotFoundError):
        for p in sorted(base.iterdir()):
            try:
                yield VmDir(root, p.name)
            except ValueError:
                continue


#: The appliance's own backup: copies of its configuration and of its pools' databases.
APPLIANCE: Final = "appliance"
CONFIG_COPIES: Final = "config"
POOL_COPIES: Final = "pools"
#: A copy's name: its UTC time, then random hex (two in one second never clash).
_COPY_ID_RE: Final = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def check_copy_id(copy_id: str) -> str:
    """``copy_id`` if it can name a copy (never a path elsewhere), else ValueError."""
    if not _COPY_ID_RE.match(copy_id):
        raise ValueError(f"invalid copy id {copy_id!r}")
    return copy_id


def config_copies_dir(root: Path) -> Path:
    """``appliance/config/``: one sealed file per copy of the configuration."""
    return root / APPLIANCE / CONFIG_COPIES


def pool_copies_dir(root: Path, pool_uuid: str) -> Path:
    """``appliance/pools/<pool uuid>/``: one sealed file per database dump of the pool."""
    return root / APPLIANCE / POOL_COPIES / check_uuid(pool_uuid)


def pool_copies_dirs(root: Path) -> Iterator[tuple[str, Path]]:
    """Every pool with database dumps: (pool uuid, its directory)."""
    base = root / APPLIANCE / POOL_COPIES
    with contextlib.suppress(FileNotFoundError):
        for p in sorted(base.iterdir()):
            with contextlib.suppress(ValueError):
                yield check_uuid(p.name), p
