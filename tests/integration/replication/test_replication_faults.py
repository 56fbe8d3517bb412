"""A run cut by a dropped transfer, a failing call or a full target SR: the
replica stays at its previous complete point, the error says what happened,
nothing is left behind in either pool, and the next run recovers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.backup.conftest import TestVm
from tests.integration.replication.conftest import (
    Sites,
    default_sr,
    first_disk_sha,
    inventory,
    job_input,
    reference_snapshots,
)
from xenkeep.replication.const import BASE_KEY


async def _drop_imports(s: Sites) -> None:
    await s.b.call(
        "sim.inject_fault", "drop_transfer", {"bytes": 4096, "count": 50, "path": "/import_raw_vdi"}
    )


async def _drop_exports(s: Sites) -> None:
    await s.a.call(
        "sim.inject_fault", "drop_transfer", {"bytes": 4096, "count": 50, "path": "/export_raw_vdi"}
    )


async def _point_fails(s: Sites) -> None:
    await s.b.call(
        "sim.inject_fault",
        "fail_call",
        {
            "method": "VM.snapshot",
            "error": ["SR_BACKEND_FAILURE_44", "", "disk I/O error"],
            "count": 1,
        },
    )


async def _source_snapshot_fails(s: Sites) -> None:
    await s.a.call("sim.inject_fault", "fail_call", {"method": "VM.snapshot", "count": 1})


async def _target_sr_full(s: Sites) -> None:
    sr = await s.b.call("SR.get_by_uuid", await default_sr(s.b))
    used = await s.b.call("SR.get_physical_utilisation", sr)
    await s.b.call("sim.set_sr_size", sr, used)


FAULTS: dict[str, tuple[Callable[[Sites], Awaitable[None]], str]] = {
    "dropped import": (_drop_imports, "the connection broke 3 times while copying the disk"),
    "dropped export": (_drop_exports, "export of VDI"),
    "failing point snapshot": (_point_fails, "SR_BACKEND_FAILURE_44"),
    "failing source snapshot": (_source_snapshot_fails, "INTERNAL_ERROR"),
    "full target SR": (_target_sr_full, "SR_FULL"),
}


async def _clear(s: Sites) -> None:
    await s.a.call("sim.clear_faults")
    await s.b.call("sim.clear_faults")
    sr = await s.b.call("SR.get_by_uuid", await default_sr(s.b))
    await s.b.call("sim.set_sr_size", sr, 2 << 40)


def _show(run: dict[str, Any]) -> str:
    return json.dumps({"error": run["error"], "log": [x["message"] for x in run["log"]]}, indent=1)


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_cut_run_leaves_the_last_point_and_the_next_run_recovers(
    sites: Sites, vm: TestVm, fault: str
) -> None:
    inject, words = FAULTS[fault]
    m, a, b = sites.manager, sites.a, sites.b
    job = await m.create_job(job_input(await default_sr(b)))
    first = await sites.run(job.id)
    assert first["status"] == "success", _show(first)
    [replica] = await m.replicas(job_id=job.id)
    point_one = replica["latest_point_uuid"]
    sha_one = await vm.sha256()
    await vm.scribble(writes=4)
    before = {"a": await inventory(a), "b": await inventory(b)}

    await inject(sites)
    cut = await sites.run(job.id)
    await _clear(sites)

    assert cut["status"] == "failed", _show(cut)
    assert words in cut["error"], _show(cut)
    assert "rep-test-01" in cut["error"]
    # The replica is at its previous complete point, clean, with nothing added.
    [replica] = await m.replicas(job_id=job.id)
    assert replica["latest_point_uuid"] == point_one
    assert replica["last_error"] and words in replica["last_error"]
    points = await m.replica_points(replica["id"])
    assert [p["uuid"] for p in points] == [point_one]
    rvm = await b.call("VM.get_by_uuid", replica["vm_uuid"])
    assert (await b.call("VM.get_other_config", rvm))[BASE_KEY] == point_one
    assert await first_disk_sha(b, rvm) == sha_one
    assert await first_disk_sha(b, await b.call("VM.get_by_uuid", point_one)) == sha_one
    # Nothing left behind: the same VMs, snapshots and disks on both sites.
    assert {"a": await inventory(a), "b": await inventory(b)} == before
    [ref] = await reference_snapshots(a, vm.ref)
    assert ref["uuid"] == points[0]["source_snapshot"]

    # The next run recovers, as a delta against the reference that survived.
    again = await sites.run(job.id)
    assert again["status"] == "success", _show(again)
    assert again["report"]["vms"][0]["transfers"] == {"0": "delta"}
    [replica] = await m.replicas(job_id=job.id)
    point = await b.call("VM.get_by_uuid", replica["latest_point_uuid"])
    assert await first_disk_sha(b, point) == await vm.sha256()


async def test_a_dropped_connection_is_copied_again_within_the_run(
    sites: Sites, vm: TestVm
) -> None:
    m, b = sites.manager, sites.b
    job = await m.create_job(job_input(await default_sr(b)))
    await b.call(
        "sim.inject_fault", "drop_transfer", {"bytes": 65536, "count": 1, "path": "/import_raw_vdi"}
    )
    run = await sites.run(job.id)
    assert run["status"] == "success", _show(run)
    assert any("copying the disk again" in x["message"] for x in run["log"]), _show(run)
    [replica] = await m.replicas(job_id=job.id)
    point = await b.call("VM.get_by_uuid", replica["latest_point_uuid"])
    assert await first_disk_sha(b, point) == await vm.sha256()
