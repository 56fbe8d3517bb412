"""xenkeepd that SIGKILLs itself at a chosen point (for the kill tests).

``XK_KILL_AT`` selects the point:

``merge:<event>``  a merge event of :mod:`xenkeep.repo.merge` (``journal:merging``,
                   ``block``, ``renamed``...);
``write:<n>``      the n-th VHD block written into the datastore;
``commit``         a restore point's metadata file is about to be written
                   (every VHD of the point is already renamed into place);
``committed``      right after that file is written, before the run records it;
``verify:<n>``     the n-th block a verify re-reads;
``copy-write:<n>`` the n-th write into a copy of the appliance (configuration
                   lines, then pool database chunks), before it is written;
``copy-commit``    a copy of the appliance is sealed and synced, before its rename.
``xapi:<method>:<before|after>:<n>``  the n-th XAPI call of ``method`` the daemon
                   makes, before it is sent or right after the pool answered
                   (``xapi:VM.snapshot:after:2``: a replication run's second
                   snapshot, its replica point, is made and not yet recorded).

The hook fires only while the file named by ``XK_KILL_ARMED`` exists, so a
test can run normal backups first and arm the kill for one run. Production
code carries no such hook: this wrapper patches it in, then runs the real
entry point.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any


def _die() -> None:
    armed = os.environ.get("XK_KILL_ARMED", "")
    if not armed or Path(armed).exists():
        os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    from xenkeep.formats import vhd
    from xenkeep.repo import merge, writer

    kind, _, arg = spec.partition(":")
    if kind == "merge":

        def hook(event: str) -> None:
            if event == arg:
                _die()

        merge.fault_hook = hook
    elif kind == "write":
        limit = int(arg)
        count = [0]
        original = vhd.VhdWriter.write_block

        def write_block(self: Any, *a: Any, **kw: Any) -> int:
            armed = os.environ.get("XK_KILL_ARMED", "")
            if not armed or Path(armed).exists():
                count[0] += 1
                if count[0] >= limit:
                    _die()
            return original(self, *a, **kw)

        vhd.VhdWriter.write_block = write_block  # type: ignore[method-assign]
    elif kind in ("commit", "committed"):
        original_write = writer.atomic_write

        def atomic_write(path: Path, data: bytes) -> None:
            is_point = path.parent.name == "points"
            if is_point and kind == "commit":
                _die()
            original_write(path, data)
            if is_point and kind == "committed":
                _die()

        writer.atomic_write = atomic_write  # type: ignore[assignment]
    elif kind == "xapi":
        from xenkeep.xapi import client

        method, when, nth = arg.rsplit(":", 2)
        calls = [0]
        original_call = client.XapiClient.call

        async def call(self: Any, name: str, *a: Any, **kw: Any) -> Any:
            armed = os.environ.get("XK_KILL_ARMED", "")
            hit = False
            if name == method and (not armed or Path(armed).exists()):
                calls[0] += 1
                hit = calls[0] == int(nth)
            if hit and when == "before":
                _die()
            result = await original_call(self, name, *a, **kw)
            if hit and when == "after":
                _die()
            return result

        client.XapiClient.call = call  # type: ignore[method-assign]
    elif kind == "verify":
        from xenkeep.repo import reader

        limit, seen = int(arg), [0]
        original_digest = reader.block_digest

        def block_digest(*a: Any, **kw: Any) -> Any:
            seen[0] += 1
            if seen[0] >= limit:
                _die()
            return original_digest(*a, **kw)

        # Verify checks each block through the reader.
        reader.block_digest = block_digest  # type: ignore[assignment]
    elif kind in ("copy-write", "copy-commit"):
        from xenkeep.appliance_backup.copies import CopyWriter

        writes = [0]
        original_copy_write, original_commit = CopyWriter.write, CopyWriter.commit

        def copy_write(self: Any, data: bytes) -> None:
            armed = os.environ.get("XK_KILL_ARMED", "")
            if kind == "copy-write" and (not armed or Path(armed).exists()):
                writes[0] += 1
                if writes[0] >= int(arg):
                    _die()
            original_copy_write(self, data)

        def commit(self: Any) -> int:
            if kind == "copy-commit":
                # Everything the commit does but the rename, then death.
                self._sealer.close()
                self._file.flush()
                os.fsync(self._file.fileno())
                _die()
            return original_commit(self)

        CopyWriter.write = copy_write  # type: ignore[method-assign]
        CopyWriter.commit = commit  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown XK_KILL_AT {spec!r}")


if __name__ == "__main__":
    spec = os.environ.get("XK_KILL_AT", "")
    if spec:
        install(spec)
    from xenkeep.__main__ import main

    sys.exit(main(sys.argv[1:]))
