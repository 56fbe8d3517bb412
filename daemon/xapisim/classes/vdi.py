"""VDI: create and destroy, snapshot/clone/copy, resize, and changed-block tracking.

Content, files and SR accounting are ``model/disks.py``'s; the handlers here
check arguments as XAPI does and call it. ``VDI.list_changed_blocks`` walks
the CBT logs from the newer VDI back to the older one and returns the union
of their bitmaps (base64, one bit per 64 KiB), as XAPI does.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from .. import storage
from ..db import now
from ..errors import OPERATION_NOT_ALLOWED, VDI_NO_CBT_METADATA, VDI_TOO_SMALL, XapiError
from ..model.records import record_arg
from ..pool import SimPool
from ..schema import NULL_REF, coerce
from .registry import Registry

methods = Registry()


@methods.api("VDI.create")
async def vdi_create(pool: SimPool, _s: str, args: Any) -> Any:
    rec = record_arg("VDI", args)
    sr = rec.get("SR", NULL_REF)
    pool.db.get("SR", sr)
    rec.pop("uuid", None)
    return pool.disks.make_vdi(sr, rec)


@methods.api("VDI.destroy")
async def vdi_destroy(pool: SimPool, _s: str, vdi: Any) -> Any:
    pool.db.get("VDI", vdi)
    pool.disks.destroy_vdi(vdi)
    return ""


@methods.api("VDI.snapshot")
async def vdi_snapshot(pool: SimPool, _s: str, vdi: Any, driver_params: Any = None) -> Any:
    src = pool.db.get("VDI", vdi)
    return await pool.disks.derive_vdi(
        vdi,
        None,
        {
            "is_a_snapshot": True,
            "snapshot_of": vdi,
            "snapshot_time": now(),
            "name_label": src["name_label"],
        },
        cbt_link=True,
    )


@methods.api("VDI.clone")
async def vdi_clone(pool: SimPool, _s: str, vdi: Any, driver_params: Any = None) -> Any:
    pool.db.get("VDI", vdi)
    return await pool.disks.derive_vdi(vdi, None, {}, cbt_link=False)


@methods.api("VDI.copy")
async def vdi_copy(
    pool: SimPool, _s: str, vdi: Any, sr: Any, base_vdi: Any = NULL_REF, into_vdi: Any = NULL_REF
) -> Any:
    pool.db.get("VDI", vdi)
    if into_vdi == NULL_REF:
        pool.db.get("SR", sr)
        return await pool.disks.derive_vdi(vdi, sr, {}, cbt_link=False)
    into = pool.db.get("VDI", into_vdi)
    src = pool.db.get("VDI", vdi)
    if int(into["virtual_size"]) < int(src["virtual_size"]):
        raise XapiError(VDI_TOO_SMALL, into_vdi, src["virtual_size"])
    src_path = pool.vdi_path(vdi)
    if base_vdi != NULL_REF:
        pool.db.get("VDI", base_vdi)
        blocks = await asyncio.to_thread(storage.changed_blocks, pool.vdi_path(base_vdi), src_path)
    else:
        blocks = await asyncio.to_thread(storage.nonzero_blocks, src_path)
    size = int(src["virtual_size"])
    with src_path.open("rb") as f:
        for index in blocks:
            off = index * storage.VHD_BLOCK
            data = storage.read_block(f.fileno(), off, min(storage.VHD_BLOCK, size - off))
            pool.disks.write_vdi(into_vdi, off, data)
    return into_vdi


@methods.api("VDI.resize")
async def vdi_resize(pool: SimPool, _s: str, vdi: Any, size: Any) -> Any:
    rec = pool.db.get("VDI", vdi)
    new = coerce("int", size)
    old = int(rec["virtual_size"])
    if new < old:
        raise XapiError(VDI_TOO_SMALL, vdi, old)
    pool.disks.check_space(rec["SR"], new - old)
    with pool.vdi_path(vdi).open("r+b") as f:
        f.truncate(new)
    pool.db.set("VDI", vdi, virtual_size=new)
    pool.disks.refresh_vdi(vdi)
    return ""


@methods.api("VDI.resize_online")
async def vdi_resize_online(pool: SimPool, s: str, vdi: Any, size: Any) -> Any:
    return await vdi_resize(pool, s, vdi, size)


@methods.api("VDI.enable_cbt")
async def vdi_enable_cbt(pool: SimPool, _s: str, vdi: Any) -> Any:
    rec = pool.db.get("VDI", vdi)
    if not rec["cbt_enabled"]:
        pool.disks.cbt_store(vdi, None, bytearray(storage.cbt_bitmap_len(int(rec["virtual_size"]))))
        pool.db.set("VDI", vdi, cbt_enabled=True)
    return ""


@methods.api("VDI.disable_cbt")
async def vdi_disable_cbt(pool: SimPool, _s: str, vdi: Any) -> Any:
    pool.db.get("VDI", vdi)
    storage.remove(pool.disks.cbt_path(vdi))
    pool.db.set("VDI", vdi, cbt_enabled=False)
    return ""


@methods.api("VDI.data_destroy")
async def vdi_data_destroy(pool: SimPool, _s: str, vdi: Any) -> Any:
    rec = pool.db.get("VDI", vdi)
    if not rec["cbt_enabled"]:
        raise XapiError(VDI_NO_CBT_METADATA, vdi)
    if not rec["is_a_snapshot"]:
        raise XapiError(OPERATION_NOT_ALLOWED, "data_destroy needs a snapshot VDI")
    for vbd in pool.db.find("VBD", VDI=vdi):
        pool.db.destroy("VBD", vbd)
    path = pool.vdi_path(vdi)
    storage.remove(path)
    storage.create_sparse(path, int(rec["virtual_size"]))
    pool.db.set("VDI", vdi, type="cbt_metadata")
    pool.disks.refresh_vdi(vdi)
    return ""


@methods.api("VDI.list_changed_blocks")
async def vdi_list_changed_blocks(pool: SimPool, _s: str, vdi_from: Any, vdi_to: Any) -> Any:
    src = pool.db.get("VDI", vdi_from)
    dst = pool.db.get("VDI", vdi_to)
    for ref, rec in ((vdi_from, src), (vdi_to, dst)):
        if not rec["cbt_enabled"]:
            raise XapiError(VDI_NO_CBT_METADATA, ref)
    bitmap = bytearray(storage.cbt_bitmap_len(int(dst["virtual_size"])))
    current = vdi_to
    for _ in range(10_000):
        if current == vdi_from:
            return base64.b64encode(bytes(bitmap)).decode()
        log_ = pool.disks.cbt_load(current)
        for i, b in enumerate(log_["bitmap"][: len(bitmap)]):
            bitmap[i] |= b
        parent = log_["parent"]
        if parent is None or parent not in pool.db.by_uuid:
            break
        current = pool.db.by_uuid[parent]
    raise XapiError(VDI_NO_CBT_METADATA, vdi_from)
