"""Certificate pinning against a real TLS server (the simulator behind a
self-signed certificate): trust on first use, then exactly that certificate."""

from __future__ import annotations

import pytest

from tests.integration.xapi.simfixtures import TlsSimulator
from xenkeep.xapi.client import XapiClient, probe_fingerprint
from xenkeep.xapi.errors import FingerprintMismatchError, XapiConnectionError


async def test_probe_reads_the_certificate_fingerprint(tls_sim: TlsSimulator) -> None:
    assert await probe_fingerprint(tls_sim.url) == tls_sim.tls.fingerprint


async def test_pinned_fingerprint_is_accepted(tls_sim: TlsSimulator) -> None:
    async with XapiClient(
        tls_sim.url, "root", "demo", fingerprint=tls_sim.tls.fingerprint
    ) as client:
        assert len(await client.call("host.get_all")) == 2


async def test_wrong_fingerprint_is_refused_before_the_password_is_sent(
    tls_sim: TlsSimulator,
) -> None:
    wrong = ":".join(["AB"] * 32)
    sessions_before = len(tls_sim.pool.db.refs("session"))
    async with XapiClient(tls_sim.url, "root", "demo", fingerprint=wrong) as client:
        with pytest.raises(FingerprintMismatchError) as info:
            await client.call("host.get_all")
    assert info.value.got == tls_sim.tls.fingerprint
    assert wrong in info.value.message
    # The login never reached the pool.
    assert len(tls_sim.pool.db.refs("session")) == sessions_before


async def test_probe_of_a_closed_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(XapiConnectionError) as info:
        await probe_fingerprint(f"https://127.0.0.1:{port}", timeout=2)
    assert "cannot reach" in info.value.message
