"""``xenkeep replication list|run|start`` against the real daemon and the
simulator: listing with RPO, following a run to its report, starting a
replica, refusals with their cause, and the console's token always revoked."""

from __future__ import annotations

import json

from tests.integration.backup.conftest import make_vm
from tests.integration.cli.conftest import Console
from tests.integration.replication.conftest import first_disk_sha, sr_named
from tests.support.web import Browser, complete_setup
from xapisim import RunningSimulator
from xenkeep.app import database
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.server import RunningServer
from xenkeep.xapi.client import XapiClient


async def test_list_run_and_start_a_replica(
    daemon: RunningServer,
    browser: Browser,
    settings: Settings,
    sim: RunningSimulator,
    client: XapiClient,
    console: Console,
) -> None:
    xenkeep = console
    await complete_setup(browser, settings)
    pool = await keys.pools(daemon.app).add(sim.url, "root", "demo")
    vm = await make_vm(client, sim, "cli-rep-01")
    local = await sr_named(client, "Local storage")

    code, out, err = await xenkeep("replication", "list")
    assert code == 0, err
    assert "no replication jobs yet" in out and "no replicas yet" in out

    status, job = await browser.api(
        "POST",
        "/api/v1/replication/jobs",
        {
            "name": "to local",
            "selector": "name",
            "targets": ["cli-rep-01"],
            "pool_id": str(pool.id),
            "target_pool_id": str(pool.id),
            "target_sr_uuid": local,
            "schedule": "*/10 * * * *",
        },
    )
    assert status == 201, job

    code, out, err = await xenkeep("replication", "run", "no such job")
    assert code != 0 and "no replication job 'no such job'" in err, err

    code, out, err = await xenkeep("replication", "run", "to local")
    assert code == 0, out + err
    assert "'to local' started" in out.splitlines()[0]
    assert "first replication of this VM" in out
    assert "cli-rep-01" in out and "disk 0: full" in out and "replica point" in out
    assert out.rstrip().endswith("result: success (1 of 1 VMs succeeded)")

    code, out, err = await xenkeep("replication", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "SCHEDULE", "NEXT", "RUN", "LAST", "RESULT"]
    assert "to local" in lines[1] and "success" in lines[1]
    replica_header = next(i for i, line in enumerate(lines) if line.startswith("ID  VM"))
    assert "cli-rep-01" in lines[replica_header + 1]
    assert "replicating" in lines[replica_header + 1]
    listed = json.loads((await xenkeep("replication", "list", "--json"))[1])
    [replica] = listed["replicas"]

    # Starting asks for a confirmation a script gives with --yes.
    code, out, err = await xenkeep("replication", "start", "cli-rep-01")
    assert code != 0 and "confirm with --yes" in err, err
    code, out, err = await xenkeep("replication", "start", "cli-rep-01", "--yes")
    assert code == 0, out + err
    assert "started the replica, at point 1" in out and "schedule is paused" in out
    started = await client.call("VM.get_by_uuid", replica["vm_uuid"])
    assert await client.call("VM.get_power_state", started) == "Running"
    assert await first_disk_sha(client, started) == await vm.sha256()

    code, out, err = await xenkeep("replication", "start", str(replica["id"]), "--yes")
    assert code != 0 and "is started" in err, err
    code, out, err = await xenkeep("replication", "list")
    assert "paused" in out and "was started on pool" in out
    row = await database(daemon.app).fetchone("SELECT count(*) AS n FROM api_tokens")
    assert row is not None and row["n"] == 0
