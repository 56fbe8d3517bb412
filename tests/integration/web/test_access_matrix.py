"""Authorization, route by route: every route declares its access level,
and every principal gets exactly what that level allows.

The matrix is built from the live route table, so a route added later is
checked without anyone remembering to list it here.
"""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.auth.const import ROLE_ACCESS, Access, Role
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.access import access_of
from xenkeep.web.server import RunningServer

PARAM = re.compile(r"\{([^}:]+)(:[^}]+)?\}")

# The policy, written out independently of the decorators, so that a route
# declared with the wrong level fails here.
PUBLIC_ALLOWED = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/setup"),
    ("GET", "/setup/{step}"),
    ("POST", "/setup/{step}"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/csrf"),
    ("GET", "/api/v1/setup"),
    ("POST", "/api/v1/setup/token"),
    ("POST", "/api/v1/setup/admin"),
    ("POST", "/api/v1/session"),
}
ADMIN_ONLY_PREFIXES = (
    "/admin/",
    "/api/v1/users",
    "/api/v1/audit",
    "/api/v1/appliance",
    # The appliance's address, DNS and NTP (the page is under /admin/).
    "/api/v1/network",
    "/backup",
    "/api/v1/backup",
    # Operations of every kind (backups, restores, verifies, disk formats).
    "/operations",
    "/api/v1/operations",
)
# Reading pool state is for viewers; changing which pools are connected is not.
ADMIN_WRITE_PREFIXES = ("/pools", "/api/v1/pools")


def concrete(path: str) -> str:
    return PARAM.sub("1", path)


def app_routes(app: web.Application) -> list[tuple[str, str, Access | None]]:
    out = []
    for route in app.router.routes():
        if isinstance(route.resource, web.StaticResource) or route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        assert path, f"cannot tell the path of {route}"
        out.append((route.method, path, access_of(route.handler)))
    return out


async def signed_in(server: RunningServer, username: str) -> Browser:
    b = Browser(server)
    status, body = await b.api(
        "POST", "/api/v1/session", {"username": username, "password": ADMIN_PASSWORD}
    )
    assert status == 200, body
    return b


async def call(b: Browser, method: str, path: str) -> tuple[int, str]:
    url = concrete(path)
    headers = {"X-CSRF-Token": b.csrf} if b.csrf else {}
    if path.startswith("/api/"):
        kwargs: dict[str, object] = {"json": {}}
    else:
        kwargs = {"data": {"_csrf": b.csrf}} if method != "GET" else {}
    async with b.session.request(
        method, b.url(url), headers=headers, allow_redirects=False, **kwargs
    ) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Location", "")


def refused(status: int, location: str) -> bool:
    return status in (401, 403) or (status == 303 and location.startswith("/login"))


async def test_every_route_declares_access(daemon: RunningServer) -> None:
    missing = [(m, p) for m, p, level in app_routes(daemon.app) if level is None]
    assert not missing, f"routes without an access level: {missing}"


async def test_declared_levels_follow_the_policy(daemon: RunningServer) -> None:
    for method, path, level in app_routes(daemon.app):
        if level is Access.PUBLIC:
            assert (method, path) in PUBLIC_ALLOWED, f"{method} {path} must not be public"
        if path.startswith(ADMIN_ONLY_PREFIXES):
            assert level is Access.ADMIN, f"{method} {path} must be for administrators"
        if method != "GET" and path.startswith(ADMIN_WRITE_PREFIXES):
            assert level is Access.ADMIN, f"{method} {path} must be for administrators"


async def test_anonymous_is_refused_everywhere_but_public_routes(browser: Browser) -> None:
    routes = app_routes(browser.server.app)
    assert len(routes) > 20
    for method, path, level in routes:
        if level is Access.PUBLIC:
            continue
        status, location = await call(browser, method, path)
        assert refused(status, location), f"{method} {path} answered {status} to anonymous"
        if path.startswith("/api/"):
            assert status == 401, f"{method} {path}: the API answers 401, not {status}"


@pytest.mark.parametrize("role", [Role.USER, Role.VIEWER, Role.OPERATOR])
async def test_roles_below_a_route_are_refused(
    browser: Browser, settings: Settings, role: Role
) -> None:
    await complete_setup(browser, settings)
    auth = keys.auth(browser.server.app)
    await auth.create_user(f"u-{role}", ADMIN_PASSWORD, role)
    client = await signed_in(browser.server, f"u-{role}")
    try:
        for method, path, level in app_routes(browser.server.app):
            assert level is not None
            if ROLE_ACCESS[role] >= level:
                continue
            status, location = await call(client, method, path)
            assert status == 403, f"{method} {path} answered {status} to a {role}"
            assert not location
    finally:
        await client.close()


async def test_allowed_principals_get_through_on_reads(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    auth = keys.auth(browser.server.app)
    await auth.create_user("vera", ADMIN_PASSWORD, Role.VIEWER)
    principals = {Role.ADMIN: browser, Role.VIEWER: await signed_in(browser.server, "vera")}
    try:
        for role, client in principals.items():
            for method, path, level in app_routes(browser.server.app):
                assert level is not None
                if method != "GET" or ROLE_ACCESS[role] < level or "{" in path:
                    continue
                if path == "/api/v1/events":
                    continue  # a never-ending stream; covered by its own tests
                status, location = await call(client, method, path)
                assert not refused(status, location), f"{role} refused on GET {path}"
    finally:
        await principals[Role.VIEWER].close()
