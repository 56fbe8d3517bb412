"""Helpers of the image tests: the image/ scripts as modules, freshness, building.

``image/build.py`` records a digest of its inputs in ``out/inputs.sha256``;
when the tree differs the session builds the image again (mkosi's package
cache in ``image/mkosi.cache`` keeps that to a few minutes). Building needs
root (mkosi, loop-free but with user namespaces) and the tools
``scripts/deps.sh image`` installs; it runs that first.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out"
#: A cold build downloads Debian's packages; QEMU under TCG is slow.
BUILD_TIMEOUT = 3600


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"xenkeep_image_{name}", REPO / "image" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


image_build = _load("build")
image_boot = _load("boot")


def image_is_fresh() -> bool:
    """True when out/ holds an image built from the current tree."""
    stamp = OUT / "inputs.sha256"
    if not all((OUT / n).exists() for n in ("xenkeep.xva", "xenkeep.raw", "SHA256SUMS")):
        return False
    return stamp.exists() and stamp.read_text().strip() == image_build.inputs_digest()


def build_image() -> None:
    """``make image`` without make: deps, then image/build.py."""
    subprocess.run([str(REPO / "scripts/deps.sh"), "image"], check=True, timeout=BUILD_TIMEOUT)
    subprocess.run(
        [sys.executable, str(REPO / "image/build.py")], cwd=REPO, check=True, timeout=BUILD_TIMEOUT
    )
