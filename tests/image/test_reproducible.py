"""Two builds of the same commit give the same bytes.

Both builds run in a snapshot of HEAD (``git archive``), so that edits in
the working tree between them cannot make them differ, and reuse the
checkout's mkosi package cache: what this proves is that nothing after
package installation (overlay, wheel, users, presets, initrd, filesystems,
GRUB, XVA packing) depends on the time or on chance. A change in Debian's
archive between two cold builds shows in out/manifest.txt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from imagelib import BUILD_TIMEOUT, REPO

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(2 * BUILD_TIMEOUT)]


def sums(out: Path) -> dict[str, str]:
    lines = (out / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines)}


def test_two_builds_of_head_are_byte_identical() -> None:
    if os.geteuid() != 0:
        pytest.skip("building the appliance image needs root (mkosi); CI runs as root")
    subprocess.run([str(REPO / "scripts/deps.sh"), "image"], check=True, timeout=BUILD_TIMEOUT)
    epoch = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    snap = Path(tempfile.mkdtemp(prefix="xenkeep-repro-", dir="/var/tmp"))
    try:
        archive = subprocess.run(
            ["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
        env = dict(
            os.environ,
            SOURCE_DATE_EPOCH=epoch,
            XENKEEP_IMAGE_CACHE_DIR=str(REPO / "image/mkosi.cache"),
        )
        results = []
        for _ in range(2):
            subprocess.run(
                [sys.executable, str(snap / "image/build.py")],
                cwd=snap,
                env=env,
                check=True,
                timeout=BUILD_TIMEOUT,
            )
            results.append(sums(snap / "out"))
        first, second = results
        assert second["manifest.txt"] == first["manifest.txt"]
        assert second["xenkeep.raw"] == first["xenkeep.raw"]
        assert second["xenkeep.xva"] == first["xenkeep.xva"]
    finally:
        shutil.rmtree(snap, ignore_errors=True)
