"""The HTTP routes of one pool's transfers, and ``/sim/faults``.

``/sim/faults`` is the HTTP door to fault injection for clients without an
RPC session: ``GET`` lists the armed faults, ``POST {"kind", "params"}``
arms one, ``DELETE [?id=]`` disarms one or all (basic auth or session).
"""

from __future__ import annotations

from aiohttp import web

from ..errors import XapiError
from ..pool import SimPool
from . import dbdump, vdi, xva
from .guard import authenticate, route, unauthorized


def make_transfer_routes(pool: SimPool) -> list[web.RouteDef]:
    """Routes of the transfer handlers for one pool."""

    async def sim_faults(request: web.Request) -> web.StreamResponse:
        auth = authenticate(pool, request)
        if auth is None:
            return unauthorized()
        session, temporary = auth
        try:
            if request.method == "GET":
                return web.json_response([f.as_dict() for f in pool.faults.active])
            if request.method == "DELETE":
                pool.faults.clear(request.query.get("id"))
                return web.json_response({"cleared": True})
            doc = await request.json()
            try:
                fault = pool.faults.inject(str(doc["kind"]), dict(doc.get("params", {})))
            except (KeyError, TypeError, ValueError) as e:
                return web.json_response({"error": repr(e)}, status=400)
            except XapiError as e:
                return web.json_response({"error": e.description}, status=400)
            return web.json_response(fault.as_dict())
        finally:
            if temporary and pool.db.exists("session", session):
                pool.db.destroy("session", session)

    return [
        web.get("/export_raw_vdi", route(pool, vdi.export_raw_vdi)),
        web.put("/import_raw_vdi", route(pool, vdi.import_raw_vdi)),
        web.get("/export", route(pool, xva.export_xva)),
        web.put("/import", route(pool, xva.import_xva)),
        web.get("/pool/xmldbdump", route(pool, dbdump.pool_xmldbdump)),
        web.route("*", "/sim/faults", sim_faults),
    ]
