"""The simulator's ``GET /pool/xmldbdump`` on the wire: as XAPI answers it (200,
no length, connection closed), authenticated like every transfer."""

from __future__ import annotations

import base64
import http.client
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from xapisim.testing import SimulatorThread


def fetch(sim: SimulatorThread, password: str) -> http.client.HTTPResponse:
    auth = base64.b64encode(f"root:{password}".encode()).decode()
    url = sim.url.rstrip("/") + "/pool/xmldbdump"
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {auth}"})  # noqa: S310
    resp: http.client.HTTPResponse = urllib.request.urlopen(req, timeout=30)  # noqa: S310
    return resp


def test_dump_as_xapi_sends_it(sim: SimulatorThread) -> None:
    with fetch(sim, "demo") as resp:
        assert resp.status == 200
        assert resp.headers.get("Content-Length") is None
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        assert resp.headers.get("Connection", "").lower() == "close"
        body = resp.read()
    root = ET.fromstring(body)  # noqa: S314 - the simulator's own output
    names = {t.get("name") for t in root.findall("table")}
    assert {"VM", "VDI", "SR", "host", "pool", "network"} <= names
    assert "session" not in names


def test_dump_needs_credentials(sim: SimulatorThread) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        fetch(sim, "wrong")
    assert info.value.code == 401
    info.value.close()
