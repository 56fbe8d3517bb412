"""A loopback listener that only counts who connects: proof that a refused
pool URL was refused before any byte (a password in clear) was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


class CountingListener:
    """Accepts TCP connections on a free loopback port, counts and drops them."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    @property
    def url(self) -> str:
        """The listener as a plain http:// pool URL."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[CountingListener]:
    """A CountingListener for one test."""
    counting = CountingListener()
    await counting.start()
    yield counting
    await counting.close()
