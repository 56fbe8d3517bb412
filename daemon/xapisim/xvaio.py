"""The simulator's own XVA codec (GET /export, PUT /import).

Written independently of the product's codec on purpose: a bug shared by both
sides of a test would be invisible.

An XVA is a tar archive (ustar headers of 512 bytes, bodies padded to 512)::

    ova.xml                      the VM metadata, always the first member
    Ref:3/00000000               1 MiB of disk data (the last chunk may be shorter)
    Ref:3/00000000.xxhash        XXH64 of that chunk as 16 upper-case hex digits
    Ref:3/00000002               all-zero chunks may be left out ...
    Ref:3/00000002.xxhash
    ...                          ... except the first and the last of each disk
    Ref:7/00000000               the next disk: directories in lexicographic order
    ...
    <two zero blocks>            the normal end of archive

Older exports carry ``.checksum`` members (SHA-1, 40 lower-case hex digits)
instead of ``.xxhash``; both are accepted on import. Chunk numbers are
zero-padded to 8 digits and strictly increase within a disk.

``ova.xml`` is one XML-RPC ``<value>`` as XAPI's marshaller writes it:
strings and integers as bare text (``<value>1</value>``), booleans, doubles
and dates tagged. It holds a struct ``{version: {hostname, date,
product_version, product_brand, build_number, xapi_major, xapi_minor,
export_vsn}, objects: [{class, id, snapshot}, ...]}`` where ``id`` is
``Ref:<n>`` and ``snapshot`` is the object's full record whose references
use those ids. Disks are streamed for the VDIs of non-CD VBDs whose SR is
not an ISO SR, plus suspend VDIs, each for the VDI's ``virtual_size``.

Everything streams: memory holds at most one chunk, whatever the disk size.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import re
import tarfile
import zlib
from base64 import b64decode, b64encode
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from xml.parsers import expat

import xxhash

CHUNK = 1024 * 1024
BLOCK = 512
OVA_XML = "ova.xml"
#: ova.xml of real VMs is a few hundred KiB; anything far bigger is refused
#: rather than held in memory.
MAX_OVA_XML = 64 * 1024 * 1024
DEFAULT_VERSION: dict[str, Any] = {
    "hostname": "xapisim",
    "date": "2024-01-01",
    "product_version": "8.2.1",
    "product_brand": "XCP-ng",
    "build_number": "release/yangtze/master/58",
    "xapi_major": 1,
    "xapi_minor": 20,
    "export_vsn": 2,
}
REQUIRED_VERSION_FIELDS = (
    "hostname",
    "date",
    "product_version",
    "product_brand",
    "build_number",
    "xapi_major",
    "xapi_minor",
)
_CHUNK_NAME = re.compile(r"([^/]+)/([0-9]{8})(\.xxhash|\.checksum)?")
_ZERO_CHUNK = bytes(CHUNK)
_ZERO_BLOCK = bytes(BLOCK)


class XvaError(ValueError):
    """An XVA stream or its ova.xml is malformed, truncated or inconsistent."""


# --- ova.xml -----------------------------------------------------------------------


def _escape(text: str) -> str:
    # As XAPI does: escape the markup characters, drop control characters XML forbids.
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = out.replace('"', "&quot;")
    if any(c < " " and c not in "\t\n\r" for c in out):
        out = "".join(c for c in out if c >= " " or c in "\t\n\r")
    return out


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, bool):
        out.append(f"<value><boolean>{int(value)}</boolean></value>")
    elif isinstance(value, str):
        out.append(f"<value>{_escape(value)}</value>")
    elif isinstance(value, int):
        # XAPI marshals integers as bare text, not <int>.
        out.append(f"<value>{value}</value>")
    elif isinstance(value, float):
        out.append(f"<value><double>{value!r}</double></value>")
    elif isinstance(value, dict):
        out.append("<value><struct>")
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"struct keys must be strings, got {key!r}")
            out.append(f"<member><name>{_escape(key)}</name>")
            _encode(item, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(value, list | tuple):
        out.append("<value><array><data>")
        for item in value:
            _encode(item, out)
        out.append("</data></array></value>")
    elif value is None:
        out.append("<value><nil/></value>")
    elif isinstance(value, dt.datetime):
        out.append(f"<value><dateTime.iso8601>{value:%Y%m%dT%H:%M:%SZ}</dateTime.iso8601></value>")
    elif isinstance(value, DateTime):
        out.append(f"<value><dateTime.iso8601>{value.value}</dateTime.iso8601></value>")
    elif isinstance(value, bytes):
        out.append(f"<value><base64>{b64encode(value).decode()}</base64></value>")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as XML-RPC")


@dataclass(frozen=True)
class DateTime:
    """An XML-RPC ``dateTime.iso8601`` value, kept as the text XAPI wrote."""

    value: str


def encode_value(value: Any) -> str:
    """One XML-RPC ``<value>`` in XAPI's dialect."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def build_ova_xml(
    objects: Sequence[Mapping[str, Any]], version: Mapping[str, Any] | None = None
) -> bytes:
    """Encode ova.xml from ``[{class, id, snapshot}, ...]``.

    ``version`` overrides fields of DEFAULT_VERSION (xapi 1.20, export_vsn 2,
    which every XAPI since 2012 accepts).
    """
    ver = {**DEFAULT_VERSION, **(version or {})}
    objs = []
    for n, obj in enumerate(objects):
        missing = [k for k in ("class", "id", "snapshot") if k not in obj]
        if missing:
            raise ValueError(f"object {n} lacks {', '.join(missing)}")
        objs.append({"class": obj["class"], "id": obj["id"], "snapshot": obj["snapshot"]})
    return encode_value({"version": ver, "objects": objs}).encode("utf-8")


_SCALARS = {"string", "int", "i4", "i8", "boolean", "double", "dateTime.iso8601", "base64", "nil"}
_CONTAINERS = {"value", "struct", "member", "name", "array", "data"}


class _Node:
    __slots__ = ("children", "line", "tag", "text")

    def __init__(self, tag: str, line: int) -> None:
        self.tag = tag
        self.line = line
        self.children: list[tuple[str, Any]] = []
        self.text: list[str] = []


def parse_value(data: bytes, what: str = OVA_XML) -> Any:
    """Decode one XML-RPC ``<value>``: struct -> dict, array -> list, bare text -> str.

    Integers written by XAPI as bare text stay strings (as they are on the wire);
    ``<int>``/``<i4>`` become int, ``<boolean>`` bool, ``<double>`` float,
    ``<dateTime.iso8601>`` DateTime, ``<base64>`` bytes, ``<nil/>`` None.
    """
    parser = expat.ParserCreate()
    stack: list[_Node] = []
    result: list[Any] = []

    def fail(message: str) -> XvaError:
        return XvaError(f"{what}: line {parser.CurrentLineNumber}: {message}")

    def no_doctype(*_: Any) -> None:
        # Entity declarations are how XML bombs work; XML-RPC has no use for them.
        raise fail("DOCTYPE and entity declarations are not allowed")

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag not in _SCALARS and tag not in _CONTAINERS:
            raise fail(f"unexpected element <{tag}>")
        if not stack and tag != "value":
            raise fail(f"the document must be one <value>, found <{tag}>")
        if stack and stack[-1].tag in _SCALARS - {"nil"}:
            raise fail(f"<{tag}> inside <{stack[-1].tag}>")
        stack.append(_Node(tag, parser.CurrentLineNumber))

    def text(chunk: str) -> None:
        if stack:
            stack[-1].text.append(chunk)

    def end(tag: str) -> None:
        node = stack.pop()
        value = _finish(node, fail)
        if stack:
            stack[-1].children.append((tag, value))
        else:
            result.append(value)

    parser.StartDoctypeDeclHandler = no_doctype
    parser.EntityDeclHandler = no_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XvaError(f"{what}: not well-formed XML: {exc}") from None
    if not result:
        raise XvaError(f"{what}: no <value> element")
    return result[0]


def _finish(node: _Node, fail: Any) -> Any:
    tag, kids = node.tag, node.children
    body = "".join(node.text)
    if tag in _SCALARS:
        return _scalar(tag, body, fail)
    if body.strip():
        if tag == "value" and not kids:
            return body
        if tag != "name":
            raise fail(f"text {body.strip()[:40]!r} inside <{tag}>")
    if tag == "name":
        if kids:
            raise fail("elements inside <name>")
        return body
    if tag == "value":
        if not kids:
            return body
        if len(kids) != 1 or kids[0][0] not in _SCALARS | {"struct", "array"}:
            raise fail("a <value> holds exactly one typed element")
        return kids[0][1]
    if tag == "member":
        if [k for k, _ in kids] != ["name", "value"]:
            raise fail("a <member> holds one <name> then one <value>")
        return (kids[0][1], kids[1][1])
    if tag == "struct":
        out: dict[str, Any] = {}
        for kind, (name, value) in kids:
            if kind != "member":
                raise fail(f"<{kind}> inside <struct>")
            if name in out:
                raise fail(f"duplicate struct member {name!r}")
            out[name] = value
        return out
    if tag == "array":
        if not kids:  # XAPI's parser reads <array/> as an empty array too
            return []
        if [k for k, _ in kids] != ["data"]:
            raise fail("an <array> holds one <data>")
        return kids[0][1]
    # data
    if any(kind != "value" for kind, _ in kids):
        raise fail("<data> holds only <value> elements")
    return [value for _, value in kids]


def _scalar(tag: str, body: str, fail: Any) -> Any:
    try:
        if tag == "string":
            return body
        if tag in ("int", "i4", "i8"):
            return int(body.strip())
        if tag == "boolean":
            if body.strip() not in ("0", "1"):
                raise ValueError(body)
            return body.strip() == "1"
        if tag == "double":
            return float(body.strip())
        if tag == "dateTime.iso8601":
            return DateTime(body.strip())
        if tag == "base64":
            return b64decode(body.strip(), validate=True)
        if body.strip():
            raise ValueError(body)
        return None
    except ValueError:
        raise fail(f"invalid <{tag}> {body.strip()[:40]!r}") from None


def parse_ova_xml(data: bytes) -> dict[str, Any]:
    """Decode and check ova.xml: a struct with ``version`` and ``objects``.

    Returns ``{"version": {...}, "objects": [{"class", "id", "snapshot"}, ...]}``
    with values as parse_value gives them.
    """
    root = parse_value(data)
    if not isinstance(root, dict):
        raise XvaError(f"{OVA_XML}: the top-level value must be a struct")
    for key in ("version", "objects"):
        if key not in root:
            raise XvaError(f"{OVA_XML}: no {key!r} member")
    version = root["version"]
    if not isinstance(version, dict):
        raise XvaError(f"{OVA_XML}: 'version' must be a struct")
    for key in REQUIRED_VERSION_FIELDS:
        if key not in version:
            raise XvaError(f"{OVA_XML}: version has no {key!r}")
    for key in ("xapi_major", "xapi_minor", "export_vsn"):
        if key in version and not _is_int(version[key]):
            raise XvaError(f"{OVA_XML}: version {key} {version[key]!r} is not an integer")
    objects = root["objects"]
    if not isinstance(objects, list):
        raise XvaError(f"{OVA_XML}: 'objects' must be an array")
    seen: set[str] = set()
    for n, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise XvaError(f"{OVA_XML}: object {n} is not a struct")
        for key, kind in (("class", str), ("id", str), ("snapshot", dict)):
            if not isinstance(obj.get(key), kind):
                raise XvaError(f"{OVA_XML}: object {n} has no {kind.__name__} {key!r}")
        if obj["id"] in seen:
            raise XvaError(f"{OVA_XML}: object id {obj['id']} appears twice")
        seen.add(obj["id"])
    return root


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()) is not None


def ova_version(ova: Mapping[str, Any]) -> tuple[int, int, int]:
    """(xapi_major, xapi_minor, export_vsn) of a parsed ova.xml; export_vsn 0 when absent."""
    v = ova["version"]
    return int(v["xapi_major"]), int(v["xapi_minor"]), int(v.get("export_vsn", 0))


def xva_disks(ova: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The (VDI id, virtual size) pairs whose data an XVA carries, in stream order.

    As XAPI decides: VDIs of non-CD VBDs that are not on an ISO SR, and
    suspend VDIs; streamed in lexicographic order of their ids.
    """
    objects = {o["id"]: o for o in ova["objects"]}

    def record(ref: str, cls: str, why: str) -> dict[str, Any]:
        obj = objects.get(ref)
        if obj is None or obj["class"] != cls:
            raise XvaError(f"{OVA_XML}: {why} refers to {ref}, which is not a {cls} in the export")
        snap: dict[str, Any] = obj["snapshot"]
        return snap

    def get(obj_id: str, snap: Mapping[str, Any], key: str) -> Any:
        if key not in snap:
            raise XvaError(f"{OVA_XML}: {obj_id} has no field {key!r}")
        return snap[key]

    disk_vdis: set[str] = set()
    for obj in ova["objects"]:
        if obj["class"] != "VBD":
            continue
        snap = obj["snapshot"]
        if get(obj["id"], snap, "type") == "CD":
            continue
        vdi_ref = get(obj["id"], snap, "VDI")
        if vdi_ref == "OpaqueRef:NULL":
            continue
        vdi = record(vdi_ref, "VDI", f"VBD {obj['id']}")
        sr = record(get(vdi_ref, vdi, "SR"), "SR", f"VDI {vdi_ref}")
        if get(vdi["SR"], sr, "content_type") != "iso":
            disk_vdis.add(vdi_ref)
    out: list[tuple[str, int]] = []
    for obj in ova["objects"]:
        if obj["class"] != "VDI":
            continue
        snap = obj["snapshot"]
        if obj["id"] in disk_vdis or snap.get("type") == "suspend":
            size = get(obj["id"], snap, "virtual_size")
            if not _is_int(size) or int(size) < 0:
                raise XvaError(f"{OVA_XML}: {obj['id']} virtual_size {size!r} is not a size")
            out.append((obj["id"], int(size)))
    return sorted(out)


# --- writing -----------------------------------------------------------------------


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _member(name: str, data: bytes, mtime: int) -> Iterator[bytes]:
    yield _tar_header(name, len(data), mtime)
    yield data
    if len(data) % BLOCK:
        yield _ZERO_BLOCK[: BLOCK - len(data) % BLOCK]


def chunk_checksum(data: bytes) -> bytes:
    """The ``.xxhash`` member body: XXH64 (seed 0) as 16 upper-case hex digits."""
    return xxhash.xxh64_hexdigest(data).upper().encode("ascii")


def _data_extents(fd: int, end: int) -> Iterator[tuple[int, int]]:
    pos = 0
    while pos < end:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            raise
        if start >= end:
            return
        hole = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(hole, end)
        pos = hole


def _candidate_chunks(fd: int, size: int) -> Iterator[int]:
    """Chunk indexes that may hold data, in order, always with the first and the last."""
    last = (size - 1) // CHUNK
    done = -1
    for start, end in _data_extents(fd, size):
        for index in range(max(start // CHUNK, done + 1), (end - 1) // CHUNK + 1):
            if index > 0 and done < 0:
                yield 0
                done = 0
            yield index
            done = index
    if done < 0:
        yield 0
        done = 0
    if done < last:
        yield last


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:  # past end of file: the disk reads as zeros there
            parts.append(bytes(length))
            break
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return b"".join(parts)


def xva_stream(
    ova_xml: bytes, disks: Sequence[tuple[str, Path, int]], *, mtime: int = 0
) -> Iterator[bytes]:
    """Yield an uncompressed XVA: ova.xml, then each disk's non-zero chunks with XXH64.

    ``disks`` are (VDI id, raw file, virtual size); they are written in
    lexicographic order of their ids, as XAPI reads them. All-zero chunks
    are left out except each disk's first and last. Every member gets
    ``mtime``, mode 0644 and uid/gid 0, so equal input gives equal bytes.
    """
    ids = [d[0] for d in disks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate disk ids in {ids}")
    for disk_id in ids:
        if not disk_id or "/" in disk_id or len(disk_id) > 80:
            raise ValueError(f"bad disk id {disk_id!r}")
    yield from _member(OVA_XML, ova_xml, mtime)
    for disk_id, path, size in sorted(disks, key=lambda d: d[0]):
        if size <= 0:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            last = (size - 1) // CHUNK
            for index in _candidate_chunks(fd, size):
                offset = index * CHUNK
                data = _pread_full(fd, min(CHUNK, size - offset), offset)
                if 0 < index < last and data == _ZERO_CHUNK:
                    continue
                name = f"{disk_id}/{index:08d}"
                yield from _member(name, data, mtime)
                yield from _member(name + ".xxhash", chunk_checksum(data), mtime)
        finally:
            os.close(fd)
    yield _ZERO_BLOCK * 2


# --- reading -----------------------------------------------------------------------


@dataclass(frozen=True)
class XvaHeader:
    """The first item of read_xva: ova.xml, parsed, and the disks to expect."""

    ova: dict[str, Any]
    xml: bytes
    disks: list[tuple[str, int]] = field(default_factory=list)


class XvaChunk(NamedTuple):
    """One verified chunk of disk data: bytes [offset, offset + len(data)) of disk_id.

    A tuple, so ``disk_id, index, data = chunk`` works too.
    """

    disk_id: str
    chunk_index: int
    data: bytes

    @property
    def offset(self) -> int:
        """Byte offset of the chunk in its disk."""
        return self.chunk_index * CHUNK


XvaItem = XvaHeader | XvaChunk


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    at: int


class _Input:
    """Forward-only reads, transparently un-gzipping a gzip-compressed XVA."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.pos = 0
        self.pending = b""
        self.inflate: Any = None
        head = self._raw(4)
        if head[:2] == b"\x1f\x8b":
            self.inflate = zlib.decompressobj(wbits=31)
        elif head == b"\x28\xb5\x2f\xfd":
            raise XvaError("zstd-compressed XVA: the simulator only reads plain or gzip tar")
        self.carry = head

    def _raw(self, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = self.src.read(n)
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _more(self) -> bytes:
        raw = self.carry or self.src.read(CHUNK)
        self.carry = b""
        if self.inflate is None:
            return raw
        while True:
            if not raw:
                if not self.inflate.eof:
                    raise XvaError(f"gzip stream truncated after {self.pos} bytes of archive")
                return b""
            if self.inflate.eof:
                raise XvaError("data after the end of the gzip stream")
            try:
                # Bounded output: a small input must not inflate into a huge buffer.
                out: bytes = self.inflate.decompress(raw, 4 * CHUNK)
            except zlib.error as exc:
                raise XvaError(
                    f"corrupt gzip stream after {self.pos} bytes of archive: {exc}"
                ) from None
            self.carry = self.inflate.unconsumed_tail or self.inflate.unused_data
            if out:
                return out
            raw = self.carry or self.src.read(CHUNK)
            self.carry = b""

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        if self.inflate is None:
            # Plain tar: straight from the source, no staging copies.
            head = self.carry[:n]
            self.carry = self.carry[len(head) :]
            data = head + self._raw(n - len(head)) if len(head) < n else head
            self.pos += len(data)
            return data
        parts = [self.pending[:n]]
        have = len(parts[0])
        self.pending = self.pending[have:]
        while have < n:
            chunk = self._more()
            if not chunk:
                break
            take = chunk[: n - have]
            self.pending = chunk[n - have :]
            parts.append(take)
            have += len(take)
        data = b"".join(parts)
        self.pos += len(data)
        return data


class _Tar:
    def __init__(self, src: BinaryIO) -> None:
        self.input = _Input(src)
        self.ended = False

    @property
    def pos(self) -> int:
        return self.input.pos

    def exact(self, n: int, what: str) -> bytes:
        start = self.pos
        data = self.input.read(n)
        if len(data) < n:
            raise XvaError(
                f"archive truncated at byte {self.pos}: {what} needs {n} bytes from byte {start}"
            )
        return data

    def next(self, expecting: str) -> _Member | None:
        """The next member's header, or None at the end-of-archive marker."""
        at = self.pos
        block = self.input.read(BLOCK)
        if not block:
            raise XvaError(
                f"archive truncated at byte {at}: no end-of-archive marker (expecting {expecting})"
            )
        if len(block) < BLOCK:
            raise XvaError(f"archive truncated at byte {self.pos}: partial member header")
        if block == _ZERO_BLOCK:
            if self.exact(BLOCK, "end-of-archive marker") != _ZERO_BLOCK:
                raise XvaError(f"lone zero block at byte {at} (end-of-archive needs two)")
            self._drain()
            return None
        stored_field = block[148:156]
        summed = bytearray(block)
        summed[148:156] = b" " * 8
        unsigned = sum(summed)
        try:
            stored = int(stored_field.rstrip(b"\x00 ").strip() or b"-1", 8)
        except ValueError:
            stored = -1
        # Some old tars summed signed bytes; only worth computing on a mismatch.
        if stored != unsigned and stored != sum(b - 256 if b > 127 else b for b in summed):
            raise XvaError(
                f"member header at byte {at}: checksum mismatch (stored {stored_field!r},"
                f" computed {unsigned:o})"
            )
        try:
            name = block[:100].split(b"\x00", 1)[0].decode("utf-8")
            magic = block[257:265]
            prefix = block[345:500].split(b"\x00", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            raise XvaError(f"member header at byte {at}: name is not UTF-8") from None
        if magic == b"ustar\x0000" and prefix:
            name = f"{prefix}/{name}"
        kind = block[156:157]
        if kind not in (b"0", b"\x00"):
            raise XvaError(
                f"member {name!r} at byte {at}: type {kind.decode('latin-1')!r} is not allowed"
                " (only regular files)"
            )
        size = _tar_number(block[124:136])
        if size is None:
            raise XvaError(f"member {name!r} at byte {at}: bad size field {block[124:136]!r}")
        return _Member(name, size, at)

    def body(self, member: _Member) -> bytes:
        data = self.exact(member.size, f"member {member.name!r}")
        if member.size % BLOCK:
            self.exact(BLOCK - member.size % BLOCK, f"padding of member {member.name!r}")
        return data

    def _drain(self) -> None:
        # Writers may pad to a record size; anything but zeros is a second archive or junk.
        while True:
            at = self.pos
            rest = self.input.read(CHUNK)
            if not rest:
                return
            if rest != _ZERO_CHUNK[: len(rest)]:
                raise XvaError(f"data after the end-of-archive marker at byte {at}")


def _tar_number(field_: bytes) -> int | None:
    if field_[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    text = field_.rstrip(b"\x00 ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def read_xva(src: BinaryIO, *, disks: Mapping[str, int] | None = None) -> Iterator[XvaItem]:
    """Read an XVA strictly, yielding the parsed header first, then verified chunks.

    ``src`` is read forward only (read() only); plain and gzip tar are
    accepted. The disks to expect come from ova.xml (see xva_disks) unless
    ``disks`` maps VDI ids to sizes. Each chunk is yielded only after its
    checksum member has been read and verified. Raises XvaError, naming the
    member, when ova.xml is not first or is malformed, a member is unknown,
    out of order, the wrong size or missing its checksum, a checksum differs,
    a disk is incomplete, or the archive is truncated.
    """
    tar = _Tar(src)
    first = tar.next(OVA_XML)
    if first is None or first.name != OVA_XML:
        found = "the end of the archive" if first is None else repr(first.name)
        raise XvaError(f"the first member must be {OVA_XML}, found {found}")
    if first.size > MAX_OVA_XML:
        raise XvaError(f"{OVA_XML} is {first.size} bytes, more than the {MAX_OVA_XML} allowed")
    xml = tar.body(first)
    ova = parse_ova_xml(xml)
    expected = sorted(disks.items()) if disks is not None else xva_disks(ova)
    yield XvaHeader(ova, xml, expected)
    for disk_id, size in expected:
        yield from _read_disk(tar, disk_id, size)
    extra = tar.next("the end of the archive")
    if extra is not None:
        raise XvaError(f"unexpected member {extra.name!r} after the last disk")


def _read_disk(tar: _Tar, disk_id: str, size: int) -> Iterator[XvaChunk]:
    if size <= 0:
        return
    last = (size - 1) // CHUNK
    previous = -1
    while previous < last:
        expecting = f"chunk {last:08d} of {disk_id}" if previous >= 0 else f"{disk_id}/00000000"
        member = tar.next(expecting)
        if member is None:
            raise XvaError(f"archive ends before disk {disk_id} is complete (missing {expecting})")
        match = _CHUNK_NAME.fullmatch(member.name)
        if match is None or match.group(1) != disk_id:
            raise XvaError(f"unexpected member {member.name!r} (expecting {expecting})")
        if match.group(3):
            raise XvaError(f"checksum member {member.name!r} without its chunk")
        index = int(match.group(2))
        if previous < 0 and index != 0:
            raise XvaError(f"chunk {member.name!r}: the first chunk of {disk_id} must be 00000000")
        if index <= previous:
            raise XvaError(
                f"chunk {member.name!r} is out of order (after {disk_id}/{previous:08d})"
            )
        if index > last:
            raise XvaError(f"chunk {member.name!r} lies beyond the {size}-byte disk")
        want = min(CHUNK, size - index * CHUNK)
        if member.size != want:
            raise XvaError(f"chunk {member.name!r} is {member.size} bytes, expected {want}")
        data = tar.body(member)
        _verify(tar, member.name, data)
        yield XvaChunk(disk_id, index, data)
        previous = index


def _verify(tar: _Tar, name: str, data: bytes) -> None:
    member = tar.next(f"{name}.xxhash")
    if member is None:
        raise XvaError(f"chunk {name!r} is not followed by its checksum member (archive ends)")
    if member.name == name + ".xxhash":
        computed = chunk_checksum(data)
    elif member.name == name + ".checksum":
        computed = hashlib.sha1(data, usedforsecurity=False).hexdigest().encode("ascii")
    else:
        raise XvaError(
            f"chunk {name!r} is not followed by its checksum member (found {member.name!r})"
        )
    if member.size > 128:
        raise XvaError(f"checksum member {member.name!r} is {member.size} bytes")
    stored = tar.body(member)
    if stored != computed:
        raise XvaError(
            f"checksum mismatch for {name!r}: stored {stored.decode('latin-1')!r},"
            f" computed {computed.decode()!r}"
        )
