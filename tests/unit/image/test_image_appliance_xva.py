"""The appliance's XVA (image/appliance_xva.py): its six records and their wiring.

The archive format itself is tested in tests/unit/formats/test_formats_xva.py;
here, what image/build.py packs: the VM XenServer imports as the appliance.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from image import appliance_xva
from tests.unit.formats.formats_xva_testlib import MIB, make_disk
from xenkeep.formats import xapi_records, xva

MTIME = 1_700_000_000
VM_UUID = "3f1d4c2a-9b7e-4d5f-8a6b-0c1d2e3f4a5b"


def spec(size: int, **kw: object) -> appliance_xva.ApplianceSpec:
    return appliance_xva.ApplianceSpec(
        name="XenKeep",
        description="XenKeep appliance",
        disk_size=size,
        vm_uuid=VM_UUID,
        other_config={"xenkeep-build": "test"},
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def disk(tmp_path: Path) -> tuple[Path, int, bytes]:
    size = 5 * MIB + 1536  # not a multiple of 1 MiB: the last chunk is short
    path = tmp_path / "disk.raw"
    return path, size, make_disk(path, size)


@pytest.fixture
def archive(tmp_path: Path, disk: tuple[Path, int, bytes]) -> Path:
    path, size, _ = disk
    out = tmp_path / "vm.xva"
    with out.open("wb") as f:
        stats = appliance_xva.write_appliance_xva(f, spec(size), path, mtime=MTIME)
    assert stats.chunks_written == 3  # chunks 0, 2, 5
    assert stats.chunks_skipped == 3  # chunks 1 (hole), 3 (zeros), 4 (hole)
    assert stats.bytes_written == out.stat().st_size
    return out


def test_round_trip_gives_identical_bytes(
    archive: Path, disk: tuple[Path, int, bytes], tmp_path: Path
) -> None:
    _, size, raw = disk
    dest = tmp_path / "extracted.raw"
    with archive.open("rb") as f:
        assert xva.extract_vdi(f, appliance_xva.VDI_REF, dest) == size
    assert dest.read_bytes() == raw
    # Skipped chunks stay holes in the extracted file.
    assert dest.stat().st_blocks * 512 < size


def test_image_larger_than_disk_is_refused(disk: tuple[Path, int, bytes]) -> None:
    path, size, _ = disk
    with pytest.raises(ValueError, match=r"exceeds disk_size"):
        appliance_xva.write_appliance_xva(io.BytesIO(), spec(size - 512), path, mtime=MTIME)


def test_deterministic_output(tmp_path: Path, disk: tuple[Path, int, bytes]) -> None:
    path, size, _ = disk

    def digest(mtime: int) -> str:
        buf = io.BytesIO()
        appliance_xva.write_appliance_xva(buf, spec(size), path, mtime=mtime)
        return hashlib.sha256(buf.getvalue()).hexdigest()

    assert digest(MTIME) == digest(MTIME)
    assert digest(MTIME) != digest(MTIME + 1)


def test_ova_xml_has_complete_records(archive: Path) -> None:
    with archive.open("rb") as f:
        header = next(iter(xva.iter_xva(f)))
    assert isinstance(header, xva.XvaHeader)
    assert int(header.version["xapi_major"]) == 1
    assert int(header.version["xapi_minor"]) <= 20
    assert int(header.version["export_vsn"]) == 2
    assert header.version["date"] == "2023-11-14"
    classes = [o.cls for o in header.objects]
    assert sorted(classes) == sorted(["VM", "VBD", "VDI", "VIF", "SR", "network"])
    for obj in header.objects:
        expected = [name for name, _ in xapi_records.FIELDS[obj.cls]]
        assert list(obj.snapshot) == expected, obj.cls
    (vm,) = header.find("VM")
    snap = vm.snapshot
    assert snap["uuid"] == VM_UUID
    assert snap["HVM_boot_policy"] == "BIOS order"
    assert snap["HVM_boot_params"]["order"] == "cd"
    assert snap["platform"]["device-model"] == "qemu-upstream-compat"
    assert snap["platform"]["viridian"] == "false"
    assert snap["PV_bootloader"] == "" and snap["PV_kernel"] == ""
    assert int(snap["VCPUs_max"]) == 2 and int(snap["memory_static_max"]) == 2 << 30
    assert snap["other_config"] == {"xenkeep-build": "test"}
    assert snap["power_state"] == "Halted" and snap["is_a_template"] is False
    assert snap["VBDs"] == [appliance_xva.VBD_REF] and snap["VIFs"] == [appliance_xva.VIF_REF]
    assert snap["HVM_shadow_multiplier"] == 1.0
    assert snap["snapshot_time"] == "19700101T00:00:00Z"
    (vbd,) = header.find("VBD")
    assert (
        vbd.snapshot["VDI"] == appliance_xva.VDI_REF and vbd.snapshot["VM"] == appliance_xva.VM_REF
    )
    assert vbd.snapshot["bootable"] is True and vbd.snapshot["userdevice"] == "0"
    assert (vbd.snapshot["mode"], vbd.snapshot["type"]) == ("RW", "Disk")
    (vdi,) = header.find("VDI")
    assert vdi.snapshot["SR"] == appliance_xva.SR_REF
    assert header.vdi_sizes() == {appliance_xva.VDI_REF: 5 * MIB + 1536}
    (vif,) = header.find("VIF")
    assert vif.snapshot["network"] == appliance_xva.NETWORK_REF and vif.snapshot["MAC"] == ""
    (net,) = header.find("network")
    assert net.snapshot["bridge"] == "xenbr0"
    uuids = {o.snapshot["uuid"] for o in header.objects}
    assert len(uuids) == 6


def test_records_reject_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="disk_size must be positive"):
        appliance_xva.appliance_objects(spec(0))
    with pytest.raises(ValueError, match="vcpus and memory must be positive"):
        appliance_xva.appliance_objects(spec(MIB, vcpus=0))
