"""Server-sent events: the stream response and its framing, shared by every live page."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from xenkeep.web import keys

#: A comment line this often keeps proxies and browsers from timing out.
KEEPALIVE_SECONDS: Final = 15.0
KEEPALIVE: Final = b": keep-alive\n\n"
#: How often a live stream asks again whether its caller may still see it.
RECHECK_SECONDS: Final = 5.0


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
    request: web.Request,
    event: str,
    updates: AsyncIterator[Any | None],
    still_allowed: Callable[[], Awaitable[bool]] | None = None,
) -> web.StreamResponse:
    """Stream ``updates`` as ``event`` frames (``None``: a keep-alive) until they end.

    ``still_allowed`` is asked again every RECHECK_SECONDS: the stream ends
    once the caller may no longer see it (signed out, disabled, a grant
    taken back).
    """
    response = await open_event_stream(request)
    checked = time.monotonic()
    try:
        async for data in updates:
            if still_allowed is not None and time.monotonic() - checked >= RECHECK_SECONDS:
                if not await still_allowed():
                    break
                checked = time.monotonic()
            await response.write(KEEPALIVE if data is None else sse_event(event, data))
    except ConnectionResetError:
        return response  # the browser went away: nothing to tell it
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def end_event_streams(app: web.Application) -> None:
    """On shutdown: end the open event streams so the server stops at once."""
    if keys.POOLS in app:  # absent when the start-up failed
        keys.pools(app).hub.close()
    if keys.OPERATIONS in app:
        keys.operations(app).end_watches()
