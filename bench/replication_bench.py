"""Replication figures: ``make bench``
(or ``PYTHONPATH=. python bench/replication_bench.py --out F``).

Two simulators run as their own processes (site A and site B); this
process runs the ReplicationManager between them, as xenkeepd would. The
bytes on the wire are those the simulators' transfer handlers counted
(``sim.transfer_stats``), not XenKeep's own figures. Figures:

- ``export_mb_s``: the rate a bare client pulls the source disk's VHD export
  (null sink), the simulator's raw rate;
- ``full_mb_s`` and ``full_over_export``: the first run's copy (export from A
  piped into an import on B) against that rate;
- ``wire_over_changed``: a later run's bytes received by site B over the
  bytes of the 2 MiB blocks that changed, for 1 % of the disk's blocks
  changed; ``export_over_changed`` the same for what site A sent;
- ``delta_run_seconds`` and ``delta_phases``: that 10-minute-interval run
  of a VM with 1 % changed blocks, split into its phases (snapshot,
  transfer, replica snapshot, clean-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.backup_bench import free_port, workspace, write_disk

from xenkeep.ops import Operations, Scheduler
from xenkeep.pools.access import StaticPools
from xenkeep.replication.manager import ReplicationManager
from xenkeep.store import open_database
from xenkeep.xapi.client import XapiClient
from xenkeep.xapi.transfer import export_raw_vdi

MiB = 1 << 20
BLOCK = 2 * MiB


@contextlib.asynccontextmanager
async def simulator(state: Path) -> AsyncIterator[XapiClient]:
    """A simulator process with a demo pool, and a client of it."""
    port = free_port()
    argv = [sys.executable, "-m", "xapisim", "--state", str(state), "--demo"]
    proc = subprocess.Popen(
        [*argv, "--listen", f"127.0.0.1:{port}"],
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
        yield client
    finally:
        await client.close()
        proc.terminate()
        proc.wait(timeout=30)


async def run(size_mib: int, data_mib: int) -> dict[str, Any]:
    rng = random.Random(1)
    with workspace(data_mib * 4) as (tmp, filesystem):
        async with simulator(tmp / "site-a") as a, simulator(tmp / "site-b") as b:
            from tests.integration.backup.conftest import make_vm
            from tests.integration.replication.conftest import default_sr

            vm = await make_vm(a, None, "bench-vm", size=size_mib * MiB)  # type: ignore[arg-type]
            stride = size_mib // data_mib
            for i in range(data_mib):
                await write_disk(a, vm.vdi, i * stride * MiB, rng.randbytes(MiB))
            snap = await a.call("VM.snapshot", vm.ref, "bench export")
            vbd = (await a.call("VM.get_VBDs", snap))[0]
            svdi = await a.call("VBD.get_VDI", vbd)

            async def null(_b: bytes) -> None:
                return None

            t = time.perf_counter()
            exp = await export_raw_vdi(a, svdi, null, fmt="vhd")
            export_rate = exp.bytes / (time.perf_counter() - t)
            await a.call("VM.destroy", snap)

            db = await open_database(tmp / "xk.db")
            ops = Operations(db)

            async def name() -> str:
                return "bench"

            m = ReplicationManager(
                db,
                StaticPools({"1": ("site A", a), "2": ("site B", b)}),
                ops=ops,
                scheduler=Scheduler(),
                appliance_name=name,
            )
            job = await m.create_job(
                {
                    "name": "bench",
                    "selector": "tag",
                    "targets": "xk-test",
                    "pool_id": "1",
                    "target_pool_id": "2",
                    "target_sr_uuid": await default_sr(b),
                    "schedule": "*/10 * * * *",
                    "retention": 2,
                }
            )
            full = await m.wait(await m.run_job(job.id))
            assert full["status"] == "success", full
            row = full["report"]["vms"][0]
            full_rate = row["bytes"] / row["phases"]["transfer"]
            # 1 % of the disk's 2 MiB blocks change, each in part.
            blocks = size_mib * MiB // BLOCK
            changed = sorted(rng.sample(range(blocks), max(1, blocks // 100)))
            for index in changed:
                await write_disk(a, vm.vdi, index * BLOCK + 4096, rng.randbytes(64 * 1024))
            await a.call("sim.reset_transfer_stats")
            await b.call("sim.reset_transfer_stats")
            started = time.perf_counter()
            delta = await m.wait(await m.run_job(job.id))
            delta_seconds = time.perf_counter() - started
            assert delta["status"] == "success", delta
            drow = delta["report"]["vms"][0]
            sent = (await a.call("sim.transfer_stats"))["sent"]
            received = (await b.call("sim.transfer_stats"))["received"]
            changed_bytes = len(changed) * BLOCK
            await ops.stop()
            await db.close()
            return {
                "disk_mib": size_mib,
                "data_mib": data_mib,
                "filesystem": filesystem,
                "export_mb_s": round(export_rate / 1e6, 1),
                "full_bytes": row["bytes"],
                "full_mb_s": round(full_rate / 1e6, 1),
                "full_over_export": round(full_rate / export_rate, 3),
                "changed_blocks": len(changed),
                "changed_bytes": changed_bytes,
                "wire_bytes": received,
                "wire_over_changed": round(received / changed_bytes, 4),
                "export_over_changed": round(sent / changed_bytes, 4),
                "delta_run_seconds": round(delta_seconds, 3),
                "delta_phases": drow["phases"],
                "delta_transfers": drow["transfers"],
            }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="4096:512", help="disk MiB:data MiB")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    size, data = (int(x) for x in args.size.split(":"))
    figures = asyncio.run(run(size, data))
    text = json.dumps({"replication": figures}, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
