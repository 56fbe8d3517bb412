"""What the pages, the API and the wizard step of the appliance's backup share."""

from __future__ import annotations

import contextlib

from aiohttp import web

from xenkeep.web import keys


def owner(request: web.Request) -> str:
    """Whose opened copy this is: one per signed-in account."""
    return f"user:{keys.require_user(request).id}"


async def send_pool_dump(request: web.Request) -> web.StreamResponse:
    """A pool's database dump as a download (XML for ``xe pool-restore-database``),
    decrypted as it is sent."""
    pool_uuid, copy_id = request.match_info["pool_uuid"], request.match_info["copy_id"]
    pieces = await keys.appliance_backup(request.app).pool_dump(pool_uuid, copy_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/xml",
            "Content-Disposition": f'attachment; filename="pool-{pool_uuid}-{copy_id}.xml"',
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    # Closed however the download ends (a browser that goes away included):
    # the file is let go at once.
    async with contextlib.aclosing(pieces):
        async for piece in pieces:
            await response.write(piece)
    await response.write_eof()
    return response
