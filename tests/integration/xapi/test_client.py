"""The JSON-RPC client against the real simulator on a loopback port."""

from __future__ import annotations

import pytest

from xapisim import RunningSimulator
from xenkeep.errors import ValidationError
from xenkeep.xapi.client import XapiClient, normalize_url, parse_fingerprint
from xenkeep.xapi.errors import (
    SessionInvalidError,
    XapiAuthenticationError,
    XapiConnectionError,
    XapiFailure,
)


async def test_login_and_calls(client: XapiClient) -> None:
    pools = await client.call("pool.get_all")
    assert len(pools) == 1
    name = await client.call("pool.get_name_label", pools[0])
    assert name
    hosts = await client.call("host.get_all_records")
    assert len(hosts) == 2
    assert all(r["name_label"] for r in hosts.values())
    assert client.logins == 1


async def test_wrong_password(sim: RunningSimulator) -> None:
    async with XapiClient(sim.url, "root", "wrong") as c:
        with pytest.raises(XapiAuthenticationError) as info:
            await c.call("pool.get_all")
    assert info.value.xapi_code == "SESSION_AUTHENTICATION_FAILED"
    assert "refused the user name or password" in info.value.message
    assert "wrong" not in info.value.message


async def test_failures_are_typed(client: XapiClient) -> None:
    with pytest.raises(XapiFailure) as info:
        await client.call("VM.get_record", "OpaqueRef:nonexistent")
    assert info.value.xapi_code == "HANDLE_INVALID"
    assert info.value.description[0] == "HANDLE_INVALID"
    assert "VM.get_record" in info.value.message
    with pytest.raises(XapiFailure) as info:
        await client.call("VM.no_such_method")
    assert info.value.xapi_code == "MESSAGE_METHOD_UNKNOWN"


async def test_injected_failure(client: XapiClient) -> None:
    pools = await client.call("pool.get_all")
    await client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "pool.get_name_label", "error": ["SR_FULL", "10", "0"], "count": 1},
    )
    with pytest.raises(XapiFailure) as info:
        await client.call("pool.get_name_label", pools[0])
    assert info.value.description == ["SR_FULL", "10", "0"]
    assert "full" in info.value.message
    # One failure only: the next call goes through.
    assert await client.call("pool.get_name_label", pools[0])


async def test_session_invalid_logs_in_again_once(
    client: XapiClient, sim: RunningSimulator
) -> None:
    await client.call("pool.get_all")
    ref = await client.session_ref()
    # Log the session out behind the client's back, as an expiry would.
    sim.pool.db.destroy("session", ref)
    assert await client.call("pool.get_all")
    assert client.logins == 2
    assert await client.session_ref() != ref


async def test_session_invalid_twice_is_raised(client: XapiClient, sim: RunningSimulator) -> None:
    await client.call("pool.get_all")
    # The pool keeps refusing the session: re-login once, then give up.
    await client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "pool.get_all", "error": ["SESSION_INVALID", "x"], "count": 2},
    )
    with pytest.raises(SessionInvalidError):
        await client.call("pool.get_all")
    assert client.logins == 2


async def test_concurrent_calls_share_one_relogin(
    client: XapiClient, sim: RunningSimulator
) -> None:
    import asyncio

    await client.call("pool.get_all")
    sim.pool.db.destroy("session", await client.session_ref())
    results = await asyncio.gather(*(client.call("host.get_all") for _ in range(8)))
    assert all(len(r) == 2 for r in results)
    assert client.logins == 2


async def test_per_call_timeout(client: XapiClient) -> None:
    pools = await client.call("pool.get_all")
    await client.call(
        "sim.inject_fault", "delay_call", {"method": "pool.get_name_label", "seconds": 5}
    )
    with pytest.raises(XapiConnectionError) as info:
        await client.call("pool.get_name_label", pools[0], timeout=0.2)
    assert "did not answer in time" in info.value.message
    await client.call("sim.clear_faults", "")


async def test_unreachable_pool() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with XapiClient(f"http://127.0.0.1:{port}", "root", "x", connect_timeout=2) as c:
        with pytest.raises(XapiConnectionError) as info:
            await c.call("pool.get_all")
    assert "cannot talk to" in info.value.message


async def test_secrets_stay_out_of_repr(client: XapiClient) -> None:
    await client.call("pool.get_all")
    ref = await client.session_ref()
    assert "demo" not in repr(client) and ref not in repr(client)


def test_url_and_fingerprint_validation() -> None:
    assert normalize_url("xen1.example.net") == "https://xen1.example.net"
    assert normalize_url("http://127.0.0.1:8090/") == "http://127.0.0.1:8090"
    assert normalize_url("https://[::1]:443") == "https://[::1]:443"
    for bad in ("ftp://x", "https://", "https://h/path", "https://u:p@h"):
        with pytest.raises(ValidationError):
            normalize_url(bad)
    digest = bytes(range(32))
    text = ":".join(f"{b:02X}" for b in digest)
    assert parse_fingerprint(text) == digest
    assert parse_fingerprint(text.replace(":", "").lower()) == digest
    with pytest.raises(ValidationError):
        parse_fingerprint("AB:CD")
    with pytest.raises(ValidationError):
        XapiClient("https://h", "root", "x")  # https needs a confirmed fingerprint
