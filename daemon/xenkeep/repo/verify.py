"""Verify: re-read every block of every restore point and compare it with the
checksum stored when it was written.

Each VHD is checked once even when many points share it; a damaged file is
reported against every point whose chain uses it, with the block indexes at
fault. Findings are flagged in ``vms/<vm>/damaged/<file>.json``; nothing is
deleted or rewritten, so the data stays available for inspection or a
partial restore.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import damage
from .damage import FileDamage
from .errors import ChainBrokenError
from .layout import VmDir
from .reader import check_file, reaching


@dataclass(frozen=True)
class DamagedPoint:
    """A restore point that cannot be restored intact, and why."""

    vm_uuid: str
    point_id: str
    disk: str
    file: str
    reason: str
    blocks: tuple[int, ...] = ()


@dataclass
class VerifyReport:
    """The outcome of a verify run."""

    vms: int = 0
    points: int = 0
    files: int = 0
    blocks: int = 0
    bytes_read: int = 0
    damaged: list[DamagedPoint] = field(default_factory=list)
    #: VMs not checked (a merge held them), with the reason.
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No damage found."""
        return not self.damaged

    def add(self, other: VerifyReport) -> None:
        """Accumulate another VM's report."""
        self.vms += other.vms
        self.points += other.points
        self.files += other.files
        self.blocks += other.blocks
        self.bytes_read += other.bytes_read
        self.damaged.extend(other.damaged)
        self.skipped.extend(other.skipped)


def verify_file(
    vmdir: VmDir,
    key: str,
    file: str,
    report: VerifyReport | None = None,
    block: Callable[[int], None] | None = None,
) -> FileDamage | None:
    """Check one VHD against its checksum file; None if intact.

    ``block(nbytes)`` is called after each block read (progress; it may
    raise to stop the verify).
    """
    found, stats = check_file(vmdir, key, file, each=block)
    if report is not None:
        report.blocks += stats.blocks
        report.bytes_read += stats.bytes
    return found


def verify_vm(
    vmdir: VmDir,
    progress: Callable[[int], None] | None = None,
    block: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify every restore point of one VM and flag what is damaged.

    ``progress(bytes_read)`` follows each file, ``block(nbytes)`` each block.
    """
    started = time.monotonic()
    report = VerifyReport(vms=1)
    results: dict[tuple[str, str], FileDamage | None] = {}
    chains: list[tuple[str, str, str]] = []
    for point in vmdir.list_points():
        report.points += 1
        for disk in point.disks:
            try:
                chain = vmdir.chain_files(disk.key, disk.file)
            except ChainBrokenError as exc:
                report.damaged.append(
                    DamagedPoint(vmdir.vm_uuid, point.id, disk.key, disk.file, exc.message)
                )
                continue
            chains.append((point.id, disk.key, disk.file))
            for f in chain:
                if (disk.key, f) not in results:
                    results[(disk.key, f)] = verify_file(vmdir, disk.key, f, report, block)
                    report.files += 1
                    if progress is not None:
                        progress(report.bytes_read)
    # A point is damaged where its reads meet a damaged block: one that newer
    # files of its chain replace entirely is not read for it.
    for point_id, key, file in chains:
        flags = {f: d for (k, f), d in results.items() if k == key and d is not None}
        for hit in reaching(vmdir, key, file, flags):
            report.damaged.append(
                DamagedPoint(vmdir.vm_uuid, point_id, key, hit.file, hit.reason, hit.blocks)
            )
    # A whole-file check replaces what earlier reads flagged about the file.
    for (_key, checked), result in results.items():
        damage.replace(vmdir, checked, result, by="verify")
    report.seconds = time.monotonic() - started
    return report
