"""Export throughput of the simulator: ``python -m xapisim.bench [--out out/bench.json]``.

A throw-away pool gets one VDI of ``--size`` MiB, half of it data (every
other 1 MiB), half holes. It is exported raw and as VHD over loopback HTTP
to ``curl`` (a client that is not ours, writing to /dev/null), and read
with ``cat`` for the baseline. The figures are MB/s, their ratio to ``cat``
and the simulator process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .server import start_simulator

MiB = 1024 * 1024


async def _timed(*argv: str) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise RuntimeError(f"{argv[0]} failed")
    return time.perf_counter() - start


async def run(size_mib: int, rounds: int) -> dict[str, Any]:
    """Measure and return the figures."""
    with tempfile.TemporaryDirectory(prefix="xapisim-bench-") as tmp:
        sim = await start_simulator(Path(tmp) / "pool")
        try:
            pool = sim.pool
            session = await sim.call("session.login_with_password", ["root", "demo"])
            sr = await sim.call("pool.get_default_SR", [session, pool.pool_ref])
            size = size_mib * MiB
            vdi = await sim.call(
                "VDI.create", [session, {"SR": sr, "virtual_size": size, "name_label": "bench"}]
            )
            path = pool.vdi_path(vdi)
            with path.open("r+b") as f:
                for offset in range(0, size, 2 * MiB):
                    f.seek(offset)
                    f.write(os.urandom(MiB))
            results: dict[str, Any] = {"disk_bytes": size, "data_bytes": size // 2}
            best: dict[str, float] = {}
            for _ in range(rounds):
                best["cat"] = min(best.get("cat", 1e9), await _timed("cat", str(path)))
                for fmt in ("raw", "vhd"):
                    url = f"{sim.url}export_raw_vdi?session_id={session}&vdi={vdi}&format={fmt}"
                    took = await _timed("curl", "-sS", "-o", "/dev/null", url)
                    best[fmt] = min(best.get(fmt, 1e9), took)
            for name, seconds in best.items():
                results[f"{name}_MBps"] = round(size / seconds / 1e6, 1)
            for fmt in ("raw", "vhd"):
                results[f"{fmt}_ratio_to_cat"] = round(best["cat"] / best[fmt], 3)
        finally:
            await sim.close()
    results["peak_rss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xapisim.bench", description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="VDI size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.size, args.rounds))
    print(json.dumps({"xapisim_export": results}, indent=2))
    if args.out:
        # Other benchmarks write to the same file: merge, do not overwrite.
        doc: dict[str, Any] = {}
        if args.out.exists():
            try:
                doc = json.loads(args.out.read_text())
            except ValueError:
                doc = {}
        doc["xapisim_export"] = results
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
