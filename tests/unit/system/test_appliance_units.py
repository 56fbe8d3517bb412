"""The systemd units the image ships, read by systemd's own parser.

``systemd-analyze verify`` loads each unit as PID 1 would (directives,
ordering, the commands they run); a misspelt key or a dependency on a unit
that does not exist is an error here rather than a line in the booted
image's journal.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[3] / "appliance/usr/lib/systemd/system"
#: The daemon's entry point is installed by the image's wheel, not on this machine.
NOT_HERE = "Command /usr/bin/xenkeepd is not executable"


def test_systemd_reads_every_unit_without_a_complaint() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: run scripts/deps.sh test")
    units = sorted(p.name for p in UNITS.iterdir() if p.suffix in (".service", ".socket"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        cwd=UNITS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    complaints = [
        line for line in (done.stdout + done.stderr).splitlines() if line and NOT_HERE not in line
    ]
    assert complaints == [], "\n".join(complaints)
    assert "xenkeep-network-checkpoint.service" in units
