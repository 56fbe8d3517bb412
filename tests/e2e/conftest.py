"""The end-to-end tests' world: the simulator with its QEMU backend and the
Debian cloud template, and xenkeepd against it.

The template is built here when ``out/cloud-template`` is missing or stale
(``image/cloud_template.py`` keeps a digest of its inputs, mkosi's package
cache keeps a rebuild to minutes). The daemon and its wizard come from the
web tests' fixtures (``browser``, ``settings``, ``admin_pool``): only the
simulator differs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.selfservice_flow import build_cloud_image
from tests.integration.web.conftest import admin_pool
from xapisim import RunningSimulator, start_simulator

__all__ = ["admin_pool", "cloud_image", "pool_sim"]


@pytest.fixture(scope="session")
def cloud_image() -> Path:
    """out/cloud-template/debian-cloud.raw, built from the current tree."""
    if os.geteuid() != 0:
        pytest.skip("building the cloud template needs root (mkosi); CI runs as root")
    for tool in ("qemu-system-x86_64", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: run scripts/deps.sh test")
    return build_cloud_image()


@pytest.fixture
async def pool_sim(tmp_path: Path, cloud_image: Path) -> AsyncIterator[RunningSimulator]:
    """The demo pool, its VMs booting under QEMU, with the cloud template."""
    running = await start_simulator(
        tmp_path / "pool", demo=True, qemu=True, cloud_image=cloud_image
    )
    yield running
    await running.close()
