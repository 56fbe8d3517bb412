"""Replication within one pool, to another of its SRs: the replica lives
beside its source, never shares its MAC, and is never selected itself."""

from __future__ import annotations

from tests.integration.backup.conftest import TestVm
from tests.integration.replication.conftest import (
    SITE_A,
    Sites,
    first_disk_sha,
    job_input,
    sr_named,
)


async def test_replicating_to_another_sr_of_the_same_pool(sites: Sites, vm: TestVm) -> None:
    m, a = sites.manager, sites.a
    local = await sr_named(a, "Local storage")
    job = await m.create_job(job_input(local, target_pool_id=SITE_A))
    for _ in range(2):
        run = await sites.run(job.id)
        assert run["status"] == "success", run["error"]
        # The replica carries the source's tag, but only the source is taken.
        assert [v["vm_name"] for v in run["report"]["vms"]] == ["rep-test-01"]
        await vm.scribble()
    assert run["report"]["vms"][0]["transfers"] == {"0": "delta"}
    [replica] = await m.replicas(job_id=job.id)
    rvm = await a.call("VM.get_by_uuid", replica["vm_uuid"])
    point = await a.call("VM.get_by_uuid", replica["latest_point_uuid"])
    # Its disks are on the chosen SR, and its point is the source as it was.
    vbd = (await a.call("VM.get_VBDs", rvm))[0]
    sr = await a.call("VDI.get_SR", await a.call("VBD.get_VDI", vbd))
    assert await a.call("SR.get_uuid", sr) == local
    assert await first_disk_sha(a, point) == await first_disk_sha(a, rvm)
    # The same network as the source, a MAC of its own.
    [src_vif] = await a.call("VM.get_VIFs", vm.ref)
    [rep_vif] = await a.call("VM.get_VIFs", rvm)
    src, rep = await a.call("VIF.get_record", src_vif), await a.call("VIF.get_record", rep_vif)
    assert src["network"] == rep["network"]
    assert src["MAC"] != rep["MAC"]
