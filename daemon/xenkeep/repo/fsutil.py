"""Durable file operations and extent sharing for the datastore.

Everything the repository writes goes through :func:`atomic_write` or the
same pattern by hand: a temporary name in the same directory, ``fsync``,
``rename``, then ``fsync`` of the directory, so that after a crash a name
either points at complete contents or does not exist.

Data moves between VHD files with :func:`share_range` (``FICLONERANGE``:
the destination shares the source's extents, nothing is read or written)
when the filesystem supports it, else with :func:`copy_range`
(``copy_file_range``: the kernel copies without passing through user
space, falling back to ``pread``/``pwrite``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from pathlib import Path
from typing import Final

#: ``_IOW(0x94, 13, struct file_clone_range)`` from linux/fs.h.
FICLONERANGE: Final = 0x4020940D
_CLONE_RANGE: Final = struct.Struct("=qQQQ")
#: errno values meaning "this filesystem (or this pair of files) cannot share extents".
_NO_SHARING: Final = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}
)
_COPY_CHUNK: Final = 1 << 20


def fsync_dir(path: Path) -> None:
    """Make the names in directory ``path`` durable (after a create, rename or unlink)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """The temporary name :func:`atomic_write` uses for ``path`` (same directory)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(path.parent)


def durable_rename(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (replacing it) and make the rename durable."""
    src.replace(dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def durable_unlink(path: Path) -> bool:
    """Remove ``path`` if it exists and make that durable; True if it existed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def share_range(src_fd: int, src_offset: int, length: int, dst_fd: int, dst_offset: int) -> bool:
    """Make ``length`` bytes of ``dst`` at ``dst_offset`` share the extents of
    ``src`` at ``src_offset`` (``FICLONERANGE``). False if the filesystem
    cannot; nothing is changed then. Offsets and length must be multiples of
    the filesystem block size (4 KiB on our datastores)."""
    arg = _CLONE_RANGE.pack(src_fd, src_offset, length, dst_offset)
    try:
        fcntl.ioctl(dst_fd, FICLONERANGE, arg)
    except OSError as exc:
        if exc.errno in _NO_SHARING:
            return False
        raise
    return True


def copy_range(src_fd: int, src_offset: int, length: int, dst_fd: int, dst_offset: int) -> None:
    """Copy ``length`` bytes between files inside the kernel when it can,
    through a bounded buffer otherwise."""
    done = 0
    use_cfr = hasattr(os, "copy_file_range")
    while done < length:
        want = min(length - done, 64 * _COPY_CHUNK)
        if use_cfr:
            try:
                n = os.copy_file_range(src_fd, dst_fd, want, src_offset + done, dst_offset + done)
            except OSError as exc:
                if exc.errno not in _NO_SHARING:
                    raise
                use_cfr = False
                continue
            if n == 0:
                raise OSError(errno.EIO, f"source ended at offset {src_offset + done}")
            done += n
            continue
        data = os.pread(src_fd, min(want, _COPY_CHUNK), src_offset + done)
        if not data:
            raise OSError(errno.EIO, f"source ended at offset {src_offset + done}")
        view = memoryview(data)
        pos = dst_offset + done
        while view:
            written = os.pwrite(dst_fd, view, pos)
            view = view[written:]
            pos += written
        done += len(data)


def probe_reflink(directory: Path) -> bool:
    """Whether files in ``directory`` can share extents: clone 64 KiB between
    two scratch files there and remove them."""
    a = directory / f".reflink-probe-{os.getpid()}-a"
    b = directory / f".reflink-probe-{os.getpid()}-b"
    try:
        fa = os.open(a, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fb = os.open(b, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.pwrite(fa, os.urandom(65536), 0)
            os.fsync(fa)
            os.ftruncate(fb, 65536)
            return share_range(fa, 0, 65536, fb, 0) and os.pread(fb, 16, 0) == os.pread(fa, 16, 0)
        finally:
            os.close(fa)
            os.close(fb)
    except OSError:
        return False
    finally:
        for p in (a, b):
            with contextlib.suppress(OSError):
                p.unlink()


def allocated_bytes(path: Path) -> int:
    """Bytes the filesystem allocated to ``path`` (``st_blocks``; extents shared
    with other files count in each of them)."""
    return path.stat().st_blocks * 512
