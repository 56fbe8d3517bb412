"""Answers that arrive in several TCP segments are read to the end.

A real pool's answer to ``VM.get_all_records`` is large and, on a busy
network, arrives in pieces; the client once parsed only the first piece.
The server here is a real HTTP server on loopback that sends its answer in
slices with pauses between them, as a slow link would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from xenkeep.xapi.client import XapiClient

RECORDS = {f"OpaqueRef:{i:06d}": {"name_label": f"vm-{i}", "uuid": f"u{i}"} for i in range(3000)}


async def slow_pool(request: web.Request) -> web.StreamResponse:
    call = await request.json()
    if call["method"] == "session.login_with_password":
        result: object = "OpaqueRef:session"
    else:
        result = RECORDS
    body = json.dumps({"jsonrpc": "2.0", "result": result, "id": call["id"]}).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    step = max(1, len(body) // 5)
    for start in range(0, len(body), step):
        await response.write(body[start : start + step])
        await asyncio.sleep(0.05)
    await response.write_eof()
    return response


@pytest.fixture
async def pool_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/jsonrpc", slow_pool)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_a_large_answer_in_slices_is_read_whole(pool_url: str) -> None:
    client = XapiClient(pool_url, "root", "demo")
    try:
        records = await client.call("VM.get_all_records")
    finally:
        await client.close()
    assert records == RECORDS
