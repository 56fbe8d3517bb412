"""The datastore service: the one object the backup runner, restore, verify
and the UI talk to. It owns no XAPI: it takes streams and returns streams.

Blocking file work runs in worker threads (``asyncio.to_thread``); the
synchronous cores live in :mod:`.writer`, :mod:`.merge`, :mod:`.verify`
and :mod:`.restore` so tests and tools can call them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from xenkeep.formats.errors import VhdFormatError
from xenkeep.units import number_ranges

from . import damage as damage_flags
from .damage import FileDamage, flagged_files
from .errors import (
    ChainBrokenError,
    ChainBusyError,
    DamagedDataError,
    NotADatastoreError,
    PointNotFoundError,
    RepoError,
)
from .fsutil import allocated_bytes, atomic_write, durable_unlink, probe_reflink
from .layout import RestorePoint, VmDir, check_uuid, vm_dirs
from .lock import ChainLock, LockOwner, ReadersLock
from .merge import MergeStats, merge_oldest, pending_journal, run_journal
from .reader import DiskReader, describe_findings, intact_copies, open_disk, reaching, stored_bytes
from .restore import SynthStats, iter_raw, synthesize_full
from .retention import MergeStep, PointSummary, RetentionPlan, plan_retention
from .verify import DamagedPoint, VerifyReport, verify_vm
from .writer import PointWriter

log = logging.getLogger(__name__)

MARKER: Final = "datastore.json"
FORMAT: Final = "xenkeep-datastore"
VERSION: Final = 1


@dataclass(frozen=True)
class SpaceUsage:
    """Capacity, used and free bytes of the filesystem holding the datastore."""

    capacity: int
    used: int
    free: int


@dataclass(frozen=True)
class VmUsage:
    """Space one VM's backups take."""

    vm_uuid: str
    points: int
    #: Bytes the filesystem allocated (``st_blocks``); extents shared by
    #: reflink count in every file that shares them.
    allocated: int
    #: Bytes of VHD blocks stored (present blocks times block size).
    stored: int
    #: The VM's name at its newest restore point ("" without points).
    name: str = ""


@dataclass(frozen=True)
class ChainStatus:
    """Can the next backup of a disk be a delta on the newest restore point?"""

    latest: RestorePoint | None
    can_delta: bool
    reason: str | None


@dataclass
class Recovery:
    """What opening a VM's chains had to repair."""

    stale_lock: LockOwner | None = None
    resumed_merge: str | None = None
    removed: list[str] = field(default_factory=list)


@dataclass
class PruneResult:
    """Outcome of applying retention to one VM."""

    plan: RetentionPlan
    merged: list[MergeStep] = field(default_factory=list)
    stats: MergeStats = field(default_factory=MergeStats)
    deferred: str | None = None
    recovery: Recovery | None = None
    #: A merge refused because what it would fold in is damaged (the message).
    damaged: str | None = None


@dataclass
class DeleteResult:
    """Outcome of deleting one restore point."""

    deleted: str
    #: The point the deleted one was merged into (None: nothing depended on it).
    merged_into: str | None
    stats: MergeStats
    removed: list[str]


class Datastore:
    """A backup datastore rooted at a directory (see ``docs/repository.md``)."""

    def __init__(self, root: Path, *, use_flock: bool = True) -> None:
        self.root = Path(root)
        self.use_flock = use_flock
        marker = self.root / MARKER
        try:
            meta = json.loads(marker.read_bytes())
        except FileNotFoundError:
            raise NotADatastoreError(
                f"{self.root} is not a XenKeep datastore ({MARKER} missing)",
                hint="initialise it first",
            ) from None
        except ValueError as exc:
            raise NotADatastoreError(f"{marker}: unreadable: {exc}") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise NotADatastoreError(
                f"{marker}: format {meta.get('format')!r} version {meta.get('version')!r} "
                f"is not {FORMAT} version {VERSION}"
            )

    @classmethod
    def initialise(cls, root: Path, **kwargs: Any) -> Datastore:
        """Make ``root`` (an existing, empty or already initialised directory) a datastore."""
        root = Path(root)
        if not root.is_dir():
            raise NotADatastoreError(f"{root} is not a directory")
        marker = root / MARKER
        if not marker.exists():
            (root / "vms").mkdir(exist_ok=True)
            body = {"format": FORMAT, "version": VERSION, "created": time.time()}
            atomic_write(marker, json.dumps(body).encode())
        return cls(root, **kwargs)

    # --------------------------------------------------------------- facts

    @cached_property
    def reflink(self) -> bool:
        """Whether the datastore's filesystem shares extents (merges then move no data)."""
        return probe_reflink(self.root)

    @property
    def reflink_note(self) -> str:
        """The line the UI shows about merge speed."""
        if self.reflink:
            return "reflink: yes — merges are metadata operations"
        return "reflink: no — merges copy the changed blocks"

    def usage(self) -> SpaceUsage:
        """Capacity, used and free space of the datastore's filesystem."""
        st = os.statvfs(self.root)
        capacity = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return SpaceUsage(capacity, capacity - st.f_bfree * st.f_frsize, free)

    def vm_usage(self, vm_uuid: str) -> VmUsage:
        """Space taken by one VM's backups."""
        vmdir = VmDir(self.root, vm_uuid)
        allocated = stored = 0
        for dirpath, _dirs, files in os.walk(vmdir.path):
            for name in files:
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    allocated += allocated_bytes(path)
                if name.endswith(".vhd"):
                    with contextlib.suppress(OSError, VhdFormatError):
                        stored += stored_bytes(path)
        points = vmdir.list_points()
        name = str(points[-1].vm.get("name_label", "")) if points else ""
        return VmUsage(vmdir.vm_uuid, len(points), allocated, stored, name)

    def vms(self) -> list[str]:
        """VM uuids that have a directory in the datastore."""
        return [v.vm_uuid for v in vm_dirs(self.root)]

    def vmdir(self, vm_uuid: str) -> VmDir:
        """The directory object of one VM."""
        return VmDir(self.root, vm_uuid)

    def points(self, vm_uuid: str) -> list[RestorePoint]:
        """Committed restore points of a VM, oldest first."""
        return self.vmdir(vm_uuid).list_points()

    def damage(self, vm_uuid: str) -> list[DamagedPoint]:
        """Restore points a read would find damaged: their chain cannot be
        read, or reaches a block flagged damaged (by verify, a restore or a
        merge's check) that no newer file of the chain replaces."""
        vmdir = self.vmdir(vm_uuid)
        flags = flagged_files(vmdir)
        out = []
        for p in vmdir.list_points():
            out.extend(_point_damage(vmdir, p, flags))
        return out

    def chain_status(self, vm_uuid: str, key: str) -> ChainStatus:
        """Whether the next backup of disk ``key`` can be a delta, and if not, why.

        The runner logs ``reason`` when it exports a full, so a full never
        happens silently.
        """
        vmdir = self.vmdir(vm_uuid)
        points = vmdir.list_points() if vmdir.exists() else []
        if not points:
            return ChainStatus(None, False, "no restore point yet: first backup")
        latest = points[-1]
        try:
            rec = latest.disk(key)
        except PointNotFoundError:
            return ChainStatus(latest, False, f"disk {key} is not in restore point {latest.id}")
        try:
            found = reaching(vmdir, key, rec.file, flagged_files(vmdir))
        except ChainBrokenError as exc:
            return ChainStatus(latest, False, f"chain damaged: {exc.message}")
        if found:
            return ChainStatus(
                latest, False, f"{found[0].file}.vhd is damaged: {describe_findings(found)}"
            )
        return ChainStatus(latest, True, None)

    # ------------------------------------------------------------ recovery

    def _recover_locked(self, vmdir: VmDir, lock: ChainLock) -> Recovery:
        """With the writer lock held: finish a killed merge, drop leftovers of
        a killed backup."""
        rec = Recovery(stale_lock=lock.recovered)
        if rec.stale_lock is not None:
            log.warning("%s: recovered the lock of %s", vmdir.vm_uuid, rec.stale_lock.describe())
        journal = pending_journal(vmdir)
        if journal is not None:
            readers = ReadersLock(vmdir.readers_lock)
            if not readers.acquire(exclusive=True):
                raise ChainBusyError(
                    f"VM {vmdir.vm_uuid}: an interrupted merge must be resumed but a restore "
                    "or verify is reading the chain"
                )
            try:
                log.warning(
                    "%s: resuming merge of %s at %s", vmdir.vm_uuid, journal.retire, journal.step
                )
                run_journal(vmdir, journal, reflink=self.reflink)
                rec.resumed_merge = journal.retire
            finally:
                readers.release()
        rec.removed = self._collect_garbage(vmdir)
        return rec

    def _collect_garbage(self, vmdir: VmDir) -> list[str]:
        """Remove files of backups that never committed: temporary files always,
        VHDs no restore point's chain uses only if every chain could be read."""
        removed = []
        referenced: set[tuple[str, str]] | None = set()
        for p in vmdir.list_points():
            for d in p.disks:
                try:
                    for f in vmdir.chain_files(d.key, d.file):
                        assert referenced is not None
                        referenced.add((d.key, f))
                except ChainBrokenError:
                    referenced = None
                    break
            if referenced is None:
                break
        for sub in (vmdir.points, vmdir.path):
            with contextlib.suppress(FileNotFoundError):
                for tmp in sub.iterdir():
                    if tmp.name.startswith(".") and ".tmp-" in tmp.name:
                        durable_unlink(tmp)
                        removed.append(str(tmp.relative_to(self.root)))
        with contextlib.suppress(FileNotFoundError):
            for disk_dir in vmdir.disks.iterdir():
                for path in disk_dir.iterdir():
                    name = path.name
                    temp = name.endswith((".part", ".merge", ".plan")) or ".tmp-" in name
                    stem = name.split(".", 1)[0]
                    orphan = (
                        referenced is not None
                        and name.endswith((".vhd", ".sums"))
                        and (disk_dir.name, stem) not in referenced
                    )
                    if temp or orphan:
                        durable_unlink(path)
                        removed.append(str(path.relative_to(self.root)))
        if removed:
            log.info("%s: removed leftovers %s", vmdir.vm_uuid, removed)
        return removed

    def recover(self, vm_uuid: str) -> Recovery:
        """Take the VM's lock and repair what a killed job left (blocking)."""
        vmdir = self.vmdir(vm_uuid)
        if not vmdir.exists():
            return Recovery()
        lock = ChainLock(vmdir.lock, "recover", use_flock=self.use_flock)
        lock.acquire()
        try:
            return self._recover_locked(vmdir, lock)
        finally:
            lock.release()

    def recover_all(self) -> dict[str, str]:
        """Finish every merge a killed process left (blocking): VM uuid -> the
        point it retired. Run when the storage opens, before anything lists,
        so that what is listed is what a restore finds. A VM whose chain a
        reader holds is left to its next writer (its listing already hides
        the retiring point)."""
        done = {}
        for vmdir in vm_dirs(self.root):
            if not vmdir.journal.exists():
                continue
            try:
                rec = self.recover(vmdir.vm_uuid)
            except RepoError as exc:
                # Busy, or a journal it cannot replay: the VM's next writer
                # meets the same error and reports it on its run.
                log.warning("%s: interrupted merge not finished: %s", vmdir.vm_uuid, exc.message)
                continue
            if rec.resumed_merge is not None:
                done[vmdir.vm_uuid] = rec.resumed_merge
        return done

    # -------------------------------------------------------------- backup

    @contextlib.asynccontextmanager
    async def begin_point(
        self,
        vm_uuid: str,
        *,
        vm_record: dict[str, Any],
        job_id: str | None = None,
        expect_parent: str | None = None,
    ) -> AsyncIterator[PointWriter]:
        """Start a restore point of ``vm_uuid``; hold its chain lock until the
        block exits. Without a successful ``commit()`` inside, nothing stays.

        ``expect_parent``: the restore point the deltas were exported against
        (the run's base snapshot); ChainBrokenError if it is not the newest.
        """
        vmdir = self.vmdir(check_uuid(vm_uuid))

        def begin() -> tuple[ChainLock, PointWriter]:
            vmdir.create()
            lock = ChainLock(vmdir.lock, f"backup job {job_id}", use_flock=self.use_flock)
            lock.acquire()
            try:
                self._recover_locked(vmdir, lock)
                points = vmdir.list_points()
                parent = points[-1] if points else None
                if expect_parent is not None and (parent is None or parent.id != expect_parent):
                    raise ChainBrokenError(
                        f"VM {vmdir.vm_uuid}: deltas were exported against restore point "
                        f"{expect_parent}, but the newest is {parent.id if parent else 'none'}",
                        hint="export a full",
                    )
                seq = (parent.seq if parent else 0) + 1
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                writer = PointWriter(
                    vmdir,
                    lock,
                    point_id=f"{stamp}-{seq:06d}",
                    seq=seq,
                    parent=parent,
                    vm_record=vm_record,
                    job_id=job_id,
                )
            except BaseException:
                lock.release()
                raise
            return lock, writer

        lock, writer = await asyncio.to_thread(begin)
        try:
            yield writer
        finally:
            try:
                if not writer.committed:
                    await writer.abort()
            finally:
                lock.release()

    async def prune(self, vm_uuid: str, keep_last: int) -> PruneResult:
        """Apply retention: merge the oldest points away until ``keep_last`` remain."""
        vmdir = self.vmdir(vm_uuid)

        def run() -> PruneResult:
            reflink = self.reflink  # probed on first use: it writes a file
            lock = ChainLock(vmdir.lock, "prune", use_flock=self.use_flock)
            lock.acquire()
            try:
                recovery = self._recover_locked(vmdir, lock)
                summaries = self._summaries(vmdir)
                plan = plan_retention(summaries, keep_last)
                result = PruneResult(plan=plan, recovery=recovery)
                if not plan.merges:
                    return result
                readers = ReadersLock(vmdir.readers_lock)
                if not readers.acquire(exclusive=True):
                    result.deferred = "a restore or verify is reading this VM; merge postponed"
                    return result
                try:
                    for step in plan.merges:
                        old = vmdir.load_point(step.retire)
                        new = vmdir.load_point(step.into)
                        try:
                            result.stats.add(merge_oldest(vmdir, old, new, reflink=reflink))
                        except DamagedDataError as exc:
                            # Recorded; the points stay as they were.
                            result.damaged = exc.message
                            break
                        result.merged.append(step)
                finally:
                    readers.release()
                return result
            finally:
                lock.release()

        return await asyncio.to_thread(run)

    async def delete_point(self, vm_uuid: str, point_id: str) -> DeleteResult:
        """Delete one restore point, keeping every other one readable.

        The newest (or only) point: its metadata goes (that is the commit),
        then the files no other point's chain uses. Any other point is
        merged into the point after it through the merge journal, as
        retention does: if that point is a full, nothing moves and the
        retired files are simply dropped. A kill at any moment leaves the
        point either listed and whole, or gone.
        """
        vmdir = self.vmdir(check_uuid(vm_uuid))

        def run() -> DeleteResult:
            # The probe writes a file: here, in the worker thread.
            reflink = self.reflink
            if not vmdir.exists():
                raise PointNotFoundError(f"no backups of VM {vm_uuid}")
            lock = ChainLock(
                vmdir.lock, f"delete restore point {point_id}", use_flock=self.use_flock
            )
            lock.acquire()
            try:
                self._recover_locked(vmdir, lock)
                points = vmdir.list_points()
                ids = [p.id for p in points]
                if point_id not in ids:
                    raise PointNotFoundError(f"VM {vmdir.vm_uuid} has no restore point {point_id}")
                at = ids.index(point_id)
                readers = ReadersLock(vmdir.readers_lock)
                if not readers.acquire(exclusive=True):
                    raise ChainBusyError(
                        f"VM {vmdir.vm_uuid}: a restore or verify is reading this VM; "
                        "delete the restore point when it ends"
                    )
                try:
                    if at == len(points) - 1:
                        durable_unlink(vmdir.point_path(point_id))
                        removed = self._collect_garbage(vmdir)
                        return DeleteResult(point_id, None, MergeStats(), removed)
                    old, new = points[at], points[at + 1]
                    summaries = {s.id: s for s in self._summaries(vmdir)}
                    for p in (old, new):
                        if summaries[p.id].damaged:
                            raise ChainBrokenError(
                                f"restore point {p.id} is damaged: merging {old.id} into "
                                f"{new.id} would spread the damage",
                                hint="run verify and a new full first, or delete the newer "
                                "points first",
                            )
                    stats = merge_oldest(vmdir, old, new, reflink=reflink)
                    return DeleteResult(point_id, new.id, stats, [])
                finally:
                    readers.release()
            finally:
                lock.release()

        return await asyncio.to_thread(run)

    def _summaries(self, vmdir: VmDir) -> list[PointSummary]:
        flags = flagged_files(vmdir)
        return [
            PointSummary(p.id, p.seq, bool(_point_damage(vmdir, p, flags)))
            for p in vmdir.list_points()
        ]

    # ------------------------------------------------------------- readers

    @contextlib.contextmanager
    def reading(self, vm_uuid: str) -> Iterator[VmDir]:
        """Hold the VM's readers lock (shared): merges wait until it is released."""
        vmdir = self.vmdir(vm_uuid)
        if not vmdir.exists():
            raise PointNotFoundError(f"no backups of VM {vm_uuid}")
        for _attempt in range(3):
            readers = ReadersLock(vmdir.readers_lock)
            if not readers.acquire(exclusive=False):
                raise ChainBusyError(f"VM {vm_uuid}: a merge is running; try again when it ends")
            if pending_journal(vmdir) is None:
                try:
                    yield vmdir
                finally:
                    readers.release()
                return
            readers.release()
            self.recover(vm_uuid)
        raise ChainBusyError(f"VM {vm_uuid}: could not settle an interrupted merge")

    @contextlib.contextmanager
    def open_point_disk(
        self, vm_uuid: str, point_id: str, key: str, *, salvage: bool = False
    ) -> Iterator[DiskReader]:
        """The checked reader of one disk of a restore point (:mod:`.reader`),
        with the VM's readers lock held; blocking, for a worker thread.

        Whatever it finds damaged is recorded in the datastore (the point
        shows it). A strict read's refusal (:class:`DamagedDataError`) also
        says which other restore points hold those blocks intact.
        """
        with self.reading(vm_uuid) as vmdir:
            rec = vmdir.load_point(point_id).disk(key)
            try:
                with open_disk(vmdir, key, rec.file, point_id=point_id, salvage=salvage) as reader:
                    try:
                        yield reader
                    finally:
                        damage_flags.record(vmdir, reader.findings, by="read")
            except DamagedDataError as exc:
                damage_flags.record(vmdir, exc.findings, by="read")
                elsewhere = self._copies_note(vmdir, point_id, key, exc.findings)
                raise DamagedDataError(
                    f"{exc.message}; {elsewhere}",
                    findings=exc.findings,
                    hint="restore an intact restore point, or choose to restore what can be "
                    "read (damaged blocks become zeros and are listed)",
                ) from None

    def check_point(self, vm_uuid: str, point_id: str, keys: list[str]) -> None:
        """Refuse a point whose disks ``keys`` a read is already known to meet
        damage in (flagged by an earlier read or verify): DamagedDataError
        naming the blocks and where intact copies are; blocking."""
        with self.reading(vm_uuid) as vmdir:
            point = vmdir.load_point(point_id)
            flags = flagged_files(vmdir)
            for disk in point.disks:
                if disk.key not in keys:
                    continue
                found = [
                    FileDamage(d.disk, d.file, d.reason, d.blocks)
                    for d in _point_damage(vmdir, point, flags)
                    if d.disk == disk.key
                ]
                if not found:
                    continue
                raise DamagedDataError(
                    f"restore point {point_id} of VM {vmdir.vm_uuid} disk {disk.key} is "
                    f"damaged: {describe_findings(found)}; "
                    + self._copies_note(vmdir, point_id, disk.key, found),
                    findings=found,
                    hint="restore an intact restore point, or choose to restore what can be "
                    "read (damaged blocks become zeros and are listed)",
                )

    def intact_elsewhere(
        self, vm_uuid: str, point_id: str, key: str, findings: list[FileDamage]
    ) -> str:
        """Which other restore points hold what ``findings`` name of disk
        ``key`` intact, in words (each block involved is read and checked);
        blocking."""
        with self.reading(vm_uuid) as vmdir:
            return self._copies_note(vmdir, point_id, key, findings)

    def _copies_note(
        self, vmdir: VmDir, point_id: str, key: str, findings: Sequence[FileDamage]
    ) -> str:
        points = vmdir.list_points()
        notes = []
        blocks = sorted({b for f in findings for b in f.blocks})
        if blocks:
            copies = intact_copies(vmdir, key, blocks, points, exclude=point_id)
            notes.append(describe_copies(point_id, points, copies, len(blocks)))
        whole = {f.file for f in findings if not f.blocks}
        if whole:
            # A file that cannot be checked at all: the points not built on it.
            others = []
            for p in points:
                if p.id == point_id:
                    continue
                with contextlib.suppress(PointNotFoundError, ChainBrokenError):
                    if not whole & set(vmdir.chain_files(key, p.disk(key).file)):
                        others.append(p)
            names = ", ".join(sorted(f"{f}.vhd" for f in whole))
            if others:
                notes.append(
                    f"restore points not built on {names}: "
                    + describe_points(point_id, points, [p.id for p in others])
                )
            else:
                notes.append(f"every other restore point is built on {names}")
        return "; ".join(notes)

    async def read_disk(
        self, vm_uuid: str, point_id: str, key: str, *, salvage: bool = False
    ) -> AsyncIterator[bytes]:
        """The raw disk of a restore point (newest block wins), 2 MiB at a time,
        every block checked (see :meth:`open_point_disk`)."""
        loop_sentinel = object()
        # The readers lock and the files are taken and read off the loop.
        opening = self.open_point_disk(vm_uuid, point_id, key, salvage=salvage)
        reader = await asyncio.to_thread(opening.__enter__)
        it = iter_raw(reader)
        try:
            while True:
                item = await asyncio.to_thread(next, it, loop_sentinel)
                if item is loop_sentinel:
                    break
                assert isinstance(item, bytes)
                yield item
        except BaseException as exc:
            # Leaving the reader records what it found and, for a refusal,
            # looks for intact copies: file work, off the loop too.
            failure = None if isinstance(exc, GeneratorExit) else exc
            args = (type(failure), failure, exc.__traceback__) if failure else (None, None, None)
            if not await asyncio.to_thread(opening.__exit__, *args) or failure is None:
                raise
            return
        await asyncio.to_thread(opening.__exit__, None, None, None)

    async def synthesize_full(
        self, vm_uuid: str, point_id: str, key: str, dest: Path, *, salvage: bool = False
    ) -> SynthStats:
        """Write the disk of a restore point as one dynamic VHD at ``dest``
        (sharing extents with the chain where the filesystem allows), every
        block checked."""

        def run() -> SynthStats:
            with self.open_point_disk(vm_uuid, point_id, key, salvage=salvage) as reader:
                return synthesize_full(reader, Path(dest), reflink=self.reflink)

        return await asyncio.to_thread(run)

    def verify_blocking(
        self, vm_uuid: str | None = None, block: Callable[[int], None] | None = None
    ) -> VerifyReport:
        """Re-read every block of every restore point (of one VM or all) and
        compare with the checksums stored at write time; in the caller's thread.

        ``block(nbytes)`` is called after each block (progress; may raise to stop).
        """
        report = VerifyReport()
        for vm in [vm_uuid] if vm_uuid else self.vms():
            try:
                with self.reading(vm) as vmdir:
                    report.add(verify_vm(vmdir, block=block))
            except ChainBusyError as exc:
                if vm_uuid:
                    raise
                report.skipped.append(f"{vm}: {exc.message}")
        return report

    async def verify(self, vm_uuid: str | None = None) -> VerifyReport:
        """:meth:`verify_blocking` in a worker thread."""
        return await asyncio.to_thread(self.verify_blocking, vm_uuid)

    async def stored_bytes(self, vm_uuid: str | None = None) -> int:
        """Bytes of stored blocks (of one VM or all): what a verify reads."""

        def count() -> int:
            return sum(self.vm_usage(v).stored for v in ([vm_uuid] if vm_uuid else self.vms()))

        return await asyncio.to_thread(count)


def _point_damage(
    vmdir: VmDir, point: RestorePoint, flags: dict[str, FileDamage]
) -> list[DamagedPoint]:
    """The damage a read of ``point`` meets, per disk and file."""
    out = []
    for d in point.disks:
        try:
            found = reaching(vmdir, d.key, d.file, flags)
        except ChainBrokenError as exc:
            out.append(DamagedPoint(vmdir.vm_uuid, point.id, d.key, d.file, exc.message))
            continue
        out.extend(
            DamagedPoint(vmdir.vm_uuid, point.id, d.key, f.file, f.reason, f.blocks) for f in found
        )
    return out


def describe_points(point_id: str, points: list[RestorePoint], ids: list[str]) -> str:
    """``X (older), Y (newer)``: other points named relative to ``point_id``."""
    seqs = {p.id: p.seq for p in points}
    mine = seqs.get(point_id, 0)
    return ", ".join(f"{i} ({'older' if seqs.get(i, 0) < mine else 'newer'})" for i in ids)


def describe_copies(
    point_id: str, points: list[RestorePoint], copies: dict[int, list[str]], wanted: int
) -> str:
    """Where intact copies of damaged blocks are, in words: ``an intact copy
    of block 5: restore point X (older)``."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for block, holders in sorted(copies.items()):
        groups.setdefault(tuple(holders), []).append(block)
    parts = []
    for group, blocks in groups.items():
        what = f"block{'s' if len(blocks) > 1 else ''} {number_ranges(blocks)}"
        if group:
            named = describe_points(point_id, points, list(group))
            parts.append(f"an intact copy of {what}: restore point {named}")
        else:
            parts.append(f"no other restore point holds {what} intact")
    note = "; ".join(parts)
    if wanted > len(copies):
        note += f" (looked for the first {len(copies)} of {wanted} damaged blocks)"
    return note
