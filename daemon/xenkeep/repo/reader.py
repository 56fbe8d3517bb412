"""The one door to stored block data: every block read from the datastore is checked.

Whatever reads the blocks of restore points reads them here: a restore of a
VM or of one disk, an export of a point (its raw disk, a synthetic full
VHD), the merge of a delta into its parent, verify, and what is still to
come (health-check restores, the appliance's configuration restore,
replication seeding). Each block is compared with the checksum taken when
it was written (``<file>.sums``, :mod:`.sums`) as it is read: the bytes are
in hand already, so the check costs a hash, not a read.
``tests/test_one_reader.py`` fails when code elsewhere reads stored blocks.

A block that does not match its checksum, has none, or is listed in the
checksums but missing from its file, is never handed on as data. A strict
read raises :class:`~.errors.DamagedDataError` naming it; a salvaging read
(the administrator's explicit "restore what can be read") hands zeros
instead and lists it. A file whose checksum file is missing, truncated or
damaged cannot be checked at all: a strict reader refuses it as it opens, a
salvaging one hands its blocks on unchecked and lists them as such.

What a reader found is in :attr:`DiskReader.findings`; the datastore records
it (:mod:`.damage`) and looks for intact copies in other points
(:func:`intact_copies`).
"""

from __future__ import annotations

import contextlib
import os
import uuid as uuidlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from xenkeep.formats.errors import VhdFormatError
from xenkeep.formats.vhd import DISK_DIFFERENCING, SECTOR, VhdChain, VhdFile, bitmap_runs
from xenkeep.units import number_ranges

from .damage import FileDamage
from .errors import ChainBrokenError, ChecksumFileError, DamagedDataError, PointNotFoundError
from .layout import RestorePoint, VmDir
from .sums import block_digest, read_sums

#: A block compared with its checksum found it different.
MISMATCH: Final = "blocks do not match their checksums"
NO_SUM: Final = "blocks have no checksum"
NOT_IN_FILE: Final = "blocks listed in the checksums are missing from the file"
UNREADABLE: Final = "blocks cannot be read"


class _BadBlock(Exception):
    """One block of one file failed its check (internal: the reader turns it
    into a finding, and into zeros or a refusal)."""

    def __init__(self, key: str, file: str, index: int, reason: str) -> None:
        super().__init__(f"{file} block {index}: {reason}")
        self.key = key
        self.file = file
        self.index = index
        self.reason = reason


@dataclass(frozen=True)
class Sums:
    """The checksums of one stored VHD, or why they cannot be read."""

    digests: Mapping[int, bytes] | None
    problem: str | None = None


def load_sums(vmdir: VmDir, key: str, file: str, block_size: int | None = None) -> Sums:
    """Read and check ``<file>.sums``; a damaged one is a finding, not an error."""
    try:
        size, digests = read_sums(vmdir.sums_path(key, file))
    except ChecksumFileError as exc:
        return Sums(None, exc.message)
    except OSError as exc:
        return Sums(None, f"{file}.sums cannot be read: {exc.strerror or exc}")
    if block_size is not None and size != block_size:
        return Sums(None, f"{file}.sums is for {size}-byte blocks, the file has {block_size}")
    return Sums(digests)


class StoredVhd(VhdFile):
    """A VHD of the datastore whose every block read is checked against its sums.

    With ``unchecked`` (a set), blocks of a file whose checksums cannot be
    read are handed on and their numbers collected there; without it they
    fail like a mismatch.
    """

    def __init__(
        self,
        f: BinaryIO,
        *,
        key: str,
        file: str,
        vmdir: VmDir,
        unchecked: set[int] | None = None,
    ) -> None:
        # VhdFile's constructor may look at what the overrides below use.
        self.missing: frozenset[int] = frozenset()
        super().__init__(f, name=f"{file}.vhd")
        self.key = key
        self.file = file
        self.sums = load_sums(vmdir, key, file, self.block_size)
        self.unchecked = unchecked
        if self.sums.digests is not None:
            present = set(self.present_blocks())
            self.missing = frozenset(i for i in self.sums.digests if i not in present)

    def block_present(self, index: int) -> bool:
        # A block the checksums list but the BAT lost must not silently read
        # from the parent: it is reported present, and its read fails.
        return super().block_present(index) or index in self.missing

    def read_block(self, index: int) -> tuple[bytes, bytes] | None:
        """(bitmap, data) of block ``index``, checked; None if absent."""
        if index in self.missing:
            raise _BadBlock(self.key, self.file, index, NOT_IN_FILE)
        try:
            got = super().read_block(index)
        except (OSError, VhdFormatError) as exc:
            raise _BadBlock(self.key, self.file, index, f"{UNREADABLE} ({exc})") from None
        if got is None:
            return None
        self.check(index, *got)
        return got

    def check(self, index: int, bitmap: bytes, data: bytes | memoryview) -> None:
        """Raise :class:`_BadBlock` unless ``bitmap`` and ``data`` are block
        ``index`` as it was written."""
        digests = self.sums.digests
        if digests is None:
            if self.unchecked is None:
                raise _BadBlock(self.key, self.file, index, str(self.sums.problem))
            self.unchecked.add(index)
            return
        want = digests.get(index)
        if want is None:
            raise _BadBlock(self.key, self.file, index, NO_SUM)
        if block_digest(bitmap, data) != want:
            raise _BadBlock(self.key, self.file, index, MISMATCH)

    def fileno(self) -> int:
        """The descriptor of the open file (to share extents with it)."""
        return self._f.fileno()

    def whole_file_problem(self) -> FileDamage | None:
        """The finding about a file whose checksums cannot be read."""
        if self.sums.problem is None:
            return None
        return FileDamage(self.key, self.file, self.sums.problem)


def open_stored(
    stack: contextlib.ExitStack,
    vmdir: VmDir,
    key: str,
    file: str,
    *,
    unchecked: set[int] | None = None,
) -> StoredVhd:
    """Open one stored VHD (closed with ``stack``); ChainBrokenError if it
    cannot even be opened."""
    path = vmdir.vhd_path(key, file)
    try:
        fh = stack.enter_context(path.open("rb"))
        return StoredVhd(fh, key=key, file=file, vmdir=vmdir, unchecked=unchecked)
    except (OSError, VhdFormatError) as exc:
        raise ChainBrokenError(
            f"VM {vmdir.vm_uuid} disk {key}: cannot open {path.name}: {exc}"
        ) from None


@dataclass
class ReadStats:
    """What a reader read and checked."""

    blocks: int = 0
    bytes: int = 0


class DiskReader:
    """One disk of one restore point, read through its checksums.

    Obtain it with :func:`open_disk`. :meth:`block` gives one block of the
    disk as the chain resolves it (the newest file holding each sector);
    every stored block that goes into it is checked.
    """

    def __init__(
        self,
        vmdir: VmDir,
        key: str,
        files: Sequence[StoredVhd],
        *,
        point_id: str | None,
        salvage: bool,
    ) -> None:
        self.vmdir = vmdir
        self.key = key
        self.point_id = point_id
        self.salvage = salvage
        self.files = list(files)
        try:
            self._chain = VhdChain(self.files)
        except VhdFormatError as exc:
            raise ChainBrokenError(f"VM {vmdir.vm_uuid} disk {key}: {exc}") from None
        self.size = self._chain.size
        self.block_size = self._chain.block_size
        self.block_count = -(-self.size // self.block_size)
        #: Blocks of the disk handed on as zeros (salvage only).
        self.zeroed: set[int] = set()
        self._bad: dict[str, dict[str, set[int]]] = {}
        self._whole = [w for f in self.files if (w := f.whole_file_problem()) is not None]

    def present_blocks(self) -> list[int]:
        """Blocks of the disk some file of the chain holds, in order (the others are zeros)."""
        present: set[int] = set()
        for f in self.files:
            present.update(i for i in f.present_blocks() if i < f.block_count)
            present.update(f.missing)
        return sorted(present)

    def block(self, index: int) -> bytes:
        """Block ``index`` of the disk, a whole block (zeros past the end), checked."""
        try:
            data = self._chain.read_block(index)
        except _BadBlock as bad:
            self._bad.setdefault(bad.file, {}).setdefault(bad.reason, set()).add(index)
            if not self.salvage:
                raise self.error() from None
            self.zeroed.add(index)
            return bytes(self.block_size)
        return data

    def block_source(self, index: int) -> tuple[StoredVhd, int] | None:
        """The file and data offset holding every sector of block ``index`` in
        one stored block, if one does (a synthetic full can then share its
        extents instead of writing the bytes :meth:`block` checked)."""
        for f in self.files:
            if index >= f.block_count or not f.block_present(index):
                continue
            offset = f.block_data_offset(index)
            if offset is None:
                return None
            whole = (
                f.disk_type != DISK_DIFFERENCING
                or _coverage(f, index) == (1 << (f.block_size // SECTOR)) - 1
            )
            return (f, offset) if whole else None
        return None

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        """(index, data) of every block of the disk, the last one cut to the size."""
        for index in range(self.block_count):
            data = self.block(index)
            yield index, data[: min(self.block_size, self.size - index * self.block_size)]

    @property
    def unchecked(self) -> dict[str, list[int]]:
        """Blocks handed on without a check (their file's checksums are unreadable), by file."""
        return {f.file: sorted(f.unchecked) for f in self.files if f.unchecked}

    @property
    def findings(self) -> list[FileDamage]:
        """What this reader found damaged so far, one finding per file and reason."""
        out = list(self._whole)
        for file, reasons in self._bad.items():
            for reason, blocks in reasons.items():
                out.append(FileDamage(self.key, file, reason, tuple(sorted(blocks))))
        return out

    def error(self) -> DamagedDataError:
        """The refusal of a strict read, naming the point, the disk and the blocks."""
        where = f"restore point {self.point_id}" if self.point_id else "the chain"
        return DamagedDataError(
            f"{where} of VM {self.vmdir.vm_uuid} disk {self.key} is damaged: "
            + describe_findings(self.findings),
            findings=self.findings,
        )


#: A reason about one block, for the sentences naming a single block.
_ONE: Final = {
    MISMATCH: "does not match its checksum",
    NO_SUM: "has no checksum",
    NOT_IN_FILE: "is listed in the checksums but missing from the file",
}


def describe_findings(findings: Sequence[FileDamage]) -> str:
    """The findings in words: file, blocks and reason of each."""
    parts = []
    for d in findings:
        if len(d.blocks) == 1:
            reason = _ONE.get(d.reason, f"({d.reason})")
            parts.append(f"block {d.blocks[0]} of {d.file}.vhd {reason}")
        elif d.blocks:
            reason = d.reason.removeprefix("blocks ")
            parts.append(f"blocks {number_ranges(d.blocks)} of {d.file}.vhd {reason}")
        else:
            parts.append(f"{d.file}.vhd cannot be checked: {d.reason}")
    return "; ".join(parts)


@contextlib.contextmanager
def open_disk(
    vmdir: VmDir, key: str, file: str, *, point_id: str | None = None, salvage: bool = False
) -> Iterator[DiskReader]:
    """The checked reader of the disk chain ending at ``file``.

    Strict (the default): a file of the chain whose checksums cannot be read
    is refused here, before any block is read; a damaged block raises
    :class:`DamagedDataError` when it is read. ``salvage``: damaged blocks
    read as zeros and unchecked ones as they are, both listed.
    """
    with contextlib.ExitStack() as stack:
        files = [
            open_stored(stack, vmdir, key, f, unchecked=set() if salvage else None)
            for f in vmdir.chain_files(key, file)
        ]
        reader = DiskReader(vmdir, key, files, point_id=point_id, salvage=salvage)
        if not salvage and reader.findings:
            raise reader.error()
        yield reader


def check_file(
    vmdir: VmDir, key: str, file: str, *, each: Callable[[int], None] | None = None
) -> tuple[FileDamage | None, ReadStats]:
    """Read every block of one stored file against its checksums (verify).

    ``each(nbytes)`` follows every block read (progress; it may raise to stop).
    """
    stats = ReadStats()
    with contextlib.ExitStack() as stack:
        try:
            vhd = open_stored(stack, vmdir, key, file)
        except ChainBrokenError as exc:
            reason = f"{file}.vhd is missing" if not vmdir.vhd_path(key, file).exists() else None
            return FileDamage(key, file, reason or exc.message), stats
        whole = vhd.whole_file_problem()
        if whole is not None:
            return whole, stats
        bad: dict[str, list[int]] = {}
        for index in sorted({*vhd.present_blocks(), *vhd.missing}):
            try:
                got = vhd.read_block(index)
            except _BadBlock as b:
                bad.setdefault(b.reason, []).append(index)
                continue
            assert got is not None
            stats.blocks += 1
            stats.bytes += len(got[1])
            if each is not None:
                each(len(got[1]))
    if not bad:
        return None, stats
    reason = "; ".join(bad)
    return FileDamage(key, file, reason, tuple(sorted(i for v in bad.values() for i in v))), stats


# --------------------------------------------------------------------------
# Where else a damaged block can be found, and where damage reaches


def _coverage(vhd: VhdFile, index: int) -> int:
    """The sectors of block ``index`` this file answers for, as a bit mask
    (most significant bit first, as in the VHD bitmap)."""
    spb = vhd.block_size // SECTOR
    if vhd.disk_type != DISK_DIFFERENCING:
        return (1 << spb) - 1  # a base answers for every sector (absent ones are zeros)
    try:
        bitmap = vhd.read_bitmap(index)
    except (OSError, VhdFormatError):
        return 0
    return int.from_bytes(bitmap, "big") if bitmap is not None else 0


@dataclass
class _Opened:
    """Files opened once for several look-ups, each block checked at most once."""

    vmdir: VmDir
    key: str
    stack: contextlib.ExitStack
    files: dict[str, StoredVhd | None] = field(default_factory=dict)
    verdicts: dict[tuple[str, int], bool] = field(default_factory=dict)

    def get(self, file: str) -> StoredVhd | None:
        if file not in self.files:
            try:
                self.files[file] = open_stored(self.stack, self.vmdir, self.key, file)
            except ChainBrokenError:
                self.files[file] = None
        return self.files[file]

    def intact(self, file: str, index: int) -> bool:
        """Whether block ``index`` of ``file`` reads back as written."""
        if (file, index) not in self.verdicts:
            vhd = self.get(file)
            ok = vhd is not None
            if vhd is not None:
                try:
                    vhd.read_block(index)
                except _BadBlock:
                    ok = False
            self.verdicts[(file, index)] = ok
        return self.verdicts[(file, index)]


def _suppliers(opened: _Opened, files: Sequence[str], index: int) -> tuple[list[str], bool] | None:
    """The files of ``files`` (newest first) a read of block ``index`` takes
    sectors from, and whether they answer for all of it; None if one of them
    cannot be opened."""
    out: list[str] = []
    remaining: int | None = None
    for file in files:
        vhd = opened.get(file)
        if vhd is None:
            return None
        if index >= vhd.block_count or not vhd.block_present(index):
            continue
        out.append(file)
        full = (1 << (vhd.block_size // SECTOR)) - 1
        remaining = (full if remaining is None else remaining) & ~_coverage(vhd, index)
        if remaining == 0:
            return out, True
    return out, False


def _resolves_intact(opened: _Opened, chain: Sequence[str], index: int) -> bool:
    """Whether block ``index`` of the chain reads without meeting damage (what
    no file holds reads as zeros: nothing damaged there)."""
    found = _suppliers(opened, chain, index)
    return found is not None and all(opened.intact(f, index) for f in found[0])


#: At most this many damaged blocks are looked for in other points: enough to
#: say where a few damaged blocks can be found, bounded when a whole file is lost.
MAX_LOOKED_FOR: Final = 32


def intact_copies(
    vmdir: VmDir,
    key: str,
    blocks: Sequence[int],
    points: Sequence[RestorePoint],
    *,
    exclude: str | None = None,
) -> dict[int, list[str]]:
    """For each of ``blocks`` (the first :data:`MAX_LOOKED_FOR`), the points
    (ids, oldest first) whose disk ``key`` reads that block intact: each
    stored block involved is read and checked, once."""
    wanted = sorted(set(blocks))[:MAX_LOOKED_FOR]
    out: dict[int, list[str]] = {b: [] for b in wanted}
    with contextlib.ExitStack() as stack:
        opened = _Opened(vmdir, key, stack)
        for point in points:
            if point.id == exclude:
                continue
            try:
                chain = vmdir.chain_files(key, point.disk(key).file)
            except (PointNotFoundError, ChainBrokenError):
                continue
            for b in wanted:
                if _resolves_intact(opened, chain, b):
                    out[b].append(point.id)
    return out


def reaching(
    vmdir: VmDir, key: str, file: str, flags: Mapping[str, FileDamage]
) -> list[FileDamage]:
    """The flagged damage a read of the chain ending at ``file`` would meet:
    a damaged block that newer files of the chain replace entirely is not
    read, so it does not make this point damaged. Reads bitmaps only."""
    chain = vmdir.chain_files(key, file)
    if not any(f in flags for f in chain):
        return []
    out = []
    with contextlib.ExitStack() as stack:
        opened = _Opened(vmdir, key, stack)
        for depth, f in enumerate(chain):
            found = flags.get(f)
            if found is None:
                continue
            if not found.blocks:
                out.append(found)
                continue
            reached = [b for b in found.blocks if not _covered(opened, chain[:depth], b)]
            if reached:
                out.append(FileDamage(found.key, found.file, found.reason, tuple(reached)))
    return out


def _covered(opened: _Opened, newer: Sequence[str], index: int) -> bool:
    """Whether the files in ``newer`` answer for every sector of block ``index``."""
    found = _suppliers(opened, newer, index)
    return found is not None and found[1]


# --------------------------------------------------------------------------
# Merges


def merge_digests(vmdir: VmDir, key: str, full: str, delta: str) -> tuple[int, dict[int, bytes]]:
    """(block size, the checksum each block of ``delta`` will have once a
    merge has written it into ``full``), from checked reads of both: every
    block of the delta, and the blocks of the full its partial blocks are
    laid over.

    DamagedDataError if any of them is damaged, or if either checksum file
    cannot be read: a merge must never fold damage into the full, nor give
    damaged bytes a fresh checksum.
    """
    out: dict[int, bytes] = {}
    bad: dict[tuple[str, str], set[int]] = {}
    with contextlib.ExitStack() as stack:
        fv = open_stored(stack, vmdir, key, full)
        dv = open_stored(stack, vmdir, key, delta)
        whole = [w for w in (fv.whole_file_problem(), dv.whole_file_problem()) if w is not None]
        if whole:
            raise DamagedDataError(describe_findings(whole), findings=whole)
        bs = fv.block_size
        ones = b"\xff" * (bs // SECTOR // 8)
        # The full a delta itself (a point deleted in the middle of the
        # chain): its bitmaps gain the delta's bits.
        layered = fv.disk_type == DISK_DIFFERENCING

        def checked(vhd: StoredVhd, index: int) -> tuple[bytes, bytes] | None:
            try:
                got = vhd.read_block(index)
            except _BadBlock as b:
                bad.setdefault((b.file, b.reason), set()).add(index)
                return None
            assert got is not None
            return got

        for index in sorted({*dv.present_blocks(), *dv.missing}):
            if (got := checked(dv, index)) is None:
                continue
            bitmap, data = got
            if not any(bitmap):
                continue
            if bitmap == ones:
                assert dv.sums.digests is not None
                out[index] = dv.sums.digests[index]
                continue
            f_bitmap, base = (bitmap if layered else ones), bytes(bs)
            if index < fv.block_count and fv.block_present(index):
                if (f_got := checked(fv, index)) is None:
                    continue
                held, base = f_got
                if layered:
                    f_bitmap = bytes(a | b for a, b in zip(held, bitmap, strict=True))
            composed = bytearray(base)
            for first, count in bitmap_runs(bitmap):
                at, end = first * SECTOR, (first + count) * SECTOR
                composed[at:end] = data[at:end]
            out[index] = block_digest(f_bitmap, memoryview(composed))
    if bad:
        findings = [FileDamage(key, f, r, tuple(sorted(b))) for (f, r), b in bad.items()]
        raise DamagedDataError(describe_findings(findings), findings=findings)
    return bs, out


def matches(fd: int, offset: int, length: int, bitmap: bytes, digest: bytes) -> bool:
    """Whether the block just written at ``offset`` of ``fd`` reads back as the
    block ``digest`` was taken of (a merge's check of what it wrote)."""
    parts, got = [], 0
    while got < length:
        piece = os.pread(fd, length - got, offset + got)
        if not piece:
            return False
        parts.append(piece)
        got += len(piece)
    return bool(block_digest(bitmap, b"".join(parts)) == digest)


@dataclass(frozen=True)
class FileShape:
    """What a delta written on top of a stored VHD must match and name."""

    size: int
    block_size: int
    uuid: uuidlib.UUID
    timestamp: int


def file_shape(path: Path) -> FileShape:
    """Size, block size, uuid and timestamp of a stored VHD (headers only)."""
    with VhdFile.open(path) as vhd:
        return FileShape(vhd.size, vhd.block_size, vhd.uuid, vhd.footer.timestamp)


def stored_bytes(path: Path) -> int:
    """Bytes of the blocks present in a stored VHD (its BAT only: a space figure)."""
    with VhdFile.open(path) as vhd:
        return sum(1 for _ in vhd.present_blocks()) * vhd.block_size
