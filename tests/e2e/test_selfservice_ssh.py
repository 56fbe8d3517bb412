"""Issue #15's real thing: a member creates a VM from the Debian cloud
template through XenKeep, the simulator boots it under QEMU, and the member
logs in over SSH with their key.

One boot serves every check (a boot under TCG costs a minute or more):
the host name is the VM's name, the root filesystem fills the root disk,
which was made larger than the template's, the key logs in and a password
is refused. Deleting the VM leaves no QEMU behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.web.test_selfservice import member
from tests.support.web import Browser
from xapisim import RunningSimulator
from xapisim.demo import QEMU_CLOUD_TEMPLATE
from xapisim.qemu import SSH_PORT_KEY
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient

pytestmark = pytest.mark.slow

GiB = 1 << 30
ROOT_DISK_GIB = 4
#: Debian's cloud-init configuration names the default user "debian"; the
#: member's keys go to it.
GUEST_USER = "debian"


async def ssh_keypair(tmp_path: Path) -> tuple[Path, str]:
    """A fresh ed25519 key made by ssh-keygen: its file and public line."""
    key = tmp_path / "id_ed25519"
    proc = await asyncio.create_subprocess_exec(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev@laptop", "-f", str(key)
    )
    assert await proc.wait() == 0
    return key, (await asyncio.to_thread(key.with_suffix(".pub").read_text)).strip()


def ssh_argv(port: int, key: Path | None, *extra: str) -> list[str]:
    """ssh to the guest's forwarded port, never asking anything."""
    argv = [
        "ssh",
        "-p",
        str(port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=20",
        "-o",
        "LogLevel=ERROR",
    ]
    if key is not None:
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return [*argv, *extra, f"{GUEST_USER}@127.0.0.1"]


async def run(argv: list[str], *command: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def qemu_pids() -> set[int]:
    """Every qemu-system process on the machine (a scan of /proc)."""
    def scan() -> set[int]:
        pids = set()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if (proc / "comm").read_text().startswith("qemu-system"):
                        pids.add(int(proc.name))
                except OSError:
                    continue
        return pids

    return await asyncio.to_thread(scan)


async def wait_for_ssh(sim: RunningSimulator, vm_ref: str, port: int, key: Path) -> None:
    """Poll until sshd lets the key in and cloud-init is done, or QEMU dies."""
    assert sim.pool.qemu is not None
    while True:
        assert sim.pool.qemu.guest(vm_ref) is not None, "QEMU exited before SSH answered"
        code, out, _ = await run(ssh_argv(port, key), "cloud-init", "status", "--wait")
        if code == 0 and "done" in out:
            return
        assert "error" not in out, out
        await asyncio.sleep(2)


async def test_member_creates_a_vm_and_logs_in_over_ssh(
    browser: Browser,
    admin_pool: tuple[Pool, XapiClient],
    pool_sim: RunningSimulator,
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    before = await qemu_pids()
    records = await client.call("VM.get_all_records")
    template = next(r for r in records.values() if r["name_label"] == QEMU_CLOUD_TEMPLATE)
    assert "cloud-init" in template["tags"]
    template_disk = 0
    for vbd in template["VBDs"]:
        rec = await client.call("VBD.get_record", vbd)
        if rec["userdevice"] == "0":
            template_disk = int(await client.call("VDI.get_virtual_size", rec["VDI"]))
    assert 0 < template_disk < ROOT_DISK_GIB * GiB
    srs = await client.call("SR.get_all_records")
    sr = next(r["uuid"] for r in srs.values() if r["shared"] and r["type"] != "iso")
    nets = await client.call("network.get_all_records")
    net = next(r["uuid"] for r in nets.values() if r["PIFs"])

    dev = await member(browser, "dev")
    _, me = await dev.api("GET", "/api/v1/account")
    status, made = await browser.api(
        "POST",
        "/api/v1/resource-sets",
        {
            "name": "developers",
            "limits": {"cpus": 2, "memory": 2 * GiB, "vms": 1},
            "subjects": [f"user:{me['user']['id']}"],
            "objects": {"template": [template["uuid"]], "sr": [sr], "network": [net]},
        },
    )
    assert status == 201, made
    key, public = await ssh_keypair(tmp_path)
    status, saved = await dev.api(
        "POST", "/api/v1/account/ssh-keys", {"name": "laptop", "key": public}
    )
    assert status == 201, saved
    status, answer = await dev.api(
        "POST",
        "/api/v1/self/vms",
        {
            "pool": pool.id,
            "template": template["uuid"],
            "name": "web-e2e",
            "vcpus": 1,
            "memory_mib": 1024,
            "root_disk_gib": ROOT_DISK_GIB,
            "sr": sr,
            "network": net,
            "ssh_keys": [saved["id"]],
        },
    )
    assert status == 202, answer
    op = await dev.until_finished(f"/api/v1/operations/{answer['operation']}")
    assert op["status"] == "success", op
    vm_ref = await client.call("VM.get_by_uuid", op["report"]["vm_uuid"])
    rec: dict[str, Any] = await client.call("VM.get_record", vm_ref)
    assert rec["power_state"] == "Running"
    metrics = await client.call("VM_guest_metrics.get_record", rec["guest_metrics"])
    assert metrics["networks"]["0/ip"] == "127.0.0.1"
    port = int(rec["other_config"][SSH_PORT_KEY])
    try:
        await wait_for_ssh(pool_sim, vm_ref, port, key)

        code, out, err = await run(ssh_argv(port, key), "hostname")
        assert (code, out.strip()) == (0, "web-e2e"), err

        code, out, err = await run(
            ssh_argv(port, key), "lsblk -bndo SIZE /dev/vda; df -B1 --output=size / | tail -1"
        )
        assert code == 0, err
        disk, fs = (int(n) for n in out.split())
        assert disk == ROOT_DISK_GIB * GiB
        # The root filesystem grew into the larger disk: all of it but the
        # ESP and the BIOS boot partition before it (and ext4's own tables).
        assert fs > template_disk
        assert fs > disk - 400 * (1 << 20), (disk, fs)

        code, _, err = await run(
            ssh_argv(
                port,
                None,
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ),
            "true",
        )
        assert code != 0
        # The server offers nothing but keys: passwords are refused.
        assert "Permission denied (publickey)" in err, err
    finally:
        status, body = await dev.api("DELETE", f"/api/v1/self/vms/{op['report']['vm_uuid']}")
    assert status == 200, body
    assert not await client.call("VM.get_by_name_label", "web-e2e")
    assert await qemu_pids() <= before
    await dev.close()
