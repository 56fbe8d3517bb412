"""The official XenAPI SDK (XML-RPC) against the simulator: wire fidelity."""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import XenAPI

from tests.xapisim.conftest import close_session, first_disk, vm_by_name
from xapisim.testing import SimulatorThread

GiB = 1024**3


def failure(call: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return list(info.value.details)


def test_login_wrong_password_fails(sim: SimulatorThread) -> None:
    s = XenAPI.Session(sim.url)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.login_with_password("root", "wrong", "2.21", "t")
    assert info.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.login_with_password("admin", "demo", "2.21", "t")
    assert info.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    close_session(s)


def test_login_logout_and_api_version(session: Any, xapi: Any) -> None:
    assert session.API_version == "2.21"
    me = session.handle
    assert xapi.session.get_this_host(me) == xapi.pool.get_master(xapi.pool.get_all()[0])
    rec = xapi.session.get_record(me)
    assert rec["is_local_superuser"] is True


def test_invalid_session_is_session_invalid(sim: SimulatorThread) -> None:
    import xmlrpc.client

    proxy = xmlrpc.client.ServerProxy(sim.url)
    answer = proxy.VM.get_all("OpaqueRef:not-a-session")
    assert answer["Status"] == "Failure"
    assert answer["ErrorDescription"] == ["SESSION_INVALID", "OpaqueRef:not-a-session"]
    proxy("close")()


def test_demo_pool_records(xapi: Any) -> None:
    pools = xapi.pool.get_all_records()
    assert len(pools) == 1
    pool = next(iter(pools.values()))
    assert pool["name_label"] == "Demo pool"
    hosts = xapi.host.get_all_records()
    assert len(hosts) == 2
    assert pool["master"] in hosts
    srs = xapi.SR.get_all_records()
    shared = [r for r in srs.values() if r["shared"]]
    assert len(shared) == 1 and pool["default_SR"] == xapi.SR.get_by_uuid(shared[0]["uuid"])
    assert len([r for r in srs.values() if r["type"] == "ext"]) == 2
    for sr in srs.values():
        assert int(sr["physical_size"]) > int(sr["physical_utilisation"]) > 0
        assert int(sr["virtual_allocation"]) >= 10 * GiB
        assert all(xapi.VDI.get_SR(v) in srs for v in sr["VDIs"])
    vms = xapi.VM.get_all_records()
    real = [
        r
        for r in vms.values()
        if not r["is_a_template"] and not r["is_control_domain"] and not r["is_a_snapshot"]
    ]
    assert 4 <= len(real) <= 6
    assert {r["power_state"] for r in real} >= {"Running", "Halted", "Suspended"}
    templates = [r["name_label"] for r in vms.values() if r["is_a_template"]]
    assert "Debian Bookworm 12" in templates
    net = xapi.network.get_all_records()
    assert any(len(n["PIFs"]) == 2 for n in net.values())
    # XML-RPC carries 64-bit ints as strings, exactly as XAPI does.
    web = vms[vm_by_name(xapi, "web-01")]
    assert web["memory_static_max"] == str(2 * GiB)
    assert web["resident_on"] in hosts
    vdi = xapi.VDI.get_record(first_disk(xapi, vm_by_name(xapi, "web-01")))
    assert int(vdi["virtual_size"]) == 20 * GiB
    assert 0 < int(vdi["physical_utilisation"]) < 64 * 1024**2


def test_getters_setters_maps_tags(xapi: Any) -> None:
    vm = vm_by_name(xapi, "mail-01")
    uuid = xapi.VM.get_uuid(vm)
    assert xapi.VM.get_by_uuid(uuid) == vm
    xapi.VM.set_name_label(vm, "mail-02")
    assert xapi.VM.get_name_label(vm) == "mail-02"
    assert xapi.VM.get_by_name_label("mail-02") == [vm]
    xapi.VM.set_VCPUs_max(vm, "6")
    assert xapi.VM.get_VCPUs_max(vm) == "6"
    xapi.VM.add_to_other_config(vm, "xenkeep", "1")
    assert xapi.VM.get_other_config(vm)["xenkeep"] == "1"
    details = failure(xapi.VM.add_to_other_config, vm, "xenkeep", "2")
    assert details == ["MAP_DUPLICATE_KEY", "VM", "other_config", vm, "xenkeep"]
    xapi.VM.remove_from_other_config(vm, "xenkeep")
    assert "xenkeep" not in xapi.VM.get_other_config(vm)
    xapi.VM.add_to_xenstore_data(vm, "vm-data/ip", "10.0.0.50")
    assert xapi.VM.get_record(vm)["xenstore_data"]["vm-data/ip"] == "10.0.0.50"
    xapi.VM.add_tags(vm, "backup")
    xapi.VM.add_tags(vm, "backup")
    assert xapi.VM.get_tags(vm).count("backup") == 1
    xapi.VM.remove_tags(vm, "backup")
    assert "backup" not in xapi.VM.get_tags(vm)
    xapi.VM.set_memory_limits(vm, str(GiB), str(4 * GiB), str(2 * GiB), str(2 * GiB))
    assert xapi.VM.get_memory_dynamic_max(vm) == str(2 * GiB)


def test_errors_have_xapi_codes(xapi: Any, session: Any) -> None:
    vm = vm_by_name(xapi, "web-01")
    assert failure(xapi.VM.get_record, "OpaqueRef:missing") == [
        "HANDLE_INVALID",
        "VM",
        "OpaqueRef:missing",
    ]
    assert failure(xapi.VM.get_by_uuid, "nope") == ["UUID_INVALID", "VM", "nope"]
    assert failure(xapi.VM.no_such_call, vm) == ["MESSAGE_METHOD_UNKNOWN", "VM.no_such_call"]
    assert failure(xapi.VM.start, vm) == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "4", "2"]
    assert failure(xapi.VM.start, vm, False, False) == [
        "VM_BAD_POWER_STATE",
        vm,
        "halted",
        "running",
    ]
    # Read-only fields have no setter.
    assert failure(xapi.VM.set_power_state, vm, "Halted")[0] == "MESSAGE_METHOD_UNKNOWN"
    assert failure(xapi.VM.set_VCPUs_max, vm, "many") == ["FIELD_TYPE_ERROR", "VCPUs_max"]
    template = vm_by_name(xapi, "Debian Bookworm 12")
    assert failure(xapi.VM.start, template, False, False) == ["VM_IS_TEMPLATE", template]
    db = vm_by_name(xapi, "db-01")
    xapi.VM.hard_shutdown(db)
    assert failure(xapi.VM.destroy, db) == [
        "OPERATION_BLOCKED",
        db,
        "Protected production database",
    ]


def test_power_cycle(xapi: Any) -> None:
    vm = vm_by_name(xapi, "mail-01")
    assert xapi.VM.get_power_state(vm) == "Halted"
    xapi.VM.start(vm, False, False)
    rec = xapi.VM.get_record(vm)
    assert rec["power_state"] == "Running"
    assert rec["resident_on"] != "OpaqueRef:NULL"
    assert all(xapi.VBD.get_currently_attached(v) for v in rec["VBDs"])
    assert "clean_shutdown" in rec["allowed_operations"]
    metrics = xapi.VM_metrics.get_record(rec["metrics"])
    assert metrics["memory_actual"] == rec["memory_dynamic_max"]
    guest = xapi.VM_guest_metrics.get_record(rec["guest_metrics"])
    assert guest["networks"]["0/ip"].startswith("10.0.0.")
    host_metrics = xapi.host.get_metrics(rec["resident_on"])
    free_running = int(xapi.host_metrics.get_memory_free(host_metrics))
    xapi.VM.pause(vm)
    assert failure(xapi.VM.pause, vm) == ["VM_BAD_POWER_STATE", vm, "running", "paused"]
    xapi.VM.unpause(vm)
    xapi.VM.clean_reboot(vm)
    xapi.VM.suspend(vm)
    assert xapi.VM.get_power_state(vm) == "Suspended"
    xapi.VM.resume(vm, False, False)
    xapi.VM.clean_shutdown(vm)
    rec = xapi.VM.get_record(vm)
    assert rec["power_state"] == "Halted" and rec["resident_on"] == "OpaqueRef:NULL"
    assert rec["guest_metrics"] == "OpaqueRef:NULL"
    assert int(xapi.host_metrics.get_memory_free(host_metrics)) > free_running
    xapi.VM.add_to_blocked_operations(vm, "start", "maintenance")
    assert failure(xapi.VM.start, vm, False, False) == ["OPERATION_BLOCKED", vm, "maintenance"]


def test_vm_snapshot_clone_copy_destroy(sim: SimulatorThread, xapi: Any) -> None:
    vm = vm_by_name(xapi, "web-01")
    disk = first_disk(xapi, vm)
    snap = xapi.VM.snapshot(vm, "web-01 backup")
    rec = xapi.VM.get_record(snap)
    assert rec["is_a_snapshot"] and rec["is_a_template"]
    assert rec["snapshot_of"] == vm
    assert rec["snapshot_time"].value > "2020"
    assert snap in xapi.VM.get_snapshots(vm)
    snap_disk = first_disk(xapi, snap)
    snap_vdi = xapi.VDI.get_record(snap_disk)
    assert snap_vdi["is_a_snapshot"] and snap_vdi["snapshot_of"] == disk
    assert snap_disk in xapi.VDI.get_snapshots(disk)
    before = sim.call("sim.read_vdi", _s(sim), snap_disk, "0", "65536")
    # Changing the live disk leaves the snapshot alone.
    sim.call("sim.write_vdi", _s(sim), disk, "0", "QUJD" * 100)
    assert sim.call("sim.read_vdi", _s(sim), snap_disk, "0", "65536") == before
    assert sim.call("sim.read_vdi", _s(sim), disk, "0", "65536") != before
    assert len(xapi.VM.get_VIFs(snap)) == 1

    mail = vm_by_name(xapi, "mail-01")
    clone = xapi.VM.clone(mail, "mail-clone")
    assert not xapi.VM.get_is_a_snapshot(clone)
    assert xapi.VIF.get_MAC(xapi.VM.get_VIFs(clone)[0]) != xapi.VIF.get_MAC(
        xapi.VM.get_VIFs(mail)[0]
    )
    local = next(
        r for r, s in xapi.SR.get_all_records().items() if s["type"] == "ext" and s["VDIs"]
    )
    copy = xapi.VM.copy(mail, "mail-copy", local)
    assert xapi.VDI.get_SR(first_disk(xapi, copy)) == local
    assert sim.call("sim.read_vdi", _s(sim), first_disk(xapi, copy), "0", "1048576") == sim.call(
        "sim.read_vdi", _s(sim), first_disk(xapi, mail), "0", "1048576"
    )
    copy_disk = first_disk(xapi, copy)
    xapi.VM.destroy(copy)
    # VM.destroy keeps the disks, as XAPI does.
    assert xapi.VDI.get_VBDs(copy_disk) == []
    xapi.VDI.destroy(copy_disk)
    assert failure(xapi.VDI.get_record, copy_disk)[0] == "HANDLE_INVALID"


def _s(sim: SimulatorThread) -> str:
    return str(sim.call("session.login_with_password", "root", "demo"))


def test_vdi_create_copy_resize_and_sr_full(sim: SimulatorThread, xapi: Any) -> None:
    pool = xapi.pool.get_all()[0]
    sr = xapi.pool.get_default_SR(pool)
    vdi = xapi.VDI.create(
        {
            "name_label": "scratch",
            "name_description": "",
            "SR": sr,
            "virtual_size": str(GiB),
            "type": "user",
            "sharable": False,
            "read_only": False,
            "other_config": {},
        }
    )
    assert vdi in xapi.SR.get_VDIs(sr)
    assert xapi.VDI.get_virtual_size(vdi) == str(GiB)
    sim.call("sim.write_vdi", _s(sim), vdi, str(GiB - 4096), "eHl6" * 1024)
    local = next(r for r, s in xapi.SR.get_all_records().items() if s["type"] == "ext")
    copy = xapi.VDI.copy(vdi, local)
    assert xapi.VDI.get_SR(copy) == local
    tail = sim.call("sim.read_vdi", _s(sim), copy, str(GiB - 4096), "4096")
    assert base64.b64decode(tail) == b"xyz" * 1024 + bytes(1024)
    xapi.VDI.resize(vdi, str(2 * GiB))
    assert xapi.VDI.get_virtual_size(vdi) == str(2 * GiB)
    assert failure(xapi.VDI.resize, vdi, str(GiB))[0] == "VDI_TOO_SMALL"
    physical = int(xapi.SR.get_physical_size(sr))
    details = failure(
        xapi.VDI.create,
        {"name_label": "huge", "SR": sr, "virtual_size": str(physical * 2), "type": "user"},
    )
    assert details[0] == "SR_FULL" and details[1] == str(physical * 2)
    xapi.SR.scan(sr)
    assert int(xapi.SR.get_physical_utilisation(sr)) > 0


def test_vbd_lifecycle(xapi: Any) -> None:
    vm = vm_by_name(xapi, "win-app-01")
    sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    vdi = xapi.VDI.create(
        {"name_label": "data", "SR": sr, "virtual_size": str(GiB), "type": "user"}
    )
    vbd = xapi.VBD.create(
        {
            "VM": vm,
            "VDI": vdi,
            "userdevice": "autodetect",
            "bootable": False,
            "mode": "RW",
            "type": "Disk",
            "empty": False,
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    assert xapi.VBD.get_userdevice(vbd) == "1"
    assert failure(xapi.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    xapi.VM.start(vm, False, False)
    assert xapi.VBD.get_currently_attached(vbd)
    assert failure(xapi.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    xapi.VBD.unplug(vbd)
    assert failure(xapi.VBD.unplug, vbd) == ["DEVICE_ALREADY_DETACHED", vbd]
    xapi.VBD.destroy(vbd)
    assert vbd not in xapi.VM.get_VBDs(vm)
    xapi.VDI.destroy(vdi)


def test_provision_from_default_template(xapi: Any) -> None:
    template = vm_by_name(xapi, "Debian Bookworm 12")
    vm = xapi.VM.clone(template, "new-debian")
    assert xapi.VM.get_is_a_template(vm)
    xapi.VM.set_is_a_template(vm, False)
    xapi.VM.provision(vm)
    disk = first_disk(xapi, vm)
    assert xapi.VDI.get_virtual_size(disk) == str(10 * GiB)
    assert "disks" not in xapi.VM.get_other_config(vm)
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_power_state(vm) == "Running"


def test_events_from(xapi: Any) -> None:
    first = getattr(xapi.event, "from")(["vm"], "", "0.0")
    assert all(e["class"] == "vm" and e["operation"] == "add" for e in first["events"])
    assert len(first["events"]) == int(first["valid_ref_counts"]["vm"])
    token = first["token"]
    quiet = getattr(xapi.event, "from")(["vm"], token, "0.1")
    assert quiet["events"] == []
    vm = vm_by_name(xapi, "mail-01")
    xapi.VM.set_name_description(vm, "changed")
    got = getattr(xapi.event, "from")(["vm"], quiet["token"], "5.0")
    assert [(e["operation"], e["ref"]) for e in got["events"]] == [("mod", vm)]
    assert got["events"][0]["snapshot"]["name_description"] == "changed"
    # Class filters: a VDI event is not a VM event.
    sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    vdi = xapi.VDI.create({"name_label": "e", "SR": sr, "virtual_size": "1048576", "type": "user"})
    only_vdi = getattr(xapi.event, "from")(["vdi"], got["token"], "1.0")
    assert [(e["class"], e["operation"], e["ref"]) for e in only_vdi["events"]] == [
        ("vdi", "add", vdi)
    ]
    xapi.VDI.destroy(vdi)
    deleted = getattr(xapi.event, "from")(["vdi"], only_vdi["token"], "1.0")
    assert [(e["operation"], e["ref"]) for e in deleted["events"]] == [("del", vdi)]
    assert "snapshot" not in deleted["events"][0]
    assert failure(getattr(xapi.event, "from"), ["vm"], "garbage", "0.0")[0] == (
        "EVENT_FROM_TOKEN_PARSE_FAILURE"
    )


def test_event_from_long_polls_until_a_change(sim: SimulatorThread, xapi: Any) -> None:
    import threading

    token = getattr(xapi.event, "from")(["vm"], "", "0.0")["token"]
    vm = vm_by_name(xapi, "mail-01")
    result: dict[str, Any] = {}

    def waiter() -> None:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", "demo", "2.21", "waiter")
        result["got"] = getattr(s.xenapi.event, "from")(["vm"], token, "30.0")
        s.xenapi.session.logout()
        close_session(s)

    thread = threading.Thread(target=waiter)
    thread.start()
    xapi.VM.set_name_description(vm, "wake up")
    thread.join(30)
    assert [e["ref"] for e in result["got"]["events"]] == [vm]


def test_async_task_success_and_failure(xapi: Any) -> None:
    vm = vm_by_name(xapi, "web-01")
    task = xapi.Async.VM.snapshot(vm, "async snap")
    rec = _wait_task(xapi, task)
    assert rec["status"] == "success" and float(rec["progress"]) == 1.0
    assert rec["result"].startswith("<value>OpaqueRef:")
    snap = rec["result"][len("<value>") : -len("</value>")]
    assert xapi.VM.get_snapshot_of(snap) == vm
    bad = xapi.Async.VM.start(vm, False, False)
    rec = _wait_task(xapi, bad)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    xapi.task.destroy(bad)
    assert bad not in xapi.task.get_all()


def test_task_create_cancel(sim: SimulatorThread, xapi: Any) -> None:
    own = xapi.task.create("backup", "my task")
    assert xapi.task.get_status(own) == "pending"
    xapi.task.cancel(own)
    assert xapi.task.get_status(own) == "cancelling"
    sim.call("sim.inject_fault", _s(sim), "delay_call", {"method": "VM.snapshot", "seconds": 5})
    vm = vm_by_name(xapi, "web-01")
    slow = xapi.Async.VM.snapshot(vm, "slow")
    deadline = time.monotonic() + 10
    while float(xapi.task.get_progress(slow)) == 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0.0 < float(xapi.task.get_progress(slow)) < 1.0
    xapi.task.cancel(slow)
    rec = _wait_task(xapi, slow)
    assert rec["status"] == "cancelled"
    assert rec["error_info"] == ["TASK_CANCELLED", slow]
    assert xapi.VM.get_by_name_label("slow") == []


def _wait_task(xapi: Any, task: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rec: dict[str, Any] = xapi.task.get_record(task)
        if rec["status"] not in ("pending", "cancelling"):
            return rec
        time.sleep(0.02)
    raise AssertionError(f"task {task} still pending")


def test_messages(xapi: Any) -> None:
    vm = vm_by_name(xapi, "web-01")
    ref = xapi.message.create("BACKUP_DONE", "3", "VM", xapi.VM.get_uuid(vm), "ok")
    assert xapi.message.get_record(ref)["name"] == "BACKUP_DONE"
    assert ref in xapi.message.get_all_records()
    xapi.message.destroy(ref)


def test_revert_to_snapshot(sim: SimulatorThread, xapi: Any) -> None:
    vm = vm_by_name(xapi, "mail-01")
    snap = xapi.VM.snapshot(vm, "before change")
    disk = first_disk(xapi, vm)
    original = sim.call("sim.read_vdi", _s(sim), disk, "0", "4096")
    sim.call("sim.write_vdi", _s(sim), disk, "0", base64.b64encode(b"oops" * 1024).decode())
    xapi.VM.set_VCPUs_max(vm, "7")
    xapi.VM.revert(snap)
    new_disk = first_disk(xapi, vm)
    assert new_disk != disk
    assert disk not in xapi.VDI.get_all()
    assert sim.call("sim.read_vdi", _s(sim), new_disk, "0", "4096") == original
    assert xapi.VM.get_VCPUs_max(vm) == "2"
    assert xapi.VM.get_parent(vm) == snap


def test_event_register_next(sim: SimulatorThread, xapi: Any) -> None:
    xapi.event.register(["vm"])
    vm = vm_by_name(xapi, "mail-01")
    xapi.VM.set_name_description(vm, "via event.next")
    events = xapi.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("vm", "mod", vm)]
    xapi.event.unregister(["vm"])


def test_vdi_copy_delta_into_existing(sim: SimulatorThread, xapi: Any) -> None:
    """VDI.copy(vdi, sr, base, into): only what changed since base lands in into."""
    sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    src = xapi.VDI.create(
        {"name_label": "src", "SR": sr, "virtual_size": str(64 * 1024**2), "type": "user"}
    )
    sim.call("sim.write_vdi", _s(sim), src, "0", base64.b64encode(b"A" * 8192).decode())
    base = xapi.VDI.snapshot(src, {})
    replica = xapi.VDI.copy(base, sr)
    sim.call(
        "sim.write_vdi", _s(sim), src, str(40 * 1024**2), base64.b64encode(b"B" * 512).decode()
    )
    # Something only the replica has outside the changed blocks must survive.
    sim.call("sim.write_vdi", _s(sim), replica, str(20 * 1024**2), base64.b64encode(b"R").decode())
    assert xapi.VDI.copy(src, sr, base, replica) == replica

    def read(vdi: str, off: int, n: int) -> bytes:
        return base64.b64decode(sim.call("sim.read_vdi", _s(sim), vdi, str(off), str(n)))

    assert read(replica, 40 * 1024**2, 512) == b"B" * 512
    assert read(replica, 0, 8192) == b"A" * 8192
    assert read(replica, 20 * 1024**2, 1) == b"R"


def test_guest_writes_fill_the_sr(sim: SimulatorThread, xapi: Any) -> None:
    sr = next(r for r, s in xapi.SR.get_all_records().items() if s["type"] == "ext")
    vdi = xapi.VDI.create(
        {"name_label": "f", "SR": sr, "virtual_size": str(8 * 1024**2), "type": "user"}
    )
    used = int(xapi.SR.get_physical_utilisation(sr))
    # Shrink the SR to just above what is used: a 1 MiB write cannot fit.
    sim.run(_shrink(sim, sr, used + 4096))
    data = base64.b64encode(b"x" * 1024**2).decode()
    details = failure(xapi.sim.write_vdi, vdi, "0", data)
    assert details[0] == "SR_FULL" and details[1] == str(1024**2)


async def _shrink(sim: SimulatorThread, sr: str, size: int) -> None:
    assert sim.sim is not None
    sim.sim.pool.db.set("SR", sr, physical_size=size)


def _put(url: str, data: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="PUT")  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def test_imports_fill_the_sr_and_each_transfer_is_counted(
    sim: SimulatorThread, xapi: Any, session: Any
) -> None:
    """What replication's tests rely on: an SR that fills up refuses an
    import with SR_FULL, and the wire bytes of every transfer are counted."""
    sr = next(r for r, s in xapi.SR.get_all_records().items() if s["type"] == "ext")
    vdi = xapi.VDI.create(
        {"name_label": "in", "SR": sr, "virtual_size": str(8 * 1024**2), "type": "user"}
    )
    xapi.sim.reset_transfer_stats()
    used = int(xapi.SR.get_physical_utilisation(sr))
    xapi.sim.set_sr_size(sr, str(used + 1024**2))
    url = f"{sim.url}import_raw_vdi?session_id={session._session}&vdi={vdi}&format=raw"
    data = bytes(range(256)) * (4 * 4096)  # 4 MiB, nothing zero
    status, text = _put(url, data)
    assert status == 500 and text.startswith("SR_FULL"), text
    xapi.sim.set_sr_size(sr, str(used + 64 * 1024**2))
    status, text = _put(url, data)
    assert status == 200, text
    stats = xapi.sim.transfer_stats()
    [refused, done] = stats["imports"]
    assert refused["ok"] is False and int(refused["bytes"]) >= 1024**2
    assert done["ok"] is True and int(done["bytes"]) == len(data)
    assert int(stats["received"]) == int(refused["bytes"]) + len(data)
    assert done["vdi"] == xapi.VDI.get_uuid(vdi)
    failure(xapi.sim.set_sr_size, sr, "-1")
