"""Seed settings an administrator attaches to the appliance VM before first boot.

XOA-style deploy scripts set xenstore keys from the host
(``xe vm-param-set uuid=<vm> xenstore-data:vm-data/ip=...``); the guest reads
them with ``xenstore-read``. Under QEMU, where there is no xenstore, the same
keys come from the firmware config device:
``-fw_cfg name=opt/xenkeep/vm-data/ip,string=192.0.2.10`` shows up as
``/sys/firmware/qemu_fw_cfg/by_name/opt/xenkeep/vm-data/ip/raw``.

Reading is the only part that differs between the two sources; everything
after (:func:`parse_vm_data`) is one code path.

Keys: ``ip``, ``netmask``, ``gateway``, ``dns`` and ``ntp`` (lists separated
by commas or spaces), ``system-account-xenkeep-password`` and XOA's
``system-account-xoa-password`` (the first wins when both are set).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from xenkeep.system.netconf import (
    NetconfError,
    StaticNetwork,
    control_character,
    parse_ntp_servers,
    parse_static_network,
)
from xenkeep.system.run import Completed, run

KEYS = (
    "ip",
    "netmask",
    "gateway",
    "dns",
    "ntp",
    "system-account-xenkeep-password",
    "system-account-xoa-password",
)
PASSWORD_KEYS = ("system-account-xenkeep-password", "system-account-xoa-password")
FW_CFG_ROOT = Path("/sys/firmware/qemu_fw_cfg/by_name/opt/xenkeep/vm-data")
#: A value longer than this is not a setting anyone typed.
MAX_VALUE = 4096


class VmDataError(ValueError):
    """A vm-data key holds a value the appliance cannot use."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"vm-data/{key}: {message}")
        self.key = key


class VmDataSource(Protocol):
    """Somewhere vm-data keys can be read from."""

    name: str

    def available(self) -> bool:
        """True when this source exists on this machine (blocking: it looks at files)."""

    async def read(self, key: str) -> str | None:
        """The raw value of ``vm-data/<key>``, or None when unset."""


class FwCfgSource:
    """QEMU's ``-fw_cfg name=opt/xenkeep/vm-data/<key>,string=<value>``."""

    name = "fw_cfg"

    def __init__(self, root: Path = FW_CFG_ROOT) -> None:
        self._root = root

    def available(self) -> bool:
        """True when QEMU passed at least one vm-data key."""
        return self._root.is_dir()

    async def read(self, key: str) -> str | None:
        """Read ``<root>/<key>/raw``."""
        data = await asyncio.to_thread(self._read, self._root / key / "raw")
        return None if data is None else _decode(key, data)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            with path.open("rb") as f:
                return f.read(MAX_VALUE + 1)
        except FileNotFoundError:
            return None


Runner = Callable[[list[str]], Awaitable[Completed]]


async def _run(argv: list[str]) -> Completed:
    # A missing key is a non-zero exit, not an error.
    return await run(argv, timeout=10, check=False)


class XenstoreSource:
    """The VM's xenstore directory, through ``xenstore-read`` (xenstore-utils)."""

    name = "xenstore"

    def __init__(
        self,
        hypervisor_type: Path = Path("/sys/hypervisor/type"),
        runner: Runner = _run,
        tool: str = "xenstore-read",
    ) -> None:
        self._hypervisor_type = hypervisor_type
        self._runner = runner
        self._tool = tool

    def available(self) -> bool:
        """True on a Xen guest with the xenstore tools installed."""
        try:
            on_xen = self._hypervisor_type.read_text().strip() == "xen"
        except OSError:
            on_xen = False
        return on_xen and shutil.which(self._tool) is not None

    async def read(self, key: str) -> str | None:
        """``xenstore-read vm-data/<key>``; a missing key reads as None."""
        result = await self._runner([self._tool, f"vm-data/{key}"])
        if result.returncode != 0:
            return None
        return _decode(key, result.stdout[: MAX_VALUE + 1].rstrip(b"\n"))


def _decode(key: str, data: bytes) -> str:
    if len(data) > MAX_VALUE:
        raise VmDataError(key, f"longer than {MAX_VALUE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise VmDataError(key, "is not UTF-8") from None


async def read_raw(sources: Iterable[VmDataSource]) -> tuple[str, dict[str, str]]:
    """Read every key from the first available source: (source name, values)."""
    for source in sources:
        if await asyncio.to_thread(source.available):
            values = {}
            for key in KEYS:
                value = await source.read(key)
                if value is not None:
                    values[key] = value
            return source.name, values
    return "none", {}


@dataclass(frozen=True, slots=True)
class VmData:
    """The validated seed: network (None = DHCP), NTP servers, account password."""

    network: StaticNetwork | None
    ntp: tuple[str, ...]
    password: str | None


def validate_password(password: str) -> str:
    """Check a console account password; return it unchanged.

    Any printable text works (deploy scripts pick their own), but no control
    characters (C0, DEL, C1, line separators): chpasswd reads ``user:password``
    lines.
    """
    if not password:
        raise ValueError("the password is empty")
    if len(password) > 256:
        raise ValueError("the password is longer than 256 characters")
    if control_character(password) is not None:
        raise ValueError("the password contains control characters")
    return password


def parse_vm_data(raw: Mapping[str, str]) -> VmData:
    """Turn raw vm-data values into settings; raise VmDataError on bad input.

    ``ip`` with ``netmask`` asks for a static network; ``ip`` alone, or only
    ``gateway``/``dns`` without ``ip``, is an error rather than a silent DHCP
    so that a typo in a deploy script shows up on the console.
    """
    values = {k: v.strip() for k, v in raw.items() if v.strip()}
    network: StaticNetwork | None = None
    if "ip" in values or "netmask" in values:
        if "ip" not in values or "netmask" not in values:
            missing = "netmask" if "ip" in values else "ip"
            raise VmDataError(missing, "is needed with ip/netmask for a static network")
        try:
            network = parse_static_network(
                values["ip"], values["netmask"], values.get("gateway"), values.get("dns", "")
            )
        except NetconfError as exc:
            raise VmDataError(exc.field, str(exc)) from None
    elif "gateway" in values or "dns" in values:
        key = "gateway" if "gateway" in values else "dns"
        raise VmDataError(key, "is set but ip/netmask are not: a static network needs them")
    try:
        ntp = parse_ntp_servers(values.get("ntp", ""))
    except NetconfError as exc:
        raise VmDataError("ntp", str(exc)) from None
    password = None
    for key in PASSWORD_KEYS:
        if key in raw and raw[key] != "":
            try:
                password = validate_password(raw[key])
            except ValueError as exc:
                raise VmDataError(key, str(exc)) from None
            break
    return VmData(network=network, ntp=ntp, password=password)
