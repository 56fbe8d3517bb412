"""GET /export and PUT /import of XVA archives, checked with tarfile and xxhash."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.xapisim.conftest import first_disk, same_content, vm_by_name
from xapisim.testing import SimulatorThread


def _export(sim: SimulatorThread, session: Any, query: str) -> bytes:
    url = f"{sim.url}export?session_id={session.handle}&{query}"
    with urllib.request.urlopen(url) as resp:  # noqa: S310 - loopback test server
        return bytes(resp.read())


def _import(sim: SimulatorThread, session: Any, data: bytes, query: str = "") -> tuple[int, str]:
    url = f"{sim.url}import?session_id={session.handle}&{query}"
    req = urllib.request.Request(url, data=data, method="PUT")  # noqa: S310
    try:
        with urllib.request.urlopen(req) as resp:  # noqa: S310
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        out = []
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out.append((m.name, f.read() if f else b""))
        return out


def _pack(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _vdi_path(sim: SimulatorThread, session: Any, vdi: str) -> Path:
    return Path(sim.call("sim.vdi_path", session.handle, vdi))


def test_export_is_a_valid_xva(sim: SimulatorThread, session: Any, xapi: Any) -> None:
    vm = vm_by_name(xapi, "mail-01")
    data = _export(sim, session, f"uuid={xapi.VM.get_uuid(vm)}")
    members = _members(data)
    assert members[0][0] == "ova.xml"
    assert b"<name>export_vsn</name>" in members[0][1]
    assert data[-1024:] == bytes(1024) and len(data) % 512 == 0
    chunks = [(n, b) for n, b in members[1:] if not n.endswith(".xxhash")]
    sums = {n[: -len(".xxhash")]: b for n, b in members if n.endswith(".xxhash")}
    assert chunks
    for name, body in chunks:
        assert sums[name] == xxhash.xxh64(body).hexdigest().upper().encode()
    # tar(1) agrees with the listing.
    listing = subprocess.run(["tar", "-t"], input=data, capture_output=True, check=True).stdout
    assert listing.decode().split() == [n for n, _ in members]


def test_round_trip_keeps_disk_bytes_and_settings(
    sim: SimulatorThread, session: Any, xapi: Any
) -> None:
    vm = vm_by_name(xapi, "mail-01")
    xapi.VM.add_to_other_config(vm, "xenkeep", "round-trip")
    data = _export(sim, session, f"ref={vm}")
    sr = next(r for r, s in xapi.SR.get_all_records().items() if s["type"] == "ext")
    task = xapi.task.create("import", "")
    status, body = _import(sim, session, data, f"sr_id={sr}&task_id={task}")
    assert status == 200, body
    new = body
    assert xapi.task.get_status(task) == "success"
    assert (
        xapi.task.get_result(task)
        == f"<value><array><data><value>{new}</value></data></array></value>"
    )
    old_rec, new_rec = xapi.VM.get_record(vm), xapi.VM.get_record(new)
    for field in ("name_label", "VCPUs_max", "memory_static_max", "tags", "HVM_boot_params"):
        assert new_rec[field] == old_rec[field], field
    assert new_rec["other_config"]["xenkeep"] == "round-trip"
    assert new_rec["uuid"] != old_rec["uuid"]
    assert new_rec["power_state"] == "Halted"
    new_disk = first_disk(xapi, new)
    assert xapi.VDI.get_SR(new_disk) == sr
    assert same_content(
        _vdi_path(sim, session, new_disk), _vdi_path(sim, session, first_disk(xapi, vm))
    )
    assert xapi.VIF.get_MAC(xapi.VM.get_VIFs(new)[0]) == xapi.VIF.get_MAC(xapi.VM.get_VIFs(vm)[0])


def test_restore_keeps_the_uuid(sim: SimulatorThread, session: Any, xapi: Any) -> None:
    vm = vm_by_name(xapi, "win-app-01")
    uuid = xapi.VM.get_uuid(vm)
    data = _export(sim, session, f"uuid={uuid}")
    disk = first_disk(xapi, vm)
    xapi.VM.destroy(vm)
    xapi.VDI.destroy(disk)
    status, new = _import(sim, session, data, "restore=true")
    assert status == 200, new
    assert xapi.VM.get_uuid(new) == uuid
    default_sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    assert xapi.VDI.get_SR(first_disk(xapi, new)) == default_sr


def test_export_refuses_running_and_blocked(sim: SimulatorThread, session: Any, xapi: Any) -> None:
    vm = vm_by_name(xapi, "web-01")
    with pytest.raises(urllib.error.HTTPError) as info:
        _export(sim, session, f"ref={vm}")
    assert "VM_BAD_POWER_STATE" in info.value.read().decode()
    snap = xapi.VM.snapshot(vm, "for export")
    assert _members(_export(sim, session, f"ref={snap}"))[0][0] == "ova.xml"
    xapi.VM.add_to_blocked_operations(snap, "export", "no")
    with pytest.raises(urllib.error.HTTPError) as info:
        _export(sim, session, f"ref={snap}")
    assert "OPERATION_BLOCKED" in info.value.read().decode()


@pytest.fixture
def exported(sim: SimulatorThread, session: Any, xapi: Any) -> list[tuple[str, bytes]]:
    return _members(_export(sim, session, f"ref={vm_by_name(xapi, 'mail-01')}"))


def _counts(xapi: Any) -> tuple[int, int, int]:
    return len(xapi.VM.get_all()), len(xapi.VDI.get_all()), len(xapi.VBD.get_all())


def _bad_import(sim: SimulatorThread, session: Any, xapi: Any, data: bytes) -> list[str]:
    before = _counts(xapi)
    task = xapi.task.create("bad import", "")
    status, body = _import(sim, session, data, f"task_id={task}")
    assert status == 500, body
    assert xapi.task.get_status(task) == "failure"
    assert _counts(xapi) == before  # nothing left behind
    return list(xapi.task.get_error_info(task))


def test_import_rejects_a_bad_checksum(
    sim: SimulatorThread, session: Any, xapi: Any, exported: list[tuple[str, bytes]]
) -> None:
    members = list(exported)
    name, body = members[1]
    members[1] = (name, bytes([body[0] ^ 1]) + body[1:])
    error = _bad_import(sim, session, xapi, _pack(members))
    assert error[0] == "IMPORT_ERROR_SOME_CHECKSUMS_FAILED", error


def test_import_rejects_ova_xml_not_first(
    sim: SimulatorThread, session: Any, xapi: Any, exported: list[tuple[str, bytes]]
) -> None:
    members = [exported[1], exported[0], *exported[2:]]
    error = _bad_import(sim, session, xapi, _pack(members))
    assert error[0].startswith("IMPORT_ERROR") and "ova.xml" in error[1]


def test_import_rejects_a_missing_field(
    sim: SimulatorThread, session: Any, xapi: Any, exported: list[tuple[str, bytes]]
) -> None:
    xml = exported[0][1]
    start = xml.index(b"<member><name>VCPUs_max</name>")
    end = xml.index(b"</member>", start) + len(b"</member>")
    members = [("ova.xml", xml[:start] + xml[end:]), *exported[1:]]
    error = _bad_import(sim, session, xapi, _pack(members))
    assert error[0] == "IMPORT_ERROR" and "Field VCPUs_max not present" in error[1]


def test_import_rejects_truncation_and_chunk_disorder(
    sim: SimulatorThread, session: Any, xapi: Any, exported: list[tuple[str, bytes]]
) -> None:
    whole = _pack(exported)
    error = _bad_import(sim, session, xapi, whole[: len(whole) // 2])
    assert error[0] in ("IMPORT_ERROR_PREMATURE_EOF", "IMPORT_ERROR"), error
    chunks = exported[1:]
    assert len(chunks) >= 4
    swapped = [exported[0], chunks[2], chunks[3], chunks[0], chunks[1], *chunks[4:]]
    error = _bad_import(sim, session, xapi, _pack(swapped))
    assert error[0].startswith("IMPORT_ERROR"), error


def test_import_rejects_a_newer_format(
    sim: SimulatorThread, session: Any, xapi: Any, exported: list[tuple[str, bytes]]
) -> None:
    xml = exported[0][1].replace(
        b"<name>xapi_minor</name><value>20</value>", b"<name>xapi_minor</name><value>99</value>"
    )
    assert xml != exported[0][1]
    error = _bad_import(sim, session, xapi, _pack([("ova.xml", xml), *exported[1:]]))
    assert error == ["IMPORT_INCOMPATIBLE_VERSION"]


def test_gzip_export_round_trips(sim: SimulatorThread, session: Any, xapi: Any) -> None:
    vm = vm_by_name(xapi, "mail-01")
    packed = _export(sim, session, f"ref={vm}&use_compression=true")
    assert packed[:2] == b"\x1f\x8b"
    assert _members(gzip.decompress(packed))[0][0] == "ova.xml"
    status, new = _import(sim, session, packed)
    assert status == 200, new
    assert same_content(
        _vdi_path(sim, session, first_disk(xapi, new)),
        _vdi_path(sim, session, first_disk(xapi, vm)),
    )
