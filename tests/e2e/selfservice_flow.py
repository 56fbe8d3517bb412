"""The steps of a member's create-to-SSH, shared by the end-to-end test and
``bench/selfservice_bench.py``: a member with a resource set over the QEMU
cloud template and an ssh-keygen key, the creation through XenKeep's API,
and SSH to the port the simulator forwards."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.web.test_selfservice import member
from tests.support.web import Browser
from xapisim import RunningSimulator
from xapisim.demo import QEMU_CLOUD_TEMPLATE
from xapisim.qemu import SSH_PORT_KEY
from xapisim.testing import qemu_processes
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient

REPO = Path(__file__).resolve().parents[2]
GiB = 1 << 30
#: Debian's cloud-init configuration names the default user "debian"; the
#: member's keys go to it.
GUEST_USER = "debian"


@dataclass
class World:
    """A member allowed to create one VM from the cloud template."""

    pool: Pool
    client: XapiClient
    dev: Browser
    template: dict[str, Any]
    template_disk: int
    sr: str
    network: str
    key: Path
    key_id: int


@dataclass
class Created:
    """A VM made through the API, and where its SSH is."""

    uuid: str
    ref: str
    port: int
    operation: dict[str, Any]


async def ssh_keypair(directory: Path) -> tuple[Path, str]:
    """A fresh ed25519 key made by ssh-keygen: its file and public line."""
    key = directory / "id_ed25519"
    proc = await asyncio.create_subprocess_exec(
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev@laptop", "-f", str(key)
    )
    assert await proc.wait() == 0
    return key, (await asyncio.to_thread(key.with_suffix(".pub").read_text)).strip()


def ssh_argv(port: int, key: Path | None, *extra: str) -> list[str]:
    """ssh to the guest's forwarded port, never asking anything."""
    argv = ["ssh", "-p", str(port)]
    for option in (
        "BatchMode=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "ConnectTimeout=20",
        "LogLevel=ERROR",
    ):
        argv += ["-o", option]
    if key is not None:
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return [*argv, *extra, f"{GUEST_USER}@127.0.0.1"]


async def run(argv: list[str], *command: str) -> tuple[int, str, str]:
    """A command's exit code, stdout and stderr, off the event loop's thread."""
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
    """Every qemu-system process on the machine."""
    return await asyncio.to_thread(qemu_processes)


def build_cloud_image() -> Path:
    """The template's disk, built first when stale (image/cloud_template.py)."""
    subprocess.run([str(REPO / "scripts/deps.sh"), "image"], check=True)
    out = subprocess.run(
        [sys.executable, str(REPO / "image/cloud_template.py")],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


async def until_ssh(sim: RunningSimulator, vm_ref: str, port: int, key: Path) -> None:
    """Poll until the key logs in, or fail when QEMU is gone."""
    assert sim.pool.qemu is not None
    while True:
        assert sim.pool.qemu.guest(vm_ref) is not None, "QEMU exited before SSH answered"
        code, _, _ = await run(ssh_argv(port, key), "true")
        if code == 0:
            return
        await asyncio.sleep(1)


async def until_cloud_init_done(port: int, key: Path) -> None:
    """Wait for cloud-init's last stage; fail with its report on an error."""
    code, out, err = await run(ssh_argv(port, key), "cloud-init", "status", "--wait", "--long")
    assert code == 0 and "status: done" in out, (code, out, err)


async def member_world(browser: Browser, pool: Pool, client: XapiClient, directory: Path) -> World:
    """A member "dev" in a resource set over the QEMU template, with a key."""
    records = await client.call("VM.get_all_records")
    template = next(r for r in records.values() if r["name_label"] == QEMU_CLOUD_TEMPLATE)
    disk = 0
    for vbd in template["VBDs"]:
        rec = await client.call("VBD.get_record", vbd)
        if rec["userdevice"] == "0":
            disk = int(await client.call("VDI.get_virtual_size", rec["VDI"]))
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
    key, public = await ssh_keypair(directory)
    status, saved = await dev.api(
        "POST", "/api/v1/account/ssh-keys", {"name": "laptop", "key": public}
    )
    assert status == 201, saved
    return World(pool, client, dev, template, disk, sr, net, key, int(saved["id"]))


async def create_vm(w: World, name: str, root_disk_gib: int) -> Created:
    """Create a VM as the member from the My VMs page's form (the request
    the page sends), and wait for the operation it leads to."""
    status, html, _ = await w.dev.get("/self")
    assert status == 200 and 'id="create-form"' in html and w.template["uuid"] in html, html
    status, text, resp = await w.dev.post_form(
        "/self/vms",
        {
            "pool": str(w.pool.id),
            "template": w.template["uuid"],
            "name": name,
            "vcpus": "1",
            "memory_mib": "1024",
            "root_disk_gib": str(root_disk_gib),
            "sr": w.sr,
            "network": w.network,
            "ssh_keys": str(w.key_id),
        },
    )
    assert status == 303, text
    op_path = "/api/v1" + resp.headers["Location"].split("?")[0]
    op = await w.dev.until_finished(op_path, tries=10**6)
    assert op["status"] == "success", op
    uuid = op["report"]["vm_uuid"]
    ref = await w.client.call("VM.get_by_uuid", uuid)
    other = await w.client.call("VM.get_other_config", ref)
    return Created(uuid, ref, int(other[SSH_PORT_KEY]), op)


async def delete_vm(w: World, vm: Created) -> None:
    """Delete the VM as the member (XenKeep stops it first)."""
    status, body = await w.dev.api("DELETE", f"/api/v1/self/vms/{vm.uuid}")
    assert status == 200, body
