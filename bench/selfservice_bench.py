"""Create-to-SSH: ``make bench`` (or ``PYTHONPATH=. python bench/selfservice_bench.py``), as root.

A member creates a VM from the Debian cloud template through XenKeep's
API (the simulator's QEMU backend boots it, TCG) with a root disk larger
than the template's, exactly as ``tests/e2e/test_selfservice_ssh.py`` does
(its steps are shared: ``tests/e2e/selfservice_flow.py``). Figures:

- ``create_to_ssh_s``: the API call to the first SSH login with the key;
  ``create_to_ready_s``: to cloud-init's last stage done;
- ``split``: where the seconds went: ``api_to_qemu_s`` (the product's own
  work: clone of the template, disk resize, config drive built and uploaded,
  VM.start), ``qemu_to_ssh_s``, and ``ssh_to_ready_s``; inside the guest,
  systemd's ``kernel_s``/``initrd_s``/``userspace_s`` and each cloud-init
  stage's seconds (``/run/cloud-init/status.json``);
- baselines of the same run: ``disk_copy_s``, a plain ``cp --sparse=always``
  of the template's disk (what any copy of the template costs), and
  ``reboot_to_ssh_s``, the same VM reset and booted again, when cloud-init
  has no first-boot work left (the boot itself); ``ratios`` divide the
  figures above by them, the numbers to compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.selfservice_flow import (
    build_cloud_image,
    create_vm,
    delete_vm,
    member_world,
    run,
    ssh_argv,
    until_cloud_init_done,
    until_ssh,
)
from tests.support.web import Browser, complete_setup, make_settings
from xapisim import start_simulator
from xenkeep.app import create_app
from xenkeep.web import keys
from xenkeep.web.server import start_server
from xenkeep.xapi.client import XapiClient

ROOT_DISK_GIB = 4


def systemd_split(text: str) -> dict[str, float]:
    """``Startup finished in 9.1s (kernel) + 20.5s (initrd) + 1min 4s (userspace) = ...``."""
    first = text.splitlines()[0].split(" = ")[0] if text else ""
    figures: dict[str, float] = {}
    for amount, name in re.findall(r"((?:[\d.]+(?:min|ms|s)\s*)+)\((\w+)\)", first):
        seconds = 0.0
        for value, unit in re.findall(r"([\d.]+)(min|ms|s)", amount):
            seconds += float(value) * {"min": 60.0, "ms": 0.001, "s": 1.0}[unit]
        figures[f"{name}_s"] = round(seconds, 2)
    return figures


def cloud_init_stages(text: str) -> dict[str, float]:
    """Seconds of each cloud-init stage from its status.json."""
    stages: dict[str, float] = {}
    for name, stage in json.loads(text).get("v1", {}).items():
        if isinstance(stage, dict) and stage.get("start") and stage.get("finished"):
            stages[name] = round(float(stage["finished"]) - float(stage["start"]), 2)
    return stages


async def measure(image: Path, work: Path) -> dict[str, Any]:
    start = time.monotonic()
    copy = await asyncio.create_subprocess_exec(
        "cp", "--sparse=always", str(image), str(work / "copy.raw")
    )
    assert await copy.wait() == 0
    disk_copy = time.monotonic() - start
    (work / "copy.raw").unlink()

    sim = await start_simulator(work / "pool", demo=True, qemu=True, cloud_image=image)
    (work / "daemon").mkdir()
    settings = make_settings(work / "daemon")
    try:
        async with start_server(create_app(settings)) as server:
            browser = Browser(server)
            await complete_setup(browser, settings)
            pool = await keys.pools(server.app).add(sim.url, "root", "demo")
            client = XapiClient(sim.url, "root", "demo")
            try:
                w = await member_world(browser, pool, client, work)
                t0 = time.monotonic()
                vm = await create_vm(w, "bench-vm", ROOT_DISK_GIB)
                assert sim.pool.qemu is not None
                guest = sim.pool.qemu.guest(vm.ref)
                assert guest is not None
                launched = guest.started
                await until_ssh(sim, vm.ref, vm.port, w.key)
                t_ssh = time.monotonic()
                await until_cloud_init_done(vm.port, w.key)
                t_ready = time.monotonic()
                _, analyze, _ = await run(ssh_argv(vm.port, w.key), "systemd-analyze", "time")
                _, status, _ = await run(
                    ssh_argv(vm.port, w.key), "cat", "/run/cloud-init/status.json"
                )
                # The baseline boot: the same VM reset, cloud-init already done.
                status_code, body = await w.dev.api(
                    "POST", f"/api/v1/self/vms/{vm.uuid}/reboot", {}
                )
                assert status_code in (200, 202), body
                t_reset = time.monotonic()
                await until_ssh(sim, vm.ref, vm.port, w.key)
                reboot_to_ssh = time.monotonic() - t_reset
                await delete_vm(w, vm)
                await w.dev.close()
            finally:
                await client.close()
                await browser.close()
    finally:
        await sim.close()
    create_to_ssh = t_ssh - t0
    figures: dict[str, Any] = {
        "create_to_ssh_s": round(create_to_ssh, 1),
        "create_to_ready_s": round(t_ready - t0, 1),
        "split": {
            "api_to_qemu_s": round(launched - t0, 1),
            "qemu_to_ssh_s": round(t_ssh - launched, 1),
            "ssh_to_ready_s": round(t_ready - t_ssh, 1),
            "guest_systemd": systemd_split(analyze.strip()),
            "guest_cloud_init_stages_s": cloud_init_stages(status) if status else {},
        },
        "baselines": {
            "disk_copy_s": round(disk_copy, 2),
            "reboot_to_ssh_s": round(reboot_to_ssh, 1),
        },
    }
    figures["ratios"] = {
        "create_to_ssh_over_reboot": round(create_to_ssh / reboot_to_ssh, 2),
        "api_to_qemu_over_disk_copy": round((launched - t0) / max(disk_copy, 0.01), 2),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    image = build_cloud_image()
    with tempfile.TemporaryDirectory(prefix="xenkeep-ssbench-") as tmp:
        figures = asyncio.run(measure(image, Path(tmp)))
    text = json.dumps({"selfservice": figures}, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
