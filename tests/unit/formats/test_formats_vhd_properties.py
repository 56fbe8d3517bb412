"""Property tests of the VHD codec: random sparse disks and random sector bitmaps."""

from __future__ import annotations

import io
import uuid

from formats_vhd_testlib import OneWayStream, apply_diff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenkeep.formats import vhd

BS = 64 * 1024  # small blocks keep examples fast; the code paths are the same
SPB = BS // vhd.SECTOR
PROFILE = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def sparse_disks(draw: st.DrawFn, block_size: int = BS, max_blocks: int = 6) -> bytes:
    """A disk of whole sectors with a few random runs of random bytes."""
    sectors = draw(st.integers(1, max_blocks * block_size // vhd.SECTOR))
    raw = bytearray(sectors * vhd.SECTOR)
    for _ in range(draw(st.integers(0, 5))):
        at = draw(st.integers(0, len(raw) - 1))
        length = draw(st.integers(1, min(3 * vhd.SECTOR, len(raw) - at)))
        raw[at : at + length] = draw(st.binary(min_size=length, max_size=length))
    return bytes(raw)


def write_dynamic(raw: bytes, block_size: int = BS) -> io.BytesIO:
    buf = io.BytesIO()
    zero = bytes(block_size)
    with vhd.VhdWriter(buf, len(raw), uuid=uuid.UUID(int=1), block_size=block_size) as w:
        for index in range(w.block_count):
            data = raw[index * block_size : (index + 1) * block_size]
            if data != zero[: len(data)]:
                w.write_block(index, data)
    return buf


@PROFILE
@given(sparse_disks())
def test_dynamic_round_trip(raw: bytes) -> None:
    buf = write_dynamic(raw)
    f = vhd.VhdFile(buf)
    assert f.size == len(raw)
    chain = vhd.VhdChain([f])
    assert chain.read(0, f.size) == raw
    for index in f.present_blocks():
        offset = f.block_data_offset(index)
        assert offset is not None and offset % vhd.DATA_ALIGNMENT == 0
    # The same disk read as a stream, in file order.
    stream = vhd.VhdStreamReader(OneWayStream(buf.getvalue(), piece=777))
    rebuilt = bytearray(len(raw))
    for block in stream.blocks():
        at = block.index * BS
        rebuilt[at : at + BS] = block.data[: len(raw) - at]
    assert bytes(rebuilt) == raw


@settings(max_examples=8, deadline=None, database=None)
@given(sparse_disks(block_size=vhd.DEFAULT_BLOCK_SIZE, max_blocks=3))
def test_dynamic_round_trip_default_blocks(raw: bytes) -> None:
    f = vhd.VhdFile(write_dynamic(raw, vhd.DEFAULT_BLOCK_SIZE))
    assert vhd.VhdChain([f]).read(0, f.size) == raw


@st.composite
def diff_layers(draw: st.DrawFn, nblocks: int) -> dict[int, tuple[set[int], bytes]]:
    """Blocks of a differencing disk: random sector sets with random data."""
    indices = draw(st.sets(st.integers(0, nblocks - 1), max_size=nblocks))
    layer = {}
    for index in indices:
        sectors = draw(st.sets(st.integers(0, SPB - 1), min_size=1, max_size=SPB))
        fill = draw(st.integers(1, 255))
        layer[index] = (sectors, bytes([fill, index % 256]) * (BS // 2))
    return layer


@PROFILE
@given(st.data())
def test_differencing_chain_matches_model(data: st.DataObject) -> None:
    nblocks = data.draw(st.integers(1, 4))
    size = data.draw(st.integers(1, nblocks * SPB)) * vhd.SECTOR
    nblocks = -(-size // BS)
    base = data.draw(sparse_disks(max_blocks=nblocks), label="base")
    base = (base + bytes(size))[:size]
    files = [vhd.VhdFile(write_dynamic(base))]
    expected = base
    for depth in range(data.draw(st.integers(1, 3))):
        layer = data.draw(diff_layers(nblocks), label=f"layer {depth}")
        buf = io.BytesIO()
        parent = vhd.VhdParent(files[0].uuid, name=f"p{depth}.vhd")
        child_uuid = uuid.UUID(int=100 + depth)
        with vhd.VhdWriter(buf, size, uuid=child_uuid, parent=parent, block_size=BS) as w:
            for index in sorted(layer):
                sectors, payload = layer[index]
                w.write_block(index, payload, vhd.bitmap_from_sectors(sectors, BS))
        child = vhd.VhdFile(buf)
        for index, (sectors, _) in layer.items():
            bitmap = child.read_bitmap(index)
            assert bitmap == vhd.bitmap_from_sectors(sectors, BS)
        files.insert(0, child)
        expected = apply_diff(expected, layer, BS)
    chain = vhd.VhdChain(files)
    assert chain.read(0, size) == expected
    start = data.draw(st.integers(0, size - 1))
    length = data.draw(st.integers(0, size - start))
    assert chain.read(start, length) == expected[start : start + length]


@settings(max_examples=200, deadline=None, database=None)
@given(st.sets(st.integers(0, SPB - 1)))
def test_bitmap_runs_cover_exactly_the_set_sectors(sectors: set[int]) -> None:
    covered: set[int] = set()
    previous_end = -1
    for first, count in vhd.bitmap_runs(vhd.bitmap_from_sectors(sectors, BS)):
        assert count > 0 and first > previous_end
        previous_end = first + count
        covered.update(range(first, first + count))
    assert covered == sectors
