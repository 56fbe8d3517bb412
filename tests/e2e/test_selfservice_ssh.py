"""Issue #15's real thing: a member creates a VM from the Debian cloud
template through XenKeep, the simulator boots it under QEMU, and the member
logs in over SSH with their key.

One boot serves every check (a boot under TCG costs minutes): the host
name is the VM's name, the root filesystem fills the root disk, which was
made larger than the template's, the key logs in and a password is refused.
Deleting the VM leaves no QEMU behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.selfservice_flow import (
    GiB,
    create_vm,
    delete_vm,
    member_world,
    qemu_pids,
    run,
    ssh_argv,
    until_cloud_init_done,
    until_ssh,
)
from tests.support.web import Browser
from xapisim import RunningSimulator
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient

pytestmark = pytest.mark.slow

ROOT_DISK_GIB = 4


async def test_member_creates_a_vm_and_logs_in_over_ssh(
    browser: Browser,
    admin_pool: tuple[Pool, XapiClient],
    pool_sim: RunningSimulator,
    tmp_path: Path,
) -> None:
    pool, client = admin_pool
    before = await qemu_pids()
    w = await member_world(browser, pool, client, tmp_path)
    assert "cloud-init" in w.template["tags"]
    assert 0 < w.template_disk < ROOT_DISK_GIB * GiB

    vm = await create_vm(w, "web-e2e", ROOT_DISK_GIB)
    rec = await client.call("VM.get_record", vm.ref)
    assert rec["power_state"] == "Running"
    metrics = await client.call("VM_guest_metrics.get_record", rec["guest_metrics"])
    assert metrics["networks"]["0/ip"] == "127.0.0.1"
    try:
        await until_ssh(pool_sim, vm.ref, vm.port, w.key)
        await until_cloud_init_done(vm.port, w.key)

        # cloud-init's own schema check accepts what it was given (the
        # template's configuration and XenKeep's user-data).
        code, out, err = await run(ssh_argv(vm.port, w.key), "sudo cloud-init schema --system")
        assert code == 0, out + err

        code, out, err = await run(ssh_argv(vm.port, w.key), "hostname")
        assert (code, out.strip()) == (0, "web-e2e"), err

        code, out, err = await run(
            ssh_argv(vm.port, w.key), "lsblk -bndo SIZE /dev/vda; df -B1 --output=size / | tail -1"
        )
        assert code == 0, err
        disk, fs = (int(n) for n in out.split())
        assert disk == ROOT_DISK_GIB * GiB
        # The root filesystem grew into the larger disk: all of it but the
        # ESP and the BIOS boot partition before it (and ext4's own tables).
        assert w.template_disk < fs, (w.template_disk, fs)
        assert disk - 400 * (1 << 20) < fs, (disk, fs)

        code, _, err = await run(
            ssh_argv(
                vm.port,
                None,
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ),
            "true",
        )
        # The server offers nothing but keys: passwords are refused.
        assert code != 0 and "Permission denied (publickey)" in err, err
    finally:
        try:
            await delete_vm(w, vm)
        finally:
            await w.dev.close()
    assert not await client.call("VM.get_by_name_label", "web-e2e")
    assert await qemu_pids() <= before
