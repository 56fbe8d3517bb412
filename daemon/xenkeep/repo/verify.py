"""Verify: re-read every block of every restore point and compare it with the
checksum stored when it was written.

Each VHD is checked once even when many points share it; a damaged file is
reported against every point whose chain uses it, with the block indexes at
fault. Findings are flagged in ``vms/<vm>/damaged/<file>.json``; nothing is
deleted or rewritten, so the data stays available for inspection or a
partial restore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from xenkeep.formats.errors import VhdFormatError
from xenkeep.formats.vhd import VhdFile

from .errors import ChainBrokenError, ChecksumFileError, RepoError
from .fsutil import atomic_write, durable_unlink
from .layout import VmDir
from .sums import block_digest, read_sums


@dataclass(frozen=True)
class FileDamage:
    """What is wrong with one VHD file."""

    key: str
    file: str
    reason: str
    blocks: tuple[int, ...] = ()


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
    path = vmdir.vhd_path(key, file)
    try:
        _bs, sums = read_sums(vmdir.sums_path(key, file))
    except ChecksumFileError as exc:
        return FileDamage(key, file, str(exc))
    bad: list[int] = []
    try:
        with VhdFile.open(path) as vhd:
            nbytes = vhd.block_size // 512 // 8
            present = set()
            for index in vhd.present_blocks():
                present.add(index)
                got = vhd.read_block(index)
                assert got is not None
                bitmap, data = got
                if report is not None:
                    report.blocks += 1
                    report.bytes_read += len(data)
                if block is not None:
                    block(len(data))
                if sums.get(index) != block_digest(bitmap[:nbytes], data):
                    bad.append(index)
            missing = sorted(set(sums) - present)
    except FileNotFoundError:
        return FileDamage(key, file, f"{path.name} is missing")
    except (OSError, VhdFormatError) as exc:
        return FileDamage(key, file, f"{path.name} is unreadable: {exc}")
    if missing:
        return FileDamage(key, file, "blocks missing from the BAT", tuple(missing))
    if bad:
        return FileDamage(key, file, "blocks do not match their checksums", tuple(sorted(bad)))
    return None


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
            for f in chain:
                if (disk.key, f) not in results:
                    results[(disk.key, f)] = verify_file(vmdir, disk.key, f, report, block)
                    report.files += 1
                    if progress is not None:
                        progress(report.bytes_read)
                damage = results[(disk.key, f)]
                if damage is not None:
                    report.damaged.append(
                        DamagedPoint(
                            vmdir.vm_uuid, point.id, disk.key, f, damage.reason, damage.blocks
                        )
                    )
                    break
    for (_key, file), damage in results.items():
        flag = vmdir.damaged / f"{file}.json"
        if damage is None:
            durable_unlink(flag)
            continue
        vmdir.damaged.mkdir(parents=True, exist_ok=True)
        body = asdict(damage) | {"found": time.time()}
        atomic_write(flag, json.dumps(body, indent=1).encode())
    report.seconds = time.monotonic() - started
    return report


def flagged_files(vmdir: VmDir) -> dict[str, FileDamage]:
    """Files flagged damaged by an earlier verify, by file uuid."""
    out: dict[str, FileDamage] = {}
    if not vmdir.damaged.is_dir():
        return out
    for p in vmdir.damaged.glob("*.json"):
        try:
            d = json.loads(p.read_bytes())
            out[d["file"]] = FileDamage(d["key"], d["file"], d["reason"], tuple(d["blocks"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RepoError(f"{p}: unreadable damage flag: {exc}") from None
    return out
