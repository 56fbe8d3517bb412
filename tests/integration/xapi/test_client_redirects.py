"""The XAPI client never follows a redirect: a pool (or something in its
place) answering 307 to the login must not get the password resent to
another address."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import XapiConnectionError


async def test_a_redirected_login_is_refused_and_nothing_follows_it() -> None:
    elsewhere: list[bytes] = []

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/stolen")

    async def stolen(request: web.Request) -> web.Response:
        elsewhere.append(await request.read())
        return web.json_response({"result": "OpaqueRef:x"})

    app = web.Application()
    app.router.add_post("/jsonrpc", redirect)
    app.router.add_post("/stolen", stolen)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = XapiClient(f"http://127.0.0.1:{server.port}", "root", "s3cret")
    try:
        with pytest.raises(XapiConnectionError, match="HTTP 307"):
            await client.login()
        assert elsewhere == []  # the password went nowhere else
    finally:
        await client.close()
        await server.close()
