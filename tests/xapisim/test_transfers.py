"""HTTP transfers: export_raw_vdi (raw, VHD, differencing VHD) and import_raw_vdi.

The VHDs are checked with independent means: ``qemu-img`` for full VHDs and
a small parser written here for the differencing one. The tests' own file
work and tools run off the event loop the simulator serves on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from xapisim import RunningSimulator

MiB = 1024 * 1024
BLOCK = 2 * MiB


class Rpc:
    """A tiny JSON-RPC client, so these tests do not share code with the product."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url + "jsonrpc"
        self.session = ""

    async def __call__(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "method": method, "params": [self.session, *params], "id": 1}
        data = io.BytesIO(json.dumps(body).encode())
        headers = {"Content-Type": "application/json"}
        async with self.http.post(self.url, data=data, headers=headers) as resp:
            answer = await resp.json()
        if "error" in answer:
            raise RuntimeError([answer["error"]["message"], *answer["error"]["data"]])
        return answer["result"]

    async def login(self) -> None:
        body = {
            "jsonrpc": "2.0",
            "method": "session.login_with_password",
            "params": ["root", "demo", "2.21", "tests"],
            "id": 0,
        }
        async with self.http.post(self.url, json=body) as resp:
            self.session = (await resp.json())["result"]


@pytest.fixture
async def rpc(asim: RunningSimulator) -> Any:
    async with aiohttp.ClientSession() as http:
        client = Rpc(http, asim.url)
        await client.login()
        yield client


async def _vm_disk(rpc: Rpc, name: str) -> str:
    vm = (await rpc("VM.get_by_name_label", name))[0]
    for vbd in await rpc("VM.get_VBDs", vm):
        if await rpc("VBD.get_type", vbd) == "Disk":
            return str(await rpc("VBD.get_VDI", vbd))
    raise AssertionError(name)


async def _download(rpc: Rpc, query: str) -> bytes:
    url = rpc.url.replace("jsonrpc", f"export_raw_vdi?session_id={rpc.session}&{query}")
    async with rpc.http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        data = await resp.read()
        assert len(data) == int(resp.headers["Content-Length"])
        return data


def _sha_sync(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _sha(path: Path) -> str:
    return await asyncio.to_thread(_sha_sync, path)


async def _run(*argv: str) -> str:
    """Run a tool (never a shell); its output, or fail the test."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"{argv[0]}: {err.decode()}"
    return out.decode()


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


async def write(rpc: Rpc, vdi: str, offset: int, payload: bytes) -> None:
    """Write guest data through the simulator, in pieces of at most 512 KiB."""
    for at in range(0, len(payload), 512 * 1024):
        piece = payload[at : at + 512 * 1024]
        await rpc("sim.write_vdi", vdi, offset + at, base64.b64encode(piece).decode())


async def _small_disk(rpc: Rpc, size: int = 48 * MiB) -> str:
    """A VDI with data, zeros written over data, and holes."""
    sr = await rpc("pool.get_default_SR", (await rpc("pool.get_all"))[0])
    vdi = await rpc(
        "VDI.create", {"name_label": "t", "SR": sr, "virtual_size": size, "type": "user"}
    )
    for offset, payload in (
        (0, b"\x5a" * 3 * MiB),
        (20 * MiB + 512, bytes(range(256)) * 4096),
        (size - 1024, b"\x01" * 1024),
        (MiB, bytes(4096)),
    ):
        await write(rpc, vdi, offset, payload)
    return str(vdi)


async def test_raw_export_matches_disk_file(rpc: Rpc) -> None:
    vdi = await _small_disk(rpc)
    path = Path(await rpc("sim.vdi_path", vdi))
    data = await _download(rpc, f"vdi={vdi}&format=raw")
    assert len(data) == 48 * MiB
    assert hashlib.sha256(data).hexdigest() == await _sha(path)


async def test_raw_export_of_a_large_demo_disk_streams(rpc: Rpc) -> None:
    vdi = await _vm_disk(rpc, "web-01")
    url = rpc.url.replace("jsonrpc", f"export_raw_vdi?session_id={rpc.session}&vdi={vdi}")
    async with rpc.http.get(url) as resp:
        assert int(resp.headers["Content-Length"]) == 20 * 1024**3
        head = await resp.content.readexactly(MiB)
    path = Path(await rpc("sim.vdi_path", vdi))
    assert head == await asyncio.to_thread(_read_at, path, 0, MiB)


async def test_vhd_export_reads_with_qemu_img(rpc: Rpc, tmp_path: Path) -> None:
    vdi = await _small_disk(rpc)
    # Export by uuid works as by ref.
    uuid = await rpc("VDI.get_uuid", vdi)
    data = await _download(rpc, f"vdi={uuid}&format=vhd")
    vhd = tmp_path / "disk.vhd"
    await asyncio.to_thread(vhd.write_bytes, data)
    info = await _run("qemu-img", "info", "--output=json", "-f", "vpc", str(vhd))
    assert f'"virtual-size": {48 * MiB}' in info
    raw = tmp_path / "disk.raw"
    await _run("qemu-img", "convert", "-f", "vpc", "-O", "raw", str(vhd), str(raw))
    source = Path(await rpc("sim.vdi_path", vdi))
    await _run("cmp", str(raw), str(source))
    # Only non-zero 2 MiB blocks travel: 0, 1, 10 and 23.
    _, blocks, _ = _parse_vhd(data)
    assert sorted(blocks) == [0, 1, 10, 23]


async def test_vhd_export_of_a_demo_disk_skips_empty_blocks(rpc: Rpc) -> None:
    vdi = await _vm_disk(rpc, "ci-runner-01")
    url = rpc.url.replace(
        "jsonrpc", f"export_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=vhd"
    )
    async with rpc.http.get(url) as resp:
        total = 0
        async for piece in resp.content.iter_chunked(MiB):
            total += len(piece)
    assert total == int(resp.headers["Content-Length"])
    assert total < 32 * MiB


def _parse_vhd(data: bytes) -> tuple[bytes, dict[int, bytes], bytes]:
    """(parent uuid, {block index: data}, footer uuid) of a dynamic/differencing
    VHD whose blocks are all whole."""
    parent, blocks, footer_uuid = _parse_blocks(data)
    for index, (bitmap, _data) in blocks.items():
        assert bitmap == b"\xff" * 512, f"block {index} is partial"
    return parent, {i: d for i, (_b, d) in blocks.items()}, footer_uuid


def _parse_blocks(data: bytes) -> tuple[bytes, dict[int, tuple[bytes, bytes]], bytes]:
    """(parent uuid, {block index: (bitmap, data)}, footer uuid) of a dynamic or
    differencing VHD."""
    footer = data[-512:]
    assert footer[:8] == b"conectix" and data[:512] == footer
    disk_type = struct.unpack(">I", footer[60:64])[0]
    header_at = struct.unpack(">Q", footer[16:24])[0]
    header = data[header_at : header_at + 1024]
    assert header[:8] == b"cxsparse"
    bat_at = struct.unpack(">Q", header[16:24])[0]
    entries = struct.unpack(">I", header[28:32])[0]
    block_size = struct.unpack(">I", header[32:36])[0]
    assert block_size == BLOCK
    blocks: dict[int, tuple[bytes, bytes]] = {}
    for i in range(entries):
        sector = struct.unpack(">I", data[bat_at + 4 * i : bat_at + 4 * i + 4])[0]
        if sector != 0xFFFFFFFF:
            start = sector * 512 + 512  # past the sector bitmap
            blocks[i] = (data[sector * 512 : start], data[start : start + BLOCK])
    parent = header[40:56] if disk_type == 4 else b""
    return parent, blocks, footer[68:84]


@pytest.mark.parametrize("partial", [False, True], ids=["whole-blocks", "partial-blocks"])
async def test_vhd_with_base_holds_exactly_the_changed_blocks(
    asim: RunningSimulator, rpc: Rpc, partial: bool
) -> None:
    asim.pool.partial_blocks = partial
    vdi = await _vm_disk(rpc, "mail-01")
    vm = (await rpc("VM.get_by_name_label", "mail-01"))[0]
    snap1 = await rpc("VM.snapshot", vm, "s1")
    base = None
    for vbd in await rpc("VM.get_VBDs", snap1):
        if await rpc("VBD.get_type", vbd) == "Disk":
            base = await rpc("VBD.get_VDI", vbd)
    assert base is not None
    writes = {5: b"\x11" * 4096, 9: b"\x22" * 512, 300: b"\x33" * (BLOCK + 10)}
    for index, payload in writes.items():
        await write(rpc, vdi, index * BLOCK + 1024, payload)
    # A write of the bytes already there is not a change.
    same = base64.b64decode(await rpc("sim.read_vdi", vdi, 0, 4096))
    await write(rpc, vdi, 0, same)
    snap2_vdi = await rpc("VDI.snapshot", vdi, {})
    data = await _download(rpc, f"vdi={snap2_vdi}&format=vhd&base={base}")
    parent, blocks, footer_uuid = _parse_blocks(data)
    base_uuid = await rpc("VDI.get_uuid", base)
    assert parent.hex() == base_uuid.replace("-", "")
    assert footer_uuid.hex() == (await rpc("VDI.get_uuid", snap2_vdi)).replace("-", "")
    assert sorted(blocks) == [5, 9, 300, 301]
    path = Path(await rpc("sim.vdi_path", snap2_vdi))
    # The sectors each write touched (mail-01's disk is zeros there before).
    changed = {5: range(2, 10), 9: range(2, 3), 300: range(2, 4096), 301: range(3)}
    for index, (bitmap, content) in blocks.items():
        current = await asyncio.to_thread(_read_at, path, index * BLOCK, BLOCK)
        if not partial:
            assert bitmap == b"\xff" * 512 and content == current
            continue
        bits = [s for s in range(BLOCK // 512) if bitmap[s // 8] & (0x80 >> (s % 8))]
        assert bits == list(changed[index]), index
        for sector in range(BLOCK // 512):
            at = slice(sector * 512, (sector + 1) * 512)
            # Outside the bitmap: filler, never the disk's bytes.
            want = current[at] if sector in changed[index] else b"\xe5" * 512
            assert content[at] == want, (index, sector)


def _write_source(source: Path, size: int) -> None:
    """A sparse raw disk with data in two places."""
    with source.open("wb") as f:
        f.truncate(size)
        f.seek(3 * MiB)
        f.write(b"hello world" * 50_000)
        f.seek(size - 4096)
        f.write(b"\xee" * 4096)


async def test_import_raw_and_vhd(rpc: Rpc, tmp_path: Path) -> None:
    sr = await rpc("pool.get_default_SR", (await rpc("pool.get_all"))[0])
    size = 24 * MiB
    vdi = await rpc(
        "VDI.create",
        {
            "name_label": "in",
            "SR": sr,
            "virtual_size": size,
            "type": "user",
            "sharable": False,
            "read_only": False,
            "other_config": {},
        },
    )
    source = tmp_path / "src.raw"
    await asyncio.to_thread(_write_source, source, size)
    url = rpc.url.replace(
        "jsonrpc", f"import_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=raw"
    )
    async with rpc.http.put(url, data=source.open("rb")) as resp:
        assert resp.status == 200, await resp.text()
    target = Path(await rpc("sim.vdi_path", vdi))
    assert await _sha(target) == await _sha(source)
    # The zero ranges stay holes.
    assert (await asyncio.to_thread(target.stat)).st_blocks * 512 < 4 * MiB
    # A VHD made by qemu-img imports to the same bytes.
    vdi2 = await rpc(
        "VDI.create", {"name_label": "in2", "SR": sr, "virtual_size": size, "type": "user"}
    )
    vhd = tmp_path / "src.vhd"
    await _run(
        *["qemu-img", "convert", "-f", "raw", "-O", "vpc"],
        *["-o", "subformat=dynamic,force_size=on", str(source), str(vhd)],
    )
    url = rpc.url.replace(
        "jsonrpc", f"import_raw_vdi?session_id={rpc.session}&vdi={vdi2}&format=vhd"
    )
    task = await rpc("task.create", "import", "")
    async with rpc.http.put(url + f"&task_id={task}", data=vhd.open("rb")) as resp:
        assert resp.status == 200, await resp.text()
    assert await _sha(Path(await rpc("sim.vdi_path", vdi2))) == await _sha(source)
    assert await rpc("task.get_status", task) == "success"
    assert await rpc("task.get_progress", task) == 1.0
    # Garbage is refused with a clear error and the task records it.
    task = await rpc("task.create", "bad import", "")
    async with rpc.http.put(url + f"&task_id={task}", data=io.BytesIO(b"not a vhd" * 100)) as resp:
        assert resp.status == 500
        assert "VDI_IO_ERROR" in await resp.text()
    assert await rpc("task.get_status", task) == "failure"
    assert (await rpc("task.get_error_info", task))[0] == "VDI_IO_ERROR"


async def test_transfer_auth(rpc: Rpc, asim: RunningSimulator) -> None:
    vdi = await _vm_disk(rpc, "web-01")
    base = asim.url + f"export_raw_vdi?vdi={vdi}&format=raw"
    async with rpc.http.get(base) as resp:
        assert resp.status == 401
    async with rpc.http.get(base + "&session_id=OpaqueRef:bogus") as resp:
        assert resp.status == 401
    async with rpc.http.get(base, auth=aiohttp.BasicAuth("root", "wrong")) as resp:
        assert resp.status == 401
    async with rpc.http.get(base, auth=aiohttp.BasicAuth("root", "demo")) as resp:
        assert resp.status == 200
        first = await resp.content.read(1024)
        assert first[510:512] == b"\x55\xaa"
    async with rpc.http.get(
        asim.url + "export_raw_vdi?vdi=OpaqueRef:nope", auth=aiohttp.BasicAuth("root", "demo")
    ) as resp:
        assert resp.status == 404
        assert "HANDLE_INVALID" in await resp.text()
    # Basic-auth sessions are temporary.
    sessions = await rpc("session.get_all")
    assert sessions == [rpc.session]
