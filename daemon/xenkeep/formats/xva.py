"""XVA: a whole VM (metadata and disks) as XAPI's ``/export`` and ``/import`` carry it.

Layout (POSIX ustar archive; XAPI also sends and accepts it gzip- or
zstd-compressed: the writer writes it uncompressed, the reader also takes
gzip)::

    ova.xml                     first member, always
    Ref:002/00000000            1 MiB of disk data of the VDI whose object id is Ref:002
    Ref:002/00000000.xxhash     XXH64 of that chunk, 16 upper-case hex digits
    Ref:002/00000007            all-zero chunks are left out, except the first and last
    Ref:002/00000007.xxhash
    ...                         chunk numbers strictly increase within a VDI
    Ref:003/00000000            VDI directories in lexicographic order of their ids
    ...
    <two 512-byte zero blocks>  end of archive

``ova.xml`` is one XML-RPC ``<value>``: a struct with ``version`` (hostname,
date, product_version, product_brand, build_number, xapi_major, xapi_minor,
export_vsn = 2) and ``objects``, an array of ``{class, id, snapshot}`` where
``snapshot`` is the complete XAPI record of a VM, VBD, VDI, VIF, SR or network
(see :mod:`xenkeep.formats.xapi_records`). References between records use the
archive's ``Ref:<n>`` ids or ``OpaqueRef:NULL``. Integers are written as plain
strings, as XAPI does. Older exports use ``<chunk>.checksum`` (SHA-1, lower-case
hex) instead of ``.xxhash``; the reader accepts both.

A chunk is 1 MiB except the last one of a disk whose size is not a multiple of
1 MiB. Holes in the disk are the chunks that are absent: the importer writes
nothing there, so the VDI reads zeros.

The writer is deterministic: member order, headers (mode 0644, uid/gid 0,
owner ``root``), the mtime and every UUID are inputs, so the same inputs give
the same bytes. Memory use is one chunk, whatever the disk size.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import re
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol
from xml.sax.saxutils import escape

import xxhash

from .errors import XvaFormatError
from .xapi_records import ENUM_DEFAULTS, FIELDS, VALUE_DEFAULTS

CHUNK_SIZE: Final = 1 << 20
BLOCK: Final = 512
OVA_XML: Final = "ova.xml"
NULL_REF: Final = "OpaqueRef:NULL"
#: Highest XAPI datamodel version an XVA may claim: hosts refuse newer ones.
XAPI_MAJOR: Final = 1
XAPI_MINOR: Final = 20
EXPORT_VSN: Final = 2
#: ova.xml of a VM with many disks is a few hundred KiB; anything near this
#: bound is not an XVA and must not be loaded into memory.
MAX_OVA_XML: Final = 64 << 20
GIB: Final = 1 << 30

_ZERO_CHUNK: Final = bytes(CHUNK_SIZE)
_CHUNK_RE: Final = re.compile(r"^(Ref:[^/]+)/(\d{8})(\.xxhash|\.checksum)?$")
_XML_INVALID: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DATETIME_FMT: Final = "%Y%m%dT%H:%M:%SZ"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_DEPTH: Final = 16

ProgressFn = Callable[[int], None]


class SupportsRead(Protocol):
    """Anything with a blocking ``read(n)``: a file, a socket file, an HTTP body."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; empty at the end of the stream."""
        ...


# --------------------------------------------------------------------------
# ova.xml: records and XML-RPC encoding


@dataclass(frozen=True)
class XvaVersion:
    """The ``version`` struct of ova.xml; XAPI checks only xapi_major/minor."""

    hostname: str = "xenkeep"
    date: str = "1970-01-01"
    product_version: str = "0"
    product_brand: str = "XenKeep"
    build_number: str = "0"
    xapi_major: int = XAPI_MAJOR
    xapi_minor: int = XAPI_MINOR
    export_vsn: int = EXPORT_VSN

    def as_struct(self) -> dict[str, Any]:
        """The struct in the field order XAPI writes."""
        return {
            "hostname": self.hostname,
            "date": self.date,
            "product_version": self.product_version,
            "product_brand": self.product_brand,
            "build_number": self.build_number,
            "xapi_major": self.xapi_major,
            "xapi_minor": self.xapi_minor,
            "export_vsn": self.export_vsn,
        }


@dataclass(frozen=True)
class XvaObject:
    """One entry of ova.xml's ``objects``: a record of class ``cls`` with id ``Ref:<n>``."""

    cls: str
    id: str
    snapshot: Mapping[str, Any]


def complete_record(cls: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Return a record of XAPI class ``cls`` with every field present.

    Fields in ``values`` override the defaults; each value is coerced to the
    field's kind so that it is encoded the way XAPI expects. Unknown keys are
    an error, because a typo would otherwise silently keep a default.
    """
    try:
        table = FIELDS[cls]
    except KeyError:
        raise ValueError(f"no field table for XAPI class {cls!r}") from None
    known = {name for name, _ in table}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls} fields: {', '.join(unknown)}")
    record: dict[str, Any] = {}
    for name, kind in table:
        if name in values:
            record[name] = _coerce(kind, values[name], f"{cls}.{name}")
        else:
            record[name] = _default(cls, name, kind)
    return record


def _default(cls: str, name: str, kind: str) -> Any:
    if (cls, name) in VALUE_DEFAULTS:
        return VALUE_DEFAULTS[(cls, name)]
    neutral: dict[str, Any] = {
        "str": "",
        "int": 0,
        "float": 0.0,
        "bool": False,
        "datetime": _EPOCH,
        "ref": NULL_REF,
        "enum": ENUM_DEFAULTS.get((cls, name), ""),
    }
    if kind == "set":
        return []
    if kind == "map":
        return {}
    return neutral[kind]


def _coerce(kind: str, value: Any, where: str) -> Any:
    if kind in ("str", "ref", "enum"):
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, not {type(value).__name__}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be a boolean")
        return value
    if kind == "datetime":
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError(f"{where} must be an aware datetime")
        return value
    if kind == "set":
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValueError(f"{where} must be a sequence")
        return list(value)
    if kind == "map":
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping")
        return {str(k): v for k, v in value.items()}
    raise ValueError(f"{where}: unknown field kind {kind!r}")


def _xml_text(text: str) -> str:
    if _XML_INVALID.search(text):
        raise ValueError(f"string not representable in XML: {text!r}")
    return escape(text)


def _encode_value(value: Any, out: list[str]) -> None:
    # XAPI writes int64 as bare strings and reads them back with
    # Int64.of_string; typed <i4> would overflow for sizes above 2 GiB.
    if isinstance(value, bool):
        out.append(f"<value><boolean>{int(value)}</boolean></value>")
    elif isinstance(value, int):
        out.append(f"<value>{value}</value>")
    elif isinstance(value, float):
        out.append(f"<value><double>{value!r}</double></value>")
    elif isinstance(value, str):
        out.append(f"<value>{_xml_text(value)}</value>")
    elif isinstance(value, dt.datetime):
        stamp = value.astimezone(dt.UTC).strftime(_DATETIME_FMT)
        out.append(f"<value><dateTime.iso8601>{stamp}</dateTime.iso8601></value>")
    elif isinstance(value, Mapping):
        out.append("<value><struct>")
        for key, item in value.items():
            out.append(f"<member><name>{_xml_text(str(key))}</name>")
            _encode_value(item, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(value, list | tuple):
        out.append("<value><array><data>")
        for item in value:
            _encode_value(item, out)
        out.append("</data></array></value>")
    else:
        raise ValueError(f"cannot encode {type(value).__name__} in XML-RPC")


def render_ova_xml(version: XvaVersion, objects: Sequence[XvaObject]) -> bytes:
    """Encode the ova.xml document for ``objects`` (UTF-8, no declaration, like XAPI)."""
    doc = {
        "version": version.as_struct(),
        "objects": [{"class": o.cls, "id": o.id, "snapshot": dict(o.snapshot)} for o in objects],
    }
    out: list[str] = []
    _encode_value(doc, out)
    return "".join(out).encode("utf-8")


# --------------------------------------------------------------------------
# The appliance VM


@dataclass(frozen=True)
class ApplianceSpec:
    """A halted HVM (BIOS) VM with one bootable disk and one VIF.

    ``vm_uuid`` fixes every UUID of the archive: those not given are derived
    from it (UUIDv5), so a build passing the same values gets the same bytes.
    The SR and network records are placeholders: on import XAPI looks the SR
    up by UUID (absent, so the import's ``sr_id`` or the pool default is used)
    and the network by name label, then by bridge (``xenbr0`` is the first
    physical NIC's network on every XenServer/XCP-ng host).
    """

    name: str
    description: str
    disk_size: int
    vm_uuid: str
    vcpus: int = 2
    memory: int = 2 * GIB
    vdi_uuid: str | None = None
    vbd_uuid: str | None = None
    vif_uuid: str | None = None
    sr_uuid: str | None = None
    network_uuid: str | None = None
    vdi_name: str | None = None
    vdi_description: str = ""
    other_config: Mapping[str, str] = field(default_factory=dict)
    tags: Sequence[str] = ()
    platform: Mapping[str, str] = field(default_factory=dict)
    network_name: str = "Pool-wide network associated with eth0"
    network_bridge: str = "xenbr0"
    #: Disk first: the appliance boots from its disk; an ISO attached for
    #: rescue needs an explicit boot-order change.
    boot_order: str = "cd"
    product_version: str = "0"
    build_number: str = "0"
    hostname: str = "xenkeep-build"

    def uuid_for(self, role: str) -> str:
        """The UUID of the record playing ``role`` (vm, vdi, vbd, vif, sr, network)."""
        given = getattr(self, f"{role}_uuid")
        if given:
            return str(uuid.UUID(given))
        return str(uuid.uuid5(uuid.UUID(self.vm_uuid), f"xenkeep-xva-{role}"))


#: Platform keys XenServer's "Other install media" template sets for an HVM
#: guest; viridian off because the appliance runs Linux.
DEFAULT_PLATFORM: Final[Mapping[str, str]] = {
    "timeoffset": "0",
    "device-model": "qemu-upstream-compat",
    "viridian": "false",
    "acpi": "1",
    "apic": "true",
    "pae": "true",
    "nx": "true",
    "hpet": "true",
    "vga": "std",
    "videoram": "8",
    "secureboot": "false",
}

#: Ids of the appliance's records. Zero-padded so that lexicographic order
#: (the order XAPI streams VDIs in) equals numeric order.
VM_REF: Final = "Ref:000"
VBD_REF: Final = "Ref:001"
VDI_REF: Final = "Ref:002"
VIF_REF: Final = "Ref:003"
SR_REF: Final = "Ref:004"
NETWORK_REF: Final = "Ref:005"


def appliance_objects(spec: ApplianceSpec) -> list[XvaObject]:
    """The six complete records (VM, VBD, VDI, VIF, SR, network) of ``spec``."""
    if spec.disk_size <= 0:
        raise ValueError("disk_size must be positive")
    if spec.vcpus <= 0 or spec.memory <= 0:
        raise ValueError("vcpus and memory must be positive")
    vm = complete_record(
        "VM",
        {
            "uuid": spec.uuid_for("vm"),
            "name_label": spec.name,
            "name_description": spec.description,
            "memory_static_max": spec.memory,
            "memory_dynamic_max": spec.memory,
            "memory_dynamic_min": spec.memory,
            "memory_static_min": spec.memory,
            "VCPUs_max": spec.vcpus,
            "VCPUs_at_startup": spec.vcpus,
            "VBDs": [VBD_REF],
            "VIFs": [VIF_REF],
            "HVM_boot_policy": "BIOS order",
            "HVM_boot_params": {"order": spec.boot_order, "firmware": "bios"},
            "platform": {**DEFAULT_PLATFORM, **spec.platform},
            "other_config": dict(spec.other_config),
            "tags": list(spec.tags),
            "domain_type": "hvm",
        },
    )
    vbd = complete_record(
        "VBD",
        {
            "uuid": spec.uuid_for("vbd"),
            "VM": VM_REF,
            "VDI": VDI_REF,
            "device": "xvda",
            "userdevice": "0",
            "bootable": True,
            "mode": "RW",
            "type": "Disk",
        },
    )
    vdi = complete_record(
        "VDI",
        {
            "uuid": spec.uuid_for("vdi"),
            "name_label": spec.vdi_name or spec.name,
            "name_description": spec.vdi_description,
            "SR": SR_REF,
            "VBDs": [VBD_REF],
            "virtual_size": spec.disk_size,
            "physical_utilisation": spec.disk_size,
            "type": "user",
        },
    )
    # An empty MAC with MAC_autogenerated lets the importing host pick one
    # (XAPI blanks it anyway unless the import is a full restore).
    vif = complete_record(
        "VIF",
        {
            "uuid": spec.uuid_for("vif"),
            "device": "0",
            "network": NETWORK_REF,
            "VM": VM_REF,
            "MAC": "",
            "MAC_autogenerated": True,
            "MTU": 1500,
        },
    )
    sr = complete_record(
        "SR",
        {
            "uuid": spec.uuid_for("sr"),
            "name_label": "Local storage",
            "VDIs": [VDI_REF],
            "type": "ext",
            "content_type": "user",
        },
    )
    network = complete_record(
        "network",
        {
            "uuid": spec.uuid_for("network"),
            "name_label": spec.network_name,
            "VIFs": [VIF_REF],
            "bridge": spec.network_bridge,
            "MTU": 1500,
        },
    )
    return [
        XvaObject("VM", VM_REF, vm),
        XvaObject("VBD", VBD_REF, vbd),
        XvaObject("VDI", VDI_REF, vdi),
        XvaObject("VIF", VIF_REF, vif),
        XvaObject("SR", SR_REF, sr),
        XvaObject("network", NETWORK_REF, network),
    ]


def appliance_version(spec: ApplianceSpec, mtime: int) -> XvaVersion:
    """The version struct of an appliance XVA built at ``mtime``."""
    date = dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%d")
    return XvaVersion(
        hostname=spec.hostname,
        date=date,
        product_version=spec.product_version,
        build_number=spec.build_number,
    )


# --------------------------------------------------------------------------
# Writer


def _octal(value: int, width: int) -> bytes:
    digits = b"%o" % value
    if len(digits) > width - 1:
        raise ValueError(f"{value} does not fit a {width}-byte tar field")
    return digits.rjust(width - 1, b"0") + b"\0"


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    raw_name = name.encode("ascii")
    if len(raw_name) > 100:
        raise ValueError(f"tar member name too long: {name!r}")
    h = bytearray(BLOCK)
    h[0 : len(raw_name)] = raw_name
    h[100:108] = _octal(0o644, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(mtime, 12)
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[265:269] = b"root"
    h[297:301] = b"root"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def xxhash_hex(data: bytes) -> str:
    """The ``.xxhash`` member content for ``data``: XXH64, seed 0, 16 upper-case hex."""
    return f"{xxhash.xxh64_intdigest(data):016X}"


def chunk_name(vdi_id: str, index: int) -> str:
    """Member name of chunk ``index`` of VDI ``vdi_id`` (``Ref:2/00000003``)."""
    return f"{vdi_id}/{index:08d}"


@dataclass
class VdiWriteStats:
    """What :meth:`XvaWriter.add_vdi` wrote for one disk."""

    chunks_written: int = 0
    chunks_skipped: int = 0
    bytes_read: int = 0


class XvaWriter:
    """Streams an XVA archive to ``out``, enforcing the member order XAPI needs.

    Call :meth:`add_ova_xml` once, then :meth:`add_vdi` (or :meth:`add_chunk`)
    for each VDI in increasing id order, then :meth:`close`.
    """

    def __init__(self, out: BinaryIO, *, mtime: int) -> None:
        if mtime < 0:
            raise ValueError("mtime must not be negative")
        self._out = out
        self._mtime = mtime
        self._state = "start"
        self._vdi: str | None = None
        self._last_index = -1
        self._done_vdis: list[str] = []
        self.bytes_written = 0

    def _member(self, name: str, data: bytes) -> None:
        self._out.write(_tar_header(name, len(data), self._mtime))
        self._out.write(data)
        pad = -len(data) % BLOCK
        if pad:
            self._out.write(bytes(pad))
        self.bytes_written += BLOCK + len(data) + pad

    def add_ova_xml(self, data: bytes) -> None:
        """Write ``ova.xml``; it must be the first member."""
        if self._state != "start":
            raise ValueError("ova.xml must be the first member")
        self._member(OVA_XML, data)
        self._state = "disks"

    def add_chunk(self, vdi_id: str, index: int, data: bytes) -> None:
        """Write one chunk and its ``.xxhash`` member.

        Chunks of a VDI must come with increasing ``index``; VDIs in increasing
        lexicographic order of their ids, each one once.
        """
        if self._state != "disks":
            raise ValueError("chunks go after ova.xml and before close()")
        if not _CHUNK_RE.match(chunk_name(vdi_id, index)) or index < 0:
            raise ValueError(f"bad chunk name for VDI {vdi_id!r} index {index}")
        if len(data) > CHUNK_SIZE or not data:
            raise ValueError(f"chunk of {len(data)} bytes; 1 .. {CHUNK_SIZE} allowed")
        if vdi_id != self._vdi:
            if self._vdi is not None:
                self._done_vdis.append(self._vdi)
            if self._done_vdis and vdi_id <= self._done_vdis[-1]:
                raise ValueError(f"VDI {vdi_id} after {self._done_vdis[-1]}: ids must increase")
            self._vdi = vdi_id
            self._last_index = -1
        if index <= self._last_index:
            raise ValueError(f"chunk {index} of {vdi_id} after chunk {self._last_index}")
        self._last_index = index
        name = chunk_name(vdi_id, index)
        self._member(name, data)
        self._member(name + ".xxhash", xxhash_hex(data).encode("ascii"))

    def add_vdi(
        self,
        vdi_id: str,
        src: BinaryIO,
        size: int,
        *,
        progress: ProgressFn | None = None,
    ) -> VdiWriteStats:
        """Write a VDI of ``size`` bytes read from ``src``, leaving out zero chunks.

        ``src`` is read sequentially from its current position. If it ends
        before ``size`` bytes the rest of the disk is zeros (a raw image that
        is smaller than the virtual disk). When ``src`` is a regular file, its
        holes are found with ``SEEK_DATA`` and never read. ``progress`` gets
        the disk bytes covered after each chunk.
        """
        if size <= 0:
            raise ValueError("VDI size must be positive")
        stats = VdiWriteStats()
        last = (size - 1) // CHUNK_SIZE
        holes = _HoleFinder(src)
        eof = False
        for index in range(last + 1):
            length = min(CHUNK_SIZE, size - index * CHUNK_SIZE)
            data = b""
            if not eof:
                if holes.is_hole(index * CHUNK_SIZE, length):
                    src.seek(index * CHUNK_SIZE + length + holes.base)
                    data = _ZERO_CHUNK[:length]
                else:
                    if holes.active:
                        # SEEK_DATA moved the shared file offset under the
                        # buffered reader: put it back where this chunk starts.
                        src.seek(holes.base + index * CHUNK_SIZE)
                    data = _read_upto(src, length)
                    stats.bytes_read += len(data)
                    if len(data) < length:
                        eof = True
                        data += bytes(length - len(data))
            if not data:
                data = _ZERO_CHUNK[:length]
            if index in (0, last) or data != _ZERO_CHUNK[:length]:
                self.add_chunk(vdi_id, index, data)
                stats.chunks_written += 1
            else:
                stats.chunks_skipped += 1
            if progress is not None:
                progress(index * CHUNK_SIZE + length)
        return stats

    def close(self) -> None:
        """Write the end-of-archive marker (two zero blocks) and flush."""
        if self._state != "disks":
            raise ValueError("close() needs ova.xml to have been written, once")
        self._out.write(bytes(2 * BLOCK))
        self.bytes_written += 2 * BLOCK
        self._out.flush()
        self._state = "closed"


def _read_upto(src: SupportsRead, n: int) -> bytes:
    parts: list[bytes] = []
    remaining = n
    while remaining:
        piece = src.read(remaining)
        if not piece:
            break
        parts.append(piece)
        remaining -= len(piece)
    return b"".join(parts)


class _HoleFinder:
    """Answers "is this range a hole?" for regular files, "no" for anything else."""

    def __init__(self, src: BinaryIO) -> None:
        self._fd: int | None = None
        self.base = 0
        self._next_data = 0
        try:
            fd = src.fileno()
            self.base = src.tell()
        except (OSError, ValueError, AttributeError):
            return
        try:
            self._next_data = os.lseek(fd, self.base, os.SEEK_DATA) - self.base
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                return  # pipes, sockets, file systems without SEEK_DATA
            self._next_data = -1  # no data at or after base: the rest is one hole
        self._fd = fd

    @property
    def active(self) -> bool:
        """True when holes are looked up with SEEK_DATA on the source's fd."""
        return self._fd is not None

    def is_hole(self, offset: int, length: int) -> bool:
        if self._fd is None:
            return False
        if self._next_data == -1:
            return True
        if self._next_data >= offset + length:
            return True
        if self._next_data > offset:
            return False
        try:
            self._next_data = os.lseek(self._fd, self.base + offset, os.SEEK_DATA) - self.base
        except OSError:
            self._next_data = -1
            return True
        return self._next_data >= offset + length


@dataclass
class XvaWriteStats:
    """Figures of one :func:`write_xva` run."""

    bytes_written: int
    chunks_written: int
    chunks_skipped: int


def write_xva(
    out: BinaryIO,
    spec: ApplianceSpec,
    raw_disk_path: Path,
    *,
    mtime: int,
    progress: ProgressFn | None = None,
) -> XvaWriteStats:
    """Stream the appliance VM ``spec`` with the raw disk image at ``raw_disk_path``.

    The image may be smaller than ``spec.disk_size`` (the rest of the disk is
    zeros), never larger. ``mtime`` is the only timestamp in the archive
    (pass ``SOURCE_DATE_EPOCH``).
    """
    image_size = Path(raw_disk_path).stat().st_size
    if image_size > spec.disk_size:
        raise ValueError(f"raw image of {image_size} bytes exceeds disk_size {spec.disk_size}")
    writer = XvaWriter(out, mtime=mtime)
    writer.add_ova_xml(render_ova_xml(appliance_version(spec, mtime), appliance_objects(spec)))
    with Path(raw_disk_path).open("rb") as src:
        stats = writer.add_vdi(VDI_REF, src, spec.disk_size, progress=progress)
    writer.close()
    return XvaWriteStats(writer.bytes_written, stats.chunks_written, stats.chunks_skipped)


# --------------------------------------------------------------------------
# Reader


@dataclass(frozen=True)
class XvaHeader:
    """The decoded ova.xml: ``version`` struct and ``objects`` in archive order."""

    version: Mapping[str, Any]
    objects: tuple[XvaObject, ...]

    def vdi_sizes(self) -> dict[str, int]:
        """Virtual size of each VDI object, by id."""
        sizes: dict[str, int] = {}
        for obj in self.objects:
            if obj.cls == "VDI":
                raw = obj.snapshot.get("virtual_size")
                try:
                    sizes[obj.id] = int(raw)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise XvaFormatError(
                        f"ova.xml: VDI {obj.id} has no valid virtual_size ({raw!r})"
                    ) from None
                if sizes[obj.id] < 0:
                    raise XvaFormatError(f"ova.xml: VDI {obj.id} has a negative virtual_size")
        return sizes

    def find(self, cls: str) -> list[XvaObject]:
        """The objects of class ``cls``."""
        return [o for o in self.objects if o.cls == cls]


@dataclass(frozen=True)
class XvaChunk:
    """One verified chunk of disk data: bytes at ``index * CHUNK_SIZE`` of VDI ``vdi_id``."""

    vdi_id: str
    index: int
    data: bytes
    checksum: str  # "xxhash" or "sha1"

    @property
    def offset(self) -> int:
        """Byte offset of the chunk in its disk."""
        return self.index * CHUNK_SIZE


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    typeflag: bytes


class _TarStream:
    """A strict, streaming ustar/GNU/pax reader that reports truncation precisely."""

    def __init__(self, src: SupportsRead) -> None:
        self._src = src
        self.offset = 0

    def _read(self, n: int, what: str) -> bytes:
        data = _read_upto(self._src, n)
        self.offset += len(data)
        if len(data) < n:
            raise XvaFormatError(
                f"truncated archive: {what} ends after {len(data)} of {n} bytes "
                f"(archive offset {self.offset})"
            )
        return data

    def _header(self) -> bytes | None:
        block = _read_upto(self._src, BLOCK)
        self.offset += len(block)
        if not block:
            raise XvaFormatError(
                f"truncated archive: no end-of-archive marker (archive offset {self.offset})"
            )
        if len(block) < BLOCK:
            raise XvaFormatError(
                f"truncated archive: partial tar header at offset {self.offset - len(block)}"
            )
        if block == bytes(BLOCK):
            second = _read_upto(self._src, BLOCK)
            self.offset += len(second)
            if second != bytes(BLOCK):
                raise XvaFormatError(
                    "truncated archive: end-of-archive marker is not two zero blocks "
                    f"(archive offset {self.offset})"
                )
            return None
        return block

    def next(self) -> _Member | None:
        """Header of the next file member (pax and GNU long names folded in), or None at end."""
        long_name: str | None = None
        while True:
            start = self.offset
            block = self._header()
            if block is None:
                if long_name is not None:
                    raise XvaFormatError("archive ends after an extended header")
                return None
            _check_header_sum(block, start)
            size = _parse_size(block[124:136], start)
            typeflag = block[156:157]
            if typeflag in (b"x", b"g", b"L"):
                if size > 1 << 20:
                    raise XvaFormatError(f"extended header of {size} bytes at offset {start}")
                payload = self._read(size, "extended header")
                self.skip_padding(size)
                if typeflag == b"x":
                    long_name = _pax_path(payload, start) or long_name
                elif typeflag == b"L":
                    long_name = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
                continue
            name = _header_name(block)
            if long_name is not None:
                name, long_name = long_name, None
            return _Member(name, size, typeflag)

    def read_data(self, member: _Member) -> bytes:
        data = self._read(member.size, f"member {member.name!r}")
        self.skip_padding(member.size)
        return data

    def skip_padding(self, size: int) -> None:
        pad = -size % BLOCK
        if pad:
            self._read(pad, "member padding")


def _check_header_sum(block: bytes, offset: int) -> None:
    field_ = block[148:156].split(b"\0", 1)[0].strip()
    try:
        stored = int(field_, 8)
    except ValueError:
        raise XvaFormatError(f"not a tar header at archive offset {offset}") from None
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + b" " * 8 + block[156:])
    if stored not in (unsigned, signed):
        raise XvaFormatError(f"bad tar header checksum at archive offset {offset}")


def _parse_size(raw: bytes, offset: int) -> int:
    if raw[0] & 0x80:
        # GNU base-256 for members of 8 GiB and more.
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise XvaFormatError(f"bad size field in tar header at offset {offset}") from None


def _header_name(block: bytes) -> str:
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace")


def _pax_path(payload: bytes, offset: int) -> str | None:
    path: str | None = None
    rest = payload
    while rest:
        length_text, _, _ = rest.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise XvaFormatError(f"bad pax header at archive offset {offset}") from None
        if length <= 0 or length > len(rest):
            raise XvaFormatError(f"bad pax record length at archive offset {offset}")
        record, rest = rest[:length], rest[length:]
        key, _, value = record[len(length_text) + 1 : -1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "replace")
    return path


def _decode_value(elem: ET.Element, where: str, depth: int = 0) -> Any:
    # XAPI records nest four levels deep; a deeper document is hostile.
    if depth > _MAX_DEPTH:
        raise XvaFormatError(f"ova.xml: values nested deeper than {_MAX_DEPTH} at {where}")
    if elem.tag != "value":
        raise XvaFormatError(f"ova.xml: expected <value> at {where}, found <{elem.tag}>")
    children = list(elem)
    if not children:
        return elem.text or ""
    if len(children) != 1:
        raise XvaFormatError(f"ova.xml: <value> with {len(children)} children at {where}")
    inner = children[0]
    text = inner.text or ""
    tag = inner.tag
    if tag == "string":
        return text
    if tag in ("int", "i4", "i8"):
        try:
            return int(text.strip())
        except ValueError:
            raise XvaFormatError(f"ova.xml: bad integer {text!r} at {where}") from None
    if tag == "boolean":
        if text.strip() not in ("0", "1"):
            raise XvaFormatError(f"ova.xml: bad boolean {text!r} at {where}")
        return text.strip() == "1"
    if tag == "double":
        try:
            return float(text.strip())
        except ValueError:
            raise XvaFormatError(f"ova.xml: bad double {text!r} at {where}") from None
    if tag == "dateTime.iso8601":
        return text.strip()
    if tag == "struct":
        struct: dict[str, Any] = {}
        for member in inner:
            name_el = member.find("name")
            value_el = member.find("value")
            if member.tag != "member" or name_el is None or value_el is None:
                raise XvaFormatError(f"ova.xml: malformed struct member at {where}")
            key = name_el.text or ""
            struct[key] = _decode_value(value_el, f"{where}.{key}", depth + 1)
        return struct
    if tag == "array":
        data = inner.find("data")
        if data is None:
            raise XvaFormatError(f"ova.xml: <array> without <data> at {where}")
        return [_decode_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(data)]
    raise XvaFormatError(f"ova.xml: unsupported XML-RPC type <{tag}> at {where}")


def parse_ova_xml(data: bytes) -> XvaHeader:
    """Decode and check the structure of an ova.xml document."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise XvaFormatError("ova.xml: document type declarations are not allowed")
    try:
        # Entity declarations are refused above, so expat cannot be made to
        # expand anything; the document is otherwise plain XML-RPC.
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError as exc:
        raise XvaFormatError(f"ova.xml is not well-formed XML: {exc}") from None
    doc = _decode_value(root, "ova.xml")
    if not isinstance(doc, dict):
        raise XvaFormatError("ova.xml: top-level value is not a struct")
    version = doc.get("version")
    objects = doc.get("objects")
    if not isinstance(version, dict):
        raise XvaFormatError("ova.xml: missing 'version' struct")
    if not isinstance(objects, list):
        raise XvaFormatError("ova.xml: missing 'objects' array")
    for key in ("xapi_major", "xapi_minor"):
        try:
            int(version[key])
        except (KeyError, TypeError, ValueError):
            raise XvaFormatError(f"ova.xml: version.{key} missing or not an integer") from None
    parsed: list[XvaObject] = []
    seen: set[str] = set()
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise XvaFormatError(f"ova.xml: objects[{i}] is not a struct")
        cls, ref, snap = obj.get("class"), obj.get("id"), obj.get("snapshot")
        if not isinstance(cls, str) or not isinstance(ref, str) or not isinstance(snap, dict):
            raise XvaFormatError(f"ova.xml: objects[{i}] lacks class, id or snapshot")
        if ref in seen:
            raise XvaFormatError(f"ova.xml: object id {ref} appears twice")
        seen.add(ref)
        parsed.append(XvaObject(cls, ref, snap))
    return XvaHeader(version, tuple(parsed))


class _Prefixed:
    """Gives back bytes already read for sniffing before the rest of the stream."""

    def __init__(self, prefix: bytes, src: SupportsRead) -> None:
        self._prefix = prefix
        self._src = src

    def read(self, size: int = -1, /) -> bytes:
        if self._prefix:
            take = self._prefix if size < 0 else self._prefix[:size]
            self._prefix = self._prefix[len(take) :]
            return take
        return self._src.read(size)


class _Gunzip:
    """Streaming gzip decoding with bounded buffers and format errors, not zlib's."""

    def __init__(self, src: SupportsRead) -> None:
        self._src = src
        self._z = zlib.decompressobj(wbits=31)
        self._buf = bytearray()

    def read(self, size: int = -1, /) -> bytes:
        want = CHUNK_SIZE if size < 0 else size
        while len(self._buf) < want and not self._z.eof:
            tail = self._z.unconsumed_tail
            if not tail:
                tail = self._src.read(1 << 16)
                if not tail:
                    raise XvaFormatError("truncated archive: the gzip stream ends early")
            try:
                self._buf += self._z.decompress(tail, CHUNK_SIZE)
            except zlib.error as exc:
                raise XvaFormatError(f"corrupt gzip stream: {exc}") from None
        out = bytes(self._buf[:want])
        del self._buf[:want]
        return out


_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


def _open_archive(src: SupportsRead) -> SupportsRead:
    head = _read_upto(src, 4)
    if head.startswith(_GZIP_MAGIC):
        return _Gunzip(_Prefixed(head, src))
    if head == _ZSTD_MAGIC:
        raise XvaFormatError(
            "zstd-compressed XVA: not supported here; export uncompressed or with gzip"
        )
    return _Prefixed(head, src)


def iter_xva(src: SupportsRead) -> Iterator[XvaHeader | XvaChunk]:
    """Read an XVA from ``src``, yielding the header then verified chunks.

    The archive may be plain tar or gzip-compressed (``use_compression=true``).

    Checks, in stream order: ova.xml first and well-formed; every chunk
    followed by its ``.xxhash`` or ``.checksum`` member with a matching sum;
    chunk numbers strictly increasing within a VDI, starting at 0, within
    the VDI's virtual size and ending with its last chunk; VDI directories in
    increasing order, each once, each one declared in ova.xml; the archive
    ending with the end-of-archive marker. Any violation raises
    :class:`XvaFormatError`; chunks are yielded only once their sum matched.
    """
    tar = _TarStream(_open_archive(src))
    first = tar.next()
    if first is None:
        raise XvaFormatError("empty archive: no ova.xml")
    if first.name == OVA_XML and first.typeflag not in (b"0", b"\0"):
        raise XvaFormatError("ova.xml is not a regular file")
    if first.name != OVA_XML:
        raise XvaFormatError(f"first member is {first.name!r}, expected 'ova.xml'")
    if first.size > MAX_OVA_XML:
        raise XvaFormatError(f"ova.xml of {first.size} bytes is implausibly large")
    header = parse_ova_xml(tar.read_data(first))
    sizes = header.vdi_sizes()
    yield header

    done: list[str] = []
    current: str | None = None
    last_index = -1
    pending: tuple[str, int, bytes] | None = None  # chunk awaiting its checksum member

    def finish_vdi(vdi: str, last: int) -> None:
        expected_last = (sizes[vdi] - 1) // CHUNK_SIZE if sizes[vdi] else -1
        if last != expected_last:
            raise XvaFormatError(
                f"VDI {vdi}: last chunk is {last:08d}, expected {expected_last:08d} "
                f"(virtual size {sizes[vdi]})"
            )

    while True:
        member = tar.next()
        if member is None:
            break
        if member.typeflag == b"5":
            continue  # directory entries carry no data; some tar tools add them
        if member.typeflag not in (b"0", b"\0"):
            raise XvaFormatError(f"member {member.name!r} is not a regular file")
        match = _CHUNK_RE.match(member.name)
        if match is None:
            raise XvaFormatError(f"unexpected member {member.name!r}")
        vdi, index, suffix = match.group(1), int(match.group(2)), match.group(3)
        if suffix:
            if pending is None or (pending[0], pending[1]) != (vdi, index):
                raise XvaFormatError(f"checksum member {member.name!r} without its chunk")
            if member.size > 128:
                raise XvaFormatError(f"checksum member {member.name!r} is {member.size} bytes")
            stored = tar.read_data(member).decode("ascii", "replace").strip()
            data = pending[2]
            if suffix == ".xxhash":
                actual, kind = xxhash_hex(data), "xxhash"
                ok = stored.upper() == actual
            else:
                actual, kind = hashlib.sha1(data, usedforsecurity=False).hexdigest(), "sha1"
                ok = stored.lower() == actual
            if not ok:
                raise XvaFormatError(
                    f"checksum mismatch for {chunk_name(vdi, index)}: "
                    f"stored {kind} {stored!r}, computed {actual}"
                )
            pending = None
            yield XvaChunk(vdi, index, data, kind)
            continue
        if pending is not None:
            raise XvaFormatError(
                f"chunk {chunk_name(pending[0], pending[1])} is not followed by its "
                f".xxhash or .checksum member (next member is {member.name!r})"
            )
        if vdi not in sizes:
            raise XvaFormatError(f"chunk {member.name!r} belongs to no VDI listed in ova.xml")
        if vdi != current:
            if current is not None:
                finish_vdi(current, last_index)
                done.append(current)
            if vdi in done:
                raise XvaFormatError(f"VDI {vdi} appears again after other VDIs")
            if done and vdi < done[-1]:
                raise XvaFormatError(f"VDI {vdi} comes after {done[-1]}: ids must increase")
            current, last_index = vdi, -1
            if index != 0:
                raise XvaFormatError(f"VDI {vdi} starts at chunk {index:08d}, not 00000000")
        if index <= last_index:
            raise XvaFormatError(
                f"chunk {member.name!r} after chunk {last_index:08d}: numbers must increase"
            )
        size = sizes[vdi]
        expected = min(CHUNK_SIZE, size - index * CHUNK_SIZE)
        if expected <= 0:
            raise XvaFormatError(f"chunk {member.name!r} lies beyond the VDI's size {size}")
        # Some writers pad the last chunk to a full MiB; the padding is dropped.
        if member.size not in (expected, CHUNK_SIZE):
            raise XvaFormatError(
                f"chunk {member.name!r} is {member.size} bytes, expected {expected}"
            )
        last_index = index
        pending = (vdi, index, tar.read_data(member))
    if pending is not None:
        raise XvaFormatError(
            f"chunk {chunk_name(pending[0], pending[1])} has no .xxhash or .checksum member"
        )
    if current is not None:
        finish_vdi(current, last_index)


@dataclass
class XvaSummary:
    """What :func:`verify_xva` found: the header and per-VDI chunk counts."""

    header: XvaHeader
    chunks: dict[str, int]
    data_bytes: int


def verify_xva(src: SupportsRead) -> XvaSummary:
    """Read the whole archive, checking everything :func:`iter_xva` checks."""
    header: XvaHeader | None = None
    chunks: dict[str, int] = {}
    data_bytes = 0
    for item in iter_xva(src):
        if isinstance(item, XvaHeader):
            header = item
            chunks = dict.fromkeys(item.vdi_sizes(), 0)
        else:
            chunks[item.vdi_id] += 1
            data_bytes += len(item.data)
    assert header is not None  # iter_xva yields the header first or raises
    return XvaSummary(header, chunks, data_bytes)


def extract_vdi(src: SupportsRead, vdi_id: str, dest: Path) -> int:
    """Write the disk of VDI ``vdi_id`` to the file ``dest`` and return its size.

    The file gets the VDI's virtual size; absent chunks stay holes. The whole
    archive is verified on the way, so a corrupt XVA never yields a file that
    looks complete: ``dest`` is only left behind when the archive is valid.
    """
    size: int | None = None
    dest = Path(dest)
    try:
        with dest.open("wb") as out:
            for item in iter_xva(src):
                if isinstance(item, XvaHeader):
                    sizes = item.vdi_sizes()
                    if vdi_id not in sizes:
                        raise XvaFormatError(f"ova.xml lists no VDI {vdi_id}")
                    size = sizes[vdi_id]
                    out.truncate(size)
                elif item.vdi_id == vdi_id:
                    assert size is not None
                    out.seek(item.offset)
                    out.write(item.data[: size - item.offset])
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    assert size is not None
    return size
