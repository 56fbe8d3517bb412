"""The long scenario: 10 runs, retention 7, random writes between runs.

After every run, every retained restore point restores byte-identical to the
disk at its snapshot time, and each new delta holds exactly the blocks the
guest wrote since the previous run.
"""

from __future__ import annotations

import pytest

from tests.integration.backup.conftest import TestVm, job_input, sr_uuid
from tests.integration.backup.test_backup_runs import restore_disk_sha
from xenkeep.backup.manager import BackupManager
from xenkeep.xapi.client import XapiClient

RUNS = 10
RETENTION = 7


@pytest.mark.slow
async def test_ten_runs_retention_seven(
    manager: BackupManager, client: XapiClient, vm: TestVm
) -> None:
    job = await manager.create_job(job_input(retention=RETENTION))
    sr = await sr_uuid(client)
    digests: dict[str, str] = {}
    for n in range(RUNS):
        if n:
            await vm.scribble(writes=3)
        touched = set(vm.touched)
        vm.touched.clear()
        run = await manager.wait(await manager.run_job(job.id))
        assert run["status"] == "success", run
        [row] = run["report"]["vms"]
        assert row["transfers"] == {"0": "full" if n == 0 else "delta"}, row
        digests[row["point_id"]] = await vm.sha256()
        points = await manager.points(vm.uuid)
        assert len(points) == min(n + 1, RETENTION)
        newest = points[-1]
        assert newest["id"] == row["point_id"]
        if n:
            # Only the changed blocks travelled and were stored.
            assert newest["disks"][0]["blocks"] == len(touched), (touched, newest)
        if n >= RETENTION:
            assert row["merged"] == 1
            assert row["merge_seconds"] is not None
        for p in points:
            got = await restore_disk_sha(manager, client, vm.uuid, p["id"], sr)
            assert got == digests[p["id"]], f"run {n}: point {p['id']} differs"
