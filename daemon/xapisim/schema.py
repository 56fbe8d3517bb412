"""The XAPI datamodel facts the simulator relies on.

``datamodel.json`` was extracted from the published XenAPI datamodel (class
names, field names, field types, qualifiers, defaults, message parameter
types, enum values) for the classes the simulator serves. Field types use the
datamodel's notation: ``int``, ``string``, ``VM ref``, ``VBD ref set``,
``(string -> string) map``, ``enum vm_power_state``, ``datetime``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"


class XDateTime(str):
    """A datetime value, kept in XAPI's ``%Y%m%dT%H:%M:%SZ`` text form.

    A distinct type so that XML-RPC can send it as ``dateTime.iso8601``
    while JSON-RPC sends the same text as a string.
    """

    __slots__ = ()


@dataclass(frozen=True)
class Field:
    """One field of a class."""

    name: str
    type: str
    qualifier: str
    default: str | None

    @property
    def writable(self) -> bool:
        return self.qualifier == "RW"

    @property
    def is_map(self) -> bool:
        return self.type.startswith("(")

    @property
    def is_set(self) -> bool:
        return self.type.endswith(" set")

    @property
    def ref_class(self) -> str | None:
        """Class of a ``X ref`` field (not sets)."""
        m = re.fullmatch(r"(\w+) ref", self.type)
        return m.group(1) if m else None

    def zero(self) -> Any:
        """The value a new object gets when the creator gives none."""
        return default_for(self.type, self.default)


@dataclass(frozen=True)
class ClassInfo:
    """A class: its fields and the messages (methods) XAPI publishes for it."""

    name: str
    fields: dict[str, Field]
    messages: dict[str, list[str]]

    @cached_property
    def datetime_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields.values() if f.type == "datetime")


_DATA: dict[str, Any] = json.loads(
    (Path(__file__).with_name("datamodel.json")).read_text(encoding="utf-8")
)
ENUMS: dict[str, list[str]] = _DATA["enums"]
# VDI.data_destroy turns a snapshot into type cbt_metadata (XAPI 7.3+): keep
# the value valid even if datamodel.json is re-extracted from an older release.
if "cbt_metadata" not in ENUMS.get("vdi_type", []):
    ENUMS.setdefault("vdi_type", []).append("cbt_metadata")

CLASSES: dict[str, ClassInfo] = {
    name: ClassInfo(
        name=name,
        fields={f[0]: Field(f[0], f[1], f[2], f[3]) for f in spec["fields"]},
        messages=spec["messages"],
    )
    for name, spec in _DATA["classes"].items()
}

# Derived ``X ref set`` fields: XAPI maintains them from the pointer held by
# the other side (an SR's VDIs are the VDIs whose SR is that SR).
DERIVED: dict[tuple[str, str], tuple[str, str]] = {
    ("SR", "VDIs"): ("VDI", "SR"),
    ("SR", "PBDs"): ("PBD", "SR"),
    ("host", "PBDs"): ("PBD", "host"),
    ("host", "PIFs"): ("PIF", "host"),
    ("host", "resident_VMs"): ("VM", "resident_on"),
    ("network", "PIFs"): ("PIF", "network"),
    ("network", "VIFs"): ("VIF", "network"),
    ("VM", "VBDs"): ("VBD", "VM"),
    ("VM", "VIFs"): ("VIF", "VM"),
    ("VM", "snapshots"): ("VM", "snapshot_of"),
    ("VM", "children"): ("VM", "parent"),
    ("VDI", "VBDs"): ("VBD", "VDI"),
    ("VDI", "snapshots"): ("VDI", "snapshot_of"),
    ("task", "subtasks"): ("task", "subtask_of"),
}


def default_for(ftype: str, default: str | None) -> Any:
    """Translate a datamodel default (or the type's zero) into a value."""
    if default is not None:
        parsed = _parse_default(ftype, default)
        if parsed is not _NO_DEFAULT:
            return parsed
    if ftype.startswith("("):
        return {}
    if ftype.endswith(" set"):
        return []
    if ftype.endswith(" ref"):
        return NULL_REF
    if ftype == "int":
        return 0
    if ftype == "float":
        return 0.0
    if ftype == "bool":
        return False
    if ftype == "datetime":
        return XDateTime(EPOCH)
    if ftype.startswith("enum "):
        values = ENUMS.get(ftype[5:], [])
        return values[0] if values else ""
    return ""


_NO_DEFAULT = object()


def _parse_default(ftype: str, default: str) -> Any:
    if ftype.startswith("(") or ftype.endswith(" set"):
        return _NO_DEFAULT
    if ftype == "string":
        return default[1:-1] if default.startswith('"') else default
    if ftype == "int":
        try:
            return int(default)
        except ValueError:
            return _NO_DEFAULT
    if ftype == "float":
        try:
            return float(default)
        except ValueError:
            return _NO_DEFAULT
    if ftype == "bool":
        return default == "true"
    if ftype == "datetime":
        return XDateTime(default)
    if ftype.endswith(" ref"):
        return NULL_REF
    if ftype.startswith("enum "):
        values = ENUMS.get(ftype[5:], [])
        return default if default in values else _NO_DEFAULT
    return _NO_DEFAULT


def coerce(ftype: str, value: Any) -> Any:
    """Convert a wire value to the field's type.

    XML-RPC carries 64-bit ints as decimal strings and datetimes as
    ``DateTime`` objects; JSON-RPC carries numbers and strings.
    """
    if ftype == "int":
        if isinstance(value, bool):
            raise ValueError(value)
        return int(value)
    if ftype == "float":
        return float(value)
    if ftype == "bool":
        if isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
        return bool(value)
    if ftype == "datetime":
        text = getattr(value, "value", value)
        return XDateTime(str(text))
    if ftype.startswith("("):
        if not isinstance(value, dict):
            raise ValueError(value)
        m = re.fullmatch(r"\((.+) -> (.+)\) map", ftype)
        vtype = m.group(2) if m else "string"
        return {str(k): coerce(vtype, v) for k, v in value.items()}
    if ftype.endswith(" set"):
        if not isinstance(value, list | tuple):
            raise ValueError(value)
        return [coerce(ftype[:-4], v) for v in value]
    if ftype.startswith("enum "):
        values = ENUMS.get(ftype[5:], [])
        if values and value not in values:
            raise ValueError(value)
        return str(value)
    if not isinstance(value, str):
        raise ValueError(value)
    return value
