"""Merge benchmarks for the backup datastore (``make bench`` -> out/bench.json).

Figures, each a ratio against a baseline measured in the same run on the
same filesystem, so they compare across machines:

- merge of a delta of N GiB on XFS with reflink (sharing path) and on ext4
  (copy path), against ``cp --reflink=never`` of the delta file;
- merge time of a 1 % delta of a sparse disk over the time to read that
  delta, for two disk sizes (must not grow with disk size);
- peak RSS of the merging process for those two disk sizes (must stay flat).

Needs root for the loop-mounted XFS and ext4 images; without root it
measures the copy path in a temporary directory only. Environment:
``BENCH_DELTA_MIB`` (default 1024), ``BENCH_OUT`` (default out/bench.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))

from xenkeep.repo.datastore import Datastore  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
BLOCK = 2 * MiB
VM = str(uuid.UUID(int=0x1234))
MERGER = """
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from xenkeep.repo.datastore import Datastore
ds = Datastore(Path(sys.argv[1]))
ds.reflink
t = time.perf_counter()
r = asyncio.run(ds.prune(sys.argv[2], 1))
print(json.dumps({"seconds": time.perf_counter() - t, "shared": r.stats.blocks_shared,
                  "copied_bytes": r.stats.bytes_copied, "blocks": r.stats.blocks}))
"""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


async def _blocks(indexes: list[int], seed: int) -> AsyncIterator[tuple[int, bytes, bytes]]:
    base = bytearray(os.urandom(BLOCK))
    ones = b"\xff" * (BLOCK // 512 // 8)
    for i in indexes:
        base[:8] = (i ^ (seed << 40)).to_bytes(8, "little")
        yield i, ones, bytes(base)


def build(root: Path, size: int, full_blocks: int, delta_blocks: int) -> Path:
    """A datastore with a sparse full and one whole-block delta; returns the delta's path."""
    root.mkdir(parents=True)
    ds = Datastore.initialise(root)
    n = size // BLOCK
    step = max(1, n // max(full_blocks, 1))
    full_idx = list(range(0, n, step))[:full_blocks]
    dstep = max(1, n // max(delta_blocks, 1))
    delta_idx = list(range(1, n, dstep))[:delta_blocks]

    async def run() -> Path:
        async with ds.begin_point(VM, vm_record={}) as w:
            await w.write_blocks("0", _blocks(full_idx, 1), size=size, delta=False)
            await w.commit()
        async with ds.begin_point(VM, vm_record={}) as w:
            rec = await w.write_blocks("0", _blocks(delta_idx, 2), size=size, delta=True)
            await w.commit()
        return ds.vmdir(VM).vhd_path("0", rec.file)

    delta = asyncio.run(run())
    os.sync()
    return delta


def run_merge(root: Path) -> dict[str, float]:
    """Merge in a child process; its own timing plus its peak RSS."""
    proc = subprocess.Popen(
        [sys.executable, "-c", MERGER, str(root), VM, str(ROOT / "daemon")],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise RuntimeError(f"merge failed: {out!r}")
    result: dict[str, float] = json.loads(out)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def time_cp(src: Path, dst: Path) -> float:
    """``cp --reflink=never`` of ``src`` plus an fsync (the merge fsyncs too)."""
    t = time.perf_counter()
    subprocess.run(["cp", "--reflink=never", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    took = time.perf_counter() - t
    dst.unlink()
    return took


def evict(path: Path) -> None:
    """Drop ``path`` from the page cache so the next reader goes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def time_read(path: Path) -> float:
    """Sequential read of ``path`` from the disk."""
    evict(path)
    t = time.perf_counter()
    with path.open("rb", buffering=0) as f:
        while f.read(8 * MiB):
            pass
    return time.perf_counter() - t


@contextmanager
def mounted(fs: str, work: Path, size: int) -> Iterator[Path]:
    """A fresh loop-mounted filesystem."""
    img = work / f"{fs}.img"
    mnt = work / f"mnt-{fs}"
    mnt.mkdir()
    with img.open("wb") as f:
        f.truncate(size)
    mkfs = {"xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"], "ext4": ["mkfs.ext4", "-q", "-F"]}
    subprocess.run([*mkfs[fs], str(img)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        img.unlink()


def merge_vs_cp(where: Path, delta_mib: int) -> dict[str, float | str | bool]:
    """Merge a delta of ``delta_mib`` into a sparse full; cp the same bytes."""
    blocks = delta_mib * MiB // BLOCK
    size = max(4 * GiB, 4 * delta_mib * MiB)
    root = where / "store"
    delta = build(root, size, full_blocks=blocks // 2, delta_blocks=blocks)
    reflink = Datastore(root).reflink
    evict(delta)
    cp_s = time_cp(delta, where / "cp-copy")
    evict(delta)
    m = run_merge(root)
    data = blocks * BLOCK
    shutil.rmtree(root)
    return {
        "reflink": reflink,
        "delta_bytes": data,
        "merge_seconds": m["seconds"],
        "cp_seconds": cp_s,
        "merge_mb_s": data / m["seconds"] / 1e6,
        "cp_mb_s": data / cp_s / 1e6,
        "merge_time_over_cp": m["seconds"] / cp_s,
        "merge_speed_over_cp": cp_s / m["seconds"],
        "blocks_shared": m["shared"],
        "bytes_copied": m["copied_bytes"],
        "peak_rss_mib": m["peak_rss_mib"],
    }


def scaling(where: Path, sizes: list[int]) -> list[dict[str, float]]:
    """1 % deltas of sparse disks of growing size: merge over read time, peak RSS."""
    out = []
    for size in sizes:
        root = where / f"scale-{size}"
        blocks = max(1, size // 100 // BLOCK)
        delta = build(root, size, full_blocks=blocks, delta_blocks=blocks)
        read_s = time_read(delta)
        evict(delta)
        m = run_merge(root)
        out.append(
            {
                "disk_gib": size / GiB,
                "delta_bytes": blocks * BLOCK,
                "merge_seconds": m["seconds"],
                "read_delta_seconds": read_s,
                "merge_over_read": m["seconds"] / read_s,
                # The cost per byte of delta: flat if a merge costs the
                # delta, not the disk (the read above is often page-cache
                # hot through the loop device, which makes its ratio noisy).
                "merge_seconds_per_delta_gib": m["seconds"] / (blocks * BLOCK / GiB),
                "peak_rss_mib": m["peak_rss_mib"],
            }
        )
        shutil.rmtree(root)
    return out


def main() -> int:
    delta_mib = int(os.environ.get("BENCH_DELTA_MIB", "1024"))
    out_path = Path(os.environ.get("BENCH_OUT", ROOT / "out" / "bench.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"delta_mib": delta_mib, "time": time.time()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xenkeep-bench-") as tmp:
        work = Path(tmp)
        img_size = max(8 * GiB, 6 * delta_mib * MiB)
        if os.geteuid() == 0:
            with mounted("xfs", work, img_size) as mnt:
                log(f"merge of {delta_mib} MiB on XFS (reflink)")
                results["xfs_reflink"] = merge_vs_cp(mnt, delta_mib)
            with mounted("ext4", work, img_size) as mnt:
                log(f"merge of {delta_mib} MiB on ext4 (copy path)")
                results["ext4_copy"] = merge_vs_cp(mnt, delta_mib)
                log("1 % deltas of 8 and 64 GiB sparse disks on ext4")
                results["scaling"] = scaling(mnt, [8 * GiB, 64 * GiB])
        else:
            log("not root: no loop mounts; copy path in a temporary directory only")
            (work / "plain").mkdir()
            results["tmp_copy"] = merge_vs_cp(work / "plain", delta_mib)
            results["scaling"] = scaling(work / "plain", [8 * GiB, 64 * GiB])
    rows = results["scaling"]
    assert isinstance(rows, list)
    # Disk 8x larger: how much more a merge costs per GiB of delta (1.0 = flat).
    results["scaling_cost_per_delta_growth"] = (
        rows[-1]["merge_seconds_per_delta_gib"] / rows[0]["merge_seconds_per_delta_gib"]
    )
    results["bench_seconds"] = time.perf_counter() - started
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    for line in summary(results):
        print(line)
    print(f"bench: wrote {out_path}")
    return 0


def summary(r: dict[str, object]) -> list[str]:
    """Human lines of the figures."""
    lines = []
    x = r.get("xfs_reflink")
    c = r.get("ext4_copy") or r.get("tmp_copy")
    gib = int(str(r["delta_mib"])) / 1024
    if isinstance(x, dict) and isinstance(c, dict):
        lines.append(
            f"merge {gib:g} GiB delta: reflink {x['merge_seconds'] * 1000:.0f} ms "
            f"({x['merge_time_over_cp']:.3f}× cp time, {x['merge_speed_over_cp']:.0f}× cp speed), "
            f"copy path {c['merge_mb_s']:.0f} MB/s ({c['merge_speed_over_cp']:.2f}× cp "
            f"at {c['cp_mb_s']:.0f} MB/s)"
        )
    elif isinstance(c, dict):
        lines.append(
            f"merge {gib:g} GiB delta: copy path {c['merge_mb_s']:.0f} MB/s "
            f"({c['merge_speed_over_cp']:.2f}× cp)"
        )
    s = r.get("scaling")
    if isinstance(s, list):
        for row in s:
            lines.append(
                f"1 % delta of a {row['disk_gib']:g} GiB sparse disk: merge/read "
                f"{row['merge_over_read']:.2f}, {row['merge_seconds_per_delta_gib']:.2f} s per "
                f"GiB of delta, peak RSS {row['peak_rss_mib']:.0f} MiB"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
