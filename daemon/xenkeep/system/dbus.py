"""The system bus from the daemon's side: properties and method calls via ``busctl``.

``busctl`` ships with systemd (every appliance image has it) and prints
answers as JSON (``--json=short``: ``{"type": "b", "data": true}``), so no
D-Bus library is needed; it goes through the one subprocess door
(:func:`xenkeep.system.run.run`). It honours ``DBUS_SYSTEM_BUS_ADDRESS``,
which is how a test points it at a bus of its own.

A machine without a system bus (a container, a developer's laptop without
systemd) raises :class:`BusUnavailableError`, which callers show as "not
available here" rather than as a fault of the appliance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from xenkeep.errors import XenKeepError

from .run import CommandError, run

#: A bus answer comes back in milliseconds; a hung service must not hold a check.
BUS_TIMEOUT: Final = 10.0
_NO_BUS: Final = (
    "Failed to connect to bus",
    "Failed to connect to system scope bus",
)


class BusError(XenKeepError):
    """The bus answered with an error (unknown service, denied...)."""

    code = "bus_error"


class BusUnavailableError(BusError):
    """There is no system bus to talk to on this machine."""

    code = "bus_unavailable"


class SystemBus:
    """Reads and calls on the system bus through ``busctl``."""

    def __init__(
        self,
        *,
        busctl: str = "busctl",
        env: Mapping[str, str] | None = None,
        timeout: float = BUS_TIMEOUT,
    ) -> None:
        self._busctl = busctl
        self._env = env
        self._timeout = timeout

    async def _busctl_json(self, args: Sequence[str]) -> Any:
        argv = [self._busctl, "--system", "--json=short", "--no-pager", *args]
        try:
            done = await run(argv, timeout=self._timeout, env=self._env)
        except CommandError as exc:
            message = exc.stderr or str(exc)
            if exc.timed_out:
                raise BusError(f"busctl {args[0]}: no answer in {self._timeout:g} s") from None
            # No returncode: busctl itself could not be started (no systemd).
            if exc.returncode is None or any(m in message for m in _NO_BUS):
                raise BusUnavailableError(f"no system bus here: {message}") from None
            raise BusError(f"busctl {args[0]}: {message}") from None
        try:
            answer = json.loads(done.text)
        except ValueError:
            raise BusError(f"busctl {args[0]} did not answer JSON") from None
        if not isinstance(answer, dict) or "data" not in answer:
            raise BusError(f"busctl {args[0]}: unexpected answer")
        return answer["data"]

    async def get_property(self, service: str, path: str, interface: str, name: str) -> Any:
        """The value of one property."""
        return await self._busctl_json(["get-property", service, path, interface, name])

    async def call(
        self, service: str, path: str, interface: str, method: str, signature: str = "", *args: str
    ) -> list[Any]:
        """Call a method; its out-arguments."""
        extra = [signature, *args] if signature else []
        data = await self._busctl_json(["call", service, path, interface, method, *extra])
        return list(data) if isinstance(data, list) else [data]
