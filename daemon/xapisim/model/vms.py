"""VM rules the handlers share: power states, allowed operations, metrics, copies.

``set_power`` is the one place a VM changes power state: it places the VM on
a host (its affinity, else the master) with a new domid, plugs or unplugs its
VBDs and VIFs, keeps ``VM_metrics`` and (while the guest runs)
``VM_guest_metrics`` current, recomputes the hosts' free memory and the VM's
``allowed_operations``. ``copy_vm`` is snapshot, clone and copy: a new VM
record with copies of the VBDs, VIFs and (copy-on-write) disks.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..db import Database, Record, now
from ..errors import OPERATION_BLOCKED, VM_BAD_POWER_STATE, VM_IS_TEMPLATE, XapiError
from ..schema import ENUMS, NULL_REF, XDateTime
from .disks import Disks
from .records import copy_value, device_name, master_ref, random_mac

_VM_OPS_BY_STATE: dict[str, list[str]] = {
    "Halted": [
        "start",
        "start_on",
        "clone",
        "copy",
        "snapshot",
        "export",
        "destroy",
        "provision",
        "changing_VCPUs",
        "changing_memory_limits",
        "metadata_export",
    ],
    "Running": [
        "clean_shutdown",
        "hard_shutdown",
        "clean_reboot",
        "hard_reboot",
        "suspend",
        "pause",
        "snapshot",
        "checkpoint",
        "shutdown",
        "metadata_export",
    ],
    "Paused": ["unpause", "hard_shutdown", "hard_reboot", "snapshot", "shutdown"],
    "Suspended": ["resume", "resume_on", "hard_shutdown", "snapshot", "export", "shutdown"],
}
_TEMPLATE_OPS = ["clone", "copy", "export", "provision", "destroy", "metadata_export"]


class Vms:
    """The VMs of one pool, with the hosts' memory that follows them."""

    def __init__(self, db: Database, disks: Disks) -> None:
        self.db = db
        self.disks = disks
        self._next_domid = 1

    def vm(self, ref: Any) -> Record:
        return self.db.get("VM", ref)

    def next_domid(self) -> int:
        """A domain id never used before in this run (as Xen hands them out)."""
        self._next_domid += 1
        return self._next_domid - 1

    # -- checks ----------------------------------------------------------
    def check_blocked(self, vm_ref: str, op: str) -> None:
        blocked = self.vm(vm_ref)["blocked_operations"]
        if op in blocked:
            raise XapiError(OPERATION_BLOCKED, vm_ref, blocked[op])

    def check_power(self, vm_ref: str, *expected: str) -> None:
        actual = self.vm(vm_ref)["power_state"]
        if actual not in expected:
            raise XapiError(VM_BAD_POWER_STATE, vm_ref, expected[0].lower(), actual.lower())

    def check_not_template(self, vm_ref: str) -> None:
        if self.vm(vm_ref)["is_a_template"]:
            raise XapiError(VM_IS_TEMPLATE, vm_ref)

    def update_allowed(self, vm_ref: str) -> None:
        vm = self.vm(vm_ref)
        if vm["is_a_template"] or vm["is_a_snapshot"]:
            ops = list(_TEMPLATE_OPS)
        else:
            ops = list(_VM_OPS_BY_STATE.get(vm["power_state"], []))
        valid = set(ENUMS.get("vm_operations", ops))
        self.db.set("VM", vm_ref, allowed_operations=[o for o in ops if o in valid])

    # -- power -------------------------------------------------------------
    def set_power(self, vm_ref: str, state: str, host: str | None = None) -> None:
        """Move a VM to a power state, attaching or detaching its devices."""
        running = state in ("Running", "Paused")
        fields: dict[str, Any] = {"power_state": state}
        if running:
            vm = self.vm(vm_ref)
            if vm["power_state"] in ("Halted", "Suspended") or host:
                fields["resident_on"] = host or (
                    vm["affinity"]
                    if self.db.exists("host", vm["affinity"])
                    else master_ref(self.db)
                )
                fields["domid"] = self.next_domid()
        else:
            fields["resident_on"] = NULL_REF
            fields["domid"] = -1
        old_host = self.vm(vm_ref)["resident_on"]
        self.db.set("VM", vm_ref, **fields)
        self._update_metrics(vm_ref, running)
        for host in {old_host, self.vm(vm_ref)["resident_on"]}:
            if self.db.exists("host", host):
                self.refresh_host_metrics(host)
        for vbd in self.db.find("VBD", VM=vm_ref):
            rec = self.db.get("VBD", vbd)
            if rec["currently_attached"] != running:
                device = rec["device"] or device_name(rec["userdevice"])
                self.db.set("VBD", vbd, currently_attached=running, device=device)
        for vif in self.db.find("VIF", VM=vm_ref):
            if self.db.get("VIF", vif)["currently_attached"] != running:
                self.db.set("VIF", vif, currently_attached=running)
        self.update_allowed(vm_ref)

    def _update_metrics(self, vm_ref: str, running: bool) -> None:
        """VM_metrics while it exists, VM_guest_metrics while the guest runs."""
        vm = self.vm(vm_ref)
        if vm["is_control_domain"]:
            return
        metrics = {
            "memory_actual": int(vm["memory_dynamic_max"]) if running else 0,
            "VCPUs_number": int(vm["VCPUs_at_startup"]) if running else 0,
            "hvm": True,
            "last_updated": now(),
        }
        if self.db.exists("VM_metrics", vm["metrics"]):
            self.db.set("VM_metrics", vm["metrics"], **metrics)
        else:
            metrics.update({"start_time": now(), "install_time": now()})
            self.db.set("VM", vm_ref, metrics=self.db.create("VM_metrics", metrics))
        # A guest without its agent (other_config "xapisim-guest-agent": "none",
        # kept by copies and restores of the VM) never reports, as in XAPI.
        agent = vm["other_config"].get("xapisim-guest-agent") != "none"
        if running and vm["power_state"] == "Running" and agent:
            if not self.db.exists("VM_guest_metrics", vm["guest_metrics"]):
                self.db.set(
                    "VM", vm_ref, guest_metrics=self.db.create("VM_guest_metrics", _guest(vm))
                )
        elif not running and self.db.exists("VM_guest_metrics", vm["guest_metrics"]):
            self.db.destroy("VM_guest_metrics", vm["guest_metrics"])
            self.db.set("VM", vm_ref, guest_metrics=NULL_REF)

    def withdraw_guest(self, vm_ref: str) -> None:
        """No guest report yet (a VM under QEMU: its guest has not booted)."""
        vm = self.vm(vm_ref)
        if self.db.exists("VM_guest_metrics", vm["guest_metrics"]):
            self.db.destroy("VM_guest_metrics", vm["guest_metrics"])
            self.db.set("VM", vm_ref, guest_metrics=NULL_REF)

    def report_guest(self, vm_ref: str, networks: dict[str, str]) -> None:
        """The guest of a running VM reports, with these addresses."""
        vm = self.vm(vm_ref)
        if vm["power_state"] != "Running":
            return
        self.withdraw_guest(vm_ref)
        record = {**_guest(vm), "networks": networks}
        self.db.set("VM", vm_ref, guest_metrics=self.db.create("VM_guest_metrics", record))

    def refresh_host_metrics(self, host: str) -> None:
        """Free memory of a host: its total minus what its running domains use."""
        rec = self.db.get("host", host)
        total = int(rec["other_config"].get("xapisim-memory-total", str(256 * 1024**3)))
        used = int(rec["memory_overhead"]) + sum(
            int(vm["memory_dynamic_max"])
            for _, vm in self.db.items("VM")
            if vm["resident_on"] == host and vm["power_state"] in ("Running", "Paused")
        )
        fields = {"memory_total": total, "memory_free": max(total - used, 0), "live": True}
        if self.db.exists("host_metrics", rec["metrics"]):
            self.db.set("host_metrics", rec["metrics"], **fields, last_updated=now())
        else:
            ref = self.db.create("host_metrics", {**fields, "last_updated": now()})
            self.db.set("host", host, metrics=ref)

    # -- copies --------------------------------------------------------------
    async def copy_vm(self, vm_ref: str, name: str, mode: str, sr: str | None = None) -> str:
        """Snapshot, clone or copy a VM with its disks, VBDs and VIFs."""
        source = self.vm(vm_ref)
        rec = {k: copy_value(v) for k, v in source.items()}
        rec.pop("uuid")
        rec.update(
            {
                "name_label": name,
                "power_state": "Halted",
                "resident_on": NULL_REF,
                "domid": -1,
                "current_operations": {},
                # As xen-api's copy_vm_record (xapi_vm_clone.ml): a snapshot,
                # clone or copy starts with no blocked operations of its own.
                # A block it carries was put there on it afterwards.
                "blocked_operations": {},
                "is_control_domain": False,
                "is_a_snapshot": mode == "snapshot",
                "snapshot_of": vm_ref if mode == "snapshot" else NULL_REF,
                "snapshot_time": now() if mode == "snapshot" else XDateTime("19700101T00:00:00Z"),
                "is_a_template": True if mode == "snapshot" else source["is_a_template"],
                "is_default_template": False,
                "parent": source["parent"] if mode == "snapshot" else NULL_REF,
                "snapshot_info": {"power-state-at-snapshot": source["power_state"]}
                if mode == "snapshot"
                else {},
            }
        )
        if mode != "snapshot":
            rec["is_a_snapshot"] = False
        new_vm = self.db.create("VM", rec)
        vdi_map: dict[str, str] = {}
        try:
            for vbd in self.db.find("VBD", VM=vm_ref):
                vbd_rec = {k: copy_value(v) for k, v in self.db.get("VBD", vbd).items()}
                vbd_rec.pop("uuid")
                vdi = vbd_rec["VDI"]
                if vbd_rec["type"] == "Disk" and self.db.exists("VDI", vdi):
                    if vdi not in vdi_map:
                        src = self.db.get("VDI", vdi)
                        extra: Record = {}
                        if mode == "snapshot":
                            extra = {
                                "is_a_snapshot": True,
                                "snapshot_of": vdi,
                                "snapshot_time": rec["snapshot_time"],
                                "name_label": src["name_label"],
                            }
                        vdi_map[vdi] = await self.disks.derive_vdi(
                            vdi, sr if mode == "copy" else None, extra, cbt_link=mode == "snapshot"
                        )
                    vbd_rec["VDI"] = vdi_map[vdi]
                vbd_rec.update(
                    {"VM": new_vm, "currently_attached": False, "current_operations": {}}
                )
                self.db.create("VBD", vbd_rec)
            for vif in self.db.find("VIF", VM=vm_ref):
                vif_rec = {k: copy_value(v) for k, v in self.db.get("VIF", vif).items()}
                vif_rec.pop("uuid")
                vif_rec.update({"VM": new_vm, "currently_attached": False})
                if mode != "snapshot":
                    vif_rec["MAC"] = random_mac()
                self.db.create("VIF", vif_rec)
        except BaseException:
            for new_vdi in vdi_map.values():
                with contextlib.suppress(XapiError):
                    self.disks.destroy_vdi(new_vdi)
            for r in self.db.find("VBD", VM=new_vm) + self.db.find("VIF", VM=new_vm):
                self.db.destroy(self.db.cls_of[r], r)
            self.db.destroy("VM", new_vm)
            raise
        if mode == "snapshot":
            self.db.set("VM", vm_ref, parent=new_vm)
        self.update_allowed(new_vm)
        return new_vm

    def destroy_vm(self, vm_ref: str) -> None:
        for vbd in self.db.find("VBD", VM=vm_ref):
            self.db.destroy("VBD", vbd)
        for vif in self.db.find("VIF", VM=vm_ref):
            self.db.destroy("VIF", vif)
        self.db.destroy("VM", vm_ref)


def _guest(vm: Record) -> Record:
    """What the guest agent of a started VM reports (deterministic per VM)."""
    n = int(vm["uuid"].replace("-", "")[:8], 16)
    ip = f"10.0.0.{100 + n % 150}"
    template = vm["other_config"].get("base_template_name", "")
    if "Windows" in template:
        os_version = {
            "name": "Microsoft Windows Server 2022 Standard",
            "distro": "windows",
            "major": "10",
            "minor": "0",
        }
    else:
        os_version = {
            "name": "Debian GNU/Linux 12 (bookworm)",
            "distro": "debian",
            "major": "12",
            "minor": "5",
            "uname": "6.1.0-21-amd64",
        }
    return {
        "os_version": os_version,
        "PV_drivers_version": {"major": "7", "minor": "30", "micro": "0", "build": "10"},
        "PV_drivers_up_to_date": True,
        "PV_drivers_detected": True,
        "networks": {"0/ip": ip, "0/ipv4/0": ip},
        "other": {"feature-shutdown": "1", "feature-suspend": "1", "has-vendor-device": "0"},
        "memory": {},
        "disks": {},
        "live": True,
        "last_updated": now(),
        "can_use_hotplug_vbd": "yes",
        "can_use_hotplug_vif": "yes",
    }
