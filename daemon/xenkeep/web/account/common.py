"""What the account pages and the API share: the JSON shapes, who is asking."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from xenkeep.auth.manager import ApiToken, SessionInfo, User
from xenkeep.web import keys


def session_json(info: SessionInfo) -> dict[str, Any]:
    """One of the user's sessions (never its cookie or its hash)."""
    return {
        "id": info.handle,
        "ip": info.ip,
        "user_agent": info.user_agent,
        "created_at": info.created_at,
        "last_seen": info.last_seen,
        "current": info.current,
    }


def token_json(token: ApiToken) -> dict[str, Any]:
    """One of the user's API tokens (never the token)."""
    return {
        "id": token.id,
        "name": token.name,
        "created_at": token.created_at,
        "last_used": token.last_used,
        "expires_at": token.expires_at,
        "max_role": None if token.max_role is None else str(token.max_role),
    }


async def issuer(request: web.Request) -> str:
    """The name an authenticator app files the account under."""
    return (await keys.identity(request.app).get()).name


async def account_facts(request: web.Request, user: User) -> dict[str, Any]:
    """The account's sessions, tokens and second factor, for its page and the API."""
    auth = keys.auth(request.app)
    return {
        "sessions": await auth.list_sessions(user, keys.current_session(request)),
        "tokens": await auth.list_api_tokens(user),
        "recovery_codes_left": await auth.recovery.remaining(user.id),
        "groups": [g.name for g in await keys.groups(request.app).of_user(user.id)],
        "ssh_keys": await keys.ssh_keys(request.app).of_user(user.id),
    }
