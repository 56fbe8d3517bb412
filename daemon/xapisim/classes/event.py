"""event: ``event.from`` (long poll with a token) and the older register/next pair.

Every database change bumps a generation counter; a token is that counter
(``"<gen>,<0>"``, 20 digits each). ``event.from(classes, token, timeout)``
returns the adds, mods and dels after the token for the subscribed classes
(``*``, class names, or ``class/ref`` for one object), waiting up to
``timeout`` seconds for the first one. ``event.register``/``event.next`` keep
the same state per session.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..db import Record
from ..errors import (
    EVENT_FROM_TOKEN_PARSE_FAILURE,
    FIELD_TYPE_ERROR,
    HANDLE_INVALID,
    SESSION_NOT_REGISTERED,
    XapiError,
)
from ..pool import SimPool
from ..schema import coerce
from .registry import Registry

methods = Registry()


def _collect(pool: SimPool, subs: list[str], since: int) -> list[dict[str, Any]]:
    everything = "*" in subs
    classes = {s for s in subs if "/" not in s}
    objects = {s.split("/", 1)[1] for s in subs if "/" in s}

    def wanted(cls: str, ref: str) -> bool:
        return everything or cls.lower() in classes or ref in objects

    found: list[tuple[int, dict[str, Any]]] = []
    for ref, gen in pool.db.modified.items():
        if gen <= since:
            continue
        cls = pool.db.cls_of.get(ref)
        if cls is None or not wanted(cls, ref):
            continue
        op = "add" if pool.db.created.get(ref, 0) > since else "mod"
        found.append((gen, _event(gen, cls, op, ref, pool.db.record(cls, ref))))
    for gen, cls, ref in pool.db.deleted:
        if gen > since and wanted(cls, ref):
            found.append((gen, _event(gen, cls, "del", ref, None)))
    found.sort(key=lambda item: item[0])
    return [e for _, e in found]


def _event(gen: int, cls: str, op: str, ref: str, snapshot: Record | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": str(gen),
        "timestamp": f"{time.time():.6f}",
        "class": cls.lower(),
        "operation": op,
        "ref": ref,
    }
    if snapshot is not None:
        event["snapshot"] = snapshot
    return event


@methods.api("event.from")
async def event_from(pool: SimPool, _s: str, classes: Any, token: Any, wait_for: Any) -> Any:
    if not isinstance(classes, list):
        raise XapiError(FIELD_TYPE_ERROR, "classes")
    subs = [str(c).lower() if "/" not in str(c) else _lower_class(str(c)) for c in classes]
    since = _parse_token(token)
    wait = max(0.0, coerce("float", wait_for))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        events = _collect(pool, subs, since)
        remaining = deadline - loop.time()
        if events or remaining <= 0:
            break
        await pool.db.wait_change(remaining)
    counts = {cls.lower(): len(table) for cls, table in pool.db.tables.items()}
    return {
        "events": events,
        "valid_ref_counts": counts,
        "token": f"{pool.db.gen:020d},{0:020d}",
    }


@methods.api("event.get_current_id")
async def event_get_current_id(pool: SimPool, _s: str) -> Any:
    return pool.db.gen


@methods.api("event.register")
async def event_register(pool: SimPool, session: str, classes: Any) -> Any:
    reg = pool.registrations.setdefault(session, {"subs": set(), "gen": pool.db.gen})
    reg["subs"] |= {str(c).lower() for c in classes}
    return ""


@methods.api("event.unregister")
async def event_unregister(pool: SimPool, session: str, classes: Any) -> Any:
    reg = pool.registrations.get(session)
    if reg is not None:
        reg["subs"] -= {str(c).lower() for c in classes}
    return ""


@methods.api("event.next")
async def event_next(pool: SimPool, session: str) -> Any:
    reg = pool.registrations.get(session)
    if reg is None:
        raise XapiError(SESSION_NOT_REGISTERED, session)
    while True:
        events = _collect(pool, sorted(reg["subs"]), reg["gen"])
        if events:
            reg["gen"] = pool.db.gen
            return events
        await pool.db.wait_change(30.0)


@methods.api("event.inject")
async def event_inject(pool: SimPool, _s: str, cls: Any, ref: Any) -> Any:
    if pool.db.cls_of.get(ref) != cls:
        raise XapiError(HANDLE_INVALID, cls, ref)
    pool.db.touch(ref)
    return f"{pool.db.gen:020d},{0:020d}"


def _lower_class(sub: str) -> str:
    cls, _, ref = sub.partition("/")
    return f"{cls.lower()}/{ref}"


def _parse_token(token: Any) -> int:
    if token in ("", None):
        return 0
    text = str(token)
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return int(parts[0])
        if len(parts) == 1:
            return int(float(parts[0]))
    except ValueError:
        pass
    raise XapiError(EVENT_FROM_TOKEN_PARSE_FAILURE, text)
