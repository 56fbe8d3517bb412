"""JSON-RPC at /jsonrpc (v1.0 and v2.0) and malformed requests, as in xen-api's wire docs."""

from __future__ import annotations

import io
import json
import xmlrpc.client
from typing import Any

import aiohttp

from xapisim import RunningSimulator


async def _post(url: str, body: Any, path: str = "jsonrpc") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        data = io.BytesIO(json.dumps(body).encode() if not isinstance(body, bytes) else body)
        async with http.post(
            url + path, data=data, headers={"Content-Type": "application/json"}
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


async def _login(url: str) -> str:
    _, answer = await _post(
        url,
        {
            "jsonrpc": "2.0",
            "method": "session.login_with_password",
            "params": ["root", "demo", "2.21", "t"],
            "id": 1,
        },
    )
    return str(answer["result"])


async def test_v2_success_and_failure_shapes(asim: RunningSimulator) -> None:
    session = await _login(asim.url)
    status, answer = await _post(
        asim.url, {"jsonrpc": "2.0", "method": "pool.get_all", "params": [session], "id": "x"}
    )
    assert status == 200
    assert set(answer) == {"jsonrpc", "result", "id"} and answer["id"] == "x"
    pool = answer["result"][0]
    _, answer = await _post(
        asim.url,
        {"jsonrpc": "2.0", "method": "pool.get_record", "params": [session, pool], "id": 2},
    )
    master = answer["result"]["master"]
    _, answer = await _post(
        asim.url,
        {"jsonrpc": "2.0", "method": "host.get_record", "params": [session, master], "id": 3},
    )
    # ints are JSON numbers here (strings over XML-RPC)
    assert answer["result"]["API_version_major"] == 2
    _, answer = await _post(
        asim.url,
        {"jsonrpc": "2.0", "method": "VM.get_record", "params": [session, "OpaqueRef:zz"], "id": 4},
    )
    assert answer == {
        "jsonrpc": "2.0",
        "id": 4,
        "error": {"code": 1, "message": "HANDLE_INVALID", "data": ["VM", "OpaqueRef:zz"]},
    }
    _, answer = await _post(
        asim.url,
        {
            "jsonrpc": "2.0",
            "method": "session.login_with_password",
            "params": ["root", "nope"],
            "id": 5,
        },
    )
    assert answer["error"]["message"] == "SESSION_AUTHENTICATION_FAILED"


async def test_v1_shape(asim: RunningSimulator) -> None:
    session = await _login(asim.url)
    _, answer = await _post(asim.url, {"method": "VM.get_all", "params": [session], "id": 7})
    assert answer["error"] is None and answer["id"] == 7 and len(answer["result"]) > 5
    _, answer = await _post(asim.url, {"method": "VM.get_all", "params": ["OpaqueRef:x"], "id": 8})
    assert answer == {"result": None, "error": ["SESSION_INVALID", "OpaqueRef:x"], "id": 8}


async def test_malformed_requests_are_http_500(asim: RunningSimulator) -> None:
    status, text = await _post(
        asim.url, {"jsonrpc": "2.0", "method": "session.logout", "id": 0} | {"params": "nope"}
    )
    assert status == 500 and "Malformed" in text
    status, _ = await _post(asim.url, b"{not json")
    assert status == 500
    status, _ = await _post(asim.url, b"<methodCall></methodCall>", path="")
    assert status == 500


async def test_xmlrpc_int64_and_datetime_encoding(asim: RunningSimulator) -> None:
    session = await _login(asim.url)
    body = xmlrpc.client.dumps((session,), "VDI.get_all_records")
    headers = {"Content-Type": "text/xml"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(asim.url, data=body, headers=headers) as resp,
    ):
        text = await resp.text()
    (answer,), _ = xmlrpc.client.loads(text)
    assert answer["Status"] == "Success"
    vdi = next(iter(answer["Value"].values()))
    assert isinstance(vdi["virtual_size"], str) and int(vdi["virtual_size"]) > 2**31
    assert "<dateTime.iso8601>" in text


async def test_event_from_over_jsonrpc(asim: RunningSimulator) -> None:
    session = await _login(asim.url)
    _, answer = await _post(
        asim.url,
        {"jsonrpc": "2.0", "method": "event.from", "params": [session, ["pool"], "", 0.0], "id": 1},
    )
    result = answer["result"]
    assert [e["class"] for e in result["events"]] == ["pool"]
    assert result["valid_ref_counts"]["pool"] == 1
    token = result["token"]
    assert len(token) == 41 and token[20] == ","
