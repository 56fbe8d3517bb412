"""The export benchmark runs and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "xapisim.bench", "--size", "16", "--rounds", "1", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    figures = json.loads(out.read_text())["xapisim_export"]
    for key in (
        "cat_MBps",
        "raw_MBps",
        "vhd_MBps",
        "raw_ratio_to_cat",
        "vhd_ratio_to_cat",
        "peak_rss_MiB",
    ):
        assert figures[key] > 0, key
    assert figures["disk_bytes"] == 16 * 1024 * 1024
