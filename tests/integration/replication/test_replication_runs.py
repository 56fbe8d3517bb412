"""Runs between two pools: the first copies everything, later ones only the
changed blocks, each leaves a point byte-identical to the source snapshot,
and the bytes on the wire (counted by the simulator's transfer handler, not
by XenKeep) stay within 1.1 times the changed blocks."""

from __future__ import annotations

import json

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

BLOCK = 2 * MiB
RUNS = 5


async def test_runs_keep_byte_identical_points_and_send_only_changes(
    sites: Sites, vm: TestVm
) -> None:
    m, a, b = sites.manager, sites.a, sites.b
    job = await m.create_job(job_input(await default_sr(b), retention=3))
    allocated = 0
    for n in range(1, RUNS + 1):
        await b.call("sim.reset_transfer_stats")
        await a.call("sim.reset_transfer_stats")
        run = await sites.run(job.id)
        assert run["status"] == "success", json.dumps(
            {"error": run["error"], "log": [x["message"] for x in run["log"]]}, indent=1
        )
        [vm_report] = run["report"]["vms"]
        assert vm_report["transfers"] == {"0": "full" if n == 1 else "delta"}, vm_report
        # The replica's newest point equals the source snapshot it names, and the VM.
        [replica] = await m.replicas(job_id=job.id)
        assert replica["latest_point_uuid"] == vm_report["point_id"]
        point = await b.call("VM.get_by_uuid", replica["latest_point_uuid"])
        [ref] = await reference_snapshots(a, vm.ref)
        want = await vm.sha256()
        assert await first_disk_sha(a, await a.call("VM.get_by_uuid", ref["uuid"])) == want
        assert await first_disk_sha(b, point) == want, f"run {n}: the point differs"
        # On the wire: the full is the disk's data; a delta, the changed blocks.
        stats_b = await b.call("sim.transfer_stats")
        stats_a = await a.call("sim.transfer_stats")
        if n == 1:
            allocated = stats_b["received"]
            assert allocated >= 3 * MiB
        else:
            changed = len(vm.touched) * BLOCK
            assert changed > 0
            assert stats_b["received"] <= 1.1 * changed, (n, stats_b, changed)
            assert stats_a["sent"] <= 1.1 * changed, (n, stats_a, changed)
            assert run["report"]["bytes"] == stats_b["received"]
        vm.touched.clear()
        await vm.scribble(writes=3)
    # Retention: three points; one reference on the source; the replica is
    # halted, start-blocked, clean and tagged as a replica.
    [replica] = await m.replicas(job_id=job.id)
    assert replica["points"] == 3
    points = await m.replica_points(replica["id"])
    assert [p["seq"] for p in points] == [RUNS - 2, RUNS - 1, RUNS]
    rec = await b.call("VM.get_record", await b.call("VM.get_by_uuid", replica["vm_uuid"]))
    assert rec["power_state"] == "Halted"
    assert "start" in rec["blocked_operations"] and "replica" in rec["blocked_operations"]["start"]
    assert rec["other_config"][REPLICA_OF_KEY] == vm.uuid
    assert rec["other_config"][BASE_KEY] == points[-1]["uuid"]
    assert "xenkeep-replica" in rec["tags"]
    assert len(await reference_snapshots(a, vm.ref)) == 1
