"""The NoCloud config drive: a small FAT volume labelled ``cidata``.

Built without mounting (the appliance's kernel has no vfat): mtools'
``mformat`` writes the file system into a plain file and ``mcopy`` puts the
seed files in it. mtools is a long-kept GNU tool, in Debian as ``mtools``;
a FAT12 1.44 MB volume is what cloud-init's own documentation builds, and
holds the few kilobytes of the seed many times over.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from xenkeep.errors import XenKeepError

#: The volume label NoCloud looks for; upper case because FAT stores labels so
#: (fsck.fat flags a lower-case boot-sector label), and cloud-init matches both cases.
LABEL: Final = "CIDATA"
#: 1440 KiB: the FAT12 floppy geometry mformat knows by name (-f 1440).
DRIVE_KIB: Final = 1440
DRIVE_BYTES: Final = DRIVE_KIB * 1024
CHUNK: Final = 64 * 1024


class DriveError(XenKeepError):
    """The config drive could not be built."""

    code = "config_drive_failed"


@dataclass(frozen=True)
class Seed:
    """The files of a NoCloud seed."""

    meta_data: str
    user_data: str
    network_config: str = ""

    def files(self) -> Mapping[str, str]:
        """File name → text, as NoCloud reads them."""
        out = {"meta-data": self.meta_data, "user-data": self.user_data}
        if self.network_config:
            out["network-config"] = self.network_config
        return out


def _run(args: list[str]) -> None:
    tool = shutil.which(args[0])
    if tool is None:
        raise DriveError(f"{args[0]} is missing (install the mtools package)")
    done = subprocess.run(
        [tool, *args[1:]],
        capture_output=True,
        text=True,
        check=False,
        env={"MTOOLS_SKIP_CHECK": "1"},
    )
    if done.returncode != 0:
        raise DriveError(f"{args[0]} failed: {done.stderr.strip()[:300]}")


def build(seed: Seed, image: Path) -> None:
    """Write the config drive of ``seed`` into the new file ``image`` (blocking)."""
    with image.open("xb") as f:
        f.truncate(DRIVE_BYTES)
    _run(["mformat", "-i", str(image), "-f", str(DRIVE_KIB), "-v", LABEL, "::"])
    with tempfile.TemporaryDirectory(prefix="xenkeep-cidata-") as tmp:
        for name, text in seed.files().items():
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            _run(["mcopy", "-i", str(image), str(path), f"::/{name}"])


@asynccontextmanager
async def built(seed: Seed, scratch: Path | None = None) -> AsyncIterator[Path]:
    """A drive built (in a thread) in a scratch directory, removed afterwards."""
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="xenkeep-drive-", dir=scratch))
    try:
        image = tmp / "cidata.img"
        await asyncio.to_thread(build, seed, image)
        yield image
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


async def stream(image: Path) -> AsyncIterator[bytes]:
    """The drive's bytes in chunks (never the whole file in memory)."""
    f = await asyncio.to_thread(image.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        f.close()
