"""The simulator's VHD codec, checked against qemu-img and against corrupted input."""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import tracemalloc
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapisim import vhdio
from xapisim.vhdio import BLOCK_SIZE, SECTOR, VhdError

MiB = 1024 * 1024
QEMU_IMG = shutil.which("qemu-img")
needs_qemu = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img (Debian qemu-utils) missing")


# --- helpers -------------------------------------------------------------------


def make_disk(path: Path, size: int, writes: Iterable[tuple[int, bytes]]) -> Path:
    """A sparse file of ``size`` bytes with ``writes`` applied."""
    with path.open("wb") as f:
        f.truncate(size)
    return patch(path, writes)


def patch(path: Path, writes: Iterable[tuple[int, bytes]]) -> Path:
    with path.open("r+b") as f:
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return path


def rnd(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def stream_bytes(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


def new_target(path: Path, size: int, content: bytes | None = None) -> Path:
    with path.open("wb") as f:
        if content is not None:
            f.write(content)
        f.truncate(size)
    return path


class Trickle(io.RawIOBase):
    """A read()-only source returning short reads, as an HTTP body does."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self.data)
        n = min(n, self.rng.randint(1, 300_000))
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += len(out)
        return out


def import_bytes(data: bytes, dest: Path, size: int, **kw: object) -> int:
    return vhdio.import_vhd(Trickle(data), dest, size, **kw)  # type: ignore[arg-type]


def qemu(*args: str) -> str:
    assert QEMU_IMG is not None
    return subprocess.run(
        [QEMU_IMG, *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout


# --- export read by qemu-img ---------------------------------------------------------


@needs_qemu
@pytest.mark.parametrize(
    "size",
    [20 * MiB, 7 * MiB + 3 * SECTOR],  # whole blocks; a partial last block
)
def test_qemu_reads_dynamic_export(tmp_path: Path, size: int) -> None:
    src = make_disk(
        tmp_path / "disk.raw",
        size,
        [(0, b"boot" * 128), (5 * MiB - 7, rnd(2 * MiB, 1)), (size - 5, b"tail!")],
    )
    stream = vhdio.vhd_stream(src, size)
    vhd = tmp_path / "disk.vhd"
    vhd.write_bytes(stream_bytes(stream))
    assert vhd.stat().st_size == stream.size == vhdio.vhd_stream_size(size, len(stream.blocks))
    info = qemu("info", "-f", "vpc", "--output=json", str(vhd))
    assert f'"virtual-size": {size},' in info
    out = tmp_path / "out.raw"
    qemu("convert", "-f", "vpc", "-O", "raw", str(vhd), str(out))
    assert out.read_bytes() == src.read_bytes()


def test_zero_blocks_are_skipped(tmp_path: Path) -> None:
    size = 10 * MiB
    src = make_disk(
        tmp_path / "d.raw",
        size,
        # Block 1 is allocated but all zeros; block 3 has one byte.
        [(2 * MiB, bytes(2 * MiB)), (7 * MiB + 5, b"x")],
    )
    assert os.stat(src).st_blocks * 512 >= 2 * MiB  # really allocated
    stream = vhdio.vhd_stream(src, size)
    assert stream.blocks == [3]
    data = stream_bytes(stream)
    assert len(data) == stream.size
    bat_at = 512 + 1024
    bat = struct.unpack(">5I", data[bat_at : bat_at + 20])
    assert bat == (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, (bat_at + 512) // 512, 0xFFFFFFFF)


def test_stream_is_iterator_with_bounded_chunks(tmp_path: Path) -> None:
    size = 8 * MiB
    src = make_disk(tmp_path / "d.raw", size, [(0, rnd(size, 2))])
    stream = vhdio.vhd_stream(src, size, disk_uuid=uuid.UUID(int=7), timestamp=100)
    first = next(stream)
    assert first[:8] == b"conectix"
    rest = list(stream)
    assert max(len(c) for c in rest) <= BLOCK_SIZE + SECTOR
    assert first + b"".join(rest) == stream_bytes(
        vhdio.vhd_stream(src, size, disk_uuid=uuid.UUID(int=7), timestamp=100)
    )
    footer = vhdio.parse_footer(first, "footer")
    assert footer.uuid == uuid.UUID(int=7)
    assert footer.timestamp == 100
    assert footer.creator_app == b"tap\x00"
    assert footer.disk_type == vhdio.DISK_DYNAMIC


def test_export_memory_does_not_grow_with_disk(tmp_path: Path) -> None:
    size = 64 * MiB
    src = make_disk(tmp_path / "d.raw", size, [(i * MiB, rnd(4096, i)) for i in range(0, 64, 3)])
    tracemalloc.start()
    try:
        total = sum(len(c) for c in vhdio.vhd_stream(src, size))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 40 * MiB
    assert peak < 8 * MiB


# --- import of qemu-img output ------------------------------------------------------


@needs_qemu
@pytest.mark.parametrize("subformat", ["dynamic", "fixed"])
def test_import_qemu_vhd(tmp_path: Path, subformat: str) -> None:
    size = 12 * MiB + 4 * SECTOR
    src = make_disk(
        tmp_path / "src.raw",
        size,
        [(SECTOR, rnd(700_000, 3)), (6 * MiB, rnd(2 * MiB + 9, 4)), (size - 3, b"end")],
    )
    vhd = tmp_path / "q.vhd"
    qemu(
        "convert", "-f", "raw", "-O", "vpc", "-o", f"subformat={subformat},force_size=on",
        str(src), str(vhd),
    )  # fmt: skip
    dest = new_target(tmp_path / "dest.raw", size)
    with vhd.open("rb") as f:
        written = vhdio.import_vhd(f, dest, size)
    assert dest.read_bytes() == src.read_bytes()
    assert written > 0
    # All-zero stretches stay holes in the target.
    assert os.stat(dest).st_blocks * 512 < size


@needs_qemu
def test_import_qemu_chs_sized_vhd_into_larger_disk(tmp_path: Path) -> None:
    # Without force_size qemu rounds the size up to a CHS geometry.
    src = make_disk(tmp_path / "src.raw", 20 * MiB, [(3 * MiB, rnd(MiB, 5))])
    vhd = tmp_path / "q.vhd"
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", str(src), str(vhd))
    footer = vhdio.parse_footer(vhd.read_bytes()[-512:], "footer")
    assert footer.current_size > 20 * MiB
    small = new_target(tmp_path / "small.raw", 20 * MiB)
    with vhd.open("rb") as f, pytest.raises(VhdError, match="larger than the 20971520-byte disk"):
        vhdio.import_vhd(f, small, 20 * MiB)
    big = new_target(tmp_path / "big.raw", footer.current_size)
    with vhd.open("rb") as f:
        vhdio.import_vhd(f, big, footer.current_size)
    assert big.read_bytes()[: 20 * MiB] == src.read_bytes()


# --- round trips ----------------------------------------------------------------------


def test_dynamic_round_trip_overwrites_old_content(tmp_path: Path) -> None:
    size = 6 * MiB
    src = make_disk(tmp_path / "src.raw", size, [(MiB, rnd(2 * MiB, 6)), (4 * MiB, bytes(MiB))])
    data = stream_bytes(vhdio.vhd_stream(src, size, blocks=[0, 1, 2]))
    # The target holds old data everywhere: zeros in the stream must replace it.
    dest = new_target(tmp_path / "dest.raw", size, b"\xee" * size)
    assert import_bytes(data, dest, size) == size
    assert dest.read_bytes() == src.read_bytes()


def test_differencing_round_trip(tmp_path: Path) -> None:
    size = 16 * MiB
    parent = make_disk(tmp_path / "parent.raw", size, [(0, rnd(size, 7))])
    child = tmp_path / "child.raw"
    shutil.copyfile(parent, child)
    changes = [(2 * MiB + 100, rnd(5000, 8)), (9 * MiB, bytes(MiB)), (15 * MiB, rnd(MiB, 9))]
    patch(child, changes)
    changed = sorted({off // BLOCK_SIZE for off, _ in changes})
    parent_uuid = uuid.uuid4()
    stream = vhdio.vhd_stream(child, size, changed, parent_uuid, parent_name="base.vhd")
    data = stream_bytes(stream)
    footer = vhdio.parse_footer(data[:512], "footer")
    header = vhdio.parse_header(data[512:1536], "header")
    assert footer.disk_type == vhdio.DISK_DIFFERENCING
    assert header.parent_uuid == parent_uuid
    assert header.parent_name == "base.vhd"
    target = tmp_path / "target.raw"
    shutil.copyfile(parent, target)
    written = import_bytes(data, target, size, parent_uuid=parent_uuid)
    assert written == len(changed) * BLOCK_SIZE
    assert target.read_bytes() == child.read_bytes()
    with pytest.raises(VhdError, match="has parent"):
        import_bytes(data, target, size, parent_uuid=uuid.uuid4())


def test_differencing_writes_only_sectors_set_in_bitmap(tmp_path: Path) -> None:
    size = 4 * MiB
    child = make_disk(tmp_path / "child.raw", size, [(0, b"\x11" * size)])
    data = bytearray(stream_bytes(vhdio.vhd_stream(child, size, [1], uuid.uuid4())))
    bitmap_at = 512 + 1024 + 512
    data[bitmap_at : bitmap_at + 512] = bytes(512)
    data[bitmap_at] = 0b1010_0000  # sectors 0 and 2 of block 1
    data[bitmap_at + 511] = 0b0000_0001  # the last sector of block 1
    target = new_target(tmp_path / "t.raw", size, b"\x22" * size)
    assert import_bytes(bytes(data), target, size) == 3 * SECTOR
    expected = bytearray(b"\x22" * size)
    for sector in (0, 2, BLOCK_SIZE // SECTOR - 1):
        at = BLOCK_SIZE + sector * SECTOR
        expected[at : at + SECTOR] = b"\x11" * SECTOR
    assert target.read_bytes() == bytes(expected)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sectors=st.integers(min_value=1, max_value=3 * BLOCK_SIZE // SECTOR + 40),
    writes=st.lists(
        st.tuples(st.floats(min_value=0, max_value=1), st.integers(1, 70_000), st.integers(0, 255)),
        max_size=6,
    ),
    diff=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(
    tmp_path: Path,
    sectors: int,
    writes: list[tuple[float, int, int]],
    diff: bool,
    seed: int,
) -> None:
    size = sectors * SECTOR
    patches = []
    for where, length, fill in writes:
        off = min(int(where * size), size - 1)
        patches.append((off, bytes([fill]) * min(length, size - off)))
    parent_content = rnd(size, seed)
    src = make_disk(tmp_path / "h.raw", size, patches)
    if diff:
        target = new_target(tmp_path / "ht.raw", size, parent_content)
        with_parent = new_target(tmp_path / "hp.raw", size, parent_content)
        patch(with_parent, patches)
        blocks = sorted(
            {
                b
                for o, p in patches
                for b in range(o // BLOCK_SIZE, (o + len(p) - 1) // BLOCK_SIZE + 1)
            }
        )
        stream = vhdio.vhd_stream(with_parent, size, blocks, uuid.UUID(int=1))
        expected = with_parent.read_bytes()
    else:
        target = new_target(tmp_path / "ht.raw", size)
        stream = vhdio.vhd_stream(src, size)
        expected = src.read_bytes()
    data = stream_bytes(stream)
    assert len(data) == stream.size
    vhdio.import_vhd(Trickle(data, seed), target, size)  # type: ignore[arg-type]
    assert target.read_bytes() == expected


# --- raw -------------------------------------------------------------------------------


def test_raw_stream_and_import(tmp_path: Path) -> None:
    size = 5 * MiB + 512
    src = make_disk(tmp_path / "s.raw", 4 * MiB, [(MiB + 3, rnd(1000, 10))])  # shorter file
    chunks = list(vhdio.raw_stream(src, size))
    data = b"".join(chunks)
    assert len(data) == size
    assert max(map(len, chunks)) <= MiB
    assert data == src.read_bytes() + bytes(size - 4 * MiB)
    dest = new_target(tmp_path / "d.raw", size, b"\x33" * 3 * MiB)
    assert vhdio.import_raw(Trickle(data), dest, size) == size  # type: ignore[arg-type]
    assert dest.read_bytes() == data
    fresh = new_target(tmp_path / "f.raw", size)
    vhdio.import_raw(Trickle(data), fresh, size)  # type: ignore[arg-type]
    assert os.stat(fresh).st_blocks * 512 <= MiB  # only the piece with data is allocated


def test_raw_import_longer_than_disk(tmp_path: Path) -> None:
    dest = new_target(tmp_path / "d.raw", MiB)
    with pytest.raises(VhdError, match="longer than the 1048576-byte disk"):
        vhdio.import_raw(io.BytesIO(bytes(MiB + 1)), dest, MiB)


# --- corrupt input ---------------------------------------------------------------------


@pytest.fixture
def good(tmp_path: Path) -> tuple[bytes, Path, int]:
    """A dynamic VHD with blocks 0, 2 and 3 of a 10 MiB disk, and a target file."""
    size = 10 * MiB
    src = make_disk(tmp_path / "g.raw", size, [(0, b"a" * 10), (4 * MiB, rnd(3 * MiB, 11))])
    data = stream_bytes(vhdio.vhd_stream(src, size))
    return data, new_target(tmp_path / "t.raw", size), size


BAT = 512 + 1024


def set_bat(data: bytes, index: int, sector: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(">I", out, BAT + 4 * index, sector)
    return bytes(out)


def bat_entry(data: bytes, index: int) -> int:
    return int(struct.unpack_from(">I", data, BAT + 4 * index)[0])


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: flip(d, 64), r"footer copy at byte 0: footer checksum mismatch: stored 0x"),
        (lambda d: flip(d, 40), r"footer copy at byte 0: footer checksum mismatch"),
        (lambda d: flip(d, len(d) - 512 + 67), r"final footer at byte \d+: footer checksum"),
        (lambda d: flip(d, 512 + 36), r"dynamic header: header checksum mismatch: stored 0x"),
        (lambda d: flip(d, 512 + 3), r"dynamic header: bad cookie"),
        (lambda d: d[: 512 + 1024 + 10], r"stream truncated at byte 1546: BAT needs 20 bytes"),
        (lambda d: d[: len(d) // 2], r"BAT entry 2 points past end of file"),
        (lambda d: d[:-512], r"the final footer is missing \(0 bytes after the last block\)"),
        (lambda d: d[:-1], r"stream truncated at byte \d+: the final footer is missing"),
        (lambda d: d[:300], r"stream truncated: 300 bytes is too short"),
        (lambda d: set_bat(d, 3, bat_entry(d, 2) + 5), r"BAT entries 2 and 3 overlap"),
        (lambda d: set_bat(d, 1, bat_entry(d, 0)), r"BAT entries (0 and 1|1 and 0) overlap"),
        (lambda d: set_bat(d, 0, 2), r"BAT entry 0 points into the VHD metadata"),
        (lambda d: set_bat(d, 4, 1 << 24), r"BAT entry 4 points past end of file"),
        (lambda d: d, None),
    ],
    ids=[
        "footer-checksum",
        "footer-field",
        "final-footer",
        "header-checksum",
        "header-cookie",
        "truncated-bat",
        "truncated-block",
        "truncated-footer",
        "footer-cut-short",
        "tiny",
        "bat-overlap",
        "bat-duplicate",
        "bat-into-metadata",
        "bat-past-end",
        "control-unchanged",
    ],
)
def test_corrupt_vhd_rejected(good: tuple[bytes, Path, int], mutate, message) -> None:  # type: ignore[no-untyped-def]
    data, dest, size = good
    bad = mutate(data)
    if message is None:  # the control case proves the mutations are what fails
        import_bytes(bad, dest, size)
        return
    with pytest.raises(VhdError, match=message):
        import_bytes(bad, dest, size)


def test_footer_copy_must_match_final_footer(good: tuple[bytes, Path, int]) -> None:
    data, dest, size = good
    other = vhdio.pack_footer(
        disk_type=vhdio.DISK_DYNAMIC, size=size, disk_uuid=uuid.uuid4(), timestamp=1,
        data_offset=512,
    )  # fmt: skip
    with pytest.raises(VhdError, match="differs from the footer copy at byte 0"):
        import_bytes(data[:-512] + other, dest, size)


def test_vhd_larger_than_disk(good: tuple[bytes, Path, int], tmp_path: Path) -> None:
    data, _, size = good
    small = new_target(tmp_path / "small.raw", size - MiB)
    with pytest.raises(VhdError, match="VHD virtual size 10485760 is larger than the 9437184"):
        import_bytes(data, small, size - MiB)


def test_bad_disk_type_and_not_a_vhd(good: tuple[bytes, Path, int]) -> None:
    data, dest, size = good
    footer = bytearray(data[:512])
    struct.pack_into(">I", footer, 60, 5)
    struct.pack_into(">I", footer, 64, 0)
    struct.pack_into(">I", footer, 64, vhdio.checksum(bytes(footer), 64))
    with pytest.raises(VhdError, match="unsupported disk type 5"):
        import_bytes(bytes(footer) + data[512:], dest, size)
    with pytest.raises(VhdError, match="no VHD footer at the end of the stream"):
        import_bytes(bytes(3 * MiB), dest, size)


def test_fixed_vhd_size_must_match_footer(tmp_path: Path) -> None:
    size = 2 * MiB
    footer = vhdio.pack_footer(
        disk_type=vhdio.DISK_FIXED, size=size, disk_uuid=uuid.uuid4(), timestamp=0,
        data_offset=vhdio.NO_OFFSET,
    )  # fmt: skip
    dest = new_target(tmp_path / "d.raw", size)
    assert import_bytes(rnd(size, 1) + footer, dest, size) == size
    with pytest.raises(VhdError, match=f"holds {size - 512} bytes of data but its footer says"):
        import_bytes(rnd(size - 512, 1) + footer, dest, size)
    with pytest.raises(VhdError, match="larger than the"):
        import_bytes(rnd(size + MiB, 1) + footer, dest, size)


def test_bad_block_list_and_size() -> None:
    with pytest.raises(VhdError, match="block indexes must lie in"):
        vhdio.vhd_stream(Path("/nonexistent"), 4 * MiB, [2])
    with pytest.raises(VhdError, match="not a positive multiple of 512"):
        vhdio.vhd_stream(Path("/nonexistent"), 1000, [])


def test_geometry_matches_the_specification() -> None:
    assert vhdio.chs_geometry(20 * MiB) == (602, 4, 17)
    assert vhdio.chs_geometry(127 * 1024 * MiB)[1:] == (16, 255)


# --- partial blocks -------------------------------------------------------------------


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, (5 * MiB) // SECTOR - 1), st.integers(1, 40), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 2**16),
)
def test_a_partial_delta_holds_exactly_the_changed_sectors(
    tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[int, int, bool]], seed: int
) -> None:
    tmp = tmp_path_factory.mktemp("partial")
    size = 5 * MiB  # two whole blocks and a short last one
    rng = random.Random(seed)
    base = make_disk(tmp / "base.raw", size, [(0, rng.randbytes(size))])
    current = tmp / "current.raw"
    shutil.copyfile(base, current)
    # Random data or zeros over some sector runs (a run may cross a block).
    patch(
        current,
        [
            (s * SECTOR, rng.randbytes(n * SECTOR) if rnd else bytes(n * SECTOR))
            for s, n, rnd in writes
            if (s + n) * SECTOR <= size
        ],
    )
    before, after = base.read_bytes(), current.read_bytes()
    at = [slice(i * SECTOR, (i + 1) * SECTOR) for i in range(size // SECTOR)]
    changed = [i for i, where in enumerate(at) if before[where] != after[where]]
    changed_set = set(changed)
    blocks = sorted({s * SECTOR // BLOCK_SIZE for s in changed})
    parent = uuid.uuid4()
    data = stream_bytes(vhdio.vhd_stream(current, size, blocks, parent, base=base))
    assert len(data) == vhdio.vhd_stream_size(size, len(blocks))
    # Each block's bitmap has exactly its changed sectors; the others hold filler.
    (table,) = struct.unpack_from(">Q", data, 512 + 16)  # the dynamic header's BAT offset
    per_block = BLOCK_SIZE // SECTOR
    for index in blocks:
        (sector,) = struct.unpack_from(">I", data, table + 4 * index)
        bitmap = data[sector * SECTOR : sector * SECTOR + SECTOR]
        payload = data[sector * SECTOR + SECTOR : sector * SECTOR + SECTOR + BLOCK_SIZE]
        for s in range(per_block):
            disk_sector = index * per_block + s
            held = bool(bitmap[s // 8] & (0x80 >> (s % 8)))
            assert held == (disk_sector in changed_set), (index, s)
            piece = payload[s * SECTOR : (s + 1) * SECTOR]
            if held:
                assert piece == after[disk_sector * SECTOR : (disk_sector + 1) * SECTOR]
            else:
                assert piece == bytes([vhdio.export.FILLER]) * SECTOR
    # Applied over the base by the simulator's own importer: the current disk.
    target = tmp / "target.raw"
    shutil.copyfile(base, target)
    import_bytes(data, target, size, parent_uuid=parent)
    assert target.read_bytes() == after
