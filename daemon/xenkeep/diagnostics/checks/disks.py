"""Free space of the system's filesystems and of the backup storage; the
backup storage mounted on a disk of its own and writable."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any, Final

from xenkeep.diagnostics.check import Check, Finding, failure, ok, warning
from xenkeep.diagnostics.sources import Sources
from xenkeep.units import human_bytes

#: Below these shares of free space: a warning, then a failure.
SYSTEM_WARN: Final = 0.15
SYSTEM_FAIL: Final = 0.05
STORAGE_WARN: Final = 0.10
STORAGE_FAIL: Final = 0.03
#: The write-and-read test's size: big enough to leave the page cache's
#: first page, small enough to be instant.
PROBE_BYTES: Final = 1 << 20


def space_words(free: int, capacity: int) -> str:
    """``4.1 GiB free of 20 GiB (20 %)``."""
    share = free / capacity if capacity else 0.0
    return f"{human_bytes(free)} free of {human_bytes(capacity)} ({share:.0%})"


def space_finding(free: int, capacity: int, *, warn: float, fail: float, remedy: str) -> Finding:
    """ok, warning or failure by the share of free space."""
    words = space_words(free, capacity)
    share = free / capacity if capacity else 0.0
    if share < fail:
        return failure(words, remedy)
    if share < warn:
        return warning(words, remedy)
    return ok(words)


async def _statvfs(path: Path) -> tuple[int, int]:
    st = await asyncio.to_thread(os.statvfs, path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _system_space(name: str, shown: str, remedy: str) -> Check:
    async def run(s: Sources) -> list[Finding]:
        try:
            free, capacity = await _statvfs(s.paths[name])
        except OSError as exc:
            return [failure(f"cannot read {shown}: {exc.strerror or exc}", remedy)]
        return [space_finding(free, capacity, warn=SYSTEM_WARN, fail=SYSTEM_FAIL, remedy=remedy)]

    return Check(f"disk.{name}", f"Free space of {shown}", run)


ROOT_REMEDY: Final = (
    "The system disk is filling up. Remove what was copied there by hand (files in /root, "
    "/var/tmp), or give the appliance's first disk more space: the root filesystem grows "
    "to the disk at the next boot."
)
VAR_REMEDY: Final = (
    "/var holds the database and the journal. Shrink the journal "
    "(`journalctl --vacuum-size=200M` as root) and grow the appliance's first disk if it "
    "keeps filling."
)


async def storage_status(s: Sources) -> dict[str, Any]:
    """The storage's status; a storage whose directory cannot be read (gone,
    unmounted under the daemon) counts as configured but unusable."""
    try:
        return await s.backup.storage_status()
    except OSError as exc:
        return {"configured": False, "problem": f"{exc.filename or ''} {exc.strerror or exc}"}


async def storage_space(s: Sources) -> list[Finding]:
    status = await storage_status(s)
    if not status.get("configured"):
        return [_no_storage(status)]
    return [
        space_finding(
            int(status["free"]),
            int(status["capacity"]),
            warn=STORAGE_WARN,
            fail=STORAGE_FAIL,
            remedy=(
                "Backups fail once the storage is full. Lower the retention of a job "
                "(it prunes at once), delete restore points, or move to a bigger disk."
            ),
        )
    ]


def _no_storage(status: dict[str, Any]) -> Finding:
    problem = status.get("problem")
    if problem:
        return failure(
            f"the backup storage cannot be used: {str(problem).strip()}",
            "Check that the backup disk is still attached to the appliance's VM, then "
            "restart the appliance or attach the disk again on Backup → Storage.",
        )
    return warning(
        "no backup storage is set up",
        "Set up the backup storage on Backup → Storage: a disk of the appliance or a directory.",
    )


def _mount_of(path: Path, mounts_text: str) -> tuple[str, str, str]:
    """The mount point, source and type a resolved path lives on (longest prefix). Pure."""
    best = ("/", "", "")
    resolved = str(path)
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        source, point, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, source, fstype)
    return best


async def storage_mounted(s: Sources) -> list[Finding]:
    status = await storage_status(s)
    if not status.get("configured"):
        return [_no_storage(status)]
    root = Path(str(status["path"]))

    def look() -> tuple[str, str, str]:
        return _mount_of(root.resolve(), s.mounts.read_text())

    try:
        point, source, fstype = await asyncio.to_thread(look)
    except OSError as exc:
        return [warning(f"cannot read the mount table: {exc}", "")]
    where = f"{root} on {point} ({fstype} {source})".replace(" )", ")")
    if point == "/":
        return [
            warning(
                f"{where}: the backups share the system disk",
                "Give backups a disk of their own (Backup → Storage): a full backup "
                "storage then cannot fill the system disk, and the backups survive "
                "the appliance.",
            )
        ]
    return [ok(f"{where}, mounted")]


def _write_and_read(root: Path) -> str:
    probe = root / f".xenkeep-diagnostics-{secrets.token_hex(8)}"
    data = secrets.token_bytes(PROBE_BYTES)
    try:
        with probe.open("xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        back = probe.read_bytes()
    finally:
        probe.unlink(missing_ok=True)
    if back != data:
        raise OSError(f"{human_bytes(PROBE_BYTES)} written to {root} read back different")
    return f"wrote, synced and read back {human_bytes(PROBE_BYTES)} in {root}"


async def storage_writable(s: Sources) -> list[Finding]:
    status = await storage_status(s)
    if not status.get("configured"):
        return [_no_storage(status)]
    root = Path(str(status["path"]))
    try:
        return [ok(await asyncio.to_thread(_write_and_read, root))]
    except OSError as exc:
        return [
            failure(
                f"cannot write to {root}: {exc.strerror or exc}",
                "The backup storage refuses writes: it may be full, mounted read-only "
                "after an error (see the journal), or not mounted at all. Runs fail until "
                "it is writable again.",
            )
        ]


CHECKS: Final = (
    _system_space("root", "/", ROOT_REMEDY),
    _system_space("var", "/var", VAR_REMEDY),
    Check("storage.space", "Free space of the backup storage", storage_space),
    Check("storage.mounted", "Backup storage on a disk of its own", storage_mounted),
    Check("storage.writable", "Backup storage writable", storage_writable),
)
