"""Small rules on XAPI records that several classes share.

Copying a record's values, reading a ``<class>.create`` argument struct the
way XAPI does (unknown and read-only derived fields ignored, the rest
coerced to the datamodel type), the refs of the pool object and its master,
and the values XAPI makes up for new devices (MAC addresses, device names).
"""

from __future__ import annotations

import random
from typing import Any

from ..db import Database, Record
from ..errors import FIELD_TYPE_ERROR, XapiError
from ..schema import CLASSES, DERIVED, coerce


def copy_value(value: Any) -> Any:
    """A deep copy of a field value (maps and sets are the only containers)."""
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    return value


def record_arg(cls: str, args: Any) -> Record:
    """The fields of a ``<class>.create`` argument struct, typed as the datamodel says."""
    if not isinstance(args, dict):
        raise XapiError(FIELD_TYPE_ERROR, "args")
    info = CLASSES[cls]
    out: Record = {}
    for name, value in args.items():
        field = info.fields.get(name)
        if field is None or (cls, name) in DERIVED:
            continue
        try:
            out[name] = coerce(field.type, value)
        except (TypeError, ValueError) as e:
            raise XapiError(FIELD_TYPE_ERROR, name) from e
    return out


def pool_ref(db: Database) -> str:
    """The ref of the one pool object."""
    return db.refs("pool")[0]


def master_ref(db: Database) -> str:
    """The ref of the pool master's host."""
    return str(db.get("pool", pool_ref(db))["master"])


def random_mac() -> str:
    """A locally administered unicast MAC, as XAPI generates for new VIFs."""
    octets = [0x02, *(random.randrange(256) for _ in range(5))]  # noqa: S311 - not crypto
    return ":".join(f"{o:02x}" for o in octets)


def device_name(userdevice: str) -> str:
    """The guest device (``xvda``...) of a VBD's user device number, "" if none."""
    try:
        n = int(userdevice)
    except ValueError:
        return ""
    return "xvd" + chr(ord("a") + n) if 0 <= n < 26 else ""
