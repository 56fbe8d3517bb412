"""First boot: apply the vm-data seeds (network, NTP, console password).

``xenkeep-firstboot.service`` runs this once, as root, before
systemd-networkd starts (and, not to hold up the boot, alongside
systemd-timesyncd, which an NTP seed restarts): it reads the keys from xenstore (or QEMU's fw_cfg),
validates them (:func:`xenkeep.system.vmdata.parse_vm_data`) and applies them
with the privileged helper's :class:`~xenkeep.privhelper.applier.Applier`, the
same files the helper's network and NTP operations write. The console
password is set here only: no operation of the helper's socket sets it.
Without keys the appliance uses DHCP and the console account stays locked.
A key with a bad value is reported on the console and ignored as a whole: a
half-applied static configuration would be worse than DHCP.

Later boots do nothing (the unit's ``ConditionPathExists=``), so settings an
administrator changes afterwards survive reboots even when the VM still
carries its old vm-data keys.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from xenkeep.privhelper.applier import Applier
from xenkeep.system.vmdata import (
    FW_CFG_ROOT,
    FwCfgSource,
    VmData,
    VmDataError,
    VmDataSource,
    XenstoreSource,
    parse_vm_data,
    read_raw,
)

log = logging.getLogger("xenkeep.firstboot")


async def apply_seed(data: VmData, applier: Applier) -> list[str]:
    """Apply ``data``; return what was done, for the log."""
    done = []
    if data.network is not None or data.ntp:
        await applier.seed(data.network, data.ntp)
    done.append("DHCP" if data.network is None else f"static network {data.network.address}")
    if data.ntp:
        done.append(f"NTP {' '.join(data.ntp)}")
    if data.password is not None:
        await applier.set_console_password(data.password)
        done.append("console account password set")
    else:
        done.append("console account locked")
    return done


async def first_boot(sources: list[VmDataSource], applier: Applier) -> int:
    """Read, validate and apply the seeds; 0 on success, 1 if a key was bad."""
    source, raw = await read_raw(sources)
    keys = ", ".join(sorted(raw)) or "none"
    log.info("vm-data from %s: %s", source, keys)
    try:
        data = parse_vm_data(raw)
    except VmDataError as exc:
        log.error("ignoring vm-data: %s (using DHCP, console account locked)", exc)
        return 1
    for line in await apply_seed(data, applier):
        log.info("%s", line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of xenkeep-firstboot.service."""
    parser = argparse.ArgumentParser(description="Apply vm-data seeds at first boot.")
    parser.add_argument("--root", type=Path, default=Path("/"), help="system root to write to")
    parser.add_argument("--fw-cfg", type=Path, default=FW_CFG_ROOT, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="xenkeep-firstboot: %(message)s", stream=sys.stdout
    )
    # Told of the files: only the services of this system (timesyncd may be
    # running already; networkd has not started and reads them at its start).
    applier = Applier(ns.root, live=ns.root == Path("/"))
    return asyncio.run(first_boot([XenstoreSource(), FwCfgSource(ns.fw_cfg)], applier))


if __name__ == "__main__":
    raise SystemExit(main())
