"""sim: calls that exist only on the simulator, for tests and demos.

Guest writes and reads on a VDI (CBT and accounting follow the writes), the
path of a VDI's file, fault injection (``faults.py``), the bytes each disk
transfer moved (``model/wire.py``) and an SR's size (to fill one up).
"""

from __future__ import annotations

import base64
from typing import Any

from .. import storage
from ..errors import FIELD_TYPE_ERROR, XapiError
from ..pool import SimPool
from ..schema import coerce
from .registry import Registry

methods = Registry()


@methods.api("sim.write_vdi")
async def sim_write_vdi(pool: SimPool, _s: str, vdi: Any, offset: Any, data: Any) -> Any:
    """Write guest data: what a running VM would do between backups."""
    pool.db.get("VDI", vdi)
    raw = base64.b64decode(str(data), validate=True)
    pool.disks.write_vdi(vdi, coerce("int", offset), raw)
    return ""


@methods.api("sim.read_vdi")
async def sim_read_vdi(pool: SimPool, _s: str, vdi: Any, offset: Any, length: Any) -> Any:
    pool.db.get("VDI", vdi)
    off, n = coerce("int", offset), coerce("int", length)
    with pool.vdi_path(vdi).open("rb") as f:
        data = storage.read_block(f.fileno(), off, n)
    return base64.b64encode(data).decode()


@methods.api("sim.vdi_path")
async def sim_vdi_path(pool: SimPool, _s: str, vdi: Any) -> Any:
    pool.db.get("VDI", vdi)
    return str(pool.vdi_path(vdi))


@methods.api("sim.inject_fault")
async def sim_inject_fault(pool: SimPool, _s: str, kind: Any, params: Any) -> Any:
    if not isinstance(params, dict):
        raise XapiError(FIELD_TYPE_ERROR, "params")
    if kind == "sr_full":
        pool.db.get("SR", params.get("sr"))
    return pool.faults.inject(str(kind), params).id


@methods.api("sim.clear_faults")
async def sim_clear_faults(pool: SimPool, _s: str, fault_id: Any = "") -> Any:
    pool.faults.clear(str(fault_id) or None)
    return ""


@methods.api("sim.list_faults")
async def sim_list_faults(pool: SimPool, _s: str) -> Any:
    return [f.as_dict() for f in pool.faults.active]


@methods.api("sim.transfer_stats")
async def sim_transfer_stats(pool: SimPool, _s: str) -> Any:
    """Every disk transfer since the last reset, with the body bytes it moved."""
    return pool.wire.as_dict()


@methods.api("sim.reset_transfer_stats")
async def sim_reset_transfer_stats(pool: SimPool, _s: str) -> Any:
    pool.wire.reset()
    return ""


@methods.api("sim.set_sr_size")
async def sim_set_sr_size(pool: SimPool, _s: str, sr: Any, size: Any) -> Any:
    """Make an SR this big (bytes): a small one fills up, as a real one does."""
    pool.db.get("SR", sr)
    value = coerce("int", size)
    if value < 0:
        raise XapiError(FIELD_TYPE_ERROR, "size")
    pool.db.set("SR", sr, physical_size=value)
    return ""
