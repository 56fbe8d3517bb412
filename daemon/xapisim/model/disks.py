"""VDI content on disk: sparse files, SR space accounting and CBT logs.

Each SR is a directory ``<state>/sr/<SR uuid>/``; each VDI a sparse file
``<location>.img`` in it, whose allocated bytes are the VDI's
``physical_utilisation`` (the SR's is their sum, its ``virtual_allocation``
the sum of virtual sizes). Snapshots and clones are copy-on-write copies of
the file (reflink where the filesystem has it). A VDI with CBT enabled has a
``<location>.cbt`` JSON log next to it: a bitmap of the 64 KiB blocks written
since the log began and the uuid of the VDI whose log precedes it, which is
what ``VDI.list_changed_blocks`` walks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid as uuidlib
from pathlib import Path
from typing import Any

from .. import storage
from ..db import Database, Record
from ..errors import INVALID_VALUE, SR_FULL, VDI_IN_USE, VDI_READONLY, XapiError
from ..faults import Faults
from ..schema import NULL_REF, XDateTime
from .records import copy_value


class Disks:
    """The VDI files of one pool and the accounting that follows them."""

    def __init__(self, db: Database, faults: Faults, state_dir: Path) -> None:
        self.db = db
        self.faults = faults
        self.state_dir = state_dir

    # -- paths and accounting -------------------------------------------
    def sr_dir(self, sr_ref: str) -> Path:
        return self.state_dir / "sr" / str(self.db.get("SR", sr_ref)["uuid"])

    def vdi_path(self, vdi_ref: str) -> Path:
        vdi = self.db.get("VDI", vdi_ref)
        return self.sr_dir(vdi["SR"]) / f"{vdi['location']}.img"

    def cbt_path(self, vdi_ref: str) -> Path:
        return self.vdi_path(vdi_ref).with_suffix(".cbt")

    def refresh_vdi(self, vdi_ref: str) -> None:
        """Recompute a VDI's physical use and its SR's totals."""
        vdi = self.db.get("VDI", vdi_ref)
        self.db.set(
            "VDI", vdi_ref, physical_utilisation=storage.allocated_bytes(self.vdi_path(vdi_ref))
        )
        self.refresh_sr(vdi["SR"])

    def refresh_sr(self, sr_ref: str) -> None:
        phys = 0
        virt = 0
        for ref, vdi in self.db.items("VDI"):
            if vdi["SR"] == sr_ref:
                phys += storage.allocated_bytes(self.vdi_path(ref))
                virt += int(vdi["virtual_size"])
        sr = self.db.get("SR", sr_ref)
        if sr["physical_utilisation"] != phys or sr["virtual_allocation"] != virt:
            self.db.set("SR", sr_ref, physical_utilisation=phys, virtual_allocation=virt)

    def free_space(self, sr_ref: str) -> int:
        """Bytes the SR can still allocate."""
        sr = self.db.get("SR", sr_ref)
        return max(0, int(sr["physical_size"]) - int(sr["physical_utilisation"]))

    def check_space(self, sr_ref: str, requested: int) -> None:
        """Raise SR_FULL if ``requested`` more bytes do not fit on the SR."""
        sr = self.db.get("SR", sr_ref)
        free = int(sr["physical_size"]) - int(sr["physical_utilisation"])
        if self.faults.sr_is_full(sr_ref):
            raise XapiError(SR_FULL, requested, max(0, min(free, 0)))
        if requested > free:
            raise XapiError(SR_FULL, requested, max(free, 0))

    # -- creating and removing -------------------------------------------
    def make_vdi(self, sr: str, fields: Record) -> str:
        """Create a VDI record and its empty sparse file."""
        size = int(fields.get("virtual_size", 0))
        if size < 0:
            raise XapiError(INVALID_VALUE, "virtual_size", size)
        self.db.get("SR", sr)
        self.check_space(sr, size)
        uuid = str(uuidlib.uuid4())
        rec = {
            "type": "user",
            "managed": True,
            "on_boot": "persist",
            **fields,
            "uuid": uuid,
            "location": uuid,
            "SR": sr,
            "virtual_size": size,
            "allowed_operations": ["clone", "copy", "resize", "snapshot", "destroy", "update"],
        }
        ref = self.db.create("VDI", rec)
        storage.create_sparse(self.vdi_path(ref), size)
        self.refresh_sr(sr)
        return ref

    async def derive_vdi(self, src: str, sr: str | None, fields: Record, *, cbt_link: bool) -> str:
        """New VDI whose content is a copy of ``src`` (snapshot, clone or copy)."""
        source = self.db.get("VDI", src)
        target_sr = sr or source["SR"]
        self.check_space(
            target_sr,
            0 if target_sr == source["SR"] else storage.allocated_bytes(self.vdi_path(src)),
        )
        uuid = str(uuidlib.uuid4())
        rec = {k: copy_value(v) for k, v in source.items()}
        rec.update(
            {
                "uuid": uuid,
                "location": uuid,
                "SR": target_sr,
                "is_a_snapshot": False,
                "snapshot_of": NULL_REF,
                "snapshot_time": XDateTime("19700101T00:00:00Z"),
                "cbt_enabled": False,
                "current_operations": {},
                "read_only": False,
            }
        )
        rec.update(fields)
        src_path = self.vdi_path(src)
        dest_path = self.state_dir / "sr" / self.db.get("SR", target_sr)["uuid"] / f"{uuid}.img"
        await asyncio.to_thread(storage.clone_file, src_path, dest_path)
        ref = self.db.create("VDI", rec)
        if cbt_link and source["cbt_enabled"]:
            # The snapshot takes over the source's log; the source starts a new
            # log whose predecessor is the snapshot.
            old = self.cbt_load(src)
            self.cbt_store(ref, old["parent"], old["bitmap"])
            self.cbt_store(
                src, uuid, bytearray(storage.cbt_bitmap_len(int(source["virtual_size"])))
            )
            self.db.set("VDI", ref, cbt_enabled=True)
        self.refresh_vdi(ref)
        return ref

    def destroy_vdi(self, vdi: str) -> None:
        rec = self.db.get("VDI", vdi)
        for vbd in self.db.find("VBD", VDI=vdi):
            if self.db.get("VBD", vbd)["currently_attached"]:
                raise XapiError(VDI_IN_USE, vdi, "destroy")
        for vbd in self.db.find("VBD", VDI=vdi):
            self.db.destroy("VBD", vbd)
        path = self.vdi_path(vdi)
        storage.remove(path)
        storage.remove(path.with_suffix(".cbt"))
        self.db.destroy("VDI", vdi)
        self.refresh_sr(rec["SR"])

    # -- content and changed-block tracking -------------------------------
    def cbt_load(self, vdi: str) -> dict[str, Any]:
        path = self.cbt_path(vdi)
        size = int(self.db.get("VDI", vdi)["virtual_size"])
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return {"parent": None, "bitmap": bytearray(storage.cbt_bitmap_len(size))}
        bitmap = bytearray(base64.b64decode(doc["bitmap"]))
        want = storage.cbt_bitmap_len(size)
        if len(bitmap) < want:
            bitmap += bytes(want - len(bitmap))
        return {"parent": doc["parent"], "bitmap": bitmap}

    def cbt_store(self, vdi: str, parent: str | None, bitmap: bytearray) -> None:
        doc = {"parent": parent, "bitmap": base64.b64encode(bytes(bitmap)).decode()}
        path = self.cbt_path(vdi)
        tmp = path.with_suffix(".cbt.tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)

    def note_write(self, vdi: str, offset: int, length: int) -> None:
        """Record a write for CBT and accounting."""
        rec = self.db.get("VDI", vdi)
        if rec["cbt_enabled"]:
            log_ = self.cbt_load(vdi)
            storage.cbt_mark(log_["bitmap"], offset, length)
            self.cbt_store(vdi, log_["parent"], log_["bitmap"])
        self.refresh_vdi(vdi)

    def write_vdi(self, vdi: str, offset: int, data: bytes) -> None:
        """Write guest data into a VDI (used by the sim API and imports)."""
        rec = self.db.get("VDI", vdi)
        size = int(rec["virtual_size"])
        if offset < 0 or offset + len(data) > size:
            raise XapiError(INVALID_VALUE, "offset", offset)
        if rec["read_only"]:
            raise XapiError(VDI_READONLY, vdi)
        self.check_space(rec["SR"], len(data))
        storage.write_range(self.vdi_path(vdi), offset, data)
        self.note_write(vdi, offset, len(data))
