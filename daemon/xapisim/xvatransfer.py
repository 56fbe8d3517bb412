"""XVA export and import handlers (placeholder until the XVA codec lands)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .api import SimPool


def make_xva_handlers(pool: SimPool, guarded: Any) -> tuple[Any, Any]:
    """``GET /export`` and ``PUT /import`` handlers for one pool."""

    async def export_xva(request: web.Request) -> web.StreamResponse:
        return web.Response(status=501, text="XVA export is not available yet")

    async def import_xva(request: web.Request) -> web.StreamResponse:
        return web.Response(status=501, text="XVA import is not available yet")

    return export_xva, import_xva
