"""Real journal files for tests: entries written in journald's export format
and turned into a ``.journal`` file by ``systemd-journal-remote``, which
``systemd.journal.Reader(path=...)`` then reads as it reads the appliance's."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REMOTE = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")


@dataclass(frozen=True)
class Entry:
    message: str
    unit: str = "xenkeepd.service"
    priority: int = 6
    ts: float | None = None
    identifier: str = "xenkeepd"


def _export(entries: Sequence[Entry]) -> bytes:
    boot = uuid.uuid4().hex
    out = bytearray()
    for n, e in enumerate(entries):
        ts = int((e.ts if e.ts is not None else time.time()) * 1_000_000)
        fields = {
            "__CURSOR": f"s=test;i={n}",
            "__REALTIME_TIMESTAMP": str(ts),
            "__MONOTONIC_TIMESTAMP": str(n + 1),
            "_BOOT_ID": boot,
            "_SYSTEMD_UNIT": e.unit,
            "SYSLOG_IDENTIFIER": e.identifier,
            "PRIORITY": str(e.priority),
            "MESSAGE": e.message,
        }
        for key, value in fields.items():
            out += f"{key}={value}\n".encode()
        out += b"\n"
    return bytes(out)


def write_journal(directory: Path, entries: Sequence[Entry], name: str = "test") -> Path:
    """A journal file holding ``entries`` in ``directory`` (created)."""
    remote = next((p for p in REMOTE if Path(p).exists()), None) or shutil.which(
        "systemd-journal-remote"
    )
    if remote is None:
        pytest.skip("systemd-journal-remote is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}-{uuid.uuid4().hex[:8]}.journal"
    subprocess.run(
        [remote, f"--output={target}", "--split-mode=none", "-"],
        input=_export(entries),
        check=True,
        capture_output=True,
    )
    return target
