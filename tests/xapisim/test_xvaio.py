"""The simulator's XVA codec, checked with tar, xxhsum and corrupted archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapisim import xvaio
from xapisim.xvaio import CHUNK, XvaChunk, XvaError, XvaHeader

MiB = 1024 * 1024


# --- test data -------------------------------------------------------------------


def records(disks: dict[str, int]) -> list[dict[str, Any]]:
    """A VM with one disk VBD per entry of ``disks``, a CD on an ISO SR, and a network."""
    objs: list[dict[str, Any]] = [
        {
            "class": "VM",
            "id": "Ref:0",
            "snapshot": {
                "uuid": "0f0e0d0c-0000-4000-8000-000000000001",
                "name_label": 'web <01> & "db"',
                "is_a_template": False,
                "memory_static_max": "1073741824",
                "VCPUs_at_startup": "2",
                "VBDs": [f"Ref:b{n}" for n in range(len(disks))] + ["Ref:cd"],
                "other_config": {"base_template_name": "Debian", "empty": ""},
                "HVM_shadow_multiplier": 1.0,
                "tags": [],
            },
        },
        {"class": "SR", "id": "Ref:sr", "snapshot": {"content_type": "user", "name_label": "L"}},
        {"class": "SR", "id": "Ref:iso", "snapshot": {"content_type": "iso", "name_label": "I"}},
        {
            "class": "VBD",
            "id": "Ref:cd",
            "snapshot": {"type": "CD", "VDI": "OpaqueRef:NULL", "VM": "Ref:0"},
        },
        {
            "class": "VBD",
            "id": "Ref:cd2",
            "snapshot": {"type": "Disk", "VDI": "Ref:isovdi", "VM": "Ref:0"},
        },
        {
            "class": "VDI",
            "id": "Ref:isovdi",
            "snapshot": {"SR": "Ref:iso", "virtual_size": "1000", "type": "user"},
        },
    ]
    for n, (vdi, size) in enumerate(disks.items()):
        objs.append(
            {
                "class": "VBD",
                "id": f"Ref:b{n}",
                "snapshot": {"type": "Disk", "VDI": vdi, "VM": "Ref:0", "userdevice": str(n)},
            }
        )
        objs.append(
            {
                "class": "VDI",
                "id": vdi,
                "snapshot": {"SR": "Ref:sr", "virtual_size": str(size), "type": "system"},
            }
        )
    return objs


def make_disk(path: Path, size: int, writes: Iterable[tuple[int, bytes]]) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return path


def rnd(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def tar_of(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A tar written by Python's tarfile, independent of the code under test."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def xxh(data: bytes) -> bytes:
    return xxhash.xxh64(data).hexdigest().upper().encode()


def read_all(data: bytes, **kw: Any) -> list[xvaio.XvaItem]:
    return list(xvaio.read_xva(io.BytesIO(data), **kw))


def disks_from(items: list[xvaio.XvaItem]) -> dict[str, bytearray]:
    header = items[0]
    assert isinstance(header, XvaHeader)
    out = {disk_id: bytearray(size) for disk_id, size in header.disks}
    for item in items[1:]:
        assert isinstance(item, XvaChunk)
        out[item.disk_id][item.offset : item.offset + len(item.data)] = item.data
    return out


@pytest.fixture
def vm(tmp_path: Path) -> tuple[bytes, list[tuple[str, Path, int]]]:
    """ova.xml and two disks whose ids sort differently as text and as numbers."""
    a = make_disk(
        tmp_path / "a.raw",
        5 * MiB + 1536,
        [(10, b"MBR"), (2 * MiB + 7, rnd(MiB, 1)), (5 * MiB + 1000, b"end")],
    )
    b = make_disk(tmp_path / "b.raw", 3 * MiB, [(MiB, rnd(MiB, 2))])
    disks = [("Ref:9", a, 5 * MiB + 1536), ("Ref:10", b, 3 * MiB)]
    ova = xvaio.build_ova_xml(records({d: s for d, _, s in disks}))
    return ova, disks


# --- ova.xml ---------------------------------------------------------------------


def test_ova_xml_has_xapi_shape() -> None:
    xml = xvaio.build_ova_xml(records({"Ref:3": 4096}), {"hostname": "h1"}).decode()
    assert xml.startswith("<value><struct><member><name>version</name><value><struct>")
    assert "<member><name>hostname</name><value>h1</value></member>" in xml
    assert "<member><name>xapi_major</name><value>1</value></member>" in xml
    assert "<member><name>xapi_minor</name><value>20</value></member>" in xml
    assert "<member><name>export_vsn</name><value>2</value></member>" in xml
    assert "<member><name>class</name><value>VM</value></member>" in xml
    assert "<name>is_a_template</name><value><boolean>0</boolean></value>" in xml
    assert "web &lt;01&gt; &amp; &quot;db&quot;" in xml
    assert "<name>tags</name><value><array><data></data></array></value>" in xml


def test_ova_xml_round_trip() -> None:
    objs = records({"Ref:3": 4096})
    objs[0]["snapshot"]["name_description"] = "tab\tnew\nline\x01\x02bell"
    ova = xvaio.parse_ova_xml(xvaio.build_ova_xml(objs))
    assert ova["version"]["xapi_major"] == "1"  # XAPI ints are bare text on the wire
    assert xvaio.ova_version(ova) == (1, 20, 2)
    vm = ova["objects"][0]
    assert vm["class"] == "VM" and vm["id"] == "Ref:0"
    snap = vm["snapshot"]
    assert snap["name_label"] == 'web <01> & "db"'
    assert snap["name_description"] == "tab\tnew\nlinebell"  # control characters dropped
    assert snap["is_a_template"] is False
    assert snap["HVM_shadow_multiplier"] == 1.0
    assert snap["other_config"] == {"base_template_name": "Debian", "empty": ""}
    assert snap["tags"] == []
    assert [o["id"] for o in ova["objects"]] == [o["id"] for o in objs]


def test_parse_typed_and_indented_xml_rpc() -> None:
    xml = b"""<?xml version="1.0"?>
    <value>
      <struct>
        <member><name>version</name><value><struct>
          <member><name>hostname</name><value><string>h</string></value></member>
          <member><name>date</name><value>2020-01-01</value></member>
          <member><name>product_version</name><value>8.2.1</value></member>
          <member><name>product_brand</name><value>XCP-ng</value></member>
          <member><name>build_number</name><value/></member>
          <member><name>xapi_major</name><value><i4>1</i4></value></member>
          <member><name>xapi_minor</name><value><int>20</int></value></member>
        </struct></value></member>
        <member><name>objects</name><value><array><data>
          <value><struct>
            <member><name>class</name><value>VM</value></member>
            <member><name>id</name><value>Ref:1</value></member>
            <member><name>snapshot</name><value><struct>
              <member><name>t</name><value><dateTime.iso8601>20240101T00:00:00Z</dateTime.iso8601></value></member>
              <member><name>b</name><value><base64>aGk=</base64></value></member>
              <member><name>n</name><value><nil/></value></member>
              <member><name>s</name><value>  spaced  </value></member>
              <member><name>e</name><value><struct/></value></member>
              <member><name>l</name><value><array><data/></array></value></member>
              <member><name>l2</name><value><array/></value></member>
              <member><name>z</name><value><string/></value></member>
            </struct></value></member>
          </struct></value>
        </data></array></value></member>
      </struct>
    </value>"""
    ova = xvaio.parse_ova_xml(xml)
    assert xvaio.ova_version(ova) == (1, 20, 0)
    assert ova["version"]["build_number"] == ""
    snap = ova["objects"][0]["snapshot"]
    assert snap == {
        "t": xvaio.DateTime("20240101T00:00:00Z"),
        "b": b"hi",
        "n": None,
        "s": "  spaced  ",
        "e": {},
        "l": [],
        "l2": [],
        "z": "",
    }


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<value><struct>", "not well-formed"),
        (b"<value><struct></struct></value>", "no 'version' member"),
        (b"<struct></struct>", "must be one <value>"),
        (b"<value><i4>x</i4></value>", "invalid <i4>"),
        (b"<value><foo/></value>", "unexpected element <foo>"),
        (
            b'<!DOCTYPE v [<!ENTITY a "aaaa">]><value>&a;</value>',
            "DOCTYPE and entity declarations are not allowed",
        ),
        (b"<value>a<struct></struct></value>", "text 'a' inside <value>"),
    ],
)
def test_bad_ova_xml(xml: bytes, message: str) -> None:
    with pytest.raises(XvaError, match=message):
        xvaio.parse_ova_xml(xml)


def test_ova_xml_object_checks() -> None:
    good = records({"Ref:3": 10})
    no_class = [dict(o) for o in good]
    del no_class[2]["class"]
    with pytest.raises(XvaError, match="object 2 has no str 'class'"):
        xvaio.parse_ova_xml(
            xvaio.encode_value({"version": xvaio.DEFAULT_VERSION, "objects": no_class}).encode()
        )
    twice = [*good, good[0]]
    with pytest.raises(XvaError, match="object id Ref:0 appears twice"):
        xvaio.parse_ova_xml(xvaio.build_ova_xml(twice))
    version = dict(xvaio.DEFAULT_VERSION)
    del version["build_number"]
    with pytest.raises(XvaError, match="version has no 'build_number'"):
        xvaio.parse_ova_xml(xvaio.encode_value({"version": version, "objects": []}).encode())


def test_xva_disks_follow_xapi_rules() -> None:
    objs = records({"Ref:9": 5, "Ref:10": 6})
    objs.append(
        {
            "class": "VDI",
            "id": "Ref:susp",
            "snapshot": {"SR": "Ref:sr", "virtual_size": "7", "type": "suspend"},
        }
    )
    ova = xvaio.parse_ova_xml(xvaio.build_ova_xml(objs))
    # Lexicographic: "Ref:10" < "Ref:9"; the CD and the ISO-SR disk carry no data.
    assert xvaio.xva_disks(ova) == [("Ref:10", 6), ("Ref:9", 5), ("Ref:susp", 7)]
    broken = records({"Ref:3": 5})
    del broken[-1]["snapshot"]["virtual_size"]
    with pytest.raises(XvaError, match="Ref:3 has no field 'virtual_size'"):
        xvaio.xva_disks(xvaio.parse_ova_xml(xvaio.build_ova_xml(broken)))
    dangling = records({"Ref:3": 5})
    dangling[-1]["snapshot"]["SR"] = "Ref:nowhere"
    with pytest.raises(XvaError, match="refers to Ref:nowhere, which is not a SR"):
        xvaio.xva_disks(xvaio.parse_ova_xml(xvaio.build_ova_xml(dangling)))


# --- writing ---------------------------------------------------------------------


def test_tar_lists_ova_first_and_chunks(
    tmp_path: Path, vm: tuple[bytes, list[tuple[str, Path, int]]]
) -> None:
    ova, disks = vm
    xva = tmp_path / "vm.xva"
    xva.write_bytes(b"".join(xvaio.xva_stream(ova, disks, mtime=1_700_000_000)))
    listing = subprocess.run(
        ["tar", "tvf", str(xva)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
    ).stdout.splitlines()
    names = [line.split()[-1] for line in listing]
    assert names == [
        "ova.xml",
        "Ref:10/00000000",
        "Ref:10/00000000.xxhash",
        "Ref:10/00000001",  # the data chunk
        "Ref:10/00000001.xxhash",
        "Ref:10/00000002",  # the last chunk, all zeros, still present
        "Ref:10/00000002.xxhash",
        "Ref:9/00000000",
        "Ref:9/00000000.xxhash",
        "Ref:9/00000002",  # chunk 1 is all zeros and left out
        "Ref:9/00000002.xxhash",
        "Ref:9/00000003",
        "Ref:9/00000003.xxhash",
        "Ref:9/00000005",  # the short last chunk
        "Ref:9/00000005.xxhash",
    ]
    assert "2023-11-14" in listing[0]
    assert xva.stat().st_size % 512 == 0
    assert xva.read_bytes()[-1024:] == bytes(1024)
    with tarfile.open(xva) as tar:
        assert tar.extractfile("ova.xml").read() == ova  # type: ignore[union-attr]
        last = tar.extractfile("Ref:9/00000005").read()  # type: ignore[union-attr]
    assert last == disks[0][1].read_bytes()[5 * MiB :]
    assert len(last) == 1536


@pytest.mark.skipif(shutil.which("xxhsum") is None, reason="xxhsum (Debian xxhash) missing")
def test_chunk_checksums_agree_with_xxhsum(
    tmp_path: Path, vm: tuple[bytes, list[tuple[str, Path, int]]]
) -> None:
    ova, disks = vm
    xva = tmp_path / "vm.xva"
    xva.write_bytes(b"".join(xvaio.xva_stream(ova, disks)))
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "xf", str(xva), "-C", str(out)], check=True)
    chunks = sorted(p for p in out.glob("Ref:*/*") if p.suffix == "")
    assert len(chunks) == 7
    for chunk in chunks:
        line = subprocess.run(
            ["xxhsum", "-H1", str(chunk)], check=True, capture_output=True, text=True
        ).stdout
        digest = line.split()[0]
        assert (chunk.parent / (chunk.name + ".xxhash")).read_text() == digest.upper()
        assert len(digest) == 16


def test_stream_is_deterministic_and_bounded(
    tmp_path: Path, vm: tuple[bytes, list[tuple[str, Path, int]]]
) -> None:
    ova, disks = vm
    one = list(xvaio.xva_stream(ova, disks))
    assert b"".join(one) == b"".join(xvaio.xva_stream(ova, list(reversed(disks))))
    assert max(map(len, one)) <= CHUNK
    big = make_disk(tmp_path / "big.raw", 64 * MiB, [(i * MiB, b"x") for i in range(0, 64, 2)])
    tracemalloc.start()
    try:
        total = sum(len(c) for c in xvaio.xva_stream(ova, [("Ref:1", big, 64 * MiB)]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 32 * MiB
    assert peak < 6 * MiB


# --- reading ---------------------------------------------------------------------


def test_read_round_trip(vm: tuple[bytes, list[tuple[str, Path, int]]]) -> None:
    ova, disks = vm
    items = read_all(b"".join(xvaio.xva_stream(ova, disks)))
    header = items[0]
    assert isinstance(header, XvaHeader)
    assert header.xml == ova
    assert header.disks == [("Ref:10", 3 * MiB), ("Ref:9", 5 * MiB + 1536)]
    assert [(c.disk_id, c.chunk_index) for c in items[1:] if isinstance(c, XvaChunk)] == [
        ("Ref:10", 0),
        ("Ref:10", 1),
        ("Ref:10", 2),
        ("Ref:9", 0),
        ("Ref:9", 2),
        ("Ref:9", 3),
        ("Ref:9", 5),
    ]
    got = disks_from(items)
    for disk_id, path, _ in disks:
        assert bytes(got[disk_id]) == path.read_bytes()


def test_read_gzip_and_legacy_sha1(vm: tuple[bytes, list[tuple[str, Path, int]]]) -> None:
    ova, disks = vm
    plain = b"".join(xvaio.xva_stream(ova, disks))
    assert disks_from(read_all(gzip.compress(plain, compresslevel=1))) == disks_from(
        read_all(plain)
    )
    chunk = rnd(100, 3)
    legacy = tar_of(
        [
            ("ova.xml", xvaio.build_ova_xml(records({"Ref:1": 100}))),
            ("Ref:1/00000000", chunk),
            ("Ref:1/00000000.checksum", hashlib.sha1(chunk).hexdigest().encode()),  # noqa: S324
        ]
    )
    items = read_all(legacy)
    assert isinstance(items[1], XvaChunk) and items[1].data == chunk


def good_members(size: int = 3 * MiB) -> list[tuple[str, bytes]]:
    """Members of a valid one-disk XVA (Ref:1, chunks 0 and 2), written by tarfile."""
    c0, c2 = rnd(MiB, 5), rnd(size - 2 * MiB, 6)
    return [
        ("ova.xml", xvaio.build_ova_xml(records({"Ref:1": size}))),
        ("Ref:1/00000000", c0),
        ("Ref:1/00000000.xxhash", xxh(c0)),
        ("Ref:1/00000002", c2),
        ("Ref:1/00000002.xxhash", xxh(c2)),
    ]


def test_independent_tar_is_accepted() -> None:
    items = read_all(tar_of(good_members()))
    assert [type(i).__name__ for i in items] == ["XvaHeader", "XvaChunk", "XvaChunk"]


def swap(members: list[tuple[str, bytes]], i: int, j: int) -> list[tuple[str, bytes]]:
    out = list(members)
    out[i], out[j] = out[j], out[i]
    return out


def edit(members: list[tuple[str, bytes]], i: int, **kw: Any) -> list[tuple[str, bytes]]:
    out = list(members)
    name, data = out[i]
    out[i] = (kw.get("name", name), kw.get("data", data))
    return out


M = good_members()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (swap(M, 0, 1), r"the first member must be ova.xml, found 'Ref:1/00000000'"),
        (
            edit(M, 2, data=b"0" + xxh(M[1][1])[1:]),
            r"checksum mismatch for 'Ref:1/00000000': stored '0",
        ),
        (M[:2] + M[3:], r"chunk 'Ref:1/00000000' is not followed by its checksum member"),
        (M[:4], r"'Ref:1/00000002' is not followed by its checksum member \(archive ends\)"),
        (
            [M[0], M[3], M[4], M[1], M[2]],
            r"chunk 'Ref:1/00000002': the first chunk of Ref:1 must be 00000000",
        ),
        (
            [*M[:3], M[1], M[2], *M[3:]],
            r"chunk 'Ref:1/00000000' is out of order \(after Ref:1/00000000\)",
        ),
        (M[:3], r"archive ends before disk Ref:1 is complete"),
        ([*M, ("junk.txt", b"x")], r"unexpected member 'junk.txt' after the last disk"),
        ([M[0], ("Ref:2/00000000", b"x"), *M[1:]], r"unexpected member 'Ref:2/00000000'"),
        ([*M[:1], ("Ref:1/00000000.xxhash", b"x")], r"checksum member .* without its chunk"),
        (edit(M, 3, name="Ref:1/00000003"), r"'Ref:1/00000003' lies beyond the 3145728-byte"),
        (edit(M, 1, data=b"short"), r"'Ref:1/00000000' is 5 bytes, expected 1048576"),
        (edit(M, 0, data=b"<value>"), r"ova.xml: not well-formed XML"),
    ],
    ids=[
        "ova-not-first",
        "checksum-flipped",
        "checksum-missing",
        "checksum-missing-at-end",
        "first-chunk-missing",
        "chunk-repeated",
        "last-chunk-missing",
        "unknown-member-at-end",
        "unknown-disk",
        "orphan-checksum",
        "chunk-beyond-size",
        "chunk-wrong-size",
        "bad-ova",
    ],
)
def test_bad_archive_rejected(members: list[tuple[str, bytes]], message: str) -> None:
    with pytest.raises(XvaError, match=message):
        read_all(tar_of(members))


def test_truncation_and_framing_errors() -> None:
    data = tar_of(M)
    end = sum(512 + -(-len(body) // 512) * 512 for _, body in M)  # where the marker starts
    assert data[end:] == bytes(len(data) - end)
    with pytest.raises(XvaError, match=r"archive truncated at byte \d+: member 'Ref:1/00000002'"):
        read_all(data[: 2 * MiB])
    with pytest.raises(XvaError, match="no end-of-archive marker"):
        read_all(data[:end])
    with pytest.raises(XvaError, match="lone zero block"):
        read_all(data[:end] + bytes(512) + b"x" * 512)
    with pytest.raises(XvaError, match="data after the end-of-archive marker"):
        read_all(data + b"trailing junk")
    header = bytearray(data)
    header[5] ^= 0x20  # the name of ova.xml, without fixing the header checksum
    with pytest.raises(XvaError, match="member header at byte 0: checksum mismatch"):
        read_all(bytes(header))
    with pytest.raises(XvaError, match="zstd-compressed XVA"):
        read_all(b"\x28\xb5\x2f\xfd" + bytes(100))
    with pytest.raises(XvaError, match="gzip stream truncated"):
        read_all(gzip.compress(data)[:-100])
    with pytest.raises(XvaError, match=r"the first member must be ova\.xml, found the end"):
        read_all(bytes(1024))


def test_directory_member_rejected() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("ova.xml")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    with pytest.raises(XvaError, match=r"member 'ova\.xml/' at byte 0: type '5' is not allowed"):
        read_all(buf.getvalue())


def test_explicit_disk_sizes_override_ova(vm: tuple[bytes, list[tuple[str, Path, int]]]) -> None:
    ova, disks = vm
    data = b"".join(xvaio.xva_stream(ova, disks[1:]))
    items = read_all(data, disks={"Ref:10": 3 * MiB})
    assert len(items) == 4
    with pytest.raises(XvaError, match="archive ends before disk Ref:9 is complete"):
        read_all(data)


def test_chunks_are_yielded_only_after_verification() -> None:
    members = edit(M, 4, data=b"0000000000000000")
    seen: list[int] = []
    with pytest.raises(XvaError, match="checksum mismatch for 'Ref:1/00000002'"):
        for item in xvaio.read_xva(io.BytesIO(tar_of(members))):
            if isinstance(item, XvaChunk):
                seen.append(item.chunk_index)
    assert seen == [0]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(0, 3 * MiB + 700), min_size=1, max_size=3),
    writes=st.lists(
        st.tuples(st.floats(0, 1), st.integers(1, 5000), st.integers(1, 255)), max_size=5
    ),
    gzipped=st.booleans(),
)
def test_round_trip_property(
    tmp_path: Path, sizes: list[int], writes: list[tuple[float, int, int]], gzipped: bool
) -> None:
    disks = []
    for n, size in enumerate(sizes):
        patches = [
            (int(where * (size - 1)), bytes([fill]) * min(length, size - int(where * (size - 1))))
            for where, length, fill in writes
            if size
        ]
        path = make_disk(tmp_path / f"p{n}.raw", size, patches)
        disks.append((f"Ref:{n:02d}", path, size))
    ova = xvaio.build_ova_xml(records({d: s for d, _, s in disks}))
    data = b"".join(xvaio.xva_stream(ova, disks))
    got = disks_from(read_all(gzip.compress(data, 1) if gzipped else data))
    assert got == {d: bytearray(p.read_bytes()) for d, p, _ in disks}


def test_chunk_unpacks_as_a_tuple() -> None:
    items = read_all(tar_of(M))
    chunk = items[2]
    assert isinstance(chunk, XvaChunk)
    disk_id, index, data = chunk
    assert (disk_id, index, data) == ("Ref:1", 2, M[3][1])
    assert chunk.offset == 2 * MiB
