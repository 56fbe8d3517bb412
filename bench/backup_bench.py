"""Backup figures: ``make bench`` (or ``PYTHONPATH=. python bench/backup_bench.py --out F``).

The simulator runs as its own process (so its memory is not counted); this
process runs the BackupManager against it, as xenkeepd would. Figures:

- ``export_mb_s``: the rate a bare client pulls the VHD export (null sink);
- ``full_backup_mb_s`` and its ratio to it: the same stream into the datastore;
- ``delta_*``: a 1 % change exported, stored and merged (retention 1);
- ``peak_rss_mib``: the backup process's peak RSS, for two disk sizes (8x
  the data); ``peak_rss_growth`` is their ratio and must stay near 1;
- ``restore_check_cost``: the newest point restored into a VDI of the pool
  with every block checked (the product) against the same restore reading
  the same files without the checks, as a ratio (goal: under 1.05);
  ``restore_check_cost_bound``, the best unchecked time plus all the CPU
  time the checks took, over that time (an upper bound a busy machine does
  not blur); and ``restore_stream_check_cost``, the same for producing the
  restore's VHD stream alone into a null sink (nothing to hide the hashing).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xenkeep.backup.manager import BackupManager
from xenkeep.backup.restore import chain_vhd
from xenkeep.formats.vhd import VhdChain, VhdFile
from xenkeep.pools.access import StaticPools
from xenkeep.repo.datastore import Datastore
from xenkeep.store import open_database
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.transfer import export_raw_vdi, import_raw_vdi

MiB = 1 << 20
# Any id: the static pool map below has this one pool.
POOL_ID = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def write_disk(client: XapiClient, vdi: str, offset: int, data: bytes) -> None:
    for at in range(0, len(data), 4 * MiB):
        piece = base64.b64encode(data[at : at + 4 * MiB]).decode()
        await client.call("sim.write_vdi", vdi, offset + at, piece, timeout=120)


@contextlib.contextmanager
def workspace(size_mib: int) -> Iterator[tuple[Path, str]]:
    """Where the pool's disks and the datastore live: XFS with reflink when root.

    A real SR snapshots in constant time (a new VHD on top of the chain); the
    simulator's snapshot is a reflink copy on XFS but a full copy elsewhere,
    which would bill a storage cost of the bench machine to the backup.
    """
    with tempfile.TemporaryDirectory(prefix="xk-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if os.geteuid() != 0:
            yield tmp, "tmp (not root: no XFS loop mount)"
            return
        img, mnt = tmp / "xfs.img", tmp / "mnt"
        mnt.mkdir()
        with img.open("wb") as f:
            f.truncate(max(8 << 30, 4 * size_mib * MiB))
        subprocess.run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(img)], check=True)
        subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
        try:
            yield mnt, "xfs (reflink)"
        finally:
            subprocess.run(["umount", str(mnt)], check=True)


class _Unchecked:
    """What a restore read before every block was checked: the chain alone."""

    def __init__(self, chain: VhdChain) -> None:
        self._chain = chain
        self.size = chain.size
        self.block_size = chain.block_size

    def present_blocks(self) -> list[int]:
        present: set[int] = set()
        for f in self._chain.files:
            present.update(f.present_blocks())
        return sorted(present)

    def block(self, index: int) -> bytes:
        return self._chain.read_block(index)


class _UncheckedStore:
    """The datastore's ``open_point_disk`` without the checks: the baseline."""

    def __init__(self, ds: Datastore) -> None:
        self.ds = ds

    @contextlib.contextmanager
    def open_point_disk(
        self, vm_uuid: str, point_id: str, key: str, *, salvage: bool = False
    ) -> Iterator[_Unchecked]:
        del salvage
        with self.ds.reading(vm_uuid) as vmdir, contextlib.ExitStack() as stack:
            rec = vmdir.load_point(point_id).disk(key)
            files = []
            for f in vmdir.chain_files(key, rec.file):
                fh = stack.enter_context(vmdir.vhd_path(key, f).open("rb"))
                files.append(VhdFile(fh, name=f))
            yield _Unchecked(VhdChain(files))


async def restore_cost(
    client: XapiClient, ds: Datastore, vm_uuid: str, point_id: str, rounds: int = 7
) -> dict[str, Any]:
    """The newest point restored with and without the checks, alternately;
    the best time of each."""
    sr = await client.call("pool.get_default_SR", (await client.call("pool.get_all"))[0])
    size = int((await asyncio.to_thread(ds.points, vm_uuid))[-1].disks[0].virtual_size)
    stores: dict[str, Any] = {"checked": ds, "unchecked": _UncheckedStore(ds)}
    stream_s: dict[str, float] = {}
    restore_s: dict[str, float] = {}
    # CPU time of this process (every thread; the pool is another process):
    # what the checks add, whatever else the machine is doing meanwhile.
    stream_cpu: dict[str, float] = {}
    restore_cpu: dict[str, float] = {}
    seen: dict[str, list[float]] = {"checked": [], "unchecked": []}
    for _ in range(rounds):
        for name, store in stores.items():
            t, c = time.perf_counter(), time.process_time()
            stream = await chain_vhd(store, vm_uuid, point_id, "0")
            async for _piece in stream.chunks:
                pass
            stream_s[name] = min(stream_s.get(name, 1e9), time.perf_counter() - t)
            stream_cpu[name] = min(stream_cpu.get(name, 1e9), time.process_time() - c)
            vdi = await client.call(
                "VDI.create",
                {
                    "SR": sr,
                    "virtual_size": str(size),
                    "type": "user",
                    "name_label": f"bench restore {name}",
                    "sharable": False,
                    "read_only": False,
                    "other_config": {},
                },
            )
            t, c = time.perf_counter(), time.process_time()
            stream = await chain_vhd(store, vm_uuid, point_id, "0")
            await import_raw_vdi(client, vdi, stream.chunks, fmt="vhd", size=stream.length)
            took = time.perf_counter() - t
            restore_cpu[name] = min(restore_cpu.get(name, 1e9), time.process_time() - c)
            seen[name].append(round(took, 3))
            restore_s[name] = min(restore_s.get(name, 1e9), took)
            await client.call("VDI.destroy", vdi)
    return {
        "restore_stream_bytes": stream.length,
        "restore_seconds_checked": round(restore_s["checked"], 3),
        "restore_seconds_unchecked": round(restore_s["unchecked"], 3),
        "restore_check_cost": round(restore_s["checked"] / restore_s["unchecked"], 3),
        "restore_stream_mb_s_checked": round(stream.length / stream_s["checked"] / 1e6, 1),
        "restore_stream_mb_s_unchecked": round(stream.length / stream_s["unchecked"] / 1e6, 1),
        "restore_stream_check_cost": round(stream_s["checked"] / stream_s["unchecked"], 3),
        # Every round's time: on a busy machine the spread says how far to trust the best.
        "restore_rounds_seconds": seen,
        "restore_cpu_seconds_checked": round(restore_cpu["checked"], 3),
        "restore_cpu_seconds_unchecked": round(restore_cpu["unchecked"], 3),
        "checking_cpu_seconds": round(stream_cpu["checked"] - stream_cpu["unchecked"], 3),
        # The restore's best time plus all the CPU the checks took, as if none
        # of it overlapped the transfer: an upper bound of what they cost.
        "restore_check_cost_bound": round(
            (restore_s["unchecked"] + max(0.0, stream_cpu["checked"] - stream_cpu["unchecked"]))
            / restore_s["unchecked"],
            3,
        ),
    }


async def run(size_mib: int, data_mib: int) -> dict[str, Any]:
    rng = random.Random(1)
    with workspace(data_mib * 4) as (tmp, filesystem):
        port = free_port()
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xapisim",
                "--state",
                str(tmp / "pool"),
                "--listen",
                f"127.0.0.1:{port}",
                "--demo",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = XapiClient(f"http://127.0.0.1:{port}", "root", "demo", timeout=120)
        try:
            for _ in range(300):
                try:
                    await client.call("pool.get_all")
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            from tests.integration.backup.conftest import make_vm

            vm = await make_vm(client, None, "bench-vm", size=size_mib * MiB)  # type: ignore[arg-type]
            # Data in 1 MiB extents spread over the disk; the rest holes.
            stride = size_mib // data_mib
            for i in range(data_mib):
                await write_disk(client, vm.vdi, i * stride * MiB, rng.randbytes(MiB))
            snap = await client.call("VM.snapshot", vm.ref, "bench export")
            vbd = (await client.call("VM.get_VBDs", snap))[0]
            svdi = await client.call("VBD.get_VDI", vbd)

            async def null(_b: bytes) -> None:
                return None

            t = time.perf_counter()
            exp = await export_raw_vdi(client, svdi, null, fmt="vhd")
            export_s = time.perf_counter() - t
            export_rate = exp.bytes / export_s

            db = await open_database(tmp / "xk.db")
            store = tmp / "store"
            store.mkdir()
            m = BackupManager(db, StaticPools({POOL_ID: ("bench", client)}), appliance_name="b")
            await m.start(scheduler=False)
            await m.use_directory(str(store))
            job = await m.create_job(
                {
                    "name": "bench",
                    "selector": "tag",
                    "targets": "xk-test",
                    "pool_id": POOL_ID,
                    "retention": 1,
                }
            )
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            full = await m.wait(await m.run_job(job.id))
            assert full["status"] == "success", full
            row = full["report"]["vms"][0]
            full_rate = row["bytes"] / row["seconds"]
            # 1 % of the data changes: whole 2 MiB blocks.
            changed = max(1, data_mib // 100)
            for i in range(changed):
                await write_disk(client, vm.vdi, i * stride * MiB, rng.randbytes(MiB))
            delta = await m.wait(await m.run_job(job.id))
            assert delta["status"] == "success", delta
            drow = delta["report"]["vms"][0]
            detail = await m.run_detail(delta["id"])
            [disk] = [t for t in detail["tasks"] if t["disk_key"]]
            delta_export_s = disk["finished_at"] - disk["started_at"]
            log = [
                (round(x["ts"] - detail["log"][0]["ts"], 2), x["message"][:60])
                for x in detail["log"]
            ]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            restore = await restore_cost(client, m.datastore, vm.uuid, drow["point_id"])
            await m.stop()
            await db.close()
            return {
                "disk_mib": size_mib,
                "filesystem": filesystem,
                "data_mib": data_mib,
                "export_mb_s": round(export_rate / 1e6, 1),
                "full_backup_bytes": row["bytes"],
                "full_backup_mb_s": round(full_rate / 1e6, 1),
                "full_backup_over_export": round(full_rate / export_rate, 3),
                "delta_bytes": drow["bytes"],
                "delta_seconds": drow["seconds"],
                "delta_mb_s": round(drow["bytes"] / drow["seconds"] / 1e6, 1),
                # The whole delta run (snapshot, export, write, merge, cleanup)
                # against the bare export rate of the same pool.
                "delta_over_export": round(drow["bytes"] / drow["seconds"] / export_rate, 3),
                "delta_disk_transfer_seconds": round(delta_export_s, 3),
                "delta_log": log,
                "merge_seconds": drow["merge_seconds"],
                "rss_before_backup_mib": round(rss_before, 1),
                "peak_rss_mib": round(rss, 1),
                **restore,
            }
        finally:
            await client.close()
            sim.terminate()
            sim.wait(timeout=30)


def main() -> None:
    """Each size in its own process, so each peak RSS is that backup's alone."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes",
        default="2048:256,16384:2048",
        help="disk MiB:data MiB pairs; the peak RSS must not grow with them",
    )
    parser.add_argument("--one", help="run one disk MiB:data MiB pair and print its figures")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.one:
        size, data = (int(x) for x in args.one.split(":"))
        print(json.dumps(asyncio.run(run(size, data))))
        return
    runs = []
    for pair in args.sizes.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--one", pair], check=True, capture_output=True, text=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    small, large = runs[0], runs[-1]
    figures = {
        "runs": runs,
        "data_growth": round(large["data_mib"] / small["data_mib"], 1),
        "peak_rss_growth": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
        "full_backup_over_export": large["full_backup_over_export"],
        "delta_backup_over_export": large["delta_over_export"],
        "restore_check_cost": large["restore_check_cost"],
        "restore_stream_check_cost": large["restore_stream_check_cost"],
        "restore_check_cost_bound": large["restore_check_cost_bound"],
    }
    text = json.dumps({"backup": figures}, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
