"""The daemon's side of the privileged helper: send one request, wait for its answer.

``xenkeepd`` runs unprivileged; what needs root it asks the helper for over
the helper's unix socket (:mod:`xenkeep.system.helper_protocol`). This module
is all the daemon knows of the helper: it imports none of the root-side code
(:mod:`xenkeep.privhelper`), which the daemon process never loads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from xenkeep.errors import ConflictError, UnavailableError, ValidationError
from xenkeep.system.helper_protocol import (
    CALL_TIMEOUTS,
    CONFLICT,
    DEFAULT_CALL_TIMEOUT,
    MAX_ANSWER,
    SOCKET_PATH,
    RequestError,
    decode_answer,
    encode_request,
)

__all__ = ["HelperDoor", "HelperTimeoutError", "RequestError", "call"]

Call = Callable[..., Awaitable[Any]]


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


class HelperDoor:
    """One domain's way to the helper: its answers, and its refusals in the daemon's errors.

    ``what`` names the domain for the error when no helper runs (development,
    ``make run``); ``hint`` says what to do then. A refusal of bad input is a
    ValidationError naming the field (``default_field`` when the helper names
    none), one of the system's state (kind conflict) a ConflictError; a helper
    that cannot be reached or does not answer in time is an UnavailableError.
    """

    def __init__(
        self,
        socket: Path,
        call: Call = call,
        *,
        what: str,
        hint: str,
        default_field: str = "",
        timeout: float | None = None,
    ) -> None:
        """``timeout`` (seconds) bounds every call; None: each operation's own default."""
        self.socket = socket
        self._call = call
        self._what = what
        self._hint = hint
        self._default_field = default_field
        self._timeout = timeout

    async def is_available(self) -> bool:
        """Whether the helper's socket exists (it does on the appliance); off the loop."""
        return await asyncio.to_thread(self.socket.exists)

    async def ask(self, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The result of ``op``, or the daemon's error for its refusal."""
        if not await self.is_available():
            raise UnavailableError(
                f"{self._what} needs the appliance's privileged helper, which is not running",
                hint=self._hint,
            )
        try:
            result = await self._call(op, dict(args or {}), path=self.socket, timeout=self._timeout)
        except RequestError as exc:
            if exc.kind == CONFLICT:
                raise ConflictError(str(exc)) from None
            raise ValidationError(str(exc), field=exc.field or self._default_field) from None
        except (OSError, ValueError) as exc:  # HelperTimeoutError passes: it says more
            raise UnavailableError(f"the privileged helper did not answer: {exc}") from None
        return dict(result or {})
