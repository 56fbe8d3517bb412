"""``GET /pool/xmldbdump`` through the client: the pool's database as XAPI's
XML, streamed in pieces with no announced length; a connection cut before
any byte is tried again, one cut midway fails clearly (the dump changes
between calls, so it is never stitched together)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.errors import TransferError
from xenkeep.xapi.transfer import TransferOptions, export_pool_database


class Pieces:
    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    async def __call__(self, data: bytes) -> None:
        self.pieces.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.pieces)


async def test_dump_is_xapi_xml_with_every_object(client: XapiClient) -> None:
    sink = Pieces()
    result = await export_pool_database(client, sink, options=TransferOptions(chunk_size=4096))
    assert result.bytes == len(sink.data) and len(sink.pieces) > 1
    root = ET.fromstring(sink.data)  # noqa: S314 - the simulator's own output
    assert root.tag == "database"
    manifest = {p.get("key"): p.get("value") for p in root.find("manifest") or []}
    assert manifest["schema_major_vsn"] == "5" and int(manifest["generation_count"] or 0) > 0
    tables = {t.get("name"): t for t in root.findall("table")}
    assert "session" not in tables and "task" not in tables
    vms = {r.get("name_label"): r for r in tables["VM"].findall("row")}
    assert {"web-01", "db-01", "mail-01"} <= set(vms)
    db01 = vms["db-01"]
    assert db01.get("ref", "").startswith("OpaqueRef:")
    uuid = await client.call("VM.get_uuid", db01.get("ref"))
    assert db01.get("uuid") == uuid
    # Maps as XAPI writes them: S-expressions.
    assert db01.get("blocked_operations", "").startswith("((")
    [pool] = tables["pool"].findall("row")
    assert pool.get("uuid") == await client.call("pool.get_uuid", pool.get("ref"))


async def test_a_cut_before_the_first_byte_is_retried(client: XapiClient) -> None:
    await client.call(
        "sim.inject_fault", "drop_transfer", {"bytes": 0, "count": 1, "path": "/pool/xmldbdump"}
    )
    sink = Pieces()
    result = await export_pool_database(client, sink, options=TransferOptions(retry_delay=0.01))
    assert result.attempts == 2
    assert ET.fromstring(sink.data).tag == "database"  # noqa: S314 - the simulator's own output


async def test_a_cut_midway_fails_clearly(client: XapiClient) -> None:
    await client.call(
        "sim.inject_fault",
        "drop_transfer",
        {"bytes": 5000, "count": 5, "path": "/pool/xmldbdump"},
    )
    with pytest.raises(TransferError) as info:
        await export_pool_database(
            client, Pieces(), options=TransferOptions(retry_delay=0.01, chunk_size=1024)
        )
    assert "dump of the pool database" in info.value.message
    assert "bytes received" in info.value.message
