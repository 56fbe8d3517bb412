"""VHD codec: interop with qemu-img, chains, stream parsing, validation errors."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import tracemalloc
import uuid
from pathlib import Path

import pytest
from formats_vhd_testlib import MIB, OneWayStream, apply_diff, diff_file, dynamic_from_bytes

from xenkeep.formats import vhd
from xenkeep.formats.errors import FormatError, VhdFormatError


def sample_raw(size: int, seed: int = 1) -> bytes:
    """A sparse disk image: scattered random runs, mostly zeros."""
    rng = random.Random(seed)
    raw = bytearray(size)
    for _ in range(6):
        at = rng.randrange(0, size - 70_000)
        raw[at : at + 65_536] = rng.randbytes(65_536)
    raw[-1000:] = b"\xaa" * 1000
    return bytes(raw)


def io_paths(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "disk.raw"), str(tmp_path / "q.vhd")]


def qemu_to_raw(src: Path, dest: Path) -> bytes:
    subprocess.run(
        ["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(src), str(dest)], check=True
    )
    return dest.read_bytes()


# --------------------------------------------------------------------------
# Interop with qemu-img


@pytest.mark.parametrize("subformat", ["dynamic", "fixed"])
@pytest.mark.parametrize("force_size", [True, False])
def test_parses_qemu_vhds(tmp_path: Path, subformat: str, force_size: bool) -> None:
    raw = sample_raw(37 * MIB + 1536)
    (tmp_path / "disk.raw").write_bytes(raw)
    opts = f"subformat={subformat}" + (",force_size=on" if force_size else "")
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", opts, *io_paths(tmp_path)],
        check=True,
    )
    with vhd.VhdFile.open(tmp_path / "q.vhd") as f:
        assert f.disk_type == (vhd.DISK_DYNAMIC if subformat == "dynamic" else vhd.DISK_FIXED)
        data = vhd.VhdChain([f]).read(0, f.size)
        # Without force_size qemu rounds the size up to whole CHS cylinders.
        if force_size:
            assert f.size == len(raw)
        assert data[: len(raw)] == raw
        assert data[len(raw) :] == bytes(f.size - len(raw))
        out = tmp_path / "mine.raw"
        with out.open("wb") as o:
            vhd.VhdChain([f]).write_raw(o)
        assert out.read_bytes() == data


def test_qemu_reads_written_dynamic_vhd(tmp_path: Path) -> None:
    raw = sample_raw(21 * MIB + 512, seed=2)
    src = tmp_path / "disk.raw"
    src.write_bytes(raw)
    with src.open("rb") as s, (tmp_path / "d.vhd").open("w+b") as out:
        blocks = vhd.write_dynamic_from_raw(out, s, len(raw), uuid=uuid.uuid4(), timestamp=7)
    assert 0 < blocks < 11
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "vpc", str(tmp_path / "d.vhd")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f'"virtual-size": {len(raw)}' in info
    assert qemu_to_raw(tmp_path / "d.vhd", tmp_path / "back.raw") == raw


def test_qemu_reads_fixed_vhd(tmp_path: Path) -> None:
    raw = sample_raw(9 * MIB, seed=3)
    path = tmp_path / "f.vhd"
    path.write_bytes(raw + vhd.fixed_footer(len(raw), uuid=uuid.uuid4()))
    assert qemu_to_raw(path, tmp_path / "back.raw") == raw
    with vhd.VhdFile.open(path) as f:
        assert f.disk_type == vhd.DISK_FIXED and f.size == len(raw)
        assert vhd.VhdChain([f]).read(3 * MIB - 10, 20) == raw[3 * MIB - 10 : 3 * MIB + 10]


def test_block_data_is_4k_aligned_after_its_bitmap(tmp_path: Path) -> None:
    raw = sample_raw(16 * MIB, seed=4)
    path = tmp_path / "d.vhd"
    dynamic_from_bytes(path, raw)
    blob = path.read_bytes()
    with vhd.VhdFile.open(path) as f:
        present = list(f.present_blocks())
        assert present
        for index in present:
            offset = f.block_data_offset(index)
            assert offset is not None and offset % vhd.DATA_ALIGNMENT == 0
            assert f.bat[index] * vhd.SECTOR == offset - vhd.SECTOR
            assert blob[offset - 512 : offset] == b"\xff" * 512
            assert blob[offset : offset + f.block_size] == raw[index * 2 * MIB :][: 2 * MIB]


def test_written_file_is_deterministic(tmp_path: Path) -> None:
    raw = sample_raw(8 * MIB, seed=5)
    uid = uuid.UUID(int=42)
    dynamic_from_bytes(tmp_path / "a.vhd", raw, uid=uid)
    dynamic_from_bytes(tmp_path / "b.vhd", raw, uid=uid)
    assert (tmp_path / "a.vhd").read_bytes() == (tmp_path / "b.vhd").read_bytes()


# --------------------------------------------------------------------------
# Differencing chains


def test_chain_resolves_sectors_from_child_then_parent(tmp_path: Path) -> None:
    size = 6 * MIB + 4096
    base = sample_raw(size, seed=6)
    base_uuid = dynamic_from_bytes(tmp_path / "base.vhd", base)
    rng = random.Random(7)
    blocks = {
        0: ({0, 1, 2, 4095}, rng.randbytes(2 * MIB)),
        2: (set(range(100, 900)), rng.randbytes(2 * MIB)),
        3: (set(range(4096)), rng.randbytes(2 * MIB)),  # the short last block
    }
    diff_file(tmp_path / "child.vhd", size, base_uuid, blocks)
    with (
        vhd.VhdFile.open(tmp_path / "child.vhd") as child,
        vhd.VhdFile.open(tmp_path / "base.vhd") as parent,
    ):
        assert child.disk_type == vhd.DISK_DIFFERENCING
        assert child.parent_uuid == parent.uuid
        assert child.header is not None and child.header.parent_name == "parent.vhd"
        chain = vhd.VhdChain([child, parent])
        expected = apply_diff(base, blocks)
        assert chain.read(0, size) == expected
        assert (
            chain.read(2 * MIB * 2 + 100 * 512 - 3, 9)
            == expected[4 * MIB + 51197 : 4 * MIB + 51206]
        )
        own = child.read_own(0, 2 * MIB)
        assert own[:1536] == blocks[0][1][:1536]
        assert own[1536:2048] == bytes(512)
        bitmap = child.read_bitmap(0)
        assert bitmap is not None and (bitmap[0], bitmap[-1]) == (0b11100000, 1)


def test_wrong_parent_is_refused(tmp_path: Path) -> None:
    base = sample_raw(4 * MIB)
    dynamic_from_bytes(tmp_path / "base.vhd", base)
    other = uuid.uuid4()
    diff_file(tmp_path / "child.vhd", 4 * MIB, other, {0: ({1}, bytes(2 * MIB))})
    with (
        vhd.VhdFile.open(tmp_path / "child.vhd") as child,
        vhd.VhdFile.open(tmp_path / "base.vhd") as parent,
    ):
        with pytest.raises(VhdFormatError, match=f"wrong parent: .* expects parent {other}"):
            vhd.VhdChain([child, parent])
        with pytest.raises(VhdFormatError, match="its parent is missing"):
            vhd.VhdChain([child])
        with pytest.raises(VhdFormatError, match="is a dynamic disk, not a child"):
            vhd.check_parent(parent, child)


# --------------------------------------------------------------------------
# Stream parser


def test_stream_parser_copies_a_child_into_a_new_chain_file(tmp_path: Path) -> None:
    size = 10 * MIB
    base = sample_raw(size, seed=8)
    base_uuid = dynamic_from_bytes(tmp_path / "base.vhd", base)
    rng = random.Random(9)
    blocks = {i: ({rng.randrange(4096) for _ in range(50)}, rng.randbytes(2 * MIB)) for i in (4, 1)}
    child_uuid = diff_file(tmp_path / "child.vhd", size, base_uuid, blocks)

    stream = vhd.VhdStreamReader(OneWayStream((tmp_path / "child.vhd").read_bytes()))
    assert (stream.uuid, stream.parent_uuid, stream.size) == (child_uuid, base_uuid, size)
    copy = tmp_path / "copy.vhd"
    with copy.open("w+b") as out:
        parent = vhd.VhdParent(stream.header.parent_uuid or uuid.UUID(int=0))
        with vhd.VhdWriter(out, stream.size, uuid=stream.uuid, parent=parent) as w:
            seen = []
            for block in stream.blocks():
                seen.append(block.index)
                w.write_block(block.index, block.data, block.bitmap)
    assert seen == [1, 4]  # file order
    with vhd.VhdFile.open(copy) as c, vhd.VhdFile.open(tmp_path / "base.vhd") as p:
        assert vhd.VhdChain([c, p]).read(0, size) == apply_diff(base, blocks)


def test_stream_parser_reads_qemu_dynamic(tmp_path: Path) -> None:
    raw = sample_raw(12 * MIB, seed=10)
    (tmp_path / "disk.raw").write_bytes(raw)
    paths = io_paths(tmp_path)
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            "subformat=dynamic,force_size=on",
            *paths,
        ],
        check=True,
    )
    stream = vhd.VhdStreamReader(OneWayStream((tmp_path / "q.vhd").read_bytes()))
    rebuilt = bytearray(len(raw))
    for block in stream.blocks():
        at = block.index * stream.block_size
        rebuilt[at : at + stream.block_size] = block.data[: len(raw) - at]
    assert bytes(rebuilt) == raw


def test_stream_parser_errors(tmp_path: Path) -> None:
    raw = sample_raw(6 * MIB, seed=11)
    dynamic_from_bytes(tmp_path / "d.vhd", raw)
    blob = (tmp_path / "d.vhd").read_bytes()
    with pytest.raises(VhdFormatError, match="truncated stream: data of block"):
        list(vhd.VhdStreamReader(OneWayStream(blob[: len(blob) - 700_000])).blocks())
    with pytest.raises(VhdFormatError, match="truncated stream: no footer"):
        list(vhd.VhdStreamReader(OneWayStream(blob[:-512])).blocks())
    with pytest.raises(VhdFormatError, match="truncated stream: BAT"):
        vhd.VhdStreamReader(OneWayStream(blob[:1540]))
    fixed = raw + vhd.fixed_footer(len(raw), uuid=uuid.uuid4())
    with pytest.raises(VhdFormatError, match="bad cookie in footer copy"):
        vhd.VhdStreamReader(OneWayStream(fixed))
    with pytest.raises(VhdFormatError, match=r"fixed VHDs .* cannot be parsed as a stream"):
        vhd.VhdStreamReader(OneWayStream(fixed[-512:] + fixed))


# --------------------------------------------------------------------------
# Validation errors


def vhd_blob(tmp_path: Path) -> tuple[bytearray, list[int], list[int]]:
    """A valid dynamic VHD's bytes, its present blocks and its BAT."""
    raw = sample_raw(8 * MIB, seed=12)
    path = tmp_path / "d.vhd"
    dynamic_from_bytes(path, raw)
    with vhd.VhdFile.open(path) as f:
        return bytearray(path.read_bytes()), list(f.present_blocks()), list(f.bat)


def reopen(tmp_path: Path, blob: bytes | bytearray) -> vhd.VhdFile:
    path = tmp_path / "mutated.vhd"
    path.write_bytes(bytes(blob))
    with path.open("rb") as f:
        v = vhd.VhdFile(f)
        vhd.VhdChain([v], check=False).read(0, v.size)
        return v


def fix_footers(blob: bytearray) -> None:
    """Recompute the footer checksum and copy it to both places."""
    footer = bytearray(blob[:512])
    footer[64:68] = bytes(4)
    footer[64:68] = (~sum(footer) & 0xFFFFFFFF).to_bytes(4, "big")
    blob[:512] = footer
    blob[-512:] = footer


def fix_header(blob: bytearray) -> None:
    header = bytearray(blob[512:1536])
    header[36:40] = bytes(4)
    header[36:40] = (~sum(header) & 0xFFFFFFFF).to_bytes(4, "big")
    blob[512:1536] = header


def set_bat(blob: bytearray, index: int, sector: int) -> None:
    struct.pack_into(">I", blob, 1536 + 4 * index, sector)


def test_valid_blob_opens(tmp_path: Path) -> None:
    blob, present, _ = vhd_blob(tmp_path)
    reopen(tmp_path, blob)
    assert present


def test_truncated_files(tmp_path: Path) -> None:
    blob, _, _ = vhd_blob(tmp_path)
    with pytest.raises(VhdFormatError, match="truncated file: no footer at the end"):
        reopen(tmp_path, blob[:-1000])
    with pytest.raises(VhdFormatError, match="truncated file: 300 bytes"):
        reopen(tmp_path, blob[:300])
    raw = bytes(4 * MIB)
    fixed = raw + vhd.fixed_footer(len(raw), uuid=uuid.uuid4())
    with pytest.raises(VhdFormatError, match="truncated file: fixed disk"):
        reopen(tmp_path, fixed[MIB:])


def test_bad_cookie(tmp_path: Path) -> None:
    blob, _, _ = vhd_blob(tmp_path)
    blob[:8] = b"conectiX"
    blob[-512:-504] = b"conectiX"
    with pytest.raises(VhdFormatError, match="bad cookie in footer"):
        reopen(tmp_path, blob)
    blob, _, _ = vhd_blob(tmp_path)
    blob[512:520] = b"cxsparsX"
    with pytest.raises(VhdFormatError, match="bad cookie in dynamic header"):
        reopen(tmp_path, blob)


def test_bad_checksums(tmp_path: Path) -> None:
    blob, _, _ = vhd_blob(tmp_path)
    blob[-512 + 24] ^= 1  # timestamp of the trailing footer
    with pytest.raises(VhdFormatError, match="bad footer checksum"):
        reopen(tmp_path, blob)
    blob, _, _ = vhd_blob(tmp_path)
    blob[512 + 60] ^= 1  # reserved field of the header
    with pytest.raises(VhdFormatError, match="bad dynamic header checksum"):
        reopen(tmp_path, blob)


def test_footer_copy_mismatch(tmp_path: Path) -> None:
    blob, _, _ = vhd_blob(tmp_path)
    blob[24] ^= 1
    copy = bytearray(blob[:512])
    copy[64:68] = bytes(4)
    copy[64:68] = (~sum(copy) & 0xFFFFFFFF).to_bytes(4, "big")
    blob[:512] = copy
    with pytest.raises(VhdFormatError, match="footer copy mismatch"):
        reopen(tmp_path, blob)


def test_bat_entry_out_of_bounds(tmp_path: Path) -> None:
    blob, present, _ = vhd_blob(tmp_path)
    first = present[0]
    set_bat(blob, first, len(blob) // 512 - 2)
    with pytest.raises(VhdFormatError, match=f"BAT entry {first} out of bounds"):
        reopen(tmp_path, blob)


def test_overlapping_blocks(tmp_path: Path) -> None:
    blob, present, bat = vhd_blob(tmp_path)
    a, b = present[:2]
    set_bat(blob, b, bat[a] + 8)
    with pytest.raises(VhdFormatError, match="overlapping blocks"):
        reopen(tmp_path, blob)
    blob, _, _ = vhd_blob(tmp_path)
    set_bat(blob, a, 2)  # inside the dynamic header
    with pytest.raises(VhdFormatError, match="overlaps the dynamic header"):
        reopen(tmp_path, blob)


def test_unsupported_block_size(tmp_path: Path) -> None:
    blob, _, _ = vhd_blob(tmp_path)
    struct.pack_into(">I", blob, 512 + 32, 3 * MIB)
    fix_header(blob)
    with pytest.raises(VhdFormatError, match="unsupported block size 3145728"):
        reopen(tmp_path, blob)


def test_unsupported_disk_type_and_short_bat(tmp_path: Path) -> None:
    blob, _, _ = vhd_blob(tmp_path)
    struct.pack_into(">I", blob, 60, 5)
    fix_footers(blob)
    with pytest.raises(VhdFormatError, match="unsupported disk type 5"):
        reopen(tmp_path, blob)
    blob, _, _ = vhd_blob(tmp_path)
    struct.pack_into(">I", blob, 512 + 28, 2)
    fix_header(blob)
    with pytest.raises(VhdFormatError, match="BAT has 2 entries, the disk needs 4"):
        reopen(tmp_path, blob)


def test_errors_share_the_format_base() -> None:
    assert issubclass(VhdFormatError, FormatError)


def test_writer_refuses_misuse(tmp_path: Path) -> None:
    with (tmp_path / "w.vhd").open("w+b") as out:
        w = vhd.VhdWriter(out, 4 * MIB, uuid=uuid.uuid4())
        w.write_block(1, bytes(2 * MIB))
        with pytest.raises(ValueError, match="block 1 written twice"):
            w.write_block(1, bytes(2 * MIB))
        with pytest.raises(ValueError, match=r"outside 0\.\.1"):
            w.write_block(2, bytes(2 * MIB))
        with pytest.raises(ValueError, match="expected a whole block"):
            w.write_block(0, bytes(100))
        with pytest.raises(ValueError, match="unsupported block size"):
            vhd.VhdWriter(out, 4 * MIB, uuid=uuid.uuid4(), block_size=3 * MIB)


# --------------------------------------------------------------------------
# Memory


def test_memory_stays_flat_on_a_huge_sparse_disk(tmp_path: Path) -> None:
    """A 256 GiB dynamic disk with a few blocks: writing, opening, streaming."""
    size = 256 << 30
    path = tmp_path / "huge.vhd"
    tracemalloc.start()
    try:
        with path.open("w+b") as out, vhd.VhdWriter(out, size, uuid=uuid.uuid4()) as w:
            for index in (0, 100_000, w.block_count - 1):
                # Each block is built, written and dropped: memory is one block.
                w.write_block(index, os.urandom(2 * MIB))
        with vhd.VhdFile.open(path) as f:
            assert list(f.present_blocks()) == [0, 100_000, f.block_count - 1]
            chain = vhd.VhdChain([f])
            assert len(chain.read(100_000 * 2 * MIB, 2 * MIB)) == 2 * MIB
        with path.open("rb") as src:
            assert len(list(vhd.VhdStreamReader(src).blocks())) == 3
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The BAT of 128 Ki entries is 512 KiB; a few blocks of 2 MiB on top.
    assert peak < 12 * MIB


# --------------------------------------------------------------------------
# Streamed output and in-place updates


def test_stream_writer_is_byte_identical_to_file_writer(tmp_path: Path) -> None:
    size = 9 * MIB + 512
    raw = sample_raw(size, seed=13)
    zero = bytes(2 * MIB)
    present = [
        i for i in range(5) if raw[i * 2 * MIB : (i + 1) * 2 * MIB] != zero[: size - i * 2 * MIB]
    ]
    uid = uuid.UUID(int=77)
    dynamic_from_bytes(tmp_path / "file.vhd", raw, uid=uid)
    stream = vhd.VhdStream(
        size,
        uuid=uid,
        present=present,
        read_block=lambda i: (raw[i * 2 * MIB : (i + 1) * 2 * MIB], None),
    )
    pieces = list(stream)
    assert max(len(p) for p in pieces) <= 2 * MIB + 4096
    produced = b"".join(pieces)
    assert len(produced) == stream.length
    assert produced == (tmp_path / "file.vhd").read_bytes()
    (tmp_path / "stream.vhd").write_bytes(produced)
    assert qemu_to_raw(tmp_path / "stream.vhd", tmp_path / "back.raw") == raw


def test_stream_writer_differencing(tmp_path: Path) -> None:
    rng = random.Random(14)
    blocks = {3: ({1, 2, 3}, rng.randbytes(2 * MIB)), 0: ({4095}, rng.randbytes(2 * MIB))}
    parent = uuid.UUID(int=5)
    child = diff_file(tmp_path / "file.vhd", 8 * MIB, parent, blocks, uid=uuid.UUID(int=6))
    stream = vhd.VhdStream(
        8 * MIB,
        uuid=child,
        parent=vhd.VhdParent(parent, name="parent.vhd"),
        present=blocks,
        read_block=lambda i: (blocks[i][1], vhd.bitmap_from_sectors(blocks[i][0])),
    )
    assert b"".join(stream) == (tmp_path / "file.vhd").read_bytes()


def merge_into_parent(child: vhd.VhdFile, updater: vhd.VhdUpdater) -> None:
    """A plain merge: every child sector written into the parent."""
    for index in child.present_blocks():
        got = child.read_block(index)
        assert got is not None
        bitmap, data = got
        if updater.block_data_offset(index) is None:
            updater.allocate_block(index)
        for first, count in vhd.bitmap_runs(bitmap):
            a, b = first * vhd.SECTOR, (first + count) * vhd.SECTOR
            updater.write_data(index, a, data[a:b])
    updater.commit()


def chain_fixture(tmp_path: Path) -> tuple[bytes, dict[int, tuple[set[int], bytes]]]:
    size = 10 * MIB
    raw = bytearray(size)
    raw[2 * MIB : 3 * MIB] = random.Random(15).randbytes(MIB)  # only block 1 present
    base_uuid = dynamic_from_bytes(tmp_path / "base.vhd", bytes(raw))
    rng = random.Random(16)
    blocks = {
        1: ({0, 7, 4000}, rng.randbytes(2 * MIB)),  # partial, over a present block
        3: ({5, 6}, rng.randbytes(2 * MIB)),  # partial, over an absent block
        4: (set(range(4096)), rng.randbytes(2 * MIB)),  # whole block
    }
    diff_file(tmp_path / "child.vhd", size, base_uuid, blocks)
    return bytes(raw), blocks


def test_updater_merges_a_child_into_its_parent(tmp_path: Path) -> None:
    raw, blocks = chain_fixture(tmp_path)
    expected = apply_diff(raw, blocks)
    with (
        vhd.VhdFile.open(tmp_path / "child.vhd") as child,
        (tmp_path / "base.vhd").open("r+b") as f,
    ):
        updater = vhd.VhdUpdater(f, name="base")
        merge_into_parent(child, updater)
    with vhd.VhdFile.open(tmp_path / "base.vhd") as merged:
        assert list(merged.present_blocks()) == [1, 3, 4]
        for index in merged.present_blocks():
            offset = merged.block_data_offset(index)
            assert offset is not None and offset % vhd.DATA_ALIGNMENT == 0
        assert vhd.VhdChain([merged]).read(0, merged.size) == expected
    assert qemu_to_raw(tmp_path / "base.vhd", tmp_path / "back.raw") == expected


def test_updater_interrupted_before_the_bat_leaves_the_old_disk(tmp_path: Path) -> None:
    raw, _ = chain_fixture(tmp_path)
    before = (tmp_path / "base.vhd").read_bytes()

    class Crash(Exception):
        pass

    class CrashAfterFooter(vhd.VhdUpdater):
        def _sync(self, fsync: bool) -> None:
            super()._sync(fsync)
            raise Crash

    with (tmp_path / "base.vhd").open("r+b") as f:
        up = CrashAfterFooter(f)
        up.allocate_block(3)
        up.write_data(3, 0, b"\x77" * 4096)
        with pytest.raises(Crash):
            up.commit()
    after = (tmp_path / "base.vhd").read_bytes()
    assert len(after) > len(before)
    with vhd.VhdFile.open(tmp_path / "base.vhd") as f2:
        assert list(f2.present_blocks()) == [1]
        assert vhd.VhdChain([f2]).read(0, f2.size) == raw
    # Without any commit at all the file is untouched where it matters too.
    with (tmp_path / "base.vhd").open("r+b") as f:
        up2 = vhd.VhdUpdater(f)
        up2.allocate_block(4)
    with vhd.VhdFile.open(tmp_path / "base.vhd") as f3:
        assert vhd.VhdChain([f3]).read(0, f3.size) == raw


def test_dynamic_disk_honours_its_bitmap(tmp_path: Path) -> None:
    """A clear bit in a dynamic disk's bitmap is a sector never written: zeros."""
    with (
        (tmp_path / "d.vhd").open("w+b") as out,
        vhd.VhdWriter(out, 4 * MIB, uuid=uuid.uuid4()) as w,
    ):
        w.write_block(0, b"\x55" * (2 * MIB), vhd.bitmap_from_sectors({1}))
    with vhd.VhdFile.open(tmp_path / "d.vhd") as f:
        data = vhd.VhdChain([f]).read(0, 2048)
    assert data == bytes(512) + b"\x55" * 512 + bytes(1024)
