"""The appliance image for the image tests: built here when out/ is missing or stale.

``image/build.py`` records a digest of its inputs in ``out/inputs.sha256``;
when the tree differs the session builds the image again (mkosi's package
cache in ``image/mkosi.cache`` keeps that to a few minutes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imagelib import OUT, build_image, image_is_fresh


@pytest.fixture(scope="session")
def image_out() -> Path:
    """out/ with a fresh xenkeep.xva, xenkeep.raw, SHA256SUMS and manifest.txt."""
    if os.geteuid() != 0:
        pytest.skip("building the appliance image needs root (mkosi); CI runs as root")
    if not image_is_fresh():
        build_image()
    assert image_is_fresh(), "image/build.py ran but out/ does not match the tree"
    return OUT
