"""Server-sent events: the stream response and its framing, shared by every live page."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

from xenkeep.web import keys

#: A comment line this often keeps proxies and browsers from timing out.
KEEPALIVE_SECONDS: Final = 15.0
KEEPALIVE: Final = b": keep-alive\n\n"


def sse_event(event: str, data: Any) -> bytes:
    """One event frame with a JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def open_event_stream(request: web.Request) -> web.StreamResponse:
    """A prepared ``text/event-stream`` response, never cached nor buffered."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            # Tell proxies not to buffer the stream.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    return response


async def send_watch(
    request: web.Request, event: str, updates: AsyncIterator[Any | None]
) -> web.StreamResponse:
    """Stream ``updates`` as ``event`` frames (``None``: a keep-alive) until they end."""
    response = await open_event_stream(request)
    async for data in updates:
        await response.write(KEEPALIVE if data is None else sse_event(event, data))
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def end_event_streams(app: web.Application) -> None:
    """On shutdown: end the open event streams so the server stops at once."""
    if keys.POOLS in app:  # absent when the start-up failed
        keys.pools(app).hub.close()
    if keys.OPERATIONS in app:
        keys.operations(app).end_watches()
