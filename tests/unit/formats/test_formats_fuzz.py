"""Bounded fuzzing of the VHD and XVA readers with mutated real files.

Every mutant must either parse or raise the format's own error: never another
exception, never a hang (the per-test timeout catches those). The seed is
fixed, so a failure names a mutant that can be replayed.
"""

from __future__ import annotations

import io
import random
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from formats_vhd_testlib import OneWayStream
from formats_xva_testlib import ova, write_vm

from xenkeep.formats import vhd, xva
from xenkeep.formats.errors import VhdFormatError, XvaFormatError

SEED = 20261125
BS = 64 * 1024
INTERESTING = [0, 1, 2, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 0x200, 0x1000]


def sample_vhds(tmp_path: Path) -> dict[str, bytes]:
    """Small real VHDs of each kind: ours (dynamic, differencing), qemu's (dynamic, fixed)."""
    rng = random.Random(SEED)
    raw = bytearray(5 * BS + 1024)
    for at in (100, 2 * BS + 7, 5 * BS):
        raw[at : at + 900] = rng.randbytes(900)
    samples: dict[str, bytes] = {}
    buf = io.BytesIO()
    with vhd.VhdWriter(buf, len(raw), uuid=uuid.UUID(int=1), block_size=BS) as w:
        for index in (0, 2, 5):
            w.write_block(index, bytes(raw[index * BS : (index + 1) * BS]))
    samples["dynamic"] = buf.getvalue()
    buf = io.BytesIO()
    parent = vhd.VhdParent(uuid.UUID(int=1), name="base.vhd")
    with vhd.VhdWriter(buf, len(raw), uuid=uuid.UUID(int=2), parent=parent, block_size=BS) as w:
        w.write_block(1, rng.randbytes(BS), vhd.bitmap_from_sectors({0, 5, 77}, BS))
        w.write_block(4, rng.randbytes(BS), vhd.bitmap_from_sectors(set(range(64)), BS))
    samples["diff"] = buf.getvalue()
    src = tmp_path / "small.raw"
    src.write_bytes(bytes(raw) + bytes(3 << 20))
    for sub in ("dynamic", "fixed"):
        dest = tmp_path / f"q-{sub}.vhd"
        opts = f"subformat={sub}"
        argv = ["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", opts, str(src), str(dest)]
        subprocess.run(argv, check=True)
        samples[f"qemu-{sub}"] = dest.read_bytes()
    return samples


def mutate(rng: random.Random, blob: bytes, hot: list[tuple[int, int]]) -> bytes:
    """One random mutation, biased towards the metadata regions ``hot``."""
    data = bytearray(blob)
    kind = rng.choice(["flip", "flip", "word", "truncate", "insert", "delete"])
    if rng.random() < 0.8:
        start, end = rng.choice(hot)
    else:
        start, end = 0, len(data)
    end = min(end, len(data))
    at = rng.randrange(start, max(end, start + 1)) if end > start else 0
    at = min(at, max(len(data) - 1, 0))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(start, max(end, start + 1)) if end > start else 0
            if pos < len(data):
                data[pos] ^= 1 << rng.randrange(8)
    elif kind == "word":
        word = rng.choice(INTERESTING).to_bytes(4, "big")
        data[at : at + 4] = word
    elif kind == "truncate":
        del data[at:]
    elif kind == "insert":
        data[at:at] = rng.randbytes(rng.choice([1, 3, 512, 4096]))
    else:
        del data[at : at + rng.choice([1, 4, 512, 4096])]
    return bytes(data)


def _resum(data: bytearray, at: int, length: int, field: int) -> None:
    if at < 0 or at + length > len(data):
        return
    data[at + field : at + field + 4] = bytes(4)
    total = sum(data[at : at + length])
    data[at + field : at + field + 4] = (~total & 0xFFFFFFFF).to_bytes(4, "big")


def refresh_checksums(blob: bytes) -> bytes:
    """Recompute footer and header checksums so mutations reach the deeper checks."""
    data = bytearray(blob)
    _resum(data, len(data) - 512, 512, 64)
    _resum(data, 0, 512, 64)
    if len(data) >= 24:
        header_at = int.from_bytes(data[16:24], "big")
        if header_at < len(data):
            _resum(data, header_at, 1024, 36)
    return bytes(data)


def exercise_vhd(blob: bytes) -> None:
    """Everything a reader of an untrusted VHD does."""
    try:
        f = vhd.VhdFile(io.BytesIO(blob))
        chain = vhd.VhdChain([f], check=False)
        for index in f.present_blocks():
            f.read_block(index)
            chain.read_block(index)
        chain.read(0, min(f.size, 3 * BS))
    except VhdFormatError:
        pass
    try:
        stream = vhd.VhdStreamReader(OneWayStream(blob, piece=4000))
        for _ in stream.blocks():
            pass
    except VhdFormatError:
        pass


def run_fuzz(
    samples: dict[str, bytes],
    hot_of: Callable[[bytes], list[tuple[int, int]]],
    exercise: Callable[[bytes], None],
    iterations: int,
    fixup: Callable[[bytes], bytes] | None = None,
) -> int:
    rng = random.Random(SEED)
    names = sorted(samples)
    for i in range(iterations):
        name = names[i % len(names)]
        blob = samples[name]
        mutant = mutate(rng, blob, hot_of(blob))
        for _ in range(rng.choice([0, 0, 1, 2])):
            mutant = mutate(rng, mutant, hot_of(mutant))
        if fixup is not None and rng.random() < 0.5:
            mutant = fixup(mutant)
        try:
            exercise(mutant)
        except Exception as exc:  # the point: anything but the format error fails
            path = Path(f"/tmp/fuzz-mutant-{name}-{i}.bin")
            path.write_bytes(mutant)
            raise AssertionError(
                f"mutant {i} of {name} raised {type(exc).__name__}: {exc} (saved to {path})"
            ) from exc
    return iterations


def vhd_hot(blob: bytes) -> list[tuple[int, int]]:
    return [(0, 512), (512, 1536), (1536, 2560), (max(len(blob) - 512, 0), len(blob))]


@pytest.mark.timeout(120)
def test_fuzz_vhd_readers(tmp_path: Path) -> None:
    samples = sample_vhds(tmp_path)
    for blob in samples.values():
        exercise_vhd(blob)  # the originals are valid
    assert run_fuzz(samples, vhd_hot, exercise_vhd, 1200, refresh_checksums) == 1200


def exercise_xva(blob: bytes) -> None:
    try:
        for _ in xva.iter_xva(io.BytesIO(blob)):
            pass
    except XvaFormatError:
        pass


@pytest.mark.timeout(120)
def test_fuzz_xva_reader(tmp_path: Path) -> None:
    raw = bytearray(3 << 20)
    raw[10:5000] = random.Random(SEED).randbytes(4990)
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(raw))
    buf = io.BytesIO()
    write_vm(buf, len(raw), image, mtime=0)
    blob = buf.getvalue()
    exercise_xva(blob)
    ova_end = 512 + len(ova(len(raw)))

    def hot(b: bytes) -> list[tuple[int, int]]:
        return [
            (0, 512),
            (512, ova_end),
            (ova_end, ova_end + 4096),
            (max(len(b) - 3072, 0), len(b)),
        ]

    assert run_fuzz({"xva": blob}, hot, exercise_xva, iterations=300) == 300
