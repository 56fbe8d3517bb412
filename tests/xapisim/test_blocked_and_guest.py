"""Blocked operations and a started guest's report, through the official
XenAPI SDK: as xen-api does them."""

from __future__ import annotations

from typing import Any

from tests.xapisim.conftest import vm_by_name
from tests.xapisim.test_sdk import failure


def test_a_blocked_destroy_is_refused_and_copies_start_unblocked(xapi: Any) -> None:
    """xen-api's copy_vm_record gives a snapshot, clone or copy no blocked
    operations of its own; VM.create takes the blocks its record names."""
    db = vm_by_name(xapi, "db-01")
    reason = xapi.VM.get_blocked_operations(db)["destroy"]
    xapi.VM.hard_shutdown(db)
    assert failure(xapi.VM.destroy, db) == ["OPERATION_BLOCKED", db, reason]
    snap = xapi.VM.snapshot(db, "db-01 snap")
    assert xapi.VM.get_blocked_operations(snap) == {}
    clone = xapi.VM.clone(snap, "db-01 clone")
    assert xapi.VM.get_blocked_operations(clone) == {}
    # A block put on the snapshot afterwards is its own, and refuses the same way.
    xapi.VM.add_to_blocked_operations(snap, "destroy", "kept")
    assert failure(xapi.VM.destroy, snap) == ["OPERATION_BLOCKED", snap, "kept"]
    xapi.VM.remove_from_blocked_operations(snap, "destroy")
    xapi.VM.destroy(snap)
    record = {**xapi.VM.get_record(clone), "name_label": "db-01 recreated"}
    recreated = xapi.VM.create(record)
    assert xapi.VM.get_blocked_operations(recreated) == {}
    record["blocked_operations"] = {"destroy": reason}
    protected = xapi.VM.create(record)
    assert failure(xapi.VM.destroy, protected) == ["OPERATION_BLOCKED", protected, reason]


def test_a_started_guest_reports_unless_it_has_no_agent(xapi: Any) -> None:
    vm = vm_by_name(xapi, "mail-01")
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
    xapi.VM.start(vm, False, False)
    metrics = xapi.VM_guest_metrics.get_record(xapi.VM.get_guest_metrics(vm))
    assert metrics["PV_drivers_detected"] is True and metrics["os_version"]["name"]
    assert metrics["last_updated"]
    xapi.VM.hard_shutdown(vm)
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
    xapi.VM.add_to_other_config(vm, "xapisim-guest-agent", "none")
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_power_state(vm) == "Running"
    assert xapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
