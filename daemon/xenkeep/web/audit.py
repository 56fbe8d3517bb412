"""Who did what, from the web layer: the one way a handler records an
administrator's change or action in the audit log (it knows the person and
the address; the services below it do not)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.auth.const import AuditEvent
from xenkeep.web import keys


async def audit(request: web.Request, event: AuditEvent, **detail: Any) -> None:
    """Record ``event`` as done by the signed-in person from their address.

    ``detail`` names what changed (never a secret).
    """
    user = keys.current_user(request)
    await keys.audit(request.app).record(
        event,
        username=user.username if user is not None else "",
        ip=keys.client_ip(request),
        **detail,
    )
