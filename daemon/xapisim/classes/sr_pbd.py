"""SR and PBD: rescanning an SR's disks, plugging its PBDs.

``SR.scan`` marks VDIs whose file vanished as ``missing`` and recomputes the
space figures; the SR's size and free space otherwise follow every write
(``model/disks.py``).
"""

from __future__ import annotations

from typing import Any

from ..pool import SimPool
from .registry import Registry

methods = Registry()


@methods.api("SR.scan")
async def sr_scan(pool: SimPool, _s: str, sr: Any) -> Any:
    pool.db.get("SR", sr)
    for ref, vdi in pool.db.items("VDI"):
        if vdi["SR"] == sr:
            missing = not pool.vdi_path(ref).exists()
            if vdi["missing"] != missing:
                pool.db.set("VDI", ref, missing=missing)
            if not missing:
                pool.disks.refresh_vdi(ref)
    pool.disks.refresh_sr(sr)
    return ""


@methods.api("SR.update")
async def sr_update(pool: SimPool, s: str, sr: Any) -> Any:
    return await sr_scan(pool, s, sr)


@methods.api("PBD.plug")
async def pbd_plug(pool: SimPool, _s: str, pbd: Any) -> Any:
    pool.db.set("PBD", _exists(pool, "PBD", pbd), currently_attached=True)
    return ""


@methods.api("PBD.unplug")
async def pbd_unplug(pool: SimPool, _s: str, pbd: Any) -> Any:
    pool.db.set("PBD", _exists(pool, "PBD", pbd), currently_attached=False)
    return ""


def _exists(pool: SimPool, cls: str, ref: Any) -> str:
    pool.db.get(cls, ref)
    return str(ref)
