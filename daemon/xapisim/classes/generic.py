"""The accessors every XAPI class has, built from the datamodel.

``get_all``, ``get_all_records``, ``get_record``, ``get_by_uuid``,
``get_by_name_label`` (classes with a ``name_label``), ``get_<field>``,
and, where the datamodel declares the message (RW fields): ``set_<field>``,
``add_to_<map>``/``remove_from_<map>`` and ``add_<set>``/``remove_<set>``
(``add_tags``...). Values are coerced to the field's type; a ref field only
takes a ref that exists. A specific handler in a class module wins over
these (the dispatcher looks there first).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..db import Database
from ..errors import FIELD_TYPE_ERROR, MAP_DUPLICATE_KEY, UUID_INVALID, XapiError
from ..model.records import copy_value
from ..schema import CLASSES, DERIVED, NULL_REF, ClassInfo, coerce

#: A bound accessor: called with the session then the parameters.
Bound = Callable[..., Awaitable[Any]]


def accessor(db: Database, name: str) -> tuple[Bound, tuple[int, int]] | None:
    """The generic accessor for ``"<class>.<message>"`` and its arity, if there is one."""
    cls, _, op = name.partition(".")
    info = CLASSES.get(cls)
    if info is None or cls in ("event",):
        return None
    fields = info.fields

    async def get_all(_s: str) -> Any:
        return db.refs(cls)

    async def get_all_records(_s: str) -> Any:
        return {ref: db.record(cls, ref) for ref in db.refs(cls)}

    async def get_record(_s: str, ref: Any) -> Any:
        return db.record(cls, ref)

    async def get_by_uuid(_s: str, uuid: Any) -> Any:
        ref = db.by_uuid.get(uuid) if isinstance(uuid, str) else None
        if ref is None or db.cls_of.get(ref) != cls:
            raise XapiError(UUID_INVALID, cls, uuid)
        return ref

    async def get_by_name_label(_s: str, label: Any) -> Any:
        return db.find(cls, name_label=label)

    table: dict[str, tuple[Bound, tuple[int, int]]] = {
        "get_all": (get_all, (0, 0)),
        "get_all_records": (get_all_records, (0, 0)),
        "get_record": (get_record, (1, 1)),
        "get_by_uuid": (get_by_uuid, (1, 1)),
    }
    if "name_label" in fields:
        table["get_by_name_label"] = (get_by_name_label, (1, 1))
    if op in table:
        return table[op]
    if op.startswith("get_") and op[4:] in fields:
        fname = op[4:]

        async def getter(_s: str, ref: Any) -> Any:
            return (
                db.record(cls, ref)[fname]
                if (cls, fname) in DERIVED
                else copy_value(db.get(cls, ref)[fname])
            )

        return getter, (1, 1)
    if op.startswith("set_") and op[4:] in fields and op in info.messages:
        return _setter(db, info, op[4:]), (2, 2)
    if op.startswith("add_to_") and op[7:] in fields and op in info.messages:
        return _map_add(db, info, op[7:]), (3, 3)
    if op.startswith("remove_from_") and op[12:] in fields and op in info.messages:
        return _map_remove(db, info, op[12:]), (2, 2)
    if op.startswith("add_") and op[4:] in fields and op in info.messages:
        return _set_add(db, info, op[4:]), (2, 2)
    if op.startswith("remove_") and op[7:] in fields and op in info.messages:
        return _set_remove(db, info, op[7:]), (2, 2)
    return None


def _setter(db: Database, info: ClassInfo, fname: str) -> Bound:
    ftype = info.fields[fname].type

    async def setter(_s: str, ref: Any, value: Any) -> Any:
        db.get(info.name, ref)
        try:
            value = coerce(ftype, value)
        except (TypeError, ValueError) as e:
            raise XapiError(FIELD_TYPE_ERROR, fname) from e
        if info.fields[fname].ref_class and value != NULL_REF:
            db.get(info.fields[fname].ref_class or "", value)
        db.set(info.name, ref, **{fname: value})
        return ""

    return setter


def _map_add(db: Database, info: ClassInfo, fname: str) -> Bound:
    async def add(_s: str, ref: Any, key: Any, value: Any) -> Any:
        rec = db.get(info.name, ref)
        current = dict(rec[fname])
        if key in current:
            raise XapiError(MAP_DUPLICATE_KEY, info.name, fname, ref, key)
        m = re.fullmatch(r"\((.+) -> (.+)\) map", info.fields[fname].type)
        try:
            current[str(key)] = coerce(m.group(2) if m else "string", value)
        except (TypeError, ValueError) as e:
            raise XapiError(FIELD_TYPE_ERROR, fname) from e
        db.set(info.name, ref, **{fname: current})
        return ""

    return add


def _map_remove(db: Database, info: ClassInfo, fname: str) -> Bound:
    async def remove(_s: str, ref: Any, key: Any) -> Any:
        rec = db.get(info.name, ref)
        current = dict(rec[fname])
        if key in current:
            del current[key]
            db.set(info.name, ref, **{fname: current})
        return ""

    return remove


def _set_add(db: Database, info: ClassInfo, fname: str) -> Bound:
    async def add(_s: str, ref: Any, value: Any) -> Any:
        rec = db.get(info.name, ref)
        if value not in rec[fname]:
            db.set(info.name, ref, **{fname: [*rec[fname], value]})
        return ""

    return add


def _set_remove(db: Database, info: ClassInfo, fname: str) -> Bound:
    async def remove(_s: str, ref: Any, value: Any) -> Any:
        rec = db.get(info.name, ref)
        if value in rec[fname]:
            db.set(info.name, ref, **{fname: [v for v in rec[fname] if v != value]})
        return ""

    return remove
