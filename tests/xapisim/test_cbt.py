"""Changed-block tracking: list_changed_blocks between snapshots, data_destroy."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import XenAPI

from tests.xapisim.conftest import first_disk, vm_by_name
from xapisim.testing import SimulatorThread

K64 = 64 * 1024


def _bits(b64: str) -> set[int]:
    raw = base64.b64decode(b64)
    return {i for i in range(len(raw) * 8) if raw[i // 8] & (0x80 >> (i % 8))}


def test_changed_blocks_between_snapshots(sim: SimulatorThread, xapi: Any, session: Any) -> None:
    vm = vm_by_name(xapi, "web-01")
    disk = first_disk(xapi, vm)
    with pytest.raises(XenAPI.Failure) as info:
        xapi.VDI.list_changed_blocks(disk, disk)
    assert info.value.details == ["VDI_NO_CBT_METADATA", disk]
    xapi.VDI.enable_cbt(disk)
    assert xapi.VDI.get_cbt_enabled(disk)
    s1 = xapi.VDI.snapshot(disk, {})
    assert xapi.VDI.get_cbt_enabled(s1)
    sim.call(
        "sim.write_vdi", session.handle, disk, 3 * K64 + 10, base64.b64encode(b"a" * 10).decode()
    )
    sim.call("sim.write_vdi", session.handle, disk, 100 * K64 - 1, base64.b64encode(b"bb").decode())
    s2 = xapi.VDI.snapshot(disk, {})
    sim.call("sim.write_vdi", session.handle, disk, 7 * K64, base64.b64encode(b"c").decode())
    size = int(xapi.VDI.get_virtual_size(disk))
    bitmap = xapi.VDI.list_changed_blocks(s1, s2)
    assert len(base64.b64decode(bitmap)) == (size // K64 + 7) // 8
    assert _bits(bitmap) == {3, 99, 100}
    assert _bits(xapi.VDI.list_changed_blocks(s2, disk)) == {7}
    assert _bits(xapi.VDI.list_changed_blocks(s1, disk)) == {3, 7, 99, 100}
    # A CBT snapshot's data can be dropped while its metadata stays usable.
    xapi.VDI.data_destroy(s1)
    assert xapi.VDI.get_type(s1) == "cbt_metadata"
    assert _bits(xapi.VDI.list_changed_blocks(s1, s2)) == {3, 99, 100}
    xapi.VDI.disable_cbt(disk)
    with pytest.raises(XenAPI.Failure) as info:
        xapi.VDI.list_changed_blocks(s2, disk)
    assert info.value.details[0] == "VDI_NO_CBT_METADATA"


def test_vm_snapshot_carries_cbt(sim: SimulatorThread, xapi: Any, session: Any) -> None:
    vm = vm_by_name(xapi, "db-01")
    disk = first_disk(xapi, vm)
    xapi.VDI.enable_cbt(disk)
    snap1 = xapi.VM.snapshot(vm, "b1")
    sim.call("sim.write_vdi", session.handle, disk, 0, base64.b64encode(b"z" * K64 * 2).decode())
    snap2 = xapi.VM.snapshot(vm, "b2")
    d1, d2 = first_disk(xapi, snap1), first_disk(xapi, snap2)
    assert _bits(xapi.VDI.list_changed_blocks(d1, d2)) == {0, 1}
