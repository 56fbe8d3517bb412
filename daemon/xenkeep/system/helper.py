"""The daemon's side of the privileged helper: send one request, wait for its answer.

``xenkeepd`` runs unprivileged; what needs root it asks the helper for over
the helper's unix socket (:mod:`xenkeep.system.helper_protocol`). This module
is all the daemon knows of the helper: it imports none of the root-side code
(:mod:`xenkeep.privhelper`), which the daemon process never loads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xenkeep.errors import UnavailableError
from xenkeep.system.helper_protocol import (
    CALL_TIMEOUTS,
    DEFAULT_CALL_TIMEOUT,
    MAX_ANSWER,
    SOCKET_PATH,
    RequestError,
    decode_answer,
    encode_request,
)

__all__ = ["HelperTimeoutError", "RequestError", "call"]


class HelperTimeoutError(UnavailableError):
    """The helper did not answer in time; it may still be carrying the operation out."""

    def __init__(self, op: str, timeout: float) -> None:
        super().__init__(
            f"the privileged helper did not answer {op} within {_duration(timeout)}",
            hint=(
                "it may still be busy with this or an earlier operation; "
                "see journalctl -u xenkeep-privhelper on the appliance"
            ),
        )
        self.op = op
        self.timeout = timeout


async def call(
    op: str,
    args: Mapping[str, Any] | None = None,
    *,
    path: Path = SOCKET_PATH,
    timeout: float | None = None,  # noqa: ASYNC109 - it bounds connecting too, and names op
) -> Any:
    """Send one request and return its result.

    ``timeout`` (seconds) defaults to the operation's own
    (:data:`~xenkeep.system.helper_protocol.CALL_TIMEOUTS`: minutes for
    formatting a disk, seconds for a listing). Raise RequestError when the
    helper refuses, HelperTimeoutError when it does not answer in time,
    OSError when it cannot be reached, ValueError for a garbled answer.
    """
    limit = CALL_TIMEOUTS.get(op, DEFAULT_CALL_TIMEOUT) if timeout is None else timeout
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            return await _exchange(path, encode_request(op, args))
    except TimeoutError:
        if not deadline.expired():
            raise  # a timeout of the socket itself: an OSError like any other
        raise HelperTimeoutError(op, limit) from None


async def _exchange(path: Path, request: bytes) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_ANSWER)
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return decode_answer(line)


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
