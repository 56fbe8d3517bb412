"""ova.xml: the records of an XVA, one XML-RPC ``<value>``.

Layout (UTF-8, no XML declaration, as XAPI writes it)::

    struct
      version   struct: hostname, date, product_version, product_brand,
                build_number, xapi_major, xapi_minor, export_vsn = 2
      objects   array of struct {class, id, snapshot}

``snapshot`` is the complete XAPI record of a VM, VBD, VDI, VIF, SR or network
(field tables in :mod:`xenkeep.formats.xapi_records`). References between
records use the archive's ``Ref:<n>`` ids or ``OpaqueRef:NULL``. Integers are
written as bare strings (``<value>4096</value>``), as XAPI does, because a
typed ``<i4>`` overflows for sizes above 2 GiB; booleans are ``<boolean>``,
floats ``<double>``, datetimes ``<dateTime.iso8601>`` (``19700101T00:00:00Z``).
A VDI's ``virtual_size`` is the size of its disk in the archive. Hosts refuse
an archive whose ``xapi_major.xapi_minor`` is newer than their own.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from xml.sax.saxutils import escape

from ..errors import XvaFormatError
from ..xapi_records import ENUM_DEFAULTS, FIELDS, VALUE_DEFAULTS

NULL_REF: Final = "OpaqueRef:NULL"
#: Highest XAPI datamodel version an XVA may claim: hosts refuse newer ones.
XAPI_MAJOR: Final = 1
XAPI_MINOR: Final = 20
EXPORT_VSN: Final = 2

_XML_INVALID: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DATETIME_FMT: Final = "%Y%m%dT%H:%M:%SZ"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_DEPTH: Final = 16


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
