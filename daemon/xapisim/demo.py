"""Seeding a new state directory: a realistic demo pool, or a minimal one.

The demo pool has two hosts (each with its control domain, a local SR and a
PIF on the pool-wide network), a shared NFS SR, five VMs in several power
states with real disks (10-40 GiB virtual, a few MiB of deterministic
pseudo-random data each, the rest holes), a snapshot, default templates that
provision their disks, and a custom template with cloud-init. A pool with
the QEMU backend on and a cloud image (``cloud_image``: the raw disk
``image/cloud_template.py`` builds) also gets "Debian 12 Cloud (QEMU)", a
CloudInit-ready template whose disk is that image, which boots for real.
"""

from __future__ import annotations

import asyncio
import random
import uuid as uuidlib
from pathlib import Path
from typing import Any, Protocol

from . import storage
from .db import Database, now
from .model.disks import Disks
from .model.vms import Vms
from .schema import NULL_REF

GiB = 1024**3
MiB = 1024**2

#: The XAPI version the simulated hosts report (XCP-ng 8.2's).
API_VERSION_MAJOR = 2
API_VERSION_MINOR = 21


class PoolParts(Protocol):
    """The parts of a pool that seeding fills (``pool.SimPool`` has them).

    A protocol rather than ``SimPool`` itself: ``pool.py`` imports this
    module to seed a new pool, so this module must not import ``pool.py``.
    """

    @property
    def db(self) -> Database: ...

    @property
    def disks(self) -> Disks: ...

    @property
    def vms(self) -> Vms: ...

    @property
    def cloud_image(self) -> Path | None: ...


_SOFTWARE = {
    "product_version": "8.2.1",
    "product_version_text": "8.2",
    "product_version_text_short": "8.2",
    "platform_name": "XCP",
    "platform_version": "3.2.1",
    "product_brand": "XCP-ng",
    "build_number": "release/yangtze/master/58",
    "xapi": "1.20",
    "xen": "4.13.5-9.40",
    "linux": "4.19.0+1",
    "xencenter_min": "2.16",
    "xencenter_max": "2.16",
    "network_backend": "openvswitch",
    "db_schema": "5.603",
}


def _host(pool: PoolParts, name: str, address: str, seed: int) -> str:
    host = pool.db.create(
        "host",
        {
            "name_label": name,
            "name_description": "Default install",
            "hostname": name,
            "address": address,
            "enabled": True,
            "API_version_major": API_VERSION_MAJOR,
            "API_version_minor": API_VERSION_MINOR,
            "API_version_vendor": "XenSource",
            "software_version": {**_SOFTWARE, "hostname": name, "date": "2024-05-10"},
            "cpu_info": {
                "cpu_count": "16",
                "socket_count": "2",
                "vendor": "GenuineIntel",
                "speed": "2199.998",
                "modelname": "Intel(R) Xeon(R) Silver 4210 CPU @ 2.20GHz",
                "family": "6",
                "model": "85",
            },
            "memory_overhead": 1_073_741_824,
            "edition": "xcp-ng",
            "sched_policy": "credit",
            "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_64"],
            "other_config": {"iscsi_iqn": f"iqn.2024-05.com.example:{seed:08x}"},
            "bios_strings": {"bios-vendor": "Xen", "system-manufacturer": "Xen"},
        },
    )
    dom0 = pool.db.create(
        "VM",
        {
            "name_label": f"Control domain on host: {name}",
            "name_description": "The domain which manages physical devices",
            "is_control_domain": True,
            "power_state": "Running",
            "resident_on": host,
            "domid": 0,
            "VCPUs_max": 16,
            "VCPUs_at_startup": 16,
            "memory_static_max": 4 * GiB,
            "memory_dynamic_max": 4 * GiB,
            "memory_dynamic_min": 4 * GiB,
            "memory_target": 4 * GiB,
            "memory_static_min": 4 * GiB,
        },
    )
    pool.db.set("host", host, control_domain=dom0)
    pool.vms.refresh_host_metrics(host)
    return host


def _sr(
    pool: PoolParts,
    name: str,
    sr_type: str,
    size: int,
    hosts: list[str],
    shared: bool,
    device_config: dict[str, str],
) -> str:
    sr = pool.db.create(
        "SR",
        {
            "name_label": name,
            "name_description": "",
            "type": sr_type,
            "content_type": "user",
            "shared": shared,
            "physical_size": size,
            "allowed_operations": [
                "vdi_create",
                "vdi_destroy",
                "vdi_snapshot",
                "vdi_clone",
                "vdi_resize",
                "vdi_introduce",
                "scan",
                "update",
                "plug",
                "unplug",
                "vdi_enable_cbt",
                "vdi_disable_cbt",
                "vdi_list_changed_blocks",
                "vdi_data_destroy",
            ],
            "sm_config": {"devserial": ""} if sr_type == "ext" else {},
            "other_config": {"i18n-key": "local-storage"} if sr_type == "ext" else {},
        },
    )
    pool.disks.sr_dir(sr).mkdir(parents=True, exist_ok=True)
    for host in hosts:
        pool.db.create(
            "PBD",
            {"host": host, "SR": sr, "device_config": device_config, "currently_attached": True},
        )
    return sr


def _network(pool: PoolParts, hosts: list[str], addresses: list[str]) -> str:
    net = pool.db.create(
        "network",
        {
            "name_label": "Pool-wide network associated with eth0",
            "bridge": "xenbr0",
            "MTU": 1500,
            "managed": True,
            "other_config": {"automatic": "true"},
        },
    )
    for i, (host, address) in enumerate(zip(hosts, addresses, strict=True)):
        pool.db.create(
            "PIF",
            {
                "device": "eth0",
                "network": net,
                "host": host,
                "MAC": f"00:1b:21:3a:4c:{0x10 + i:02x}",
                "MTU": 1500,
                "VLAN": -1,
                "physical": True,
                "currently_attached": True,
                "ip_configuration_mode": "Static",
                "IP": address,
                "netmask": "255.255.255.0",
                "gateway": "10.0.0.1",
                "DNS": "10.0.0.2",
                "management": True,
                "managed": True,
            },
        )
    return net


def fill_disk(pool: PoolParts, vdi: str, seed: int, data_mib: int) -> None:
    """Write varied, deterministic content: a boot sector, random extents, text, zeros."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    rec = pool.db.get("VDI", vdi)
    size = int(rec["virtual_size"])
    path = pool.disks.vdi_path(vdi)
    boot = bytearray(rng.randbytes(MiB))
    boot[510:512] = b"\x55\xaa"
    storage.write_range(path, 0, bytes(boot))
    budget = data_mib * MiB - MiB
    while budget > 0:
        length = min(budget, rng.choice([256, 512, 1024, 2048, 3072]) * 1024)
        offset = rng.randrange(MiB, size - length) // (64 * 1024) * (64 * 1024)
        kind = rng.random()
        if kind < 0.6:
            data = rng.randbytes(length)
        elif kind < 0.85:
            line = f"{rng.getrandbits(64):016x} log line from vdi {rec['uuid']}\n".encode()
            data = (line * (length // len(line) + 1))[:length]
        else:
            # Allocated but zero: a region an export must still read correctly.
            data = rng.randbytes(4096) + bytes(length - 4096)
        with path.open("r+b") as f:
            f.seek(offset)
            f.write(data)
        budget -= length
    pool.disks.refresh_vdi(vdi)


def _vm(
    pool: PoolParts,
    name: str,
    *,
    vcpus: int,
    memory: int,
    template: str,
    extra: dict[str, Any] | None = None,
) -> str:
    fields: dict[str, Any] = {
        "name_label": name,
        "name_description": "",
        "user_version": 1,
        "memory_static_max": memory,
        "memory_dynamic_max": memory,
        "memory_dynamic_min": memory,
        "memory_static_min": min(memory, 512 * MiB),
        "memory_target": memory,
        "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus,
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cd", "firmware": "bios"},
        "platform": {
            "timeoffset": "0",
            "device-model": "qemu-upstream-compat",
            "viridian": "false",
            "acpi": "1",
            "apic": "true",
            "pae": "true",
            "nx": "true",
            "hpet": "true",
            "vga": "std",
            "videoram": "8",
        },
        "other_config": {
            "base_template_name": template,
            "import_task": "",
            "mac_seed": str(uuidlib.uuid4()),
        },
        "domid": -1,
        "hardware_platform_version": 2,
        "generation_id": "",
        "has_vendor_device": False,
    }
    fields.update(extra or {})
    ref = pool.db.create("VM", fields)
    pool.vms.update_allowed(ref)
    return ref


def _disk(
    pool: PoolParts,
    vm: str,
    sr: str,
    name: str,
    size: int,
    userdevice: str,
    seed: int,
    data_mib: int,
) -> str:
    vdi = pool.disks.make_vdi(
        sr,
        {
            "name_label": name,
            "name_description": "Created by the demo seed",
            "virtual_size": size,
            "type": "user",
            "other_config": {},
        },
    )
    if data_mib:
        fill_disk(pool, vdi, seed, data_mib)
    pool.db.create(
        "VBD",
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": userdevice,
            "bootable": userdevice == "0",
            "mode": "RW",
            "type": "Disk",
            "unpluggable": False,
            "empty": False,
            "other_config": {"owner": "true"},
        },
    )
    return vdi


#: The name of the template whose disk boots under the QEMU backend.
QEMU_CLOUD_TEMPLATE = "Debian 12 Cloud (QEMU)"


def _cloud_template(
    pool: PoolParts, name: str, description: str, *, vcpus: int, memory: int
) -> str:
    """A custom Debian template marked CloudInit-ready (tag and other_config)."""
    return _vm(
        pool,
        name,
        vcpus=vcpus,
        memory=memory,
        template="Debian Bookworm 12",
        extra={
            "is_a_template": True,
            "name_description": description,
            "tags": ["cloud-init"],
            "other_config": {
                "base_template_name": "Debian Bookworm 12",
                "cloud-init": "true",
                "linux_template": "true",
            },
        },
    )


async def _bootable_cloud_template(pool: PoolParts, image: Path, sr: str, net: str) -> str:
    """A CloudInit-ready template whose disk is a copy of a real cloud image."""
    vm = _cloud_template(
        pool,
        QEMU_CLOUD_TEMPLATE,
        "Debian 12 cloud image with cloud-init (boots under QEMU)",
        vcpus=1,
        memory=512 * MiB,
    )
    size = (await asyncio.to_thread(image.stat)).st_size
    vdi = _disk(pool, vm, sr, "debian-12-cloud root", size, "0", 0, 0)
    # cp keeps the holes (and reflinks where the filesystem can): the image
    # is mostly empty space; a subprocess so the event loop never blocks.
    target = pool.disks.vdi_path(vdi)
    proc = await asyncio.create_subprocess_exec(
        "cp", "--sparse=always", "--reflink=auto", str(image), str(target)
    )
    if await proc.wait() != 0:
        raise OSError(f"cp {image} {target} failed")
    pool.disks.refresh_vdi(vdi)
    _vif(pool, vm, net, "5a:4f:0e:11:20:07")
    pool.vms.update_allowed(vm)
    return vm


def _cd(pool: PoolParts, vm: str) -> None:
    pool.db.create(
        "VBD",
        {
            "VM": vm,
            "VDI": NULL_REF,
            "userdevice": "3",
            "bootable": False,
            "mode": "RO",
            "type": "CD",
            "unpluggable": True,
            "empty": True,
        },
    )


def _vif(pool: PoolParts, vm: str, net: str, mac: str) -> None:
    pool.db.create(
        "VIF",
        {
            "VM": vm,
            "network": net,
            "device": "0",
            "MAC": mac,
            "MTU": 1500,
            "locking_mode": "network_default",
        },
    )


def _pool(pool: PoolParts, name: str, master: str, sr: str) -> None:
    pool.db.create(
        "pool",
        {
            "name_label": name,
            "name_description": "Simulated by xapisim",
            "master": master,
            "default_SR": sr,
            "suspend_image_SR": sr,
            "crash_dump_SR": sr,
            "other_config": {"memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25"},
            "cpu_info": {"cpu_count": "16", "socket_count": "2", "vendor": "GenuineIntel"},
            "restrictions": {"restrict_cbt": "false", "restrict_vmss": "false"},
        },
    )


def _templates(pool: PoolParts) -> None:
    provision = (
        '<provision><disk device="0" size="{size}" sr="" bootable="true" type="system"/>'
        "</provision>"
    )
    for name, desc, size, linux in (
        ("Debian Bookworm 12", "To be installed from the Debian network installer", 10 * GiB, True),
        (
            "Windows Server 2022 (64-bit)",
            "Clones of this template will boot from the DVD",
            32 * GiB,
            False,
        ),
        ("Other install media", "Template for operating systems not listed", 8 * GiB, False),
    ):
        other = {
            "default_template": "true",
            "install-methods": "cdrom,nfs,http,ftp" if linux else "cdrom",
            "disks": provision.format(size=size),
        }
        if linux:
            other["linux_template"] = "true"
            other["install-repository"] = "http://deb.debian.org/debian"
        _vm(
            pool,
            name,
            vcpus=1 if linux else 2,
            memory=(1 if linux else 4) * GiB,
            template=name,
            extra={
                "is_a_template": True,
                "is_default_template": True,
                "name_description": desc,
                "other_config": other,
                "recommendations": '<restrictions><restriction field="memory-static-max" '
                'max="137438953472"/></restrictions>',
            },
        )


async def seed_minimal(pool: PoolParts) -> None:
    """One host, one local SR, one network: a blank pool."""
    host = _host(pool, "xapisim-host", "127.0.0.1", 1)
    sr = _sr(pool, "Local storage", "ext", 200 * GiB, [host], False, {"device": "/dev/sda3"})
    _network(pool, [host], ["127.0.0.1"])
    _pool(pool, "xapisim", host, sr)
    _templates(pool)


async def seed_demo(pool: PoolParts) -> None:
    """The demo pool described in the module docstring."""
    h1 = _host(pool, "xcp-host-1", "10.0.0.11", 11)
    h2 = _host(pool, "xcp-host-2", "10.0.0.12", 12)
    local1 = _sr(pool, "Local storage", "ext", 500 * GiB, [h1], False, {"device": "/dev/sda3"})
    local2 = _sr(pool, "Local storage", "ext", 500 * GiB, [h2], False, {"device": "/dev/sda3"})
    shared = _sr(
        pool,
        "Shared NFS storage",
        "nfs",
        2048 * GiB,
        [h1, h2],
        True,
        {"server": "10.0.0.5", "serverpath": "/export/vms", "nfsversion": "4.1"},
    )
    net = _network(pool, [h1, h2], ["10.0.0.11", "10.0.0.12"])
    _pool(pool, "Demo pool", h1, shared)
    _templates(pool)

    web = _vm(
        pool,
        "web-01",
        vcpus=2,
        memory=2 * GiB,
        template="Debian Bookworm 12",
        extra={
            "name_description": "Public web server (nginx)",
            "tags": ["prod", "web"],
            "xenstore_data": {"vm-data": "", "vm-data/role": "web"},
        },
    )
    _disk(pool, web, shared, "web-01 root", 20 * GiB, "0", 101, 4)
    _cd(pool, web)
    _vif(pool, web, net, "5a:4f:0e:11:20:01")
    pool.vms.set_power(web, "Running", h1)

    db = _vm(
        pool,
        "db-01",
        vcpus=4,
        memory=8 * GiB,
        template="Debian Bookworm 12",
        extra={
            "name_description": "PostgreSQL 15 primary",
            "tags": ["prod", "db"],
            "blocked_operations": {"destroy": "Protected production database"},
        },
    )
    _disk(pool, db, local2, "db-01 root", 16 * GiB, "0", 201, 3)
    _disk(pool, db, local2, "db-01 data", 40 * GiB, "1", 202, 5)
    _vif(pool, db, net, "5a:4f:0e:11:20:02")
    pool.vms.set_power(db, "Running", h2)

    mail = _vm(
        pool,
        "mail-01",
        vcpus=2,
        memory=4 * GiB,
        template="Debian Bookworm 12",
        extra={"name_description": "Postfix + Dovecot", "tags": ["prod"]},
    )
    _disk(pool, mail, shared, "mail-01 root", 16 * GiB, "0", 301, 4)
    _vif(pool, mail, net, "5a:4f:0e:11:20:03")
    await pool.vms.copy_vm(mail, "mail-01 before upgrade", "snapshot")

    win = _vm(
        pool,
        "win-app-01",
        vcpus=4,
        memory=8 * GiB,
        template="Windows Server 2022 (64-bit)",
        extra={
            "name_description": "Line-of-business app on Windows Server 2022",
            "platform": {
                "viridian": "true",
                "device_id": "0002",
                "acpi": "1",
                "apic": "true",
                "nx": "true",
                "secureboot": "false",
            },
            "HVM_boot_params": {"order": "dc", "firmware": "uefi"},
        },
    )
    _disk(pool, win, local1, "win-app-01 C:", 40 * GiB, "0", 401, 4)
    _vif(pool, win, net, "5a:4f:0e:11:20:04")

    ci = _vm(
        pool,
        "ci-runner-01",
        vcpus=8,
        memory=16 * GiB,
        template="Debian Bookworm 12",
        extra={"name_description": "GitLab runner", "tags": ["ci"]},
    )
    _disk(pool, ci, local1, "ci-runner-01 root", 25 * GiB, "0", 501, 2)
    _vif(pool, ci, net, "5a:4f:0e:11:20:05")
    pool.vms.set_power(ci, "Running", h1)
    pool.vms.set_power(ci, "Suspended")

    cloud = _cloud_template(
        pool,
        "Debian 12 Cloud (cloud-init)",
        "Debian 12 genericcloud image with cloud-init and growroot",
        vcpus=2,
        memory=2 * GiB,
    )
    _disk(pool, cloud, shared, "debian-12-genericcloud", 10 * GiB, "0", 601, 4)
    _vif(pool, cloud, net, "5a:4f:0e:11:20:06")
    pool.vms.update_allowed(cloud)
    if pool.cloud_image is not None:
        await _bootable_cloud_template(pool, pool.cloud_image, shared, net)
    pool.db.create(
        "message",
        {
            "name": "VM_STARTED",
            "priority": 5,
            "cls": "VM",
            "obj_uuid": pool.db.get("VM", web)["uuid"],
            "timestamp": now(),
            "body": "VM 'web-01' started on host xcp-host-1",
        },
    )
    for sr in (local1, local2, shared):
        pool.disks.refresh_sr(sr)
