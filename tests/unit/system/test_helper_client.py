"""The daemon's client of the privileged helper: deadlines per operation, clear errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from xenkeep.backup.disks import DiskService
from xenkeep.errors import UnavailableError
from xenkeep.system.helper import HelperTimeoutError, call
from xenkeep.system.helper_protocol import CALL_TIMEOUTS, OPERATIONS

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_helper(path: Path, handler: Handler) -> AsyncIterator[Path]:
    """A unix socket at ``path`` whose connections ``handler`` serves."""
    server = await asyncio.start_unix_server(handler, path=str(path))
    try:
        yield path
    finally:
        server.close()
        await server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, never answers: a helper stuck in a long mkfs."""
    await reader.readline()
    with contextlib.suppress(ConnectionError):
        await reader.read()  # until the client gives up and closes
    writer.close()


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request and closes without a word: a helper that crashed."""
    await reader.readline()
    writer.close()


def test_every_operation_has_a_deadline_fitting_its_work() -> None:
    assert set(CALL_TIMEOUTS) == set(OPERATIONS)
    # Formatting a large disk takes minutes; a listing is a page waiting.
    assert CALL_TIMEOUTS["storage.format"] >= 30 * 60
    assert CALL_TIMEOUTS["storage.disks"] <= 60
    assert CALL_TIMEOUTS["ping"] <= 10


async def test_timeout_names_the_operation_and_the_wait(tmp_path: Path) -> None:
    async with fake_helper(tmp_path / "helper.sock", silent) as path:
        with pytest.raises(HelperTimeoutError) as info:
            await call("storage.disks", path=path, timeout=0.2)
    err = info.value
    assert str(err) == "the privileged helper did not answer storage.disks within 0.2 s"
    assert (err.op, err.timeout) == ("storage.disks", 0.2)
    assert err.hint and "xenkeep-privhelper" in err.hint
    # The daemon's error tree: a 503 the middleware renders like any other.
    assert isinstance(err, UnavailableError) and err.status == 503


async def test_the_disk_service_passes_its_timeout_on(tmp_path: Path) -> None:
    async with fake_helper(tmp_path / "helper.sock", silent) as path:
        disks = DiskService(path, timeout=0.2)
        with pytest.raises(HelperTimeoutError, match=r"did not answer storage.format within"):
            await disks.format("xvdb", "xvdb")


def test_long_deadlines_read_in_minutes() -> None:
    err = HelperTimeoutError("storage.format", CALL_TIMEOUTS["storage.format"])
    assert str(err).endswith("did not answer storage.format within 43 min")
    assert str(HelperTimeoutError("network.static", 130)).endswith("within 130 s")


async def test_a_helper_that_hangs_up_is_unavailable(tmp_path: Path) -> None:
    async with fake_helper(tmp_path / "helper.sock", hangs_up) as path:
        with pytest.raises(ConnectionError, match="closed the connection without answering"):
            await call("ping", path=path)
        with pytest.raises(UnavailableError, match=r"did not answer: .* without answering"):
            await DiskService(path).listing()
