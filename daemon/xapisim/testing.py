"""Helpers to run a simulator from synchronous code and tests.

``SimulatorThread`` serves a pool from a background thread with its own event
loop, which is what synchronous clients such as the XenAPI SDK need::

    with SimulatorThread(tmp_path / "pool", demo=True) as sim:
        session = XenAPI.Session(sim.url)
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from . import storage
from .pool import DEMO_PASSWORD
from .server import RunningSimulator, start_simulator


def copy_state(src: Path, dest: Path) -> Path:
    """Copy a state directory without copying holes (reflink where possible).

    Seeding a demo pool once and copying it per test is much cheaper than
    seeding each time.
    """
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            storage.clone_file(path, target)
    return dest


def seed_state(state_dir: Path, *, demo: bool = True) -> Path:
    """Create and save a pool's state directory without serving it."""

    async def seed() -> None:
        running = await start_simulator(state_dir, demo=demo)
        await running.close()

    asyncio.run(seed())
    return state_dir


class SimulatorThread:
    """A simulator served from a daemon thread."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        demo: bool = False,
        password: str = DEMO_PASSWORD,
        host: str = "127.0.0.1",
        port: int = 0,
        qemu: bool | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._kwargs: dict[str, Any] = {"demo": demo, "password": password, "qemu": qemu}
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="xapisim", daemon=True)
        self.sim: RunningSimulator | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self) -> SimulatorThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            start_simulator(self.state_dir, self._host, self._port, **self._kwargs), self._loop
        )
        self.sim = fut.result(timeout=120)
        return self

    @property
    def url(self) -> str:
        assert self.sim is not None
        return self.sim.url

    def run(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the simulator's loop and return its result."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=timeout)

    def call(self, method: str, *params: Any) -> Any:
        """Call an API method directly on the pool model (no wire)."""
        assert self.sim is not None
        return self.run(self.sim.call(method, list(params)))

    def stop(self) -> None:
        if self.sim is not None:
            self.run(self.sim.close())
            self.sim = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def qemu_processes() -> set[int]:
    """The pids of every qemu-system process on the machine (a scan of /proc):
    what the QEMU backend's tests compare before and after, so that a QEMU
    left behind fails them."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().startswith("qemu-system"):
                    pids.add(int(proc.name))
            except OSError:
                continue
    return pids
