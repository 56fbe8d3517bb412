#!/usr/bin/env python3
"""``make cloud-template``: the Debian cloud template of the simulator's QEMU backend.

A separate mkosi project (``image/cloud-template/``): Debian bookworm with
the cloud kernel, cloud-init (NoCloud only), growpart and openssh-server,
booted through BIOS GRUB, the root partition last so that cloud-init grows
it into a larger disk. The output, ``out/cloud-template/debian-cloud.raw``,
is rebuilt only when its inputs change (a digest in ``inputs.sha256`` beside
it, as ``image/build.py`` keeps for the appliance), with mkosi's package
cache. ``python -m xapisim --qemu --cloud-image PATH`` puts it in the demo
pool as a CloudInit-ready template.

Prints the image's path on stdout (the tests and the bench read it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# image/build.py sits next to this script: its steps are shared, not copied.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build

PROJECT = build.IMAGE_DIR / "cloud-template"
OUT = build.OUT / "cloud-template"
IMAGE = OUT / "debian-cloud.raw"
STAMP = OUT / "inputs.sha256"
#: The template's inputs: its project, the apt sources it shares with the
#: appliance, and this script.
INPUT_PATHS = ("image/cloud-template", "image/mkosi.pkgmngr", "image/cloud_template.py")
IGNORED_PARTS = {"mkosi.output", "mkosi.cache", "mkosi.workspace", "__pycache__"}


def digest() -> str:
    """The digest of the template's inputs."""
    return build.inputs_digest(INPUT_PATHS, IGNORED_PARTS)


def is_fresh() -> bool:
    """True when out/cloud-template holds an image built from these inputs."""
    return IMAGE.exists() and STAMP.exists() and STAMP.read_text().strip() == digest()


def build_template() -> Path:
    """Build (only when stale) and return the image's path."""
    if is_fresh():
        build.log(f"{IMAGE} is up to date")
        return IMAGE
    epoch = build.source_date_epoch()
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
    b = build.Build(epoch=epoch, version=build.project_version(), env=env)
    start = time.monotonic()
    build.run_mkosi(b, PROJECT)
    raw = PROJECT / "mkosi.output" / "debian-cloud.raw"
    if not raw.exists():
        build.die(f"mkosi left no {raw}")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = IMAGE.with_suffix(".raw.tmp")
    tmp.unlink(missing_ok=True)
    build.run(["cp", "--sparse=always", str(raw), str(tmp)])
    tmp.replace(IMAGE)
    STAMP.write_text(digest() + "\n")
    build.log(f"{IMAGE}: {IMAGE.stat().st_size} bytes in {time.monotonic() - start:.0f} s")
    return IMAGE


def main() -> int:
    """Build the template if stale; print its path."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if stale, build nothing")
    ns = parser.parse_args()
    if ns.check:
        return 0 if is_fresh() else 1
    print(build_template())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        build.die(str(exc))
