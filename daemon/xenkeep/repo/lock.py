"""Per-VM chain locks.

Two jobs must never write the same chain. The writer lock is an exclusive
``flock`` on ``vms/<uuid>/lock``; the kernel drops it when its process dies,
so a killed job never blocks the next one. The file also names its holder
(pid, boot id, process start time, purpose, since) so that a refusal can say
who holds the lock, and so that a holder that died without releasing it is
noticed and reported as a recovered stale lock.

Filesystems without ``flock`` (some NFS/SMB mounts answer ENOLCK) fall back to
an exclusive-create lock file. There a lock is stale when its pid is gone on
this boot, its process start time differs (the pid was reused) or its boot id
differs (the machine restarted); a stale file is renamed aside atomically, so
of two processes recovering at once only one wins.

Readers (restores, verify) hold a shared ``flock`` on ``readers.lock``; a
merge needs it exclusively, because it changes the oldest full in place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from .errors import ChainBusyError

_BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
_NO_FLOCK: Final = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


def boot_id() -> str:
    """This boot's id (changes at every restart)."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/pid/stat),
    or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19])


@dataclass(frozen=True)
class LockOwner:
    """Who holds (or held) a lock."""

    pid: int
    boot_id: str
    start_time: int
    host: str
    purpose: str
    since: float

    @classmethod
    def me(cls, purpose: str) -> LockOwner:
        """The current process."""
        pid = os.getpid()
        return cls(
            pid, boot_id(), process_start_time(pid) or 0, socket.gethostname(), purpose, time.time()
        )

    def alive(self) -> bool:
        """Whether this owner may still be running: same boot, pid present, same start time."""
        if self.boot_id != boot_id():
            return False
        start = process_start_time(self.pid)
        return start is not None and start == self.start_time

    def describe(self) -> str:
        """One line for messages."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"pid {self.pid} on {self.host} ({self.purpose}) since {when}"

    @classmethod
    def parse(cls, raw: bytes) -> LockOwner | None:
        """The owner recorded in a lock file, or None if it is empty or unreadable."""
        try:
            d: dict[str, Any] = json.loads(raw)
            return cls(
                int(d["pid"]),
                str(d["boot_id"]),
                int(d["start_time"]),
                str(d.get("host", "")),
                str(d.get("purpose", "")),
                float(d.get("since", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None


class ChainLock:
    """The exclusive writer lock of one VM's chains.

    ``acquire()`` never waits: it raises :class:`ChainBusyError` naming the
    holder. After it returns, :attr:`recovered` names a previous holder that
    died holding the lock (its journal, if any, must be replayed).
    """

    def __init__(self, path: Path, purpose: str, *, use_flock: bool = True) -> None:
        self.path = path
        self.purpose = purpose
        self.use_flock = use_flock
        self.recovered: LockOwner | None = None
        self._fd: int | None = None
        self._exclusive_file = False

    def acquire(self) -> None:
        """Take the lock or raise ChainBusyError."""
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        me = LockOwner.me(self.purpose)
        if self.use_flock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = LockOwner.parse(_read_fd(fd))
                os.close(fd)
                who = owner.describe() if owner else "another process"
                raise ChainBusyError(
                    f"{self.path.parent.name}: chain locked by {who}",
                    hint="wait for that job to finish",
                ) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_FLOCK:
                    raise
                self.use_flock = False
            else:
                previous = LockOwner.parse(_read_fd(fd))
                if previous is not None:
                    self.recovered = previous
                _write_fd(fd, me)
                self._fd = fd
                return
        self._acquire_exclusive_file(me)

    def _acquire_exclusive_file(self, me: LockOwner) -> None:
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = LockOwner.parse(self.path.read_bytes()) if self.path.exists() else None
                if owner is not None and owner.alive():
                    raise ChainBusyError(
                        f"{self.path.parent.name}: chain locked by {owner.describe()}",
                        hint="wait for that job to finish",
                    ) from None
                if owner is None and self._young(self.path):
                    # Being written by its creator right now.
                    time.sleep(0.05)
                    continue
                aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
                try:
                    self.path.rename(aside)
                except FileNotFoundError:
                    continue  # another process recovered it first
                with contextlib.suppress(OSError):
                    aside.unlink()
                self.recovered = owner
                continue
            _write_fd(fd, me)
            self._fd = fd
            self._exclusive_file = True
            return
        raise ChainBusyError(f"{self.path.parent.name}: chain lock contended, try again")

    @staticmethod
    def _young(path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime < 2
        except OSError:
            return False

    def release(self) -> None:
        """Drop the lock; the file is emptied so the next holder sees a clean release."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._exclusive_file:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            else:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> ChainLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ReadersLock:
    """Shared by readers of a VM's restore points, exclusive for a merge."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, exclusive: bool) -> bool:
        """Take the lock without waiting; False if it is held the other way."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                os.close(fd)
                raise
            # No flock here: the writer lock alone orders merges and readers.
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_fd(fd: int) -> bytes:
    return os.pread(fd, 4096, 0)


def _write_fd(fd: int, owner: LockOwner) -> None:
    data = json.dumps(asdict(owner)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
