"""Failover starts the replica with the expected disk content and pauses the
job; failback brings what changed on site B back to site A, swaps the roles
again, and the next run is a delta."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from tests.integration.backup.conftest import TestVm
from tests.integration.replication.conftest import (
    MiB,
    Sites,
    default_sr,
    first_disk_sha,
    job_input,
    reference_snapshots,
)
from xenkeep.replication.const import BASE_KEY, REPLICA_OF_KEY


def _show(op: dict[str, Any]) -> str:
    return json.dumps({"error": op["error"], "log": [x["message"] for x in op["log"]]}, indent=1)


async def _disk0(client: Any, vm: str) -> str:
    for vbd in await client.call("VM.get_VBDs", vm):
        rec = await client.call("VBD.get_record", vbd)
        if rec["type"] == "Disk" and rec["userdevice"] == "0":
            return str(rec["VDI"])
    raise AssertionError("no disk 0")


async def _follow_disk(sites: Sites, vm: TestVm) -> None:
    """A failback replaces the source VM's disks (a revert, or a full copy):
    the test VM's helpers go on with its disk as it is now."""
    vm.vdi = await _disk0(sites.a, vm.ref)


async def _write_on_b(sites: Sites, vm: str, seed: int) -> None:
    """What the started replica's guest writes on site B."""
    vdi = await _disk0(sites.b, vm)
    rng = random.Random(seed)
    for _ in range(3):
        offset = rng.randrange(0, 14 * MiB) // 512 * 512
        data = base64.b64encode(rng.randbytes(100_000)).decode()
        await sites.b.call("sim.write_vdi", vdi, offset, data)


async def test_failover_then_failback_swaps_roles(sites: Sites, vm: TestVm) -> None:
    m, a, b = sites.manager, sites.a, sites.b
    job = await m.create_job(job_input(await default_sr(b), schedule="*/10 * * * *"))
    assert (await sites.run(job.id))["status"] == "success"
    await vm.scribble()
    assert (await sites.run(job.id))["status"] == "success"
    expected = await vm.sha256()
    [replica] = await m.replicas(job_id=job.id)

    # Failover: the replica itself starts, with the latest point's content.
    op = await sites.wait(await m.start_replica(replica["id"]))
    assert op["status"] == "success", _show(op)
    started = await b.call("VM.get_by_uuid", op["report"]["started_vm_uuid"])
    assert op["report"]["started_vm_uuid"] == replica["vm_uuid"]
    assert await b.call("VM.get_power_state", started) == "Running"
    assert await first_disk_sha(b, started) == expected
    row = await m.replica(replica["id"])
    assert row["state"] == "started"
    assert row["rpo"]["exceeded"] is False
    job_row = await m.job(job.id)
    assert "was started on pool Site B" in job_row.paused
    # The job does not overwrite it: a run refuses that VM, saying why.
    refused = await sites.run(job.id)
    assert refused["status"] == "failed"
    assert "was started on pool Site B" in refused["error"], _show(refused)

    # Site B works on; site A's VM is halted (the disaster is over).
    await _write_on_b(sites, started, seed=11)
    on_b = await first_disk_sha(b, started)
    assert on_b != expected

    op = await sites.wait(await m.failback(replica["id"], start_source=False))
    assert op["status"] == "success", _show(op)
    assert op["report"]["transfers"] == {"0": "delta"}, _show(op)
    await _follow_disk(sites, vm)
    # Site A has site B's data; the replica is a replica again, equal to it.
    assert await vm.sha256() == on_b
    row = await m.replica(replica["id"])
    assert row["state"] == "replicating" and row["started_vm_uuid"] == ""
    assert not (await m.job(job.id)).paused
    rvm = await b.call("VM.get_by_uuid", row["vm_uuid"])
    rec = await b.call("VM.get_record", rvm)
    assert rec["power_state"] == "Halted"
    assert "start" in rec["blocked_operations"]
    assert rec["other_config"][BASE_KEY] == row["latest_point_uuid"]
    assert await first_disk_sha(b, await b.call("VM.get_by_uuid", row["latest_point_uuid"])) == on_b
    # Site A kept its state from before the failback, and one reference.
    names = [
        (await a.call("VM.get_record", s))["name_label"]
        for s in await a.call("VM.get_snapshots", vm.ref)
    ]
    assert any("before failback" in n for n in names), names
    assert len(await reference_snapshots(a, vm.ref)) == 1

    # The source runs again and the next replication is a delta.
    await vm.scribble()
    run = await sites.run(job.id)
    assert run["status"] == "success", _show(run)
    assert run["report"]["vms"][0]["transfers"] == {"0": "delta"}
    row = await m.replica(replica["id"])
    point = await b.call("VM.get_by_uuid", row["latest_point_uuid"])
    assert await first_disk_sha(b, point) == await vm.sha256()


async def test_failover_from_an_older_point_starts_a_clone(sites: Sites, vm: TestVm) -> None:
    m, b = sites.manager, sites.b
    job = await m.create_job(job_input(await default_sr(b)))
    assert (await sites.run(job.id))["status"] == "success"
    first = await vm.sha256()
    await vm.scribble()
    assert (await sites.run(job.id))["status"] == "success"
    [replica] = await m.replicas(job_id=job.id)
    points = await m.replica_points(replica["id"])
    assert len(points) == 2

    op = await sites.wait(await m.start_replica(replica["id"], point_uuid=points[0]["uuid"]))
    assert op["status"] == "success", _show(op)
    assert op["report"]["cloned"] is True
    clone = await b.call("VM.get_by_uuid", op["report"]["started_vm_uuid"])
    assert op["report"]["started_vm_uuid"] != replica["vm_uuid"]
    clone_rec = await b.call("VM.get_record", clone)
    assert clone_rec["power_state"] == "Running"
    assert REPLICA_OF_KEY not in clone_rec["other_config"]
    assert await first_disk_sha(b, clone) == first
    # The replica itself stays as it was: halted, blocked, at its latest point.
    rrec = await b.call("VM.get_record", await b.call("VM.get_by_uuid", replica["vm_uuid"]))
    assert rrec["power_state"] == "Halted" and "start" in rrec["blocked_operations"]

    await _write_on_b(sites, clone, seed=5)
    on_b = await first_disk_sha(b, clone)
    # The source snapshot behind point 1 is gone (only the newest is kept): a full.
    op = await sites.wait(await m.failback(replica["id"]))
    assert op["status"] == "success", _show(op)
    assert op["report"]["transfers"] == {"0": "full"}, _show(op)
    await _follow_disk(sites, vm)
    assert await vm.sha256() == on_b
    # The clone is gone; the replica holds its data as its newest point.
    assert clone not in await b.call("VM.get_all")
    row = await m.replica(replica["id"])
    assert row["state"] == "replicating"
    rvm = await b.call("VM.get_by_uuid", row["vm_uuid"])
    assert await first_disk_sha(b, rvm) == on_b
    run = await sites.run(job.id)
    assert run["status"] == "success", _show(run)
    assert run["report"]["vms"][0]["transfers"] == {"0": "delta"}


async def test_failback_refuses_while_the_source_runs(sites: Sites, vm: TestVm) -> None:
    m, a, b = sites.manager, sites.a, sites.b
    job = await m.create_job(job_input(await default_sr(b)))
    assert (await sites.run(job.id))["status"] == "success"
    [replica] = await m.replicas(job_id=job.id)
    assert (await sites.wait(await m.start_replica(replica["id"])))["status"] == "success"
    await a.call("VM.start", vm.ref, False, False)
    op = await sites.wait(await m.failback(replica["id"]))
    assert op["status"] == "failed"
    assert "rep-test-01 is running on pool Site A" in op["error"], _show(op)
    assert [t["status"] for t in op["tasks"]] == ["failed"]
    # Nothing changed: still started on B, still running on A, nothing new on A.
    assert (await m.replica(replica["id"]))["state"] == "started"
    assert await a.call("VM.get_power_state", vm.ref) == "Running"
    assert len(await a.call("VM.get_snapshots", vm.ref)) == 1
