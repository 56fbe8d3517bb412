"""ova.xml: the VM metadata of an XVA, one XML-RPC ``<value>`` in XAPI's dialect.

Strings and integers are bare text (``<value>1</value>``); booleans, doubles
and dates are tagged. The struct holds ``{version: {...}, objects: [{class,
id, snapshot}, ...]}`` where ``id`` is ``Ref:<n>`` and every reference inside
a snapshot uses those ids. The parser refuses DOCTYPE and entity
declarations (XML bombs) and anything that is not XML-RPC.
"""

from __future__ import annotations

import datetime as dt
import re
from base64 import b64decode, b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from .layout import OVA_XML, XvaError

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
