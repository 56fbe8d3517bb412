"""The XVA of the appliance: layout, disk contents, and import into the simulator."""

from __future__ import annotations

import hashlib
import http.client
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from XenAPI import XenAPI

from xenkeep.formats import xva

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(3600)]

MIB = 1 << 20


def test_outputs_and_checksums(image_out: Path) -> None:
    sums = (image_out / "SHA256SUMS").read_text().splitlines()
    names = {line.split()[1] for line in sums}
    assert {"xenkeep.xva", "xenkeep.raw", "manifest.txt"} <= names
    # sha256sum itself checks the file, not our code.
    subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=image_out, check=True)
    manifest = (image_out / "manifest.txt").read_text()
    for package in ("linux-image-amd64", "python3-aiohttp", "xenstore-utils", "nftables"):
        assert re.search(rf"^{package} \S+", manifest, re.M), package
    for absent in ("gcc", "cpp", "build-essential", "python3-pip"):
        assert not re.search(rf"^{absent} ", manifest, re.M), absent


def test_tar_lists_ova_xml_first(image_out: Path) -> None:
    listing = subprocess.run(
        ["tar", "-tf", str(image_out / "xenkeep.xva")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert listing[0] == "ova.xml"
    chunks = [n for n in listing[1:] if not n.endswith(".xxhash")]
    assert chunks == sorted(chunks) and chunks[0].endswith("/00000000")
    assert all(f"{c}.xxhash" in listing for c in chunks[:5])


def test_ova_xml_describes_the_appliance(image_out: Path) -> None:
    with (image_out / "xenkeep.xva").open("rb") as f:
        header = next(iter(xva.iter_xva(f)))
    assert isinstance(header, xva.XvaHeader)
    (vm,) = header.find("VM")
    snap = vm.snapshot
    assert snap["VCPUs_max"] == 2 or str(snap["VCPUs_max"]) == "2"
    assert int(snap["memory_static_max"]) == 2 << 30
    assert snap["HVM_boot_policy"] == "BIOS order"
    assert snap["other_config"]["xenkeep_version"]
    assert len(header.find("VIF")) == 1
    (vdi_size,) = header.vdi_sizes().values()
    assert vdi_size > (image_out / "xenkeep.raw").stat().st_size


def test_disk_in_xva_equals_raw_image(image_out: Path) -> None:
    """Rebuild the disk from the tar members with tarfile, independently of the codec."""
    raw = image_out / "xenkeep.raw"
    raw_size = raw.stat().st_size
    present: set[int] = set()
    with tarfile.open(image_out / "xenkeep.xva", mode="r|") as tar, raw.open("rb") as disk:
        last_hash = ""
        for member in tar:
            match = re.fullmatch(r"Ref:\d+/(\d{8})(\.xxhash)?", member.name)
            if member.name == "ova.xml" or match is None:
                continue
            f = tar.extractfile(member)
            assert f is not None
            data = f.read()
            index = int(match.group(1))
            if match.group(2):
                assert data.decode() == last_hash, member.name
                continue
            last_hash = xxhash.xxh64(data).hexdigest().upper()
            present.add(index)
            disk.seek(index * MIB)
            expected = disk.read(len(data))
            # Beyond the raw image the virtual disk is zeros.
            expected += bytes(len(data) - len(expected))
            assert data == expected, f"chunk {index} differs from the raw image"
    # Every non-zero MiB of the raw image is in the archive.
    with raw.open("rb") as disk:
        for index in range((raw_size + MIB - 1) // MIB):
            block = disk.read(MIB)
            if block.count(0) != len(block):
                assert index in present, f"non-zero chunk {index} missing from the XVA"


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m xapisim`` with the demo pool, as its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "xapisim", "--state", str(tmp_path / "pool"), "--demo",
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+?)/? ", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail("the simulator did not start")
    yield url, proc
    proc.terminate()
    proc.wait(timeout=30)
    proc.stdout.close()


def test_xva_imports_into_the_simulator(
    image_out: Path, simulator: tuple[str, subprocess.Popen[str]]
) -> None:
    url, _ = simulator
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", "demo", "1.0", "xenkeep-image-test")
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        xva_path = image_out / "xenkeep.xva"
        size = xva_path.stat().st_size
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        conn.putrequest("PUT", f"/import?session_id={session._session}")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        digest = hashlib.sha256()
        with xva_path.open("rb") as f:
            while piece := f.read(4 * MIB):
                digest.update(piece)
                conn.send(piece)
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        assert resp.status == 200, body
        vm_ref = body.strip()
        record = session.xenapi.VM.get_record(vm_ref)
        assert record["name_label"] == "XenKeep"
        assert record["VCPUs_max"] == "2"
        assert record["memory_static_max"] == str(2 << 30)
        (vbd,) = record["VBDs"]
        vdi = session.xenapi.VBD.get_VDI(vbd)
        assert (
            int(session.xenapi.VDI.get_virtual_size(vdi))
            >= (image_out / "xenkeep.raw").stat().st_size
        )
        assert len(record["VIFs"]) == 1
    finally:
        session.xenapi.session.logout()
        session("close")()
