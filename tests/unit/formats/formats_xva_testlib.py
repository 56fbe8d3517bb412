"""A one-disk VM for the XVA tests, built with the codec alone (imported, not a conftest).

The appliance's own VM (image/appliance_xva.py) is tested with the image code;
these records are the least a VM with one disk needs, with the appliance's
ids so that member names read the same in both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from xenkeep.formats import xva

MIB = 1 << 20
VM_UUID = "3f1d4c2a-9b7e-4d5f-8a6b-0c1d2e3f4a5b"
VM, VBD, VDI, SR = "Ref:000", "Ref:001", "Ref:002", "Ref:004"


def make_disk(path: Path, size: int) -> bytes:
    """A sparse disk: data in chunks 0, 2 and a partial last chunk, an explicit
    zero-filled chunk 3 (read, not a hole) and holes elsewhere."""
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(100)
        f.write(b"boot sector" * 10)
        f.seek(2 * MIB + 4096)
        f.write(os.urandom(300_000))
        f.seek(3 * MIB)
        f.write(bytes(MIB))
        f.seek(size - 700)
        f.write(b"tail" * 100)
    return path.read_bytes()


def vm_objects(size: int) -> list[xva.XvaObject]:
    """A halted VM whose one disk (VDI ``Ref:002``) has ``size`` bytes."""
    return [
        xva.XvaObject("VM", VM, xva.complete_record("VM", {"uuid": VM_UUID, "VBDs": [VBD]})),
        xva.XvaObject(
            "VBD",
            VBD,
            xva.complete_record("VBD", {"VM": VM, "VDI": VDI, "userdevice": "0", "type": "Disk"}),
        ),
        xva.XvaObject(
            "VDI",
            VDI,
            xva.complete_record("VDI", {"SR": SR, "VBDs": [VBD], "virtual_size": size}),
        ),
        xva.XvaObject("SR", SR, xva.complete_record("SR", {"VDIs": [VDI], "type": "ext"})),
    ]


def ova(size: int = 2 * MIB) -> bytes:
    """ova.xml of :func:`vm_objects`."""
    return xva.render_ova_xml(xva.XvaVersion(), vm_objects(size))


def write_vm(out: BinaryIO, size: int, image: Path, *, mtime: int) -> xva.XvaWriteStats:
    """The archive of :func:`vm_objects` with the raw disk ``image``."""
    return xva.write_xva(out, xva.XvaVersion(), vm_objects(size), {VDI: image}, mtime=mtime)
