"""Operations in the web UI and the JSON API: one list, one page, one stream for every kind.

``GET /api/v1/operations`` (``?kind=&status=&target=&limit=``),
``GET /api/v1/operations/{id}`` (``?log_after=``), its server-sent event
stream ``/events`` (event ``operation``: the detail, then new log lines only)
and ``POST .../cancel``. The page ``/operations/{id}`` renders any kind live
(``static/operation.js``); ``/backup/runs/{id}`` is the same page.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from xenkeep.errors import ValidationError
from xenkeep.ops import Operations, OpKind, OpStatus
from xenkeep.web import keys
from xenkeep.web.access import admin
from xenkeep.web.flash import redirect_to
from xenkeep.web.sse import KEEPALIVE, KEEPALIVE_SECONDS, open_event_stream, sse_event

#: What the sub-task columns are called, per kind (VM and disk for the backup side).
_COLUMNS: Final = {
    OpKind.BACKUP.value: ("VM", "Disk"),
    OpKind.RESTORE.value: ("VM", "Disk"),
    OpKind.VERIFY.value: ("VM", "Disk"),
}
_DEFAULT_COLUMNS: Final = ("Item", "Part")
_KINDS: Final = frozenset(k.value for k in OpKind)
_STATUSES: Final = frozenset(s.value for s in OpStatus)


def _ops(request: web.Request) -> Operations:
    return keys.operations(request.app)


def _op_id(request: web.Request, name: str = "op_id") -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ValidationError(f"not a valid {name}", field=name) from None


def _int_query(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, str(default)))
    except ValueError:
        raise ValidationError(f"{name} must be a number", field=name) from None


def _choices(request: web.Request, name: str, allowed: frozenset[str]) -> list[str]:
    values = [v for raw in request.query.getall(name, []) for v in raw.split(",") if v]
    bad = sorted(set(values) - allowed)
    if bad:
        raise ValidationError(
            f"unknown {name} {', '.join(bad)}; one of {', '.join(sorted(allowed))}", field=name
        )
    return values


# --- JSON API ---------------------------------------------------------------------


@admin
async def api_operations(request: web.Request) -> web.StreamResponse:
    """Recent operations, newest first, filtered by kind, status and target."""
    ops = await _ops(request).find(
        kinds=_choices(request, "kind", _KINDS),
        statuses=_choices(request, "status", _STATUSES),
        target=request.query.get("target") or None,
        limit=_int_query(request, "limit", 50),
    )
    return web.json_response({"operations": ops})


@admin
async def api_operation(request: web.Request) -> web.StreamResponse:
    """One operation with its sub-tasks and log lines (``?log_after=``)."""
    detail = await _ops(request).detail(
        _op_id(request), log_after=_int_query(request, "log_after", 0)
    )
    return web.json_response(detail)


@admin
async def api_operation_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events ``operation`` after each change, until it has finished."""
    ops = _ops(request)
    op_id = _op_id(request)
    after = _int_query(request, "log_after", 0)
    await ops.get(op_id)  # 404 before the stream starts
    response = await open_event_stream(request)
    async for detail in ops.watch(op_id, log_after=after, keepalive=KEEPALIVE_SECONDS):
        await response.write(KEEPALIVE if detail is None else sse_event("operation", detail))
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


@admin
async def api_operation_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel a running operation of any kind."""
    await _ops(request).cancel(_op_id(request))
    return web.json_response({"ok": True}, status=202)


# --- pages ------------------------------------------------------------------------


def page_context(detail: dict[str, Any]) -> dict[str, Any]:
    """What the operation page needs to render ``detail``."""
    return {"op": detail, "columns": _COLUMNS.get(detail["kind"], _DEFAULT_COLUMNS)}


@admin
async def operations_page(request: web.Request) -> web.StreamResponse:
    """The recent operations of every kind."""
    ops = await _ops(request).find(
        kinds=_choices(request, "kind", _KINDS),
        statuses=_choices(request, "status", _STATUSES),
        limit=100,
    )
    return aiohttp_jinja2.render_template(
        "operations/index.html", request, {"operations": ops, "kinds": sorted(_KINDS)}
    )


@admin
async def operation_page(request: web.Request) -> web.StreamResponse:
    """Any operation: live progress, sub-tasks, log, report."""
    name = "run_id" if "run_id" in request.match_info else "op_id"
    detail = await _ops(request).detail(_op_id(request, name))
    return aiohttp_jinja2.render_template(
        "operations/operation.html", request, page_context(detail)
    )


@admin
async def operation_cancel(request: web.Request) -> web.StreamResponse:
    """Cancel from the operation's page."""
    op_id = _op_id(request)
    await _ops(request).cancel(op_id)
    redirect_to(request, "operation", "Cancel requested.", op_id=op_id)
