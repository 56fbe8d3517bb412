"""Merging a restore point away into the next one, crash-safe.

Points P1 (file F per disk) and P2 (delta D per disk, parent F) become P2
alone, held by F with D's blocks written into it. P1 is the oldest point
(F a full) when retention prunes; an administrator deleting a point in the
middle of the chain retires a P1 whose F is itself a delta: F's sector
bitmaps then gain D's bits, so what neither holds still comes from F's
parent. Only D's blocks are
touched, so the cost follows the delta, not the disk: whole blocks are
shared with ``FICLONERANGE`` when the filesystem can (no data moves), other
blocks copy only the sectors D's bitmap holds.

The journal ``vms/<vm>/merge.journal`` names the step, and is written and
fsynced before each step that cannot be undone:

``begin``      P1's metadata is about to be removed. Replay: remove it.
``merging``    per disk, ``pending``: D's sectors are being written into F.
               While this happens F is no longer P1, but P2 (D over F) still
               reads right because D overrides every sector it holds, so
               replay simply writes them all again (idempotent). New F blocks
               are appended past F's end and only linked in its BAT once
               durable (:class:`~xenkeep.formats.vhd.VhdUpdater`); a torn
               append is cut off on replay. The merged checksums go to
               ``<D>.sums.merge``.
               ``copied``: F holds P2. F takes D's uuid (both footers) and
               is renamed over ``<D>.vhd`` (later deltas name D as parent),
               ``<D>.sums.merge`` over ``<D>.sums``; each replayable.
``cleanup``    P1's files no chain needs any more are removed; then the
               journal itself.

A kill at any moment therefore leaves either the previous state (before
``begin`` is durable) or a journal whose replay finishes the merge; every
restore point still listed reads the same bytes throughout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from xenkeep.formats.errors import VhdFormatError
from xenkeep.formats.vhd import (
    DISK_DIFFERENCING,
    FOOTER_SIZE,
    SECTOR,
    VhdFooter,
    VhdUpdater,
    bitmap_size,
)

from . import damage
from .damage import FileDamage
from .errors import (
    ChainBrokenError,
    ChecksumFileError,
    DamagedDataError,
    PointNotFoundError,
    RepoError,
)
from .fsutil import atomic_write, copy_range, durable_rename, durable_unlink, share_range
from .layout import RestorePoint, VmDir
from .reader import matches, merge_digests, open_stored
from .sums import read_sums, write_sums

#: Tests set this (in a subprocess) to kill the merge at a chosen event.
fault_hook: Callable[[str], None] | None = None
JOURNAL_VERSION: Final = 1
MERGED_DIFFERS: Final = "merged blocks differ from the checksums planned from checked reads"


def _event(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


@dataclass
class MergeStats:
    """What a merge moved."""

    blocks: int = 0
    blocks_shared: int = 0
    blocks_copied: int = 0
    bytes_shared: int = 0
    bytes_copied: int = 0
    blocks_allocated: int = 0
    seconds: float = 0.0
    resumed: bool = False

    def add(self, other: MergeStats) -> None:
        """Accumulate another disk's figures."""
        for f in dataclasses.fields(self):
            if f.name != "resumed":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class DiskMerge:
    """One disk of a merge in the journal."""

    key: str
    full: str
    delta: str
    state: str = "pending"


@dataclass
class Journal:
    """The merge journal's contents."""

    retire: str
    into: str
    step: str
    disks: list[DiskMerge] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> bytes:
        """Serialised form."""
        d = dataclasses.asdict(self)
        d["version"] = JOURNAL_VERSION
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Journal:
        """Parse a journal; RepoError if it is not one."""
        try:
            d = json.loads(raw)
            if d.get("version") != JOURNAL_VERSION:
                raise RepoError(f"merge journal version {d.get('version')!r} unsupported")
            return cls(
                retire=d["retire"],
                into=d["into"],
                step=d["step"],
                disks=[DiskMerge(**x) for x in d["disks"]],
                delete=[(str(k), str(f)) for k, f in d["delete"]],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RepoError(f"merge journal is malformed: {exc}") from None


def _save(vmdir: VmDir, journal: Journal) -> None:
    atomic_write(vmdir.journal, journal.to_json())
    _event(f"journal:{journal.step}")


def plan_merge(vmdir: VmDir, old: RestorePoint, new: RestorePoint) -> Journal:
    """The journal of merging ``old`` away into ``new``, the point after it
    (reads VHD headers only)."""
    points = vmdir.list_points()
    ids = [p.id for p in points]
    if (
        old.id not in ids
        or ids.index(old.id) + 1 >= len(ids)
        or ids[ids.index(old.id) + 1] != new.id
    ):
        raise RepoError(
            f"restore point {new.id} does not follow {old.id} in the chain of VM {vmdir.vm_uuid}"
        )
    others = [p for p in points if p.id != old.id]
    # Files every remaining point needs, through its chain.
    needed: dict[tuple[str, str], int] = {}
    children: dict[tuple[str, str], set[str]] = {}
    for p in others:
        for d in p.disks:
            chain = vmdir.chain_files(d.key, d.file)
            for child, parent in itertools.pairwise(chain):
                children.setdefault((d.key, parent), set()).add(child)
            for f in chain:
                needed[(d.key, f)] = needed.get((d.key, f), 0) + 1
    disks = []
    for d in new.disks:
        chain = vmdir.chain_files(d.key, d.file)
        if len(chain) == 1:
            continue  # a full already: nothing to merge
        try:
            base = old.disk(d.key).file
        except PointNotFoundError:
            base = None
        if chain[1] != base:
            raise ChainBrokenError(
                f"VM {vmdir.vm_uuid} disk {d.key}: restore point {new.id} does not build "
                f"directly on restore point {old.id}"
            )
        if children.get((d.key, base), set()) - {d.file}:
            raise ChainBrokenError(
                f"VM {vmdir.vm_uuid} disk {d.key}: {base} has other children; "
                "a merge would break them"
            )
        disks.append(DiskMerge(d.key, base, d.file))
    merged = {(m.key, m.full) for m in disks}
    delete = [
        (d.key, d.file)
        for d in old.disks
        if (d.key, d.file) not in merged and (d.key, d.file) not in needed
    ]
    return Journal(retire=old.id, into=new.id, step="begin", disks=disks, delete=delete)


def merge_oldest(
    vmdir: VmDir, old: RestorePoint, new: RestorePoint, *, reflink: bool
) -> MergeStats:
    """Merge restore point ``old`` (the oldest, or any but the newest) into
    ``new`` (the next one).

    The caller holds the VM's chain lock and the readers lock exclusively.
    """
    journal = plan_merge(vmdir, old, new)
    _prepare(vmdir, journal)
    _save(vmdir, journal)
    return run_journal(vmdir, journal, reflink=reflink)


def _prepare(vmdir: VmDir, journal: Journal) -> None:
    """Before anything changes: read every block the merge folds in, check it,
    and write the checksums the merged blocks will have (``<D>.sums.plan``).

    A damaged block (of the delta, or of the full under one of the delta's
    partial blocks) or an unreadable checksum file stops the merge here,
    with nothing changed: the finding is recorded and the error names both
    points, the disk and the blocks.
    """
    written: list[Path] = []
    try:
        for disk in journal.disks:
            bs, digests = merge_digests(vmdir, disk.key, disk.full, disk.delta)
            plan = _plan_path(vmdir, disk)
            write_sums(plan, bs, sorted(digests.items()))
            written.append(plan)
    except DamagedDataError as exc:
        for path in written:
            durable_unlink(path)
        damage.record(vmdir, exc.findings, by="merge")
        raise DamagedDataError(
            f"restore point {journal.retire} of VM {vmdir.vm_uuid} was not merged into "
            f"{journal.into}: {exc.message}; nothing was changed",
            findings=exc.findings,
            hint="run a verify; restore what you need from an intact restore point",
        ) from None


def pending_journal(vmdir: VmDir) -> Journal | None:
    """The journal of an unfinished merge, if any."""
    try:
        raw = vmdir.journal.read_bytes()
    except FileNotFoundError:
        return None
    return Journal.from_json(raw)


def run_journal(vmdir: VmDir, journal: Journal, *, reflink: bool) -> MergeStats:
    """Carry a merge from whatever step its journal names to the end."""
    started = time.monotonic()
    total = MergeStats()
    if journal.step == "begin":
        durable_unlink(vmdir.point_path(journal.retire))
        _event("retired")
        journal.step = "merging"
        _save(vmdir, journal)
    if journal.step == "merging":
        for disk in journal.disks:
            if disk.state == "pending":
                total.add(_copy_disk(vmdir, disk, reflink=reflink))
                disk.state = "copied"
                _save(vmdir, journal)
            if disk.state == "copied":
                _swap_disk(vmdir, disk)
                disk.state = "done"
                _save(vmdir, journal)
        journal.step = "cleanup"
        _save(vmdir, journal)
    if journal.step == "cleanup":
        for key, file in journal.delete:
            durable_unlink(vmdir.vhd_path(key, file))
            durable_unlink(vmdir.sums_path(key, file))
            _event("deleted")
        durable_unlink(vmdir.journal)
    total.seconds = time.monotonic() - started
    return total


def _merge_sums_path(vmdir: VmDir, disk: DiskMerge) -> Path:
    return vmdir.sums_path(disk.key, disk.delta).with_suffix(".sums.merge")


def _plan_path(vmdir: VmDir, disk: DiskMerge) -> Path:
    return vmdir.sums_path(disk.key, disk.delta).with_suffix(".sums.plan")


def _planned_digests(vmdir: VmDir, disk: DiskMerge) -> dict[int, bytes]:
    """The checksums :func:`_prepare` planned; a journal left by a version
    without plans gets them now (its delta is unchanged until the swap)."""
    try:
        return read_sums(_plan_path(vmdir, disk))[1]
    except ChecksumFileError:
        return merge_digests(vmdir, disk.key, disk.full, disk.delta)[1]


def _bit_runs(bitmap: bytes) -> Iterator[tuple[int, int]]:
    """(first sector, count) of the runs of set bits, most significant bit first."""
    start = -1
    for byte_no, byte in enumerate(bitmap):
        if byte == 0xFF:
            if start < 0:
                start = byte_no * 8
            continue
        if byte == 0 and start < 0:
            continue
        for bit in range(8):
            sector = byte_no * 8 + bit
            if byte & (0x80 >> bit):
                if start < 0:
                    start = sector
            elif start >= 0:
                yield start, sector - start
                start = -1
    if start >= 0:
        yield start, len(bitmap) * 8 - start


def repair_tail(path: Path) -> bool:
    """Cut a torn append off a VHD: when a kill left a block's bitmap past the
    last footer, truncate back to that footer. True if the file changed."""
    with path.open("r+b", buffering=0) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        copy = os.pread(fd, FOOTER_SIZE, 0)
        if os.pread(fd, FOOTER_SIZE, size - FOOTER_SIZE) == copy:
            return False
        # A torn append is one bitmap plus alignment padding past the old footer.
        pos = (size - FOOTER_SIZE) // SECTOR * SECTOR
        limit = max(0, size - (64 << 10))
        while pos >= limit:
            if os.pread(fd, FOOTER_SIZE, pos) == copy:
                os.ftruncate(fd, pos + FOOTER_SIZE)
                os.fsync(fd)
                return True
            pos -= SECTOR
    raise ChainBrokenError(f"{path.name}: no footer near the end of the file; cannot repair")


def _copy_disk(vmdir: VmDir, disk: DiskMerge, *, reflink: bool) -> MergeStats:
    stats = MergeStats()
    fpath = vmdir.vhd_path(disk.key, disk.full)
    dpath = vmdir.vhd_path(disk.key, disk.delta)
    repair_tail(fpath)
    planned = _planned_digests(vmdir, disk)
    suspect: list[int] = []
    try:
        with fpath.open("r+b", buffering=0) as ff:
            _trim(ff, VhdUpdater(ff, name=fpath.name))
        with fpath.open("r+b", buffering=0) as ff, contextlib.ExitStack() as stack:
            upd = VhdUpdater(ff, name=fpath.name)
            # The delta's blocks were read and checked by _prepare; here only
            # their place and bitmaps are looked at, and the data moves
            # between files without passing through this process.
            dv = open_stored(stack, vmdir, disk.key, disk.delta)
            fv = upd.vhd
            if dv.size != fv.size or dv.block_size != fv.block_size:
                raise ChainBrokenError(
                    f"{dpath.name}: size or block size differs from its parent {fpath.name}"
                )
            _, f_sums = read_sums(vmdir.sums_path(disk.key, disk.full))
            bs = fv.block_size
            ones = b"\xff" * (bs // SECTOR // 8)
            # F a delta itself (a point deleted in the middle of the chain):
            # its bitmaps say which sectors it holds, the rest is its parent's.
            layered = fv.disk_type == DISK_DIFFERENCING
            ffd, dfd = ff.fileno(), dv.fileno()
            present = list(dv.present_blocks())
            bm = bitmap_size(bs)
            for index in present:
                # Bitmaps are 2 MiB apart: queue their reads at once rather
                # than paying one disk seek each inside the loop.
                at = dv.block_data_offset(index)
                assert at is not None
                os.posix_fadvise(dfd, at - bm, bm, os.POSIX_FADV_WILLNEED)
            for index in present:
                bitmap = dv.read_bitmap(index)
                d_off = dv.block_data_offset(index)
                assert bitmap is not None and d_off is not None
                if not any(bitmap):
                    continue
                digest = planned.get(index)
                if digest is None:
                    raise ChainBrokenError(
                        f"{dpath.name}: block {index} was not planned for the merge"
                    )
                f_off = upd.block_data_offset(index)
                f_bitmap = ones
                if f_off is None:
                    # Not linked into the BAT before commit(): invisible until durable.
                    f_bitmap = bitmap[: len(ones)] if layered else ones
                    f_off = upd.allocate_block(index, f_bitmap)
                    stats.blocks_allocated += 1
                elif layered:
                    held = upd.read_bitmap(index)
                    assert held is not None
                    f_bitmap = bytes(a | b for a, b in zip(held, bitmap[: len(ones)], strict=True))
                if bitmap == ones:
                    if reflink and share_range(dfd, d_off, bs, ffd, f_off):
                        stats.blocks_shared += 1
                        stats.bytes_shared += bs
                    else:
                        copy_range(dfd, d_off, bs, ffd, f_off)
                        stats.blocks_copied += 1
                        stats.bytes_copied += bs
                    f_bitmap = ones
                else:
                    for first, count in _bit_runs(bitmap):
                        at = first * SECTOR
                        copy_range(dfd, d_off + at, count * SECTOR, ffd, f_off + at)
                        stats.bytes_copied += count * SECTOR
                    stats.blocks_copied += 1
                    # The merged block against the checksum planned from
                    # checked reads: anything that changed since is damage,
                    # flagged, never given a checksum of its own.
                    if not matches(ffd, f_off, bs, f_bitmap, digest):
                        suspect.append(index)
                if layered:
                    # After the data: until the journal says ``copied``, D
                    # still answers for every sector these bits add.
                    upd.write_bitmap(index, f_bitmap)
                f_sums[index] = digest
                stats.blocks += 1
                _event("block")
            # One commit at the end: a killed run's appended blocks are never
            # linked, and the replay trims them off before starting again.
            upd.commit()
            _trim(ff, upd)
    except VhdFormatError as exc:
        raise ChainBrokenError(f"VM {vmdir.vm_uuid} disk {disk.key}: {exc}") from exc
    if suspect:
        # The merged file takes D's name at the swap: the flag is about it.
        damage.record(
            vmdir,
            [FileDamage(disk.key, disk.delta, MERGED_DIFFERS, tuple(suspect))],
            by="merge",
        )
    write_sums(_merge_sums_path(vmdir, disk), bs, sorted(f_sums.items()))
    _event("sums")
    return stats


def _trim(f: Any, upd: VhdUpdater) -> None:
    """Drop space a killed earlier attempt appended but never linked into the BAT."""
    vhd = upd.vhd
    fd = f.fileno()
    used = [s for s in vhd.bat if s != 0xFFFFFFFF]
    if not used:
        return
    end = max(used) * SECTOR + bitmap_size(vhd.block_size) + vhd.block_size
    size = os.fstat(fd).st_size
    if size > end + FOOTER_SIZE:
        footer = os.pread(fd, FOOTER_SIZE, 0)
        os.pwrite(fd, footer, end)
        os.fsync(fd)
        os.ftruncate(fd, end + FOOTER_SIZE)
        os.fsync(fd)


def set_vhd_uuid(path: Path, new: uuidlib.UUID) -> None:
    """Give a VHD a new unique id in both footers (idempotent); a delta keeps its parent."""
    with path.open("r+b", buffering=0) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        footer = VhdFooter.unpack(os.pread(fd, FOOTER_SIZE, 0), "footer copy")
        raw = dataclasses.replace(footer, uuid=new).pack()
        os.pwrite(fd, raw, 0)
        _event("uuid-half")
        os.pwrite(fd, raw, size - FOOTER_SIZE)
        os.fsync(fd)


def _swap_disk(vmdir: VmDir, disk: DiskMerge) -> None:
    fpath = vmdir.vhd_path(disk.key, disk.full)
    dpath = vmdir.vhd_path(disk.key, disk.delta)
    if fpath.exists():
        set_vhd_uuid(fpath, uuidlib.UUID(disk.delta))
        durable_rename(fpath, dpath)
        _event("renamed")
    merged = _merge_sums_path(vmdir, disk)
    if merged.exists():
        durable_rename(merged, vmdir.sums_path(disk.key, disk.delta))
    with contextlib.suppress(FileNotFoundError):
        durable_unlink(vmdir.sums_path(disk.key, disk.full))
    durable_unlink(_plan_path(vmdir, disk))
