"""message: the pool's message log (create, destroy, get, get_since)."""

from __future__ import annotations

from typing import Any

from ..db import now
from ..pool import SimPool
from ..schema import coerce
from .registry import Registry

methods = Registry()


@methods.api("message.create")
async def message_create(
    pool: SimPool, _s: str, name: Any, priority: Any, cls: Any, obj_uuid: Any, body: Any
) -> Any:
    return pool.db.create(
        "message",
        {
            "name": str(name),
            "priority": coerce("int", priority),
            "cls": coerce("enum cls", cls),
            "obj_uuid": str(obj_uuid),
            "timestamp": now(),
            "body": str(body),
        },
    )


@methods.api("message.destroy")
async def message_destroy(pool: SimPool, _s: str, msg: Any) -> Any:
    pool.db.get("message", msg)
    pool.db.destroy("message", msg)
    return ""


@methods.api("message.get_since")
async def message_get_since(pool: SimPool, _s: str, since: Any) -> Any:
    ts = str(getattr(since, "value", since))
    return {
        ref: pool.db.record("message", ref)
        for ref, rec in pool.db.items("message")
        if str(rec["timestamp"]) > ts
    }


@methods.api("message.get")
async def message_get(pool: SimPool, _s: str, cls: Any, obj_uuid: Any, since: Any) -> Any:
    ts = str(getattr(since, "value", since))
    return {
        ref: pool.db.record("message", ref)
        for ref, rec in pool.db.items("message")
        if rec["cls"] == cls and rec["obj_uuid"] == obj_uuid and str(rec["timestamp"]) > ts
    }
