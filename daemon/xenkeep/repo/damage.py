"""Damage found in stored files, kept beside them: ``vms/<vm>/damaged/<file>.json``.

Every checked read that meets a block that does not match its checksum (a
restore, the check before a merge, verify) records it here, with the block
numbers, so the restore points list, the restore page, the API, retention
and the next backup's full-or-delta decision all see it. Verify, which
re-reads whole files, also clears the flag of a file it finds intact.
Nothing flagged is ever deleted or rewritten by XenKeep: the data stays for
inspection and for a restore of what can be read.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .errors import RepoError
from .fsutil import atomic_write, durable_unlink
from .layout import VmDir

#: Flags are rewritten (read, merged, written): one writer at a time, whichever
#: thread found the damage. Their temporary names are per process.
_FLAG_WRITES = threading.Lock()


@dataclass(frozen=True)
class FileDamage:
    """What is wrong with one stored VHD file."""

    key: str
    file: str
    reason: str
    #: The damaged blocks; empty when the whole file is in question (its
    #: checksum file or its structure cannot be read).
    blocks: tuple[int, ...] = ()

    def merged(self, other: FileDamage) -> FileDamage:
        """This finding and another one about the same file, as one."""
        reasons = [self.reason] + ([other.reason] if other.reason != self.reason else [])
        whole = not self.blocks or not other.blocks
        blocks = () if whole else tuple(sorted(set(self.blocks) | set(other.blocks)))
        return FileDamage(self.key, self.file, "; ".join(reasons), blocks)


def flagged_files(vmdir: VmDir) -> dict[str, FileDamage]:
    """Files flagged damaged, by file uuid."""
    out: dict[str, FileDamage] = {}
    if not vmdir.damaged.is_dir():
        return out
    for p in vmdir.damaged.glob("*.json"):
        try:
            d = json.loads(p.read_bytes())
            out[d["file"]] = FileDamage(
                str(d["key"]), str(d["file"]), str(d["reason"]), tuple(int(b) for b in d["blocks"])
            )
        except FileNotFoundError:
            continue  # cleared meanwhile
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RepoError(f"{p}: unreadable damage flag: {exc}") from None
    return out


def _write(vmdir: VmDir, damage: FileDamage, by: str) -> None:
    vmdir.damaged.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = asdict(damage) | {"found": time.time(), "by": by}
    atomic_write(vmdir.damaged / f"{damage.file}.json", json.dumps(body, indent=1).encode())


def record(vmdir: VmDir, findings: Iterable[FileDamage], *, by: str) -> None:
    """Add findings to the flags of their files (a block found damaged stays
    flagged until a verify finds the file intact)."""
    with _FLAG_WRITES:
        current = flagged_files(vmdir)
        for finding in findings:
            old = current.get(finding.file)
            new = finding if old is None else old.merged(finding)
            if new != old:
                _write(vmdir, new, by)
                current[finding.file] = new


def replace(vmdir: VmDir, file: str, damage: FileDamage | None, *, by: str) -> None:
    """Set what a whole-file check found: its damage, or None to clear the flag."""
    with _FLAG_WRITES:
        if damage is None:
            durable_unlink(vmdir.damaged / f"{file}.json")
        else:
            _write(vmdir, damage, by)
