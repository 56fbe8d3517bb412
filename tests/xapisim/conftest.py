"""Fixtures: a demo pool served from a thread (for the synchronous XenAPI SDK)
or on the test's own event loop (for aiohttp clients)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from xapisim import RunningSimulator, start_simulator
from xapisim.testing import SimulatorThread, copy_state, seed_state


@pytest.fixture(scope="session")
def demo_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo pool's state, seeded once per run and copied for each test."""
    return seed_state(tmp_path_factory.mktemp("seed") / "pool")


@pytest.fixture
def demo_state(demo_seed: Path, tmp_path: Path) -> Path:
    """A private copy of the demo pool's state directory."""
    return copy_state(demo_seed, tmp_path / "pool")


@pytest.fixture
def sim(demo_state: Path) -> Iterator[SimulatorThread]:
    """A fresh demo pool served from a background thread."""
    with SimulatorThread(demo_state) as running:
        yield running


@pytest.fixture
def session(sim: SimulatorThread) -> Iterator[Any]:
    """A logged-in XenAPI SDK session (XML-RPC) on ``sim``."""
    s = XenAPI.Session(sim.url)
    s.xenapi.login_with_password("root", "demo", "2.21", "xapisim-tests")
    yield s
    # The test may have logged out or restarted the pool already.
    with contextlib.suppress(Exception):
        s.xenapi.session.logout()
    close_session(s)


def close_session(s: Any) -> None:
    """Close the SDK's kept-alive HTTP connection (else: ResourceWarning)."""
    s("close")()


@pytest.fixture
def xapi(session: Any) -> Any:
    """The ``session.xenapi`` dispatcher."""
    return session.xenapi


@pytest.fixture
async def asim(demo_state: Path) -> AsyncIterator[RunningSimulator]:
    """A demo pool served on the test's event loop."""
    running = await start_simulator(demo_state)
    yield running
    await running.close()


def vm_by_name(xapi: Any, name: str) -> str:
    refs = xapi.VM.get_by_name_label(name)
    assert len(refs) == 1, (name, refs)
    return str(refs[0])


def first_disk(xapi: Any, vm: str) -> str:
    for vbd in xapi.VM.get_VBDs(vm):
        if xapi.VBD.get_type(vbd) == "Disk":
            return str(xapi.VBD.get_VDI(vbd))
    raise AssertionError(f"{vm} has no disk")


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    out = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, end))
        pos = end
    return out


def same_content(a: Path, b: Path) -> bool:
    """Byte equality of two (large, sparse) files, reading only allocated ranges."""
    size = a.stat().st_size
    if b.stat().st_size != size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        ranges = _data_ranges(fa.fileno(), size) + _data_ranges(fb.fileno(), size)
        for start, end in ranges:
            for off in range(start, end, 1 << 20):
                n = min(1 << 20, end - off)
                if os.pread(fa.fileno(), n, off).ljust(n, b"\0") != os.pread(
                    fb.fileno(), n, off
                ).ljust(n, b"\0"):
                    return False
    return True
