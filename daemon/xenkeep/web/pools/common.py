"""What the Pools page, the wizard step and the API share: the JSON shapes,
the two-step registration form, who is asking."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from xenkeep.auth.permissions import Action, Principal
from xenkeep.errors import ValidationError
from xenkeep.pools.pool import Pending, Pool
from xenkeep.web import keys
from xenkeep.web.forms import whole_number


def pool_json(pool: Pool, status: Mapping[str, Any]) -> dict[str, Any]:
    """A pool as the API shows it: never the password."""
    return {
        "id": pool.id,
        "name": pool.name,
        "url": pool.url,
        "username": pool.username,
        "fingerprint": pool.fingerprint,
        "created_at": pool.created_at,
        "updated_at": pool.updated_at,
        "last_error": pool.last_error,
        "last_error_at": pool.last_error_at,
        "last_connected_at": pool.last_connected_at,
        "status": dict(status),
    }


def pending_json(pending: Pending) -> dict[str, Any]:
    """A staged registration (the fingerprint to confirm)."""
    return {
        "url": pending.url,
        "username": pending.username,
        "tls": pending.tls,
        "fingerprint": pending.fingerprint,
    }


def pool_id_param(request: web.Request) -> int:
    return whole_number(request.match_info["pool_id"], "pool_id", "not a pool id")


def owner(request: web.Request) -> str:
    return f"user:{keys.require_user(request).id}"


async def handle_form(request: web.Request, form: Mapping[str, str]) -> Pool | None:
    """The two-step registration form shared by the wizard and the Pools page.

    Returns the pool once saved; None while the fingerprint awaits confirmation.
    """
    manager = keys.pools(request.app)
    who = owner(request)
    action = form.get("action", "check")
    if action == "cancel":
        manager.discard(who)
        return None
    if action == "confirm":
        pending = manager.pending(who)
        if pending is not None and pending.tls and form.get("fingerprint") != pending.fingerprint:
            manager.discard(who)
            raise ValidationError("the fingerprint changed while you were checking it; start again")
        return await manager.confirm(
            who, actor=keys.require_user(request).username, ip=keys.client_ip(request)
        )
    await manager.stage(
        who, form.get("url", ""), form.get("username", ""), form.get("password", "")
    )
    return None


async def visible_overview(app: web.Application, principal: Principal) -> list[dict[str, Any]]:
    """The dashboard's pools, hosts, SRs and VMs, cut to what ``principal`` may view."""
    return await keys.pools(app).overview(functools.partial(principal.may, Action.VIEW))
