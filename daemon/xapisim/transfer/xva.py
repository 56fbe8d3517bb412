"""``GET /export`` and ``PUT /import``: whole VMs as XVA archives.

Export writes ova.xml with the full records of the VM, its VBDs, VDIs,
VIFs, their SRs and networks (references inside records rewritten to the
archive's ``Ref:<n>`` ids, anything outside the archive to
``OpaqueRef:NULL``), then the disks. Import reads strictly (the codec
checks order and checksums), requires every datamodel field of the VM,
VBD, VDI and VIF records, creates the VM halted on the chosen SR and
removes everything it created if the stream turns out bad. The task result
is the array of new VM refs, as XAPI sets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from aiohttp import web

from .. import storage, xvaio
from ..db import Record
from ..errors import (
    IMPORT_ERROR_GENERIC,
    IMPORT_ERROR_PREMATURE_EOF,
    IMPORT_ERROR_SOME_CHECKSUMS_FAILED,
    IMPORT_ERROR_UNEXPECTED_FILE,
    IMPORT_INCOMPATIBLE_VERSION,
    OPERATION_BLOCKED,
    VM_BAD_POWER_STATE,
    XapiError,
)
from ..pool import SimPool
from ..schema import CLASSES, DERIVED, NULL_REF, XDateTime, coerce
from .guard import resolve
from .meter import BodyReader, Meter, iterate

#: The newest export format this simulated host reads (as XCP-ng 8.2).
XAPI_MAJOR, XAPI_MINOR = 1, 20
_STRICT_CLASSES = ("VM", "VBD", "VDI", "VIF")


def _to_ova(value: Any) -> Any:
    if isinstance(value, XDateTime):
        return xvaio.DateTime(str(value))
    if isinstance(value, dict):
        return {k: _to_ova(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_ova(v) for v in value]
    return value


def export_objects(pool: SimPool, vm: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The ova.xml objects of a VM and the map from real refs to archive ids."""
    db = pool.db
    order: list[tuple[str, str]] = [("VM", vm)]
    for vbd in db.find("VBD", VM=vm):
        order.append(("VBD", vbd))
        vdi = db.get("VBD", vbd)["VDI"]
        if db.exists("VDI", vdi):
            order.append(("VDI", vdi))
            order.append(("SR", db.get("VDI", vdi)["SR"]))
    for vif in db.find("VIF", VM=vm):
        order.append(("VIF", vif))
        order.append(("network", db.get("VIF", vif)["network"]))
    ids: dict[str, str] = {}
    unique: list[tuple[str, str]] = []
    for cls, ref in order:
        if ref not in ids:
            ids[ref] = f"Ref:{len(ids)}"
            unique.append((cls, ref))

    def remap(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("OpaqueRef:"):
            return ids.get(value, NULL_REF)
        if isinstance(value, list):
            return [
                remap(v)
                for v in value
                if not isinstance(v, str) or v in ids or not v.startswith("OpaqueRef:")
            ]
        if isinstance(value, dict):
            return {k: remap(v) for k, v in value.items()}
        return value

    objects = []
    for cls, ref in unique:
        record = db.record(cls, ref)
        snapshot = {k: _to_ova(remap(v)) for k, v in record.items()}
        objects.append({"class": cls, "id": ids[ref], "snapshot": snapshot})
    return objects, ids


def _import_error(e: xvaio.XvaError) -> XapiError:
    text = str(e)
    if "checksum" in text and ("differ" in text or "mismatch" in text or "does not match" in text):
        return XapiError(IMPORT_ERROR_SOME_CHECKSUMS_FAILED, text)
    if "truncated" in text or "ends before" in text:
        return XapiError(IMPORT_ERROR_PREMATURE_EOF, text)
    if "unexpected member" in text:
        return XapiError(IMPORT_ERROR_UNEXPECTED_FILE, text)
    return XapiError(IMPORT_ERROR_GENERIC, text)


class Importer:
    """Creates the objects of one XVA and undoes them on failure."""

    def __init__(self, pool: SimPool, sr: str, restore: bool) -> None:
        self.pool = pool
        self.sr = sr
        self.restore = restore
        self.created: list[tuple[str, str]] = []
        self.vdis: dict[str, str] = {}
        self.vm: str | None = None

    def check(self, ova: dict[str, Any]) -> None:
        major, minor, _vsn = xvaio.ova_version(ova)
        if (major, minor) > (XAPI_MAJOR, XAPI_MINOR):
            raise XapiError(IMPORT_INCOMPATIBLE_VERSION)
        vms = [o for o in ova["objects"] if o["class"] == "VM"]
        if not vms:
            raise XapiError(IMPORT_ERROR_GENERIC, "ova.xml holds no VM object")
        for obj in ova["objects"]:
            if obj["class"] not in _STRICT_CLASSES:
                continue
            for name in CLASSES[obj["class"]].fields:
                if name not in obj["snapshot"]:
                    raise XapiError(
                        IMPORT_ERROR_GENERIC,
                        f"{obj['id']} ({obj['class']}): Field {name} not present in rpc",
                    )

    def _fields(self, cls: str, snapshot: dict[str, Any], skip: tuple[str, ...]) -> Record:
        out: Record = {}
        info = CLASSES[cls]
        for name, value in snapshot.items():
            field = info.fields.get(name)
            if field is None or (cls, name) in DERIVED or name in skip:
                continue
            if isinstance(value, xvaio.DateTime):
                value = value.value
            if field.ref_class is not None:
                continue  # refs are rewired below
            try:
                out[name] = coerce(field.type, value)
            except (TypeError, ValueError) as e:
                raise XapiError(
                    IMPORT_ERROR_GENERIC, f"{cls} field {name}: bad value {value!r}"
                ) from e
        return out

    def create(self, ova: dict[str, Any], disks: list[tuple[str, int]]) -> None:
        db = self.pool.db
        objects = {o["id"]: o for o in ova["objects"]}
        vm_obj = next(o for o in ova["objects"] if o["class"] == "VM")
        for disk_id, size in disks:
            snap = objects[disk_id]["snapshot"]
            fields = self._fields("VDI", snap, ("uuid", "location", "virtual_size"))
            fields.update({"virtual_size": size, "is_a_snapshot": False, "cbt_enabled": False})
            vdi = self.pool.disks.make_vdi(self.sr, fields)
            self.created.append(("VDI", vdi))
            self.vdis[disk_id] = vdi
        vm_fields = self._fields("VM", vm_obj["snapshot"], ("uuid",))
        uuid = str(vm_obj["snapshot"].get("uuid", ""))
        if self.restore and uuid and uuid not in db.by_uuid:
            vm_fields["uuid"] = uuid
        vm_fields.update(
            {
                "power_state": "Halted",
                "domid": -1,
                "is_a_snapshot": False,
                "is_control_domain": False,
                "current_operations": {},
            }
        )
        vm = db.create("VM", vm_fields)
        self.created.append(("VM", vm))
        self.vm = vm
        for obj in ova["objects"]:
            snap = obj["snapshot"]
            if obj["class"] == "VBD" and snap.get("VM") == vm_obj["id"]:
                fields = self._fields("VBD", snap, ("uuid",))
                fields.update(
                    {
                        "VM": vm,
                        "VDI": self.vdis.get(str(snap.get("VDI")), NULL_REF),
                        "currently_attached": False,
                    }
                )
                if fields["VDI"] == NULL_REF:
                    fields["empty"] = True
                self.created.append(("VBD", db.create("VBD", fields)))
            elif obj["class"] == "VIF" and snap.get("VM") == vm_obj["id"]:
                fields = self._fields("VIF", snap, ("uuid",))
                net_obj = objects.get(str(snap.get("network")), {}).get("snapshot", {})
                target = self._network_for(net_obj)
                fields.update({"VM": vm, "network": target, "currently_attached": False})
                self.created.append(("VIF", db.create("VIF", fields)))
        self.pool.vms.update_allowed(vm)

    def _network_for(self, exported: dict[str, Any]) -> str:
        """The local network for an exported one: by uuid, name, then bridge."""
        db = self.pool.db
        networks = db.refs("network")
        for key in ("uuid", "name_label", "bridge"):
            for net in networks:
                if exported.get(key) and db.get("network", net)[key] == exported.get(key):
                    return net
        return networks[0] if networks else NULL_REF

    def undo(self) -> None:
        for cls, ref in reversed(self.created):
            if not self.pool.db.exists(cls, ref):
                continue
            if cls == "VDI":
                with contextlib.suppress(XapiError):
                    self.pool.disks.destroy_vdi(ref)
            else:
                self.pool.db.destroy(cls, ref)
        self.created.clear()


def _gzip(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Gzip a stream piece by piece (``use_compression=true``, as XAPI offers)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for piece in pieces:
        out = packer.compress(piece)
        if out:
            yield out
    yield packer.flush()


def _write_chunk(path: Path, offset: int, data: bytes) -> None:
    storage.write_range(path, offset, data)


async def export_xva(pool: SimPool, request: web.Request, task: str | None) -> web.StreamResponse:
    """Stream a halted or suspended VM as an XVA (gzip with ``use_compression``)."""
    query = request.query
    vm = resolve(pool, "VM", query.get("ref") or query.get("uuid"))
    rec = pool.vms.vm(vm)
    blocked = rec["blocked_operations"]
    if "export" in blocked:
        raise XapiError(OPERATION_BLOCKED, vm, blocked["export"])
    if rec["power_state"] not in ("Halted", "Suspended"):
        raise XapiError(VM_BAD_POWER_STATE, vm, "halted", rec["power_state"].lower())
    objects, ids = export_objects(pool, vm)
    host = pool.db.get("host", pool.master_ref)
    version = {
        "hostname": host["hostname"],
        "date": str(host["software_version"].get("date", "2024-01-01")),
        "product_version": str(host["software_version"].get("product_version", "8.2.1")),
        "product_brand": str(host["software_version"].get("product_brand", "XCP-ng")),
        "xapi_major": XAPI_MAJOR,
        "xapi_minor": XAPI_MINOR,
        "export_vsn": 2,
    }
    xml = xvaio.build_ova_xml(objects, version)
    refs = {archive_id: ref for ref, archive_id in ids.items()}
    disks = [
        (disk_id, pool.vdi_path(refs[disk_id]), size)
        for disk_id, size in xvaio.xva_disks(xvaio.parse_ova_xml(xml))
    ]
    total = sum(storage.allocated_bytes(p) for _, p, _ in disks) + len(xml)
    compression = query.get("use_compression", "false").lower()
    if compression not in ("false", "true", "gzip"):
        raise XapiError("INTERNAL_ERROR", f"xapisim does not simulate {compression} exports")
    stream: Iterator[bytes] = xvaio.xva_stream(xml, disks)
    if compression != "false":
        stream = _gzip(stream)
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    meter = Meter(pool, request, task, total)
    async for piece in iterate(stream):
        await meter.send(resp, piece)
    await resp.write_eof()
    if task is not None:
        pool.tasks.task_done(task, vm)
    return resp


async def import_xva(pool: SimPool, request: web.Request, task: str | None) -> web.StreamResponse:
    """Create a VM from an XVA body on ``sr_id`` (default SR); the body is its ref."""
    query = request.query
    sr_q = query.get("sr_id")
    sr = (
        resolve(pool, "SR", sr_q) if sr_q else str(pool.db.get("pool", pool.pool_ref)["default_SR"])
    )
    pool.db.get("SR", sr)
    if pool.faults.sr_is_full(sr):
        raise XapiError("SR_FULL", request.content_length or 0, 0)
    importer = Importer(pool, sr, query.get("restore", "false").lower() == "true")
    meter = Meter(pool, request, task, request.content_length or 1)
    reader = cast(BinaryIO, BodyReader(meter, asyncio.get_running_loop()))
    items = xvaio.read_xva(reader)
    try:
        async for item in iterate(items):
            if isinstance(item, xvaio.XvaHeader):
                importer.check(item.ova)
                importer.create(item.ova, item.disks)
            else:
                vdi = importer.vdis[item.disk_id]
                await asyncio.to_thread(_write_chunk, pool.vdi_path(vdi), item.offset, item.data)
    except xvaio.XvaError as e:
        importer.undo()
        raise _import_error(e) from e
    except BaseException:
        importer.undo()
        raise
    for vdi in importer.vdis.values():
        pool.disks.refresh_vdi(vdi)
    assert importer.vm is not None
    if task is not None:
        pool.tasks.task_done(task, [importer.vm])
    return web.Response(status=200, text=importer.vm)
