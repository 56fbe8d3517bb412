"""Two builds of the same tree give the same bytes.

The second build reuses mkosi's package cache, so what it proves is that
nothing after package installation (overlay, wheel, users, presets, initrd,
filesystems, GRUB, XVA packing) depends on the time or on chance. A change
in Debian's archive between two cold builds is visible in out/manifest.txt.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from imagelib import BUILD_TIMEOUT, REPO

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(BUILD_TIMEOUT)]


def sums(out: Path) -> dict[str, str]:
    lines = (out / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines)}


def test_second_build_is_byte_identical(image_out: Path) -> None:
    first = sums(image_out)
    subprocess.run(
        [sys.executable, str(REPO / "image/build.py")], cwd=REPO, check=True, timeout=BUILD_TIMEOUT
    )
    second = sums(image_out)
    assert second["manifest.txt"] == first["manifest.txt"], "Debian's archive moved between builds"
    assert second["xenkeep.raw"] == first["xenkeep.raw"]
    assert second["xenkeep.xva"] == first["xenkeep.xva"]
