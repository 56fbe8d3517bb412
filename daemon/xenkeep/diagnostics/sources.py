"""What the checks look at: the daemon's services and a few places of the OS.

One :class:`Sources` is built by the composition root; tests build their own
with paths of their choosing (a small mounted disk image for the free-space
checks, a stand-in ``/proc`` for memory and load).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from xenkeep.ops import OpKind

if TYPE_CHECKING:
    from xenkeep.backup.manager import BackupManager
    from xenkeep.ops import Operations
    from xenkeep.pools.manager import PoolManager
    from xenkeep.system.tls import TlsMaterial

    from .host import HostOS

#: The kinds whose failed runs the diagnostics report: every kind of the
#: operations model that runs jobs (replication joins when it exists).
RUN_KIND_NAMES = frozenset({"backup", "replication"})


def run_kinds() -> tuple[OpKind, ...]:
    """The operation kinds that are runs of jobs, in their enum's order."""
    return tuple(k for k in OpKind if k.value in RUN_KIND_NAMES)


def installed_version() -> str | None:
    """The version of the xenkeep package installed on disk (None from a source tree)."""
    try:
        return metadata.version("xenkeep")
    except metadata.PackageNotFoundError:
        return None


@dataclass
class Sources:
    """Everything a check may look at."""

    backup: BackupManager
    pools: PoolManager
    ops: Operations
    tls: TlsMaterial
    host: HostOS
    schema_version: Callable[[], Awaitable[int]]
    #: The filesystems whose free space is checked, by check name.
    paths: Mapping[str, Path] = field(
        default_factory=lambda: {"root": Path("/"), "var": Path("/var")}
    )
    proc: Path = Path("/proc")
    mounts: Path = Path("/proc/self/mounts")
    os_release: Sequence[Path] = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
    resolv_conf: Path = Path("/etc/resolv.conf")
    #: Names resolved by the DNS check besides the pools' host names.
    dns_names: Sequence[str] = ()
    installed_version: Callable[[], str | None] = installed_version
    clock: Callable[[], float] = time.time
