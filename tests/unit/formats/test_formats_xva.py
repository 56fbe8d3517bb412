"""XVA codec: checked against GNU tar, Python's tarfile and xxhsum, plus corruptions."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest
import xxhash
from formats_xva_testlib import MIB, VDI, make_disk, ova, vm_objects, write_vm

from xenkeep.formats import xapi_records, xva
from xenkeep.formats.errors import FormatError, XvaFormatError

MTIME = 1_700_000_000


@pytest.fixture
def disk(tmp_path: Path) -> tuple[Path, int, bytes]:
    size = 5 * MIB + 1536  # not a multiple of 1 MiB: the last chunk is short
    path = tmp_path / "disk.raw"
    return path, size, make_disk(path, size)


@pytest.fixture
def archive(tmp_path: Path, disk: tuple[Path, int, bytes]) -> Path:
    path, size, _ = disk
    out = tmp_path / "vm.xva"
    with out.open("wb") as f:
        stats = write_vm(f, size, path, mtime=MTIME)
    assert stats.chunks_written == 3  # chunks 0, 2, 5
    assert stats.chunks_skipped == 3  # chunks 1 (hole), 3 (zeros), 4 (hole)
    assert stats.bytes_written == out.stat().st_size
    return out


EXPECTED_MEMBERS = [
    "ova.xml",
    "Ref:002/00000000",
    "Ref:002/00000000.xxhash",
    "Ref:002/00000002",
    "Ref:002/00000002.xxhash",
    "Ref:002/00000005",
    "Ref:002/00000005.xxhash",
]


def test_gnu_tar_lists_ova_xml_first(archive: Path) -> None:
    listing = subprocess.run(
        ["tar", "tvf", str(archive)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert [line.split()[-1] for line in listing] == EXPECTED_MEMBERS
    assert all(line.startswith("-rw-r--r-- root/root") for line in listing)
    assert archive.stat().st_size % 512 == 0
    assert archive.read_bytes()[-1024:] == bytes(1024)


def test_python_tarfile_reads_members(archive: Path, disk: tuple[Path, int, bytes]) -> None:
    _, size, raw = disk
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == EXPECTED_MEMBERS
        assert all(m.mtime == MTIME and m.uid == 0 and m.mode == 0o644 for m in members)
        last = tar.extractfile("Ref:002/00000005")
        assert last is not None
        assert last.read() == raw[5 * MIB :]
        assert members[5].size == size - 5 * MIB


def test_xxhsum_agrees_with_chunk_checksum(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        chunk = tar.extractfile("Ref:002/00000002")
        stored = tar.extractfile("Ref:002/00000002.xxhash")
        assert chunk is not None and stored is not None
        (tmp_path / "chunk").write_bytes(chunk.read())
        stored_hex = stored.read().decode()
    out = subprocess.run(
        ["xxhsum", "-H1", str(tmp_path / "chunk")], check=True, capture_output=True, text=True
    ).stdout
    assert len(stored_hex) == 16 and stored_hex == stored_hex.upper()
    assert out.split()[0].upper() == stored_hex


def test_round_trip_gives_identical_bytes(
    archive: Path, disk: tuple[Path, int, bytes], tmp_path: Path
) -> None:
    _, size, raw = disk
    dest = tmp_path / "extracted.raw"
    with archive.open("rb") as f:
        assert xva.extract_vdi(f, VDI, dest) == size
    assert dest.read_bytes() == raw
    # Skipped chunks stay holes in the extracted file.
    assert dest.stat().st_blocks * 512 < size


def test_image_smaller_than_disk_is_zero_padded(tmp_path: Path) -> None:
    image = tmp_path / "small.raw"
    image.write_bytes(b"\x01" * (MIB + 10))
    out = tmp_path / "vm.xva"
    with out.open("wb") as f:
        write_vm(f, 8 * MIB, image, mtime=MTIME)
    dest = tmp_path / "disk.raw"
    with out.open("rb") as f:
        xva.extract_vdi(f, VDI, dest)
    assert dest.read_bytes() == b"\x01" * (MIB + 10) + bytes(7 * MIB - 10)


def test_image_larger_than_its_vdi_is_refused(disk: tuple[Path, int, bytes]) -> None:
    path, size, _ = disk
    with pytest.raises(ValueError, match=r"exceeds the virtual size .* of VDI Ref:002"):
        write_vm(io.BytesIO(), size - 512, path, mtime=MTIME)


def test_each_vdi_needs_one_image(disk: tuple[Path, int, bytes]) -> None:
    path, size, _ = disk
    objects = [o for o in vm_objects(size) if o.cls != "VDI"]
    with pytest.raises(ValueError, match=r"each VDI needs exactly one image"):
        xva.write_xva(io.BytesIO(), xva.XvaVersion(), objects, {VDI: path}, mtime=MTIME)
    with pytest.raises(ValueError, match=r"each VDI needs exactly one image"):
        xva.write_xva(io.BytesIO(), xva.XvaVersion(), vm_objects(size), {}, mtime=MTIME)


def test_deterministic_output(tmp_path: Path, disk: tuple[Path, int, bytes]) -> None:
    path, size, _ = disk

    def digest(mtime: int) -> str:
        buf = io.BytesIO()
        write_vm(buf, size, path, mtime=mtime)
        return hashlib.sha256(buf.getvalue()).hexdigest()

    assert digest(MTIME) == digest(MTIME)
    assert digest(MTIME) != digest(MTIME + 1)


def test_records_read_back_complete_and_in_xapi_order(archive: Path) -> None:
    with archive.open("rb") as f:
        header = next(iter(xva.iter_xva(f)))
    assert isinstance(header, xva.XvaHeader)
    assert int(header.version["xapi_major"]) == 1
    assert int(header.version["export_vsn"]) == 2
    assert [o.cls for o in header.objects] == ["VM", "VBD", "VDI", "SR"]
    for obj in header.objects:
        expected = [name for name, _ in xapi_records.FIELDS[obj.cls]]
        assert list(obj.snapshot) == expected, obj.cls
    (vm,) = header.find("VM")
    assert vm.snapshot["VBDs"] == ["Ref:001"] and vm.snapshot["HVM_shadow_multiplier"] == 1.0
    assert vm.snapshot["snapshot_time"] == "19700101T00:00:00Z"
    assert header.vdi_sizes() == {VDI: 5 * MIB + 1536}


def test_complete_record_rejects_unknown_and_mistyped_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown VM fields: name"):
        xva.complete_record("VM", {"name": "x"})
    with pytest.raises(ValueError, match=r"VM.VCPUs_max must be an integer"):
        xva.complete_record("VM", {"VCPUs_max": "2"})
    with pytest.raises(ValueError, match=r"not representable in XML"):
        xva.render_ova_xml(
            xva.XvaVersion(), [xva.XvaObject("VM", "Ref:0", {"name_label": "a\x00b"})]
        )


def test_memory_does_not_grow_with_disk_size(tmp_path: Path) -> None:
    """An 8 GiB sparse disk streams with a peak of a few chunks."""
    image = tmp_path / "big.raw"
    with image.open("wb") as f:
        f.truncate(8 << 30)
        f.seek(4 << 30)
        f.write(os.urandom(3 * MIB))

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.n = 0

        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            n = len(b)  # type: ignore[arg-type]
            self.n += n
            return n

    sink = Sink()
    tracemalloc.start()
    try:
        stats = write_vm(sink, 8 << 30, image, mtime=MTIME)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.chunks_written == 5  # first, 3 data chunks, last
    assert peak < 8 * MIB


# --------------------------------------------------------------------------
# Corruptions: archives crafted with Python's tarfile, independent of the writer


def build_tar(members: list[tuple[str, bytes]], *, end: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if not end:
        raw = raw.rstrip(b"\0")
        raw += bytes(-len(raw) % 512)
    return raw


def xxh(data: bytes) -> bytes:
    return xxhash.xxh64(data).hexdigest().upper().encode()


CH0 = b"\x01" * MIB
CH1 = b"\x02" * MIB


def good_members() -> list[tuple[str, bytes]]:
    return [
        ("ova.xml", ova()),
        ("Ref:002/00000000", CH0),
        ("Ref:002/00000000.xxhash", xxh(CH0)),
        ("Ref:002/00000001", CH1),
        ("Ref:002/00000001.xxhash", xxh(CH1)),
    ]


def read_all(raw: bytes) -> list[xva.XvaHeader | xva.XvaChunk]:
    return list(xva.iter_xva(io.BytesIO(raw)))


def test_crafted_good_archive_reads() -> None:
    items = read_all(build_tar(good_members()))
    chunks = [i for i in items if isinstance(i, xva.XvaChunk)]
    assert [(c.index, c.data[:1], c.checksum) for c in chunks] == [
        (0, b"\x01", "xxhash"),
        (1, b"\x02", "xxhash"),
    ]


def test_legacy_sha1_checksums_are_accepted() -> None:
    members = good_members()
    members[2] = (
        "Ref:002/00000000.checksum",
        hashlib.sha1(CH0, usedforsecurity=False).hexdigest().encode(),
    )
    chunks = [i for i in read_all(build_tar(members)) if isinstance(i, xva.XvaChunk)]
    assert chunks[0].checksum == "sha1"
    members[2] = (
        "Ref:002/00000000.checksum",
        hashlib.sha1(CH1, usedforsecurity=False).hexdigest().encode(),
    )
    with pytest.raises(XvaFormatError, match=r"checksum mismatch for Ref:002/00000000: .*sha1"):
        read_all(build_tar(members))


def test_flipped_chunk_byte() -> None:
    members = good_members()
    members[3] = ("Ref:002/00000001", b"\x02" * 1000 + b"\x03" + b"\x02" * (MIB - 1001))
    with pytest.raises(XvaFormatError, match=r"checksum mismatch for Ref:002/00000001"):
        read_all(build_tar(members))


def test_flipped_byte_in_written_archive(archive: Path) -> None:
    raw = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        offset = tar.getmember("Ref:002/00000002").offset_data
    raw[offset + 5000] ^= 0xFF
    with pytest.raises(XvaFormatError, match=r"checksum mismatch for Ref:002/00000002"):
        read_all(bytes(raw))


def test_missing_checksum_member() -> None:
    members = good_members()
    del members[2]
    with pytest.raises(XvaFormatError, match=r"00000000 is not followed by its .xxhash"):
        read_all(build_tar(members))
    members = good_members()[:-1]
    with pytest.raises(XvaFormatError, match=r"00000001 has no .xxhash or .checksum"):
        read_all(build_tar(members))


def test_reordered_chunks() -> None:
    members = good_members()
    members[1:5] = [members[3], members[4], members[1], members[2]]
    with pytest.raises(XvaFormatError, match=r"starts at chunk 00000001"):
        read_all(build_tar(members))
    members = good_members()
    members += [("Ref:002/00000000", CH0), ("Ref:002/00000000.xxhash", xxh(CH0))]
    with pytest.raises(XvaFormatError, match=r"numbers must increase"):
        read_all(build_tar(members))


def test_ova_xml_not_first() -> None:
    members = good_members()
    members[0], members[1] = members[1], members[0]
    with pytest.raises(XvaFormatError, match=r"first member is 'Ref:002/00000000'"):
        read_all(build_tar(members))


def test_truncated_archive() -> None:
    raw = build_tar(good_members())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        last = tar.getmembers()[-1]
        end_of_data = last.offset_data + 512
    # One zero block of the two, inside the last chunk, inside ova.xml, mid-header.
    for cut in (end_of_data + 512, end_of_data - 700_000, 1000, 300):
        with pytest.raises(XvaFormatError, match=r"truncated archive"):
            read_all(raw[:cut])
    with pytest.raises(XvaFormatError, match=r"no end-of-archive marker"):
        read_all(build_tar(good_members(), end=False))


def test_missing_last_chunk() -> None:
    with pytest.raises(XvaFormatError, match=r"last chunk is 00000000, expected 00000001"):
        read_all(build_tar(good_members()[:3]))


def test_chunk_beyond_disk_and_wrong_size() -> None:
    members = good_members()
    members += [("Ref:002/00000002", CH0), ("Ref:002/00000002.xxhash", xxh(CH0))]
    with pytest.raises(XvaFormatError, match=r"beyond the VDI's size"):
        read_all(build_tar(members))
    members = good_members()
    members[3:5] = [("Ref:002/00000001", CH1[:4096]), ("Ref:002/00000001.xxhash", xxh(CH1[:4096]))]
    with pytest.raises(XvaFormatError, match=r"is 4096 bytes, expected 1048576"):
        read_all(build_tar(members))


def test_unknown_vdi_and_stray_members() -> None:
    members = [*good_members(), ("Ref:009/00000000", CH0)]
    with pytest.raises(XvaFormatError, match=r"belongs to no VDI listed in ova.xml"):
        read_all(build_tar(members))
    members = [*good_members(), ("notes.txt", b"hi")]
    with pytest.raises(XvaFormatError, match=r"unexpected member 'notes.txt'"):
        read_all(build_tar(members))


def test_bad_ova_xml() -> None:
    for body, message in [
        (b"<value><struct>", "not well-formed"),
        (b"<value><array><data/></array></value>", "not a struct"),
        (b"<value><struct></struct></value>", "missing 'version'"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><value/>', "document type"),
        (b"<value><base64>AA==</base64></value>", "unsupported XML-RPC type <base64>"),
    ]:
        with pytest.raises(XvaFormatError, match=message):
            read_all(build_tar([("ova.xml", body)]))


def test_errors_share_the_format_base() -> None:
    assert issubclass(XvaFormatError, FormatError)
    with pytest.raises(FormatError):
        read_all(b"")


def test_writer_enforces_member_order() -> None:
    w = xva.XvaWriter(io.BytesIO(), mtime=0)
    with pytest.raises(ValueError, match=r"after ova.xml"):
        w.add_chunk("Ref:1", 0, b"x")
    w.add_ova_xml(b"<value/>")
    w.add_chunk("Ref:2", 0, b"x")
    with pytest.raises(ValueError, match=r"chunk 0 of Ref:2 after chunk 0"):
        w.add_chunk("Ref:2", 0, b"x")
    w.add_chunk("Ref:3", 0, b"x")
    with pytest.raises(ValueError, match=r"ids must increase"):
        w.add_chunk("Ref:2", 5, b"x")


def test_gzip_compressed_archive_reads(archive: Path, disk: tuple[Path, int, bytes]) -> None:
    _, _, raw = disk
    packed = gzip.compress(archive.read_bytes(), compresslevel=1)
    chunks = [i for i in xva.iter_xva(io.BytesIO(packed)) if isinstance(i, xva.XvaChunk)]
    assert [c.index for c in chunks] == [0, 2, 5]
    assert chunks[1].data == raw[2 * MIB : 3 * MIB]
    with pytest.raises(XvaFormatError, match="gzip stream ends early"):
        read_all(packed[: len(packed) // 2])
    broken = bytearray(packed)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(XvaFormatError, match=r"corrupt gzip stream|checksum mismatch"):
        read_all(bytes(broken))
    with pytest.raises(XvaFormatError, match="zstd-compressed XVA"):
        read_all(b"\x28\xb5\x2f\xfd" + bytes(100))


def test_chunk_starting_with_a_hole_after_a_data_chunk(tmp_path: Path) -> None:
    # Regression: looking for holes with SEEK_DATA moved the file offset under
    # the buffered reader, shifting a chunk that begins with a hole.
    size = 4 * MIB
    path = tmp_path / "disk.raw"
    with path.open("wb") as f:
        f.truncate(size)
        f.write(os.urandom(MIB))
        f.seek(MIB + 16 * 1024)
        f.write(os.urandom(MIB - 16 * 1024))
    raw = path.read_bytes()
    out = tmp_path / "vm.xva"
    with out.open("wb") as f:
        write_vm(f, size, path, mtime=MTIME)
    dest = tmp_path / "extracted.raw"
    with out.open("rb") as f:
        xva.extract_vdi(f, VDI, dest)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(raw).digest()
