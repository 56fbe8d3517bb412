"""VM: power operations, snapshots and copies, revert, create/provision, memory.

The rules shared with other classes and the seed (power transitions, allowed
operations, metrics, copying disks) live in ``model/vms.py``; each handler
here checks what XAPI checks (blocked operations, power state, templates)
in XAPI's order, then applies one of them.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from ..errors import INVALID_VALUE, OPERATION_NOT_ALLOWED, XapiError
from ..model.records import copy_value, record_arg
from ..pool import SimPool
from ..qemu import SSH_PORT_KEY, machine_spec
from ..schema import NULL_REF, coerce
from .registry import Registry

methods = Registry()


async def _boot(pool: SimPool, vm: str, paused: bool, host: str | None = None) -> None:
    """Power a VM on: under QEMU when the backend is on, else in the records."""
    if pool.qemu is None:
        pool.vms.set_power(vm, "Paused" if paused else "Running", host)
        return
    try:
        guest = await pool.qemu.start(vm, machine_spec(pool.db, pool.vdi_path, vm))
    except (OSError, ValueError) as exc:
        raise XapiError(INVALID_VALUE, "VM", f"QEMU did not start: {exc}") from exc
    pool.vms.set_power(vm, "Running", host)
    # The guest reports (guest metrics) once its sshd answers, not now:
    # XenKeep waits for that report before it removes the config drive.
    pool.vms.withdraw_guest(vm)
    other = dict(pool.vms.vm(vm)["other_config"], **{SSH_PORT_KEY: str(guest.ssh_port)})
    pool.db.set("VM", vm, other_config=other)


async def _halt(pool: SimPool, vm: str, *, clean: bool) -> None:
    """Power a VM off; under QEMU, ask the guest (clean) or kill QEMU."""
    if pool.qemu is not None and pool.qemu.guest(vm) is not None:
        if clean:
            if not await pool.qemu.power_off(vm):
                raise XapiError(OPERATION_NOT_ALLOWED, "the guest did not power off")
        else:
            await pool.qemu.kill(vm)
        pool.guest_exited(vm)
        return
    pool.vms.set_power(vm, "Halted")


@methods.api("VM.start")
async def vm_start(pool: SimPool, _s: str, vm: Any, start_paused: Any, force: Any) -> Any:
    pool.vms.vm(vm)
    pool.vms.check_blocked(vm, "start")
    pool.vms.check_not_template(vm)
    pool.vms.check_power(vm, "Halted")
    await _boot(pool, vm, bool(start_paused))
    return ""


@methods.api("VM.start_on")
async def vm_start_on(
    pool: SimPool, _s: str, vm: Any, host: Any, start_paused: Any, force: Any
) -> Any:
    pool.vms.vm(vm)
    pool.db.get("host", host)
    pool.vms.check_blocked(vm, "start_on")
    pool.vms.check_not_template(vm)
    pool.vms.check_power(vm, "Halted")
    await _boot(pool, vm, bool(start_paused), host)
    return ""


async def _transition(
    pool: SimPool, vm: Any, op: str, expected: tuple[str, ...], target: str
) -> Any:
    pool.vms.vm(vm)
    pool.vms.check_blocked(vm, op)
    pool.vms.check_not_template(vm)
    pool.vms.check_power(vm, *expected)
    if target == "Halted":
        await _halt(pool, vm, clean=op == "clean_shutdown")
        return ""
    if pool.qemu is not None and pool.qemu.guest(vm) is not None:
        if op == "suspend":
            raise XapiError(OPERATION_NOT_ALLOWED, "suspend is not simulated under QEMU")
        if op.endswith("_reboot"):
            # No ACPI reboot button: both reboots reset the machine.
            await pool.qemu.qmp_command(vm, "system_reset")
            return ""
        if op in ("pause", "unpause"):
            await pool.qemu.qmp_command(vm, "stop" if op == "pause" else "cont")
    pool.vms.set_power(vm, target)
    return ""


@methods.api("VM.clean_shutdown")
async def vm_clean_shutdown(pool: SimPool, _s: str, vm: Any) -> Any:
    return await _transition(pool, vm, "clean_shutdown", ("Running",), "Halted")


@methods.api("VM.shutdown")
async def vm_shutdown(pool: SimPool, _s: str, vm: Any) -> Any:
    return await _transition(pool, vm, "shutdown", ("Running", "Paused", "Suspended"), "Halted")


@methods.api("VM.hard_shutdown")
async def vm_hard_shutdown(pool: SimPool, _s: str, vm: Any) -> Any:
    return await _transition(
        pool, vm, "hard_shutdown", ("Running", "Paused", "Suspended"), "Halted"
    )


@methods.api("VM.clean_reboot")
async def vm_clean_reboot(pool: SimPool, _s: str, vm: Any) -> Any:
    await _transition(pool, vm, "clean_reboot", ("Running",), "Running")
    pool.db.set("VM", vm, domid=pool.vms.next_domid())
    return ""


@methods.api("VM.hard_reboot")
async def vm_hard_reboot(pool: SimPool, _s: str, vm: Any) -> Any:
    await _transition(pool, vm, "hard_reboot", ("Running", "Paused"), "Running")
    pool.db.set("VM", vm, domid=pool.vms.next_domid())
    return ""


@methods.api("VM.suspend")
async def vm_suspend(pool: SimPool, _s: str, vm: Any) -> Any:
    return await _transition(pool, vm, "suspend", ("Running",), "Suspended")


@methods.api("VM.resume")
async def vm_resume(pool: SimPool, _s: str, vm: Any, start_paused: Any, force: Any) -> Any:
    return await _transition(
        pool, vm, "resume", ("Suspended",), "Paused" if start_paused else "Running"
    )


@methods.api("VM.pause")
async def vm_pause(pool: SimPool, _s: str, vm: Any) -> Any:
    return await _transition(pool, vm, "pause", ("Running",), "Paused")


@methods.api("VM.unpause")
async def vm_unpause(pool: SimPool, _s: str, vm: Any) -> Any:
    return await _transition(pool, vm, "unpause", ("Paused",), "Running")


@methods.api("VM.power_state_reset")
async def vm_power_state_reset(pool: SimPool, _s: str, vm: Any) -> Any:
    pool.vms.vm(vm)
    pool.vms.set_power(vm, "Halted")
    return ""


@methods.api("VM.snapshot")
async def vm_snapshot(
    pool: SimPool, _s: str, vm: Any, new_name: Any, ignore_vdis: Any = None
) -> Any:
    pool.vms.vm(vm)
    pool.vms.check_blocked(vm, "snapshot")
    if pool.vms.vm(vm)["is_a_snapshot"] or pool.vms.vm(vm)["is_a_template"]:
        raise XapiError(OPERATION_NOT_ALLOWED, "cannot snapshot a template or a snapshot")
    return await pool.vms.copy_vm(vm, str(new_name), "snapshot")


@methods.api("VM.clone")
async def vm_clone(pool: SimPool, _s: str, vm: Any, new_name: Any) -> Any:
    pool.vms.vm(vm)
    pool.vms.check_blocked(vm, "clone")
    if not pool.vms.vm(vm)["is_a_template"]:
        pool.vms.check_power(vm, "Halted")
    return await pool.vms.copy_vm(vm, str(new_name), "clone")


@methods.api("VM.copy")
async def vm_copy(pool: SimPool, _s: str, vm: Any, new_name: Any, sr: Any) -> Any:
    pool.vms.vm(vm)
    pool.vms.check_blocked(vm, "copy")
    if not pool.vms.vm(vm)["is_a_template"]:
        pool.vms.check_power(vm, "Halted")
    if sr != NULL_REF:
        pool.db.get("SR", sr)
    return await pool.vms.copy_vm(vm, str(new_name), "copy", None if sr == NULL_REF else sr)


@methods.api("VM.revert")
async def vm_revert(pool: SimPool, _s: str, snapshot: Any) -> Any:
    snap = pool.vms.vm(snapshot)
    if not snap["is_a_snapshot"]:
        raise XapiError(OPERATION_NOT_ALLOWED, "VM.revert needs a snapshot")
    vm = str(snap["snapshot_of"])
    pool.vms.vm(vm)
    pool.vms.check_blocked(vm, "revert")
    if pool.vms.vm(vm)["power_state"] != "Halted":
        pool.vms.set_power(vm, "Halted")
    # As XAPI: the VM's current disks go, fresh clones of the snapshot's come.
    for vbd in pool.db.find("VBD", VM=vm):
        rec = pool.db.get("VBD", vbd)
        pool.db.destroy("VBD", vbd)
        if rec["type"] == "Disk" and pool.db.exists("VDI", rec["VDI"]):
            pool.disks.destroy_vdi(rec["VDI"])
    for vbd in pool.db.find("VBD", VM=snapshot):
        rec = {k: copy_value(v) for k, v in pool.db.get("VBD", vbd).items()}
        rec.pop("uuid")
        if rec["type"] == "Disk" and pool.db.exists("VDI", rec["VDI"]):
            rec["VDI"] = await pool.disks.derive_vdi(rec["VDI"], None, {}, cbt_link=False)
        rec.update({"VM": vm, "currently_attached": False})
        pool.db.create("VBD", rec)
    fields = {
        k: copy_value(snap[k])
        for k in (
            "VCPUs_max",
            "VCPUs_at_startup",
            "memory_static_max",
            "memory_dynamic_max",
            "memory_dynamic_min",
            "memory_static_min",
            "memory_target",
            "platform",
            "HVM_boot_params",
        )
    }
    pool.db.set("VM", vm, parent=snapshot, **fields)
    pool.vms.update_allowed(vm)
    return ""


@methods.api("VM.destroy")
async def vm_destroy(pool: SimPool, _s: str, vm: Any) -> Any:
    rec = pool.vms.vm(vm)
    pool.vms.check_blocked(vm, "destroy")
    if rec["is_control_domain"]:
        raise XapiError(OPERATION_NOT_ALLOWED, "cannot destroy a control domain")
    pool.vms.check_power(vm, "Halted", "Suspended")
    pool.vms.destroy_vm(vm)
    return ""


@methods.api("VM.create")
async def vm_create(pool: SimPool, _s: str, args: Any) -> Any:
    rec = record_arg("VM", args)
    rec.update({"power_state": "Halted", "resident_on": NULL_REF, "domid": -1})
    ref = pool.db.create("VM", rec)
    pool.vms.update_allowed(ref)
    return ref


@methods.api("VM.provision")
async def vm_provision(pool: SimPool, _s: str, vm: Any) -> Any:
    rec = pool.vms.vm(vm)
    pool.vms.check_blocked(vm, "provision")
    spec = rec["other_config"].get("disks", "")
    if not spec:
        return ""
    try:
        root = ET.fromstring(spec)  # noqa: S314 - XML comes from our own DB
    except ET.ParseError as e:
        raise XapiError(INVALID_VALUE, "other_config:disks", spec) from e
    default_sr = pool.db.get("pool", pool.pool_ref)["default_SR"]
    for disk in root.iter("disk"):
        sr = disk.get("sr") or default_sr
        sr_ref = pool.db.by_uuid.get(sr, sr)
        vdi = pool.disks.make_vdi(
            sr_ref,
            {
                "name_label": f"{rec['name_label']} {disk.get('device', '0')}",
                "virtual_size": int(disk.get("size", "0")),
                "type": disk.get("type", "system"),
            },
        )
        pool.db.create(
            "VBD",
            {
                "VM": vm,
                "VDI": vdi,
                "userdevice": disk.get("device", "0"),
                "bootable": disk.get("bootable", "false") == "true",
                "mode": "RW",
                "type": "Disk",
                "unpluggable": False,
                "empty": False,
            },
        )
    other = dict(rec["other_config"])
    other.pop("disks", None)
    pool.db.set("VM", vm, other_config=other)
    return ""


@methods.api("VM.set_memory_limits")
async def vm_set_memory_limits(
    pool: SimPool, _s: str, vm: Any, smin: Any, smax: Any, dmin: Any, dmax: Any
) -> Any:
    pool.vms.vm(vm)
    vals = [coerce("int", v) for v in (smin, smax, dmin, dmax)]
    if not vals[0] <= vals[2] <= vals[3] <= vals[1]:
        raise XapiError(
            INVALID_VALUE, "memory", "static_min <= dynamic_min <= dynamic_max <= static_max"
        )
    pool.db.set(
        "VM",
        vm,
        memory_static_min=vals[0],
        memory_static_max=vals[1],
        memory_dynamic_min=vals[2],
        memory_dynamic_max=vals[3],
        memory_target=vals[3],
    )
    return ""


@methods.api("VM.set_memory")
async def vm_set_memory(pool: SimPool, _s: str, vm: Any, value: Any) -> Any:
    pool.vms.vm(vm)
    v = coerce("int", value)
    pool.db.set(
        "VM",
        vm,
        memory_static_max=v,
        memory_dynamic_min=v,
        memory_dynamic_max=v,
        memory_target=v,
    )
    return ""


@methods.api("VM.get_allowed_VBD_devices")
async def vm_allowed_vbd_devices(pool: SimPool, _s: str, vm: Any) -> Any:
    pool.vms.vm(vm)
    used = {pool.db.get("VBD", v)["userdevice"] for v in pool.db.find("VBD", VM=vm)}
    return [str(i) for i in range(16) if str(i) not in used]


@methods.api("VM.get_allowed_VIF_devices")
async def vm_allowed_vif_devices(pool: SimPool, _s: str, vm: Any) -> Any:
    pool.vms.vm(vm)
    used = {pool.db.get("VIF", v)["device"] for v in pool.db.find("VIF", VM=vm)}
    return [str(i) for i in range(7) if str(i) not in used]
